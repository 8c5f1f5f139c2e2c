// Live captions: each speaker's audio is cut by VAD into short windows as it arrives, and the text
// of each window goes into the call as a caption of that speaker. A pool of recognisers (one
// engine each) serves them: when one is free as a speaker starts, the window is streamed into it
// while it is spoken (engines that can), so the caption is ready moments after the speaker pauses;
// otherwise the finished window waits in a queue, oldest first. A window that waited longer than
// `staleMs`, or a stream whose decoding fell more than `staleMs` behind the speaker, is dropped
// and counted: when recognition falls behind, captions skip ahead instead of running ever later.
// A recogniser that can recognise no more (its helper killed, out of memory) is closed and replaced
// by a new one, a few times in all; past that the pool goes on without it, and with none left
// every window is dropped and counted. A window that fails alone on a working one is dropped.
import type { CaptionStats } from '../../src/jobs/contract.js';
import type { Recognition, RecognitionStream, SpeechEngine } from './speech/engine.js';
import { Vad, type Utterance } from './speech/vad.js';

export interface CaptionOptions {
  /** longest window: a long utterance is captioned in pieces of this length */
  windowMs: number;
  /** pause that ends a window */
  hangoverMs: number;
  /** a window not started within this long after it ended is dropped */
  staleMs: number;
}

const captionDefaults = { hangoverMs: 300, staleMs: 2000 };

/** How many failed recognisers are replaced in all. */
const RENEWALS = 3;

/**
 * Windows up to 8 s as upstream when every recogniser streams (a long window then costs no delay
 * at its end); 4 s when windows are decoded whole after they end (whisper.cpp).
 */
const defaultWindowMs = (engines: SpeechEngine[]) => (engines.every((e) => e.begin) ? 8000 : 4000);

interface Window {
  sessionId: string;
  pcm: Int16Array;
  /** when the VAD closed it (Date.now()) */
  readyAt: number;
}

export type SendCaption = (sessionId: string, text: string, newAudioLenMs: number) => void;

export class LiveCaptions {
  private readonly opts: CaptionOptions;
  private readonly vads = new Map<string, Vad>();
  /** per speaker: the utterance being streamed, or 'dropped' when it fell behind */
  private readonly streams = new Map<string, { engine: SpeechEngine; stream: RecognitionStream } | 'dropped'>();
  private readonly queue: Window[] = [];
  private readonly idle: SpeechEngine[];
  private readonly delays: number[] = [];
  private counts = { windows: 0, sent: 0, dropped: 0, empty: 0 };
  private closed = false;
  private readonly busy = new Set<Promise<void>>();
  /** recognisers idle, busy or being replaced */
  private pool: number;
  private renewals = 0;

  /** `renew`: a new recogniser, for one that failed. */
  constructor(
    engines: SpeechEngine[],
    private readonly send: SendCaption,
    opts: Partial<CaptionOptions> = {},
    private readonly log = (_: string) => {},
    private readonly renew?: () => Promise<SpeechEngine>,
  ) {
    this.opts = { ...captionDefaults, windowMs: defaultWindowMs(engines), ...opts };
    this.idle = [...engines];
    this.pool = engines.length;
  }

  /** A speaker's next samples (Listener.onSamples). */
  feed(sessionId: string, samples: Int16Array): void {
    if (this.closed) return;
    let vad = this.vads.get(sessionId);
    if (!vad) {
      vad = new Vad(
        { hangoverMs: this.opts.hangoverMs, maxUtteranceMs: this.opts.windowMs, minSpeechMs: 200 },
        {
          start: (pcm) => this.startStream(sessionId, pcm),
          audio: (pcm) => this.streamAudio(sessionId, pcm),
          end: (u) => this.endWindow(sessionId, u),
        },
      );
      this.vads.set(sessionId, vad);
    }
    vad.push(samples);
    this.next();
  }

  /** The speaker's track ended: what they said last is captioned now, not when they speak again. */
  flush(sessionId: string): void {
    const vad = this.vads.get(sessionId);
    this.vads.delete(sessionId);
    vad?.flush();
    this.next();
  }

  private startStream(sessionId: string, pcm: Int16Array): void {
    this.sweep();
    const i = this.queue.length === 0 ? this.idle.findIndex((e) => e.begin) : -1; // waiting windows first
    if (i < 0) return;
    const engine = this.idle.splice(i, 1)[0]!;
    const stream = engine.begin!();
    stream.push(pcm);
    this.streams.set(sessionId, { engine, stream });
  }

