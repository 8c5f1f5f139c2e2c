// Energy voice activity detection: cuts a speaker's stream into utterances before recognition, so
// silence costs nothing and every window the engine sees starts and ends in a pause. The noise
// floor follows the quietest recent frames, so a noisy microphone does not count as speech.
import { SAMPLE_RATE } from './engine.js';

export interface VadOptions {
  /** silence that ends an utterance */
  hangoverMs: number;
  /** longest window: a longer utterance is cut here (captions want short windows) */
  maxUtteranceMs: number;
  /** shorter bursts (clicks, coughs) are dropped */
  minSpeechMs: number;
  /** dB above the noise floor that counts as speech */
  thresholdDb: number;
}

export const vadDefaults: VadOptions = { hangoverMs: 400, maxUtteranceMs: 20_000, minSpeechMs: 150, thresholdDb: 12 };

export interface Utterance {
  /** first sample's index on the stream given to push() */
  start: number;
  pcm: Int16Array;
  /** cut at maxUtteranceMs rather than ended by a pause */
  cut: boolean;
}

/** Follows an utterance while it is spoken (live captions stream it into the engine). */
export interface VadEvents {
  /** speech began; `pcm` is what led to the decision, pre-roll included */
  start(pcm: Int16Array): void;
  /** the next 20 ms of the open utterance */
  audio(pcm: Int16Array): void;
  /** it ended: the utterance push() also returns, or undefined when it was too short to keep */
  end(utterance: Utterance | undefined): void;
}

const FRAME = SAMPLE_RATE / 50; // 20 ms
const PRE_ROLL = 10; // frames (200 ms) kept before speech starts: soft onsets are not clipped
const START = 3; // frames of speech that start an utterance
const SILENCE_DB = -55; // below this nothing is speech, however quiet the room

export class EnergyVad {
  private readonly opts: VadOptions;
  private pending = new Int16Array(0);
  private streamPos = 0; // index of pending[0] on the stream
  private noiseDb = -60;
  private preRoll: Int16Array[] = [];
  private voicedRun = 0;
  private silentRun = 0;
  private speechFrames = 0;
  private current: Int16Array[] | undefined;
  private currentStart = 0;

  constructor(opts: Partial<VadOptions> = {}, private readonly events?: VadEvents) {
    this.opts = { ...vadDefaults, ...opts };
  }

  /** True while an utterance is open (speech heard and not yet ended). */
  get speaking(): boolean {
    return this.current !== undefined;
  }

  /** Adds samples that follow the previous ones; returns the utterances they completed. */
  push(samples: Int16Array): Utterance[] {
    const all = new Int16Array(this.pending.length + samples.length);
    all.set(this.pending);
    all.set(samples, this.pending.length);
    const out: Utterance[] = [];
    let i = 0;
    for (; i + FRAME <= all.length; i += FRAME) {
      const u = this.frame(all.subarray(i, i + FRAME), this.streamPos + i);
      if (u) out.push(u);
    }
    this.pending = all.slice(i);
    this.streamPos += i;
    return out;
  }

  /** Ends the stream: the open utterance, if any, is returned. */
  flush(): Utterance[] {
    const u = this.close(false);
    return u ? [u] : [];
  }

  private frame(f: Int16Array, pos: number): Utterance | undefined {
    let sum = 0;
    for (let k = 0; k < f.length; k++) sum += f[k]! * f[k]!;
    const db = 10 * Math.log10(sum / f.length / (32768 * 32768) + 1e-12);
    // The floor drops at once to a quieter frame and rises slowly (0.5 dB/s), so speech does not lift it.
    this.noiseDb = db < this.noiseDb ? db : this.noiseDb + 0.01;
    const voiced = db > Math.max(SILENCE_DB, this.noiseDb + this.opts.thresholdDb);
    const copy = f.slice();

    if (!this.current) {
      this.preRoll.push(copy);
      if (this.preRoll.length > PRE_ROLL + START) this.preRoll.shift();
      this.voicedRun = voiced ? this.voicedRun + 1 : 0;
      if (this.voicedRun >= START) {
        this.current = this.preRoll;
        this.currentStart = pos + FRAME - this.preRoll.length * FRAME;
        this.preRoll = [];
        this.speechFrames = this.voicedRun;
        this.silentRun = 0;
        this.events?.start(join(this.current));
      }
      return undefined;
    }
    this.current.push(copy);
    this.events?.audio(copy);
    if (voiced) {
      this.speechFrames++;
      this.silentRun = 0;
    } else {
      this.silentRun++;
    }
    if (this.silentRun * 20 >= this.opts.hangoverMs) return this.close(false);
    if (this.current.length * 20 >= this.opts.maxUtteranceMs) return this.close(true);
    return undefined;
  }

  private close(cut: boolean): Utterance | undefined {
    const frames = this.current;
    this.current = undefined;
    this.voicedRun = 0;
    if (!frames) return undefined;
    let utterance: Utterance | undefined;
    if (this.speechFrames * 20 >= this.opts.minSpeechMs) {
      // Keep 100 ms of the closing silence; a word's tail is quiet.
      const keep = cut ? frames.length : Math.max(1, frames.length - Math.max(0, this.silentRun - 5));
      utterance = { start: this.currentStart, pcm: join(frames.slice(0, keep)), cut };
    }
    this.silentRun = 0;
    this.events?.end(utterance);
    return utterance;
  }
}

function join(frames: Int16Array[]): Int16Array {
  const pcm = new Int16Array(frames.length * FRAME);
  frames.forEach((f, k) => pcm.set(f, k * FRAME));
  return pcm;
}
