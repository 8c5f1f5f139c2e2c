// The recording composed in parts: while the call goes on, each finished part (PART_SEC, default
// 120 s) is composed at low priority, so on stop only the last part and the join remain, and a
// long call is posted soon after it ends instead of after a compose of the whole call. Parts are
// files in `parts/` named by their window, written under a temporary name and renamed when
// complete: the recovery run after a crash reuses them.
import { mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ffmpeg } from '../shared/ffmpeg.js';
import type { Capture } from './capture.js';
import { frameAt, joinArgs, partArgs, readRecording, type Window } from './compose.js';
import type { RecorderInputs } from './inputs.js';

const KEYFRAME_LEAD_MS = 1500; // ask this long before a part begins, so a keyframe sits just before it
const SETTLE_MS = 3000; // compose a part this long after it ends: late packets are written by then

export class Parts {
  private readonly partsDir: string;
  private doneMs = 0;
  private askedFor = -1;
  private running?: Promise<void>;
  private failed = false;

  constructor(
    private readonly dir: string,
    private readonly inputs: RecorderInputs,
    private readonly partMs: number,
    private readonly log: (m: string) => void,
  ) {
    this.partsDir = join(dir, 'parts');
    mkdirSync(this.partsDir, { recursive: true });
    this.doneMs = this.chain().at(-1)?.toMs ?? 0; // parts an earlier run left
  }

  /** The parts on disk that follow on from the start, in order. */
  private chain(): Window[] {
    const found = readdirSync(this.partsDir)
      .map((f) => /^part-(\d+)-(\d+)\.mkv$/.exec(f))
      .filter((m) => m !== null)
      .map((m) => ({ fromMs: Number(m[1]), toMs: Number(m[2]) }));
    const chain: Window[] = [];
    for (let next = found.find((w) => w.fromMs === 0); next; next = found.find((w) => w.fromMs === chain.at(-1)!.toMs))
      chain.push(next);
    return chain;
  }

  private file = (w: Window) => join(this.partsDir, `part-${w.fromMs}-${w.toMs}.mkv`);

  private async compose(w: Window, durationMs: number, nice?: number): Promise<void> {
    const started = performance.now();
    const temp = `${this.file(w)}.tmp`;
    await ffmpeg(partArgs(this.dir, await readRecording(this.dir, durationMs), this.inputs, w, temp), { nice });
    renameSync(temp, this.file(w));
    this.doneMs = w.toMs;
    this.log(
      `composed ${(w.fromMs / 1000).toFixed(1)}-${(w.toMs / 1000).toFixed(1)} s in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
  }

  /** Called every second while capturing: keyframes ahead of the next part, and the compose of a finished one. */
  whileCapturing(capture: Pick<Capture, 'elapsedMs' | 'checkpoint' | 'requestKeyframes'>): void {
    const elapsed = capture.elapsedMs;
    const next = this.doneMs + this.partMs;
    if (elapsed >= next - KEYFRAME_LEAD_MS && this.askedFor !== next) {
      this.askedFor = next;
      capture.requestKeyframes();
    }
    if (this.running || this.failed || elapsed < next + SETTLE_MS) return;
    capture.checkpoint();
    this.running = this.compose({ fromMs: this.doneMs, toMs: next }, elapsed, 10)
      .catch((err) => {
        // Not retried during the call: the end composes everything from here in one go.
        this.failed = true;
        this.log(`parts from ${this.doneMs / 1000} s are left for the end: ${(err as Error).message}`);
      })
      .finally(() => (this.running = undefined));
  }

  /** Composes what is left up to `durationMs` and joins every part into `output`. */
  async finish(durationMs: number, output: string): Promise<void> {
    await this.running;
    const fps = this.inputs.frame_rate;
    if (frameAt(durationMs, fps) > frameAt(this.doneMs, fps))
      await this.compose({ fromMs: this.doneMs, toMs: durationMs }, durationMs);
    const parts = this.chain();
    // Each part's exact length, so the join places the next one frame-exactly.
    const list = join(this.partsDir, 'parts.txt');
    writeFileSync(
      list,
      `${[
        'ffconcat version 1.0',
        ...parts.flatMap((w) => [
          `file '${this.file(w)}'`,
          `duration ${((frameAt(w.toMs, fps) - frameAt(w.fromMs, fps)) / fps).toFixed(6)}`,
        ]),
      ].join('\n')}\n`,
    );
    await ffmpeg(joinArgs(list, this.inputs, output));
  }
}