  /**
   * A streamed utterance whose decoding has fallen more than `staleMs` behind the speaker (the
   * machine is short of CPU) is given up: its caption would come too late, and the engine is
   * freed for fresher audio.
   */
  private streamAudio(sessionId: string, pcm: Int16Array): void {
    const live = this.streams.get(sessionId);
    if (!live || live === 'dropped') return;
    live.stream.push(pcm);
    if (live.stream.lagMs > this.opts.staleMs) {
      this.streams.set(sessionId, 'dropped');
      this.run(live.engine, live.stream.end(), undefined);
    }
  }

  private endWindow(sessionId: string, u: Utterance | undefined): void {
    const live = this.streams.get(sessionId);
    this.streams.delete(sessionId);
    if (u) this.counts.windows++;
    const readyAt = Date.now();
    if (live === 'dropped') {
      if (u) this.counts.dropped++;
    } else if (live) this.run(live.engine, live.stream.end(), u && { sessionId, pcm: u.pcm, readyAt });
    else if (u && this.pool === 0) this.counts.dropped++;
    else if (u) {
      this.queue.push({ sessionId, pcm: u.pcm, readyAt });
      this.dropStale(); // even while no recogniser is free to take them (one being replaced)
    }
  }

  /** Windows that waited longer than `staleMs` leave the queue, counted. */
  private dropStale(): void {
    const now = Date.now();
    while (this.queue[0] && now - this.queue[0].readyAt > this.opts.staleMs) {
      this.queue.shift();
      this.counts.dropped++;
    }
  }

  private next(): void {
    this.sweep();
    while (this.idle.length > 0 && this.queue.length > 0) {
      this.dropStale();
      const w = this.queue.shift();
      if (!w) break;
      const engine = this.idle.pop()!;
      this.run(engine, engine.recognize(w.pcm), w);
    }
  }

  /** Sends the caption of window `w` (none for a burst too short to keep) and frees the engine. */
  private run(engine: SpeechEngine, recognition: Promise<Recognition>, w: Window | undefined): void {
    const job = recognition
      .then(
        ({ text }) => {
          if (!w) return;
          // Every window ends in exactly one count.
          if (this.closed) this.counts.dropped++;
          else if (!text.trim()) this.counts.empty++;
          else {
            this.send(w.sessionId, text.trim(), Math.round(w.pcm.length / 16));
            this.counts.sent++;
            this.delays.push(Date.now() - w.readyAt);
          }
        },
        (err: Error) => {
          if (w) this.counts.dropped++;
          if (!engine.failure) this.log(`caption recognition failed: ${err.message}`);
        },
      )
      .finally(() => {
        this.busy.delete(job);
        this.idle.push(engine);
        this.next();
      });
    this.busy.add(job);
  }

  /** Idle recognisers that can recognise no more (a helper that died meanwhile) are replaced. */
  private sweep(): void {
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const failure = this.idle[i]!.failure;
      if (failure !== undefined) this.replace(this.idle.splice(i, 1)[0]!, failure);
    }
  }

  /**
   * A recogniser can recognise no more: it is closed and a new one takes its place, while
   * renewals are left.
   */
  private replace(engine: SpeechEngine, why: string): void {
    void engine.close().catch(() => undefined);
    const renew = this.renew && !this.closed && this.renewals < RENEWALS ? this.renew : undefined;
    if (!renew) return this.lose(`a caption recogniser failed (${why})`);
    this.renewals++;
    this.log(`a caption recogniser failed (${why}); a new one replaces it (${this.renewals} of ${RENEWALS})`);
    // close() does not wait for it: a load stalled by what killed the last would hold the job
    renew().then(
      (fresh) => {
        if (this.closed) return void fresh.close().catch(() => undefined);
        this.idle.push(fresh);
        this.next();
      },
      (e: Error) => this.lose(`a new caption recogniser did not start (${e.message})`),
    );
  }

  /** One recogniser fewer; with none left, the windows waiting are dropped, as every one after. */
  private lose(why: string): void {
    this.pool--;
    this.log(`${why}; ${this.pool} caption recogniser${this.pool === 1 ? '' : 's'} left`);
    if (this.pool === 0) this.counts.dropped += this.queue.splice(0).length;
  }

  stats(): CaptionStats {
    const sorted = [...this.delays].sort((a, b) => a - b);
    const q = (p: number) =>
      sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : undefined;
    return { ...this.counts, p50DelayMs: q(0.5), p95DelayMs: q(0.95) };
  }

  /** Stops taking audio and waits for the windows being recognised. */
  async close(): Promise<CaptionStats> {
    this.closed = true;
    this.counts.dropped += this.queue.splice(0).length;
    for (const sessionId of [...this.streams.keys()]) this.endWindow(sessionId, undefined);
    await Promise.all(this.busy);
    return this.stats();
  }
}
