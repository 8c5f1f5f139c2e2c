// The recording composed continuously, in parts: while the call goes on, each finished part
// (10 s at first, longer while the machine composes them fast; PART_SEC fixes it) is composed at
// low priority and added to the MP4 (live-mp4.ts), so on stop only the last seconds remain,
// whatever the call's length (parts of 120 s left up to two minutes to compose after the stop).
// Parts are files in `parts/` named by their window, written under a temporary name and renamed
// when complete: the recovery run after a crash joins them.
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BACKGROUND_NICE } from '../shared/priority.js';
import { Spawner } from '../shared/spawner.js';
import type { Capture } from './capture.js';
import { frameAt, joinArgs, partArgs, readRecording, type Window } from './compose.js';
import type { RecorderInputs } from './inputs.js';
import { LiveMp4 } from './live-mp4.js';

const KEYFRAME_LEAD_MS = 1500; // ask this long before a part begins, so a keyframe sits just before it
const SETTLE_MS = 3000; // compose a part this long after it ends: late packets are written by then
// The compose during the call yields to everything live (BACKGROUND_NICE): the capture, and on a
// shared host the calls' other work (at 10, a late joiner's browser beside a compose of 10 s parts,
// on 2 cores, once took over 20 s to connect). After the stop someone waits for the file: full priority.
/** After the stop, the last part should compose in about this long: stop → posted is that and the upload. */
const LAST_PART_BUDGET_MS = 4000;
/** How long parts grow when PART_SEC does not fix them. */
export const LONGEST_PART_MS = 30_000;
/**
 * A part that fails during the call (an ffmpeg killed for memory, a disk full for a moment) is
 * tried again this long after, up to this many times in a row; then the rest is left for the end.
 */
const PART_RETRY_MS = 5000;
const PART_TRIES = 3;

/**
 * The next part's length, from how long the last one took to compose (`msPerMs`: wall ms per ms of
 * the call, at nice 19 beside the call: no less than the same part takes at full priority after
 * the stop): as long as the last part, with what arrives while it settles, still composes within
 * LAST_PART_BUDGET_MS, in whole seconds from `partMs` to `longestMs`. Each part costs a process and
 * an encoder's start: 0.2 CPU s at low and 0.35 at medium on the tracks first measured, nothing
 * beyond what runs vary by on generated cameras (README, bench/recorder).
 */
export function nextPartMs(msPerMs: number, partMs: number, longestMs: number): number {
  const fits = Math.floor((LAST_PART_BUDGET_MS / msPerMs - SETTLE_MS) / 1000) * 1000;
  return Math.min(longestMs, Math.max(partMs, fits));
}

/**
 * How long the stop waits for the part composing at nice 19 (`running`: its length and how long it
 * has run): LAST_PART_BUDGET_MS while it should end within that, by the speed of the part before it
 * (`msPerMs`: wall ms per ms of the call; unknown for the first part), and not at all when it
 * should not: waiting out the budget and then composing it again with the rest put both delays in
 * stop → posted.
 */
export function stopWaitsMs(running: { lengthMs: number; forMs: number }, msPerMs: number | undefined): number {
  const leftMs = msPerMs === undefined ? 0 : msPerMs * running.lengthMs - running.forMs;
  return leftMs <= LAST_PART_BUDGET_MS ? LAST_PART_BUDGET_MS : 0;
}

/**
 * The end could not be composed, but the parts before it were: `output` holds the recording up to
 * `untilMs`, and the message says why the rest is missing.
 */
export class PartialRecording extends Error {
  constructor(
    readonly untilMs: number,
    cause: Error,
  ) {
    super(cause.message, { cause });
  }
}

/** A part's window as the log gives it: `40.0-60.3 s`. */
const span = (w: Window) => `${(w.fromMs / 1000).toFixed(1)}-${(w.toMs / 1000).toFixed(1)} s`;

export class Parts {
  private readonly partsDir: string;
  private doneMs = 0;
  private askedFor = -1;
  /** the part composing at nice 19: its window, when it started (performance.now()), its end */
  private running?: Window & { startedAt: number; done: Promise<void> };
  /** wall ms per ms of the call the last part took to compose at nice 19 */
  private msPerMs?: number;
  /** aborted at the stop: a part composing at nice 19 is dropped, finish() composes it at full priority */
  private readonly stopping = new AbortController();
  /** the parts that failed in a row during the call, and when the next may be tried (performance.now()) */
  private failures = 0;
  private retryAt = 0;
  /** the MP4 written part by part; none in a recovery run that found parts (they are joined) */
  private mp4?: LiveMp4;
  /** starts the parts' ffmpegs, so that the recorder is not forked for each (README, bench/recorder) */
  private readonly spawner = new Spawner();

  /** the next part's length: partMs, grown up to longestMs (nextPartMs) */
  private lengthMs: number;

