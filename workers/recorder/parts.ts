// The recording composed continuously, in parts: while the call goes on, each finished part
// (PART_SEC, default 10 s) is composed at low priority and added to the MP4 (live-mp4.ts), so on
// stop only the last seconds remain, whatever the call's length (parts of 120 s left up to two
// minutes to compose after the stop; 20 s parts cost 7 % less CPU than 10 s ones but left 17 s
// from stop to post with four cameras). Parts are files in `parts/` named by their window,
// written under a temporary name and renamed when complete: the recovery run after a crash joins
// them.
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Spawner } from '../shared/spawner.js';
import type { Capture } from './capture.js';
import { frameAt, joinArgs, partArgs, readRecording, type Window } from './compose.js';
import type { RecorderInputs } from './inputs.js';
import { LiveMp4 } from './live-mp4.js';

const KEYFRAME_LEAD_MS = 1500; // ask this long before a part begins, so a keyframe sits just before it
const SETTLE_MS = 3000; // compose a part this long after it ends: late packets are written by then
// The compose during the call yields to everything live: the capture, and on a shared host the
// calls' other work (at 10, a late joiner's browser beside a compose of 10 s parts, on 2 cores,
// once took over 20 s to connect). After the stop someone waits for the file: full priority.
const NICE = 19;

export class Parts {
  private readonly partsDir: string;
  private doneMs = 0;
  private askedFor = -1;
  private running?: Promise<void>;
  /** aborted at the stop: a part composing at nice 19 is dropped, finish() composes it at full priority */
  private readonly stopping = new AbortController();
  private failed = false;
  /** the MP4 written part by part; none in a recovery run that found parts (they are joined) */
  private mp4?: LiveMp4;
  /** starts the parts' ffmpegs, so that the recorder is not forked for each (README, bench/recorder) */
  private readonly spawner = new Spawner();

  constructor(
    private readonly dir: string,
    private readonly inputs: RecorderInputs,
    private readonly partMs: number,
    private readonly log: (m: string) => void,
  ) {
    this.partsDir = join(dir, 'parts');
    mkdirSync(this.partsDir, { recursive: true });
    this.doneMs = this.chain().at(-1)?.toMs ?? 0; // parts an earlier run left
    // Its muxer runs at full priority: it costs about 1 % of a core (the sound's encode), and at
    // nice 19 on a busy host the backlog it holds at the stop would wait behind everything else.
    if (this.doneMs === 0) this.mp4 = new LiveMp4(join(this.partsDir, 'recording.mp4'), inputs);
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

  private async compose(w: Window, durationMs: number, duringCall = false): Promise<void> {
    const started = performance.now();
    const temp = `${this.file(w)}.tmp`;
    const rec = await readRecording(this.dir, durationMs);
    const [nice, signal] = duringCall ? [NICE, this.stopping.signal] : [];
    signal?.throwIfAborted();
    const streams = this.mp4?.streamsFor(this.file(w), w);
    try {
      await this.spawner.ffmpeg(partArgs(rec, this.inputs, w, temp, streams), { nice, signal });
      renameSync(temp, this.file(w));
      this.doneMs = w.toMs;
      if (streams)
        await this.mp4?.append(streams, w).catch((err) => {
          this.log(`the parts are left for a join at the end: ${(err as Error).message}`);
          this.mp4?.abandon();
          this.mp4 = undefined;
        });
    } finally {
      // Added to the MP4, or of no use: a compose that failed leaves them partly written.
      for (const file of [streams?.picture, streams?.sound]) if (file) rmSync(file, { force: true });
    }
    this.log(
      `composed ${(w.fromMs / 1000).toFixed(1)}-${(w.toMs / 1000).toFixed(1)} s in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
  }

  /** Called every second while capturing: keyframes ahead of the next part, and the compose of a finished one. */
  whileCapturing(capture: Pick<Capture, 'elapsedMs' | 'requestKeyframes'>): void {
    const elapsed = capture.elapsedMs;
    const next = this.doneMs + this.partMs;
    if (elapsed >= next - KEYFRAME_LEAD_MS && this.askedFor !== next) {
      this.askedFor = next;
      capture.requestKeyframes();
    }
    if (this.running || this.failed || elapsed < next + SETTLE_MS) return;
    this.running = this.compose({ fromMs: this.doneMs, toMs: next }, elapsed, true)
      .catch((err) => {
        // Not retried during the call: the end composes everything from here in one go.
        this.failed = true;
        if (!this.stopping.signal.aborted)
          this.log(`parts from ${this.doneMs / 1000} s are left for the end: ${(err as Error).message}`);
      })
      .finally(() => (this.running = undefined));
  }

  /**
   * Composes what is left up to `durationMs` and ends the MP4 as `output` (or joins the parts into
   * it, when there is no MP4 written during the call). A part still being composed at nice 19 is
   * dropped and composed again with the rest at full priority: on a busy host it could wait
   * behind everything else for minutes (on an idle one, redoing it costs a few seconds at most).
   */
  async finish(durationMs: number, output: string): Promise<void> {
    try {
      await this.finishParts(durationMs, output);
    } finally {
      await this.spawner.close();
    }
  }

  private async finishParts(durationMs: number, output: string): Promise<void> {
    this.stopping.abort();
    await this.running;
    const fps = this.inputs.frame_rate;
    if (frameAt(durationMs, fps) > frameAt(this.doneMs, fps))
      await this.compose({ fromMs: this.doneMs, toMs: durationMs }, durationMs);
    if (this.mp4) {
      const ended = await this.mp4.close().then(
        () => true,
        (err) => {
          this.log(`the parts are joined instead: ${(err as Error).message}`);
          return false;
        },
      );
      if (ended) return renameSync(this.mp4.file, output);
    }
    // Each part's exact length, so the join places the next one frame-exactly.
    const list = join(this.partsDir, 'parts.txt');
    writeFileSync(
      list,
      `${[
        'ffconcat version 1.0',
        ...this.chain().flatMap((w) => [
          `file '${this.file(w)}'`,
          `duration ${((frameAt(w.toMs, fps) - frameAt(w.fromMs, fps)) / fps).toFixed(6)}`,
        ]),
      ].join('\n')}\n`,
    );
    await this.spawner.ffmpeg(joinArgs(list, this.inputs, output));
  }
}
