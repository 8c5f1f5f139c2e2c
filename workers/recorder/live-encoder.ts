// One x264 for the parts composed during the call, instead of one per part. Each part's compose
// writes its frames, raw, into a named pipe that this encoder reads for the whole call; the encoder
// starts a key frame (IDR) at each part's first frame and cuts its output there into one MPEG-TS
// file per part, so each part's picture stands on its own as before (the MP4 takes it, a join after
// a crash takes it). A new ffmpeg and x264 per part cost 0.33 CPU s a part, 12 % of composing four
// cameras in parts of 10 s (README, bench/recorder).
// The recorder holds the pipe open for writing between parts (the encoder would end at the first
// part's end otherwise) and closes it at the stop: the encoder then finishes the frames it holds
// and ends. A part that failed or was dropped half-way left frames in the encoder: its file is
// thrown away, and what follows is composed part by part with x264 in each, as after the stop.
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Spawner } from '../shared/spawner.js';
import { x264Rate } from './compose.js';
import type { RecorderInputs } from './inputs.js';

export class LiveEncoder {
  readonly pipe: string;
  private readonly list: string;
  private held?: number;
  private readonly stop = new AbortController();
  private readonly done: Promise<void>;
  /** why the encoder ended, once it has: 'done', or its error */
  ended?: string;

  /**
   * Starts the encoder (at `nice`, as the parts) on frames of the recording's picture from its
   * start; its files for the parts are `${dir}/picture-N.ts`, at `atS` on the MP4's clock.
   */
  constructor(
    private readonly dir: string,
    q: Pick<RecorderInputs, 'width' | 'height' | 'frame_rate' | 'video_preset' | 'video_rate'>,
    partMs: number,
    atS: number,
    spawner: Spawner,
    nice: number,
  ) {
    this.pipe = join(dir, 'picture.yuv');
    this.list = join(dir, 'picture.list');
    // An earlier run's (a recorder restarted on the same directory) would mislead both.
    for (const file of [this.pipe, this.list]) rmSync(file, { force: true });
    execFileSync('mkfifo', [this.pipe]);
    // Read and write: never blocks, and keeps a writer on the pipe between parts.
    this.held = openSync(this.pipe, 'r+');
    const fps = q.frame_rate;
    const partS = (partMs / 1000).toFixed(3);
    this.done = spawner.ffmpeg(
      [
        ...['-hide_banner', '-loglevel', 'error', '-y'],
        ...['-f', 'rawvideo', '-pix_fmt', 'yuv420p', '-s', `${q.width}x${q.height}`, '-framerate', String(fps)],
        ...['-i', this.pipe],
        ...['-c:v', 'libx264', '-preset', q.video_preset, '-pix_fmt', 'yuv420p', ...x264Rate(q)],
        // An IDR at each part's first frame (half a frame early against rounding), where the
        // segment muxer starts the part's file.
        ...['-force_key_frames', `expr:gte(t,n_forced*${partS}-${0.5 / fps})`, '-forced-idr', '1'],
        ...['-f', 'segment', '-segment_time', partS, '-segment_time_delta', String(0.5 / fps)],
        ...['-segment_format', 'mpegts', '-segment_list', this.list, '-segment_list_type', 'flat'],
        ...['-output_ts_offset', atS.toFixed(6), join(dir, 'picture-%d.ts')],
      ],
      { nice, signal: this.stop.signal },
    );
    this.done.then(
      () => (this.ended = 'done'),
      (err: Error) => (this.ended = err.message),
    );
  }

  /** When the encoder ends, by itself or not. */
  get exited(): Promise<void> {
    return this.done.catch(() => undefined);
  }

  /** The file of the `n`th part fed to it (from 0), once complete: the encoder has begun the next or ended. */
  file(n: number): string | undefined {
    // The muxer rewrites its list as each file ends: only whole lines count, read at any moment.
    const listed = existsSync(this.list) ? readFileSync(this.list, 'utf8').split('\n').slice(0, -1) : [];
    const file = listed[n] && join(this.dir, listed[n]);
    return file && existsSync(file) ? file : undefined;
  }

  /** Ends the input: the encoder finishes what it holds. Resolves when it has, false if it failed. */
  async close(): Promise<boolean> {
    if (this.held !== undefined) closeSync(this.held);
    this.held = undefined;
    return this.done.then(
      () => true,
      () => false,
    );
  }

  /** Kills the encoder: its part files, complete or not, stay as they are. */
  kill(): void {
    if (this.held !== undefined) closeSync(this.held);
    this.held = undefined;
    this.stop.abort();
  }
}