  constructor(
    private readonly dir: string,
    private readonly inputs: RecorderInputs,
    private readonly partMs: number,
    private readonly log: (m: string) => void,
    private readonly longestMs = partMs,
  ) {
    this.lengthMs = partMs;
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
    const rec = readRecording(this.dir, durationMs);
    const [nice, signal] = duringCall ? [BACKGROUND_NICE, this.stopping.signal] : [];
    signal?.throwIfAborted();
    const streams = this.mp4?.streamsFor(this.file(w), w);
    const { args, graph } = partArgs(rec, this.inputs, w, temp, streams);
    let cpuS: number | undefined;
    try {
      writeFileSync(graph.file, graph.text);
      ({ cpuS } = await this.spawner.ffmpeg(args, { nice, signal }));
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
      for (const file of [streams?.picture, streams?.sound, graph.file]) if (file) rmSync(file, { force: true });
    }
    const wallMs = performance.now() - started;
    let grown = this.lengthMs;
    if (duringCall) {
      this.msPerMs = wallMs / (w.toMs - w.fromMs);
      grown = nextPartMs(this.msPerMs, this.partMs, this.longestMs);
    }
    this.log(
      `composed ${span(w)} in ${(wallMs / 1000).toFixed(1)} s` +
        (cpuS === undefined ? '' : ` (${cpuS.toFixed(2)} CPU s)`) +
        (grown !== this.lengthMs ? `; parts of ${grown / 1000} s from here` : ''),
    );
    this.lengthMs = grown;
  }

  /** Called every second while capturing: keyframes ahead of the next part, and the compose of a finished one. */
  whileCapturing(capture: Pick<Capture, 'elapsedMs' | 'requestKeyframes'>): void {
    const elapsed = capture.elapsedMs;
    const next = this.doneMs + this.lengthMs;
    if (elapsed >= next - KEYFRAME_LEAD_MS && this.askedFor !== next) {
      this.askedFor = next;
      capture.requestKeyframes();
    }
    const now = performance.now();
    if (this.running || this.failures >= PART_TRIES || now < this.retryAt || elapsed < next + SETTLE_MS) return;
    const part = { fromMs: this.doneMs, toMs: next, startedAt: now };
    const done = this.compose(part, elapsed, true)
      .then(() => {
        this.failures = 0;
      })
      .catch((err) => {
        if (this.stopping.signal.aborted) return;
        this.failures++;
        this.retryAt = performance.now() + PART_RETRY_MS;
        const { message } = err as Error;
        this.log(
          this.failures < PART_TRIES
            ? `the part of ${span(part)} failed (${this.failures} of ${PART_TRIES} times): ${message}; it is tried again in ${PART_RETRY_MS / 1000} s`
            : `parts from ${this.doneMs / 1000} s are left for the end, ${PART_TRIES} tries having failed: ${message}`,
        );
      })
      .finally(() => (this.running = undefined));
    this.running = { ...part, done };
  }

  /**
   * Composes what is left up to `durationMs` and ends the MP4 as `output` (or joins the parts into
   * it, when there is no MP4 written during the call). A part still being composed at nice 19 is
   * given LAST_PART_BUDGET_MS to finish (its length was chosen to compose in that, and on an idle
   * host it does: dropping it threw a part's compose away, and a 60 s recording in parts that grew
   * to 25 s composed at 12.17 CPU s a minute against 10.38 in parts of 10 s), unless the last
   * part's speed says it will not (stopWaitsMs); if it has not finished, it is dropped and composed
   * again with the rest at full priority: on a busy host it could wait behind everything else for
   * minutes.
   */
  async finish(durationMs: number, output: string): Promise<void> {
    try {
      await this.finishParts(durationMs, output);
    } catch (err) {
      this.mp4?.abandon(); // its ffmpeg would wait for the rest of the parts for good
      throw err;
    } finally {
      await this.spawner.close();
    }
  }

  private async finishParts(durationMs: number, output: string): Promise<void> {
    const part = this.running;
    const waitMs = part
      ? stopWaitsMs({ lengthMs: part.toMs - part.fromMs, forMs: performance.now() - part.startedAt }, this.msPerMs)
      : 0;
    await Promise.race([part?.done, sleep(waitMs, undefined, { ref: false })]);
    this.stopping.abort();
    await part?.done;
    if (part && this.doneMs < part.toMs)
      this.log(
        `the part of ${span(part)} is composed again with the rest at full priority: ` +
          (waitMs > 0
            ? `not done ${waitMs / 1000} s after the stop`
            : `at the last part's speed it would not be done within ${LAST_PART_BUDGET_MS / 1000} s`),
      );
    const fps = this.inputs.frame_rate;
    if (frameAt(durationMs, fps) > frameAt(this.doneMs, fps))
      try {
        await this.compose({ fromMs: this.doneMs, toMs: durationMs }, durationMs);
      } catch (err) {
        if (this.doneMs === 0) throw err;
        // What was composed is a recording still: it is kept, and the failure says up to when.
        await this.assemble(output).catch(() => Promise.reject(err));
        throw new PartialRecording(this.doneMs, err as Error);
      }
    await this.assemble(output);
  }

  /**
   * A recovery's first step where the rest is longer than a part (parts that failed during the call
   * left it for the end, or the run was killed composing it): the parts an earlier run composed,
   * joined into `output`. Composing the rest may outlast the recovery's bound as it did the run's,
   * and a kill then lost all of it. Returns up to when `output` holds the call (0: nothing joined).
   */
  async joinComposed(durationMs: number, output: string): Promise<number> {
    if (this.doneMs === 0 || this.mp4 || durationMs - this.doneMs <= this.longestMs + SETTLE_MS) return 0;
    await this.assemble(output);
    return this.doneMs;
  }

  /** The MP4 written during the call ended as `output`, or the parts joined into it. */
  private async assemble(output: string): Promise<void> {
    const fps = this.inputs.frame_rate;
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
