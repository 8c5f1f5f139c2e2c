// A speaker's audio from RTP: Opus decoded at 16 kHz (libopus decodes at that rate directly), with
// the gaps a sender leaves (packet loss, DTX, mute) filled with silence by the RTP clock, so that
// sample n of the stream is always n/16000 s after the track's first packet. The sender's clock is
// believed as far as time went by here: a jump (a restart, or a sender's trick of an hour per
// packet) is filled with the time that passed, and the stream never runs ahead of real time by
// more than AHEAD_SEC, so no participant can make the job write or recognise more than the call.
import { OpusDecoder } from 'opus-decoder';
import { SAMPLE_RATE } from './speech/engine.js';

const RTP_RATE = 48_000;
/** The stream may run ahead of real time by this much (the sender's clock drifting from ours). */
const AHEAD_SEC = 10;
/** A gap by the sender's clock is believed up to the time waited here and this much more (jitter, the reorder hold). */
const JUMP_SLACK_SEC = 2;
/** A packet this far behind the stream is late (dropped); further, the sender's clock went back. */
const LATE_TICKS = RTP_RATE * 10;
/** opus-decoder's input buffer: a larger payload (no browser's Opus) would throw in it. */
const MAX_OPUS_PAYLOAD = 3840;

export class SpeakerAudio {
  private readonly decoder = new OpusDecoder({ sampleRate: SAMPLE_RATE, channels: 1 });
  private isReady = false;
  private queue: [Uint8Array, number, number][] = [];
  private nextTs: number | undefined;
  /** samples produced so far */
  private position = 0;
  /** when the first and the last packet decoded arrived (ms, performance.now()) */
  private startedAt = -1;
  private lastAt = 0;

  /** `onSamples` gets each run of samples and the stream position of its first one. */
  constructor(private readonly onSamples: (samples: Int16Array, position: number) => void) {
    // The WebAssembly instance is ready a moment after the first packets may arrive: hold them.
    void this.decoder.ready.then(() => {
      this.isReady = true;
      for (const [payload, ts, at] of this.queue.splice(0)) this.decode(payload, ts, at);
    });
  }

  /** `at`: when the packet arrived (performance.now()), not when the reorder hold let it go. */
  push(payload: Uint8Array, timestamp: number, at = performance.now()): void {
    if (payload.length > MAX_OPUS_PAYLOAD) return; // not Opus: opus-decoder would throw
    if (this.isReady) this.decode(payload, timestamp, at);
    else this.queue.push([Uint8Array.from(payload), timestamp, at]);
  }

  private decode(payload: Uint8Array, timestamp: number, now: number): void {
    if (this.startedAt < 0) this.startedAt = now;
    const room = ((now - this.startedAt) / 1000 + AHEAD_SEC) * SAMPLE_RATE - this.position;
    if (room <= 0) return; // sent faster than real time
    let gap = 0;
    if (this.nextTs !== undefined) {
      const ahead = (timestamp - this.nextTs) | 0; // signed distance, wraps at 2^32
      if (ahead < 0 && ahead > -LATE_TICKS) return; // reordered or repeated: its time has passed
      const byClock = (ahead * SAMPLE_RATE) / RTP_RATE;
      const waited = ((now - this.lastAt) / 1000) * SAMPLE_RATE;
      gap = Math.round(
        Math.min(room, ahead >= 0 && byClock <= waited + JUMP_SLACK_SEC * SAMPLE_RATE ? byClock : waited),
      );
    }
    this.lastAt = now;
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
