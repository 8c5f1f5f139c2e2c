// Voice activity detection: cuts a speaker's stream into utterances before recognition, so silence
// costs nothing and every window the engine sees starts and ends in a pause. One state machine
// (pre-roll, start after a few speech frames, end after a pause, cut long utterances) over a frame
// classifier: energy against an adaptive noise floor (synchronous: live captions), or Silero's
// speech probability (silero.ts, for the transcript).
import { SAMPLE_RATE } from './engine.js';

export interface VadOptions {
  /** silence that ends an utterance */
  hangoverMs: number;
  /** longest window: a longer utterance is cut here (captions want short windows) */
  maxUtteranceMs: number;
  /** shorter bursts (clicks, coughs) are dropped */
  minSpeechMs: number;
}

export const vadDefaults: VadOptions = { hangoverMs: 400, maxUtteranceMs: 20_000, minSpeechMs: 150 };

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
  /** the next frame of the open utterance */
  audio(pcm: Int16Array): void;
  /** it ended: the utterance push() also returns, or undefined when it was too short to keep */
  end(utterance: Utterance | undefined): void;
}

/** Decides whether one frame is speech; `speaking` tells whether an utterance is open (hysteresis). */
type FrameClassifier = (frame: Int16Array, speaking: boolean) => boolean;

export interface Detector {
  /** samples per frame the classifier judges */
  frameSamples: number;
  classify: FrameClassifier;
}

const SILENCE_DB = -55; // below this nothing is speech, however quiet the room

/**
 * Speech is `thresholdDb` over the noise floor, which drops at once to a quieter frame and rises
 * slowly (0.5 dB/s), so a noisy microphone is not speech and speech does not lift the floor.
 */
function energyDetector(thresholdDb = 12): Detector {
  const frameSamples = SAMPLE_RATE / 50; // 20 ms
  let noiseDb = -60;
  return {
    frameSamples,
    classify: (f) => {
      let sum = 0;
      for (let k = 0; k < f.length; k++) sum += f[k]! * f[k]!;
      const db = 10 * Math.log10(sum / f.length / (32768 * 32768) + 1e-12);
      noiseDb = db < noiseDb ? db : noiseDb + 0.5 / 50;
      return db > Math.max(SILENCE_DB, noiseDb + thresholdDb);
    },
  };
}

export class Vad {
  private readonly opts: VadOptions;
  private readonly frame: number;
  private readonly frameMs: number;
  private readonly preRollFrames: number;
  private readonly startFrames: number;
  private pending = new Int16Array(0);
  private streamPos = 0; // index of pending[0] on the stream
  private preRoll: Int16Array[] = [];
  private voicedRun = 0;
  private silentRun = 0;
  private speechFrames = 0;
  private current: Int16Array[] | undefined;
  private currentStart = 0;

  constructor(
    opts: Partial<VadOptions> = {},
    private readonly events?: VadEvents,
    private readonly detector: Detector = energyDetector(),
  ) {
    this.opts = { ...vadDefaults, ...opts };
    this.frame = detector.frameSamples;
    this.frameMs = (this.frame / SAMPLE_RATE) * 1000;
    this.preRollFrames = Math.round(200 / this.frameMs); // soft onsets are not clipped
    this.startFrames = Math.max(1, Math.round(60 / this.frameMs)); // speech that starts an utterance
  }

  /** Adds samples that follow the previous ones; returns the utterances they completed. */
  push(samples: Int16Array): Utterance[] {
    const all = new Int16Array(this.pending.length + samples.length);
    all.set(this.pending);
    all.set(samples, this.pending.length);
    const out: Utterance[] = [];
    let i = 0;
    for (; i + this.frame <= all.length; i += this.frame) {
      const u = this.step(all.subarray(i, i + this.frame), this.streamPos + i);
      if (u) out.push(u);
    }
    this.pending = all.slice(i);
    this.streamPos += i;
    return out;
  }

  /**
   * Where on the stream an utterance could still begin: with none open, the start of the pre-roll
   * (the frames a start would take in); undefined while one is open. Everything before it has been
   * returned by push().
   */
  idleFrom(): number | undefined {
    return this.current ? undefined : this.streamPos - this.preRoll.length * this.frame;
  }

  /** Ends the stream: the open utterance, if any, is returned. */
  flush(): Utterance[] {
    const u = this.close(false);
    return u ? [u] : [];
  }

  private step(f: Int16Array, pos: number): Utterance | undefined {
    const voiced = this.detector.classify(f, this.current !== undefined);
    const copy = f.slice();

    if (!this.current) {
      this.preRoll.push(copy);
      if (this.preRoll.length > this.preRollFrames + this.startFrames) this.preRoll.shift();
      this.voicedRun = voiced ? this.voicedRun + 1 : 0;
      if (this.voicedRun >= this.startFrames) {
        this.current = this.preRoll;
        this.currentStart = pos + this.frame - this.preRoll.length * this.frame;
        this.preRoll = [];
        this.speechFrames = this.voicedRun;
        this.silentRun = 0;
        this.events?.start(this.join(this.current));
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
    if (this.silentRun * this.frameMs >= this.opts.hangoverMs) return this.close(false);
    if (this.current.length * this.frameMs >= this.opts.maxUtteranceMs) return this.close(true);
    return undefined;
  }

  private close(cut: boolean): Utterance | undefined {
    const frames = this.current;
    this.current = undefined;
    this.voicedRun = 0;
    if (!frames) return undefined;
    let utterance: Utterance | undefined;
    if (this.speechFrames * this.frameMs >= this.opts.minSpeechMs) {
      // Keep about 100 ms of the closing silence; a word's tail is quiet.
      const tail = Math.round(100 / this.frameMs);
      const keep = cut ? frames.length : Math.max(1, frames.length - Math.max(0, this.silentRun - tail));
      utterance = { start: this.currentStart, pcm: this.join(frames.slice(0, keep)), cut };
    }
    this.silentRun = 0;
    this.events?.end(utterance);
    return utterance;
  }

  private join(frames: Int16Array[]): Int16Array {
    const pcm = new Int16Array(frames.length * this.frame);
    frames.forEach((f, k) => {
      pcm.set(f, k * this.frame);
    });
    return pcm;
  }
}
