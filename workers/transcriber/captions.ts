// Live captions: each speaker's audio is cut by VAD into short windows as it arrives; a pool of
// recognisers (one engine each) takes the oldest window first, and the text goes into the call as
// a caption of that speaker. A window that waited longer than `staleMs` is dropped and counted:
// when recognition falls behind, captions skip ahead instead of running ever later.
import type { SpeechEngine } from './speech/engine.js';
import { EnergyVad } from './speech/vad.js';

export interface CaptionOptions {
  /** longest window: a long utterance is captioned in pieces of this length */
  windowMs: number;
  /** pause that ends a window */
  hangoverMs: number;
  /** a window not started within this long after it ended is dropped */
  staleMs: number;
}

export const captionDefaults: CaptionOptions = { windowMs: 4000, hangoverMs: 300, staleMs: 2000 };

interface Window {
  sessionId: string;
  pcm: Int16Array;
  /** when the VAD closed it (Date.now()) */
  readyAt: number;
}

export interface CaptionStats {
  windows: number;
  sent: number;
  dropped: number;
  /** ms from a window's end to its caption being sent */
  p50DelayMs?: number;
  p95DelayMs?: number;
}

export type SendCaption = (sessionId: string, text: string, newAudioLenMs: number) => void;

export class LiveCaptions {
  private readonly opts: CaptionOptions;
  private readonly vads = new Map<string, EnergyVad>();
  private readonly queue: Window[] = [];
  private readonly idle: SpeechEngine[];
  private readonly delays: number[] = [];
  private counts = { windows: 0, sent: 0, dropped: 0 };
  private closed = false;
  private readonly busy = new Set<Promise<void>>();

  constructor(engines: SpeechEngine[], private readonly send: SendCaption, opts: Partial<CaptionOptions> = {}, private readonly log = (_: string) => {}) {
    this.opts = { ...captionDefaults, ...opts };
    this.idle = [...engines];
  }

  /** A speaker's next samples (Listener.onSamples). */
  feed(sessionId: string, samples: Int16Array): void {
    if (this.closed) return;
    let vad = this.vads.get(sessionId);
    if (!vad) {
      vad = new EnergyVad({ hangoverMs: this.opts.hangoverMs, maxUtteranceMs: this.opts.windowMs, minSpeechMs: 200 });
      this.vads.set(sessionId, vad);
    }
    for (const u of vad.push(samples)) {
      this.counts.windows++;
      this.queue.push({ sessionId, pcm: u.pcm, readyAt: Date.now() });
    }
    this.next();
  }

  private next(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const w = this.queue.shift()!;
      if (Date.now() - w.readyAt > this.opts.staleMs) {
        this.counts.dropped++;
        continue;
      }
      const engine = this.idle.pop()!;
      const job = engine.recognize(w.pcm).then(
        ({ text }) => {
          if (!text.trim() || this.closed) return;
          this.send(w.sessionId, text.trim(), Math.round(w.pcm.length / 16));
          this.counts.sent++;
          this.delays.push(Date.now() - w.readyAt);
        },
        (err: Error) => this.log(`caption recognition failed: ${err.message}`),
      ).finally(() => {
        this.busy.delete(job);
        this.idle.push(engine);
        this.next();
      });
      this.busy.add(job);
    }
  }

  stats(): CaptionStats {
    const sorted = [...this.delays].sort((a, b) => a - b);
    const q = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : undefined);
    return { ...this.counts, p50DelayMs: q(0.5), p95DelayMs: q(0.95) };
  }

  /** Stops taking audio and waits for the windows being recognised. */
  async close(): Promise<CaptionStats> {
    this.closed = true;
    this.counts.dropped += this.queue.splice(0).length;
    await Promise.all(this.busy);
    return this.stats();
  }
}
