// A speaker's audio from RTP: Opus decoded at 16 kHz (libopus decodes at that rate directly), with
// the gaps a sender leaves (packet loss, DTX, mute) filled with silence by the RTP clock, so that
// sample n of the stream is always n/16000 s after the track's first packet.
import { OpusDecoder } from 'opus-decoder';
import { SAMPLE_RATE } from './speech/engine.js';

const RTP_RATE = 48_000;
/** Longer gaps are a sender restart, not silence: the stream goes on without filling it. */
const MAX_GAP_SAMPLES = SAMPLE_RATE * 60;

export class SpeakerAudio {
  private readonly decoder = new OpusDecoder({ sampleRate: SAMPLE_RATE, channels: 1 });
  private isReady = false;
  private queue: [Uint8Array, number][] = [];
  private nextTs: number | undefined;
  /** samples produced so far */
  private position = 0;

  /** `onSamples` gets each run of samples and the stream position of its first one. */
  constructor(private readonly onSamples: (samples: Int16Array, position: number) => void) {
    // The WebAssembly instance is ready a moment after the first packets may arrive: hold them.
    void this.decoder.ready.then(() => {
      this.isReady = true;
      for (const [payload, ts] of this.queue.splice(0)) this.decode(payload, ts);
    });
  }

  push(payload: Uint8Array, timestamp: number): void {
    if (this.isReady) this.decode(payload, timestamp);
    else this.queue.push([Uint8Array.from(payload), timestamp]);
  }

  private decode(payload: Uint8Array, timestamp: number): void {
    let gap = 0;
    if (this.nextTs !== undefined) {
      const ahead = (timestamp - this.nextTs) | 0; // signed distance, wraps at 2^32
      if (ahead < 0) return; // reordered or repeated: its time has passed
      gap = Math.round((ahead * SAMPLE_RATE) / RTP_RATE);
      if (gap > MAX_GAP_SAMPLES) gap = 0;
    }
    const { channelData, samplesDecoded } = this.decoder.decodeFrame(payload);
    this.nextTs = (timestamp + Math.round((samplesDecoded * RTP_RATE) / SAMPLE_RATE)) >>> 0;
    const out = new Int16Array(gap + samplesDecoded);
    const ch = channelData[0]!;
    for (let i = 0; i < samplesDecoded; i++) {
      const s = ch[i]! * 32768;
      out[gap + i] = s > 32767 ? 32767 : Math.max(s, -32768);
    }
    const position = this.position;
    this.position += out.length;
    this.onSamples(out, position);
  }

  free(): void {
    this.queue = [];
    this.isReady = false; // a packet still in flight is dropped, not decoded by a freed instance
    void this.decoder.ready.then(() => this.decoder.free());
  }
}
