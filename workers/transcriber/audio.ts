// A speaker's audio from RTP: Opus decoded at 16 kHz (libopus decodes at that rate directly), with
// the gaps a sender leaves (packet loss, DTX, mute) filled with silence by the RTP clock, so that
// sample n of the stream is always n/16000 s after the track's first packet, as far as the
// sender's clock is believed (src/media/sender-clock.ts): no participant can make the job write or
// recognise more than the call.
import { OpusDecoder } from 'opus-decoder';
import { SenderClock } from '../../src/media/sender-clock.js';
import { SAMPLE_RATE } from './speech/engine.js';

const RTP_RATE = 48_000;
/** RTP ticks a sample: the stream's position on the sender's clock. */
const TICKS = RTP_RATE / SAMPLE_RATE;
/** opus-decoder's input buffer: a larger payload (no browser's Opus) would throw in it. */
const MAX_OPUS_PAYLOAD = 3840;

export class SpeakerAudio {
  private readonly decoder = new OpusDecoder({ sampleRate: SAMPLE_RATE, channels: 1 });
  private isReady = false;
  private queue: [Uint8Array, number, number][] = [];
  private nextTs: number | undefined;
  /** samples produced so far */
  private position = 0;
  /** a packet this far (10 s) behind the stream is late; further, the sender's clock went back */
  private readonly clock = new SenderClock(RTP_RATE, RTP_RATE * 10);
  /** packets libopus refused (a sender's bug, or a participant's garbage: counted, not logged each) */
  undecodable = 0;

  /**
   * `onSamples` gets each run of samples and the stream position of its first one; `onUndecodable`
   * the first packet libopus refuses, with its error.
   */
  constructor(
    private readonly onSamples: (samples: Int16Array, position: number) => void,
    private readonly onUndecodable?: (error: string) => void,
  ) {
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

  private decode(payload: Uint8Array, timestamp: number, at: number): void {
    const ahead = this.nextTs === undefined ? undefined : (timestamp - this.nextTs) | 0; // wraps at 2^32
    const ticks = this.clock.step(ahead, at, this.position * TICKS);
    if (ticks === undefined) return; // late, or sent faster than real time
    const gap = Math.round(ticks / TICKS);
    const { channelData, samplesDecoded, errors } = this.decoder.decodeFrame(payload);
    if (errors.length && this.undecodable++ === 0) this.onUndecodable?.(errors[0]!.message);
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
