// How many frames a growing WebM file holds and the time of its last one, read incrementally: each
// call reads only what was appended since the last. Compose needs both for every video file before
// every part (where each file ends, and its frame rate); ffprobe read each file from its start every time, so in a long call with
// short parts the reading grew with the square of the call's length (an hour of four cameras in
// parts of 10 s: about 1 GB read and 200 000 lines parsed per part by the end).
// A Cluster's Timestamp is followed by SimpleBlocks whose 16-bit time is relative to it.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { h264PictureSize } from '../../src/media/h264.js';
import { vp8KeyframeSize } from '../../src/media/vp8.js';
import { MAX_FRAME_BYTES } from './track-file.js';
import { ID, readVint as vint } from './webm.js';

const { SEGMENT, CLUSTER, INFO, TIMESTAMP_SCALE, CLUSTER_TIMESTAMP, SIMPLE_BLOCK, BLOCK_GROUP, BLOCK } = ID;
const { TRACKS, TRACK_ENTRY, TRACK_TYPE, CODEC_ID } = ID;
const DESCEND = new Set<number>([SEGMENT, CLUSTER, INFO, BLOCK_GROUP, TRACKS, TRACK_ENTRY]);
const VIDEO_TRACK = 1;
const CHUNK = 1 << 20;
/**
 * The largest element read whole: a frame of up to MAX_FRAME_BYTES (what a track file takes, such
 * as a detailed 4K keyframe) with its header. A window of CHUNK alone took one over 1 MiB for a
 * broken file, and every part after it, the recovery's too, failed.
 */
const MAX_ELEMENT = MAX_FRAME_BYTES + CHUNK;
/**
 * What update() reads into, one for every index (parsing is synchronous, and nothing parsed keeps
 * a reference to it): a fresh buffer for each read (about 750 KB a camera a part) was new memory,
 * zeroed and faulted in page by page each time.
 */
let scratch: Buffer | undefined;

/** A cluster a reader can start at: its first frame's time (ms) and where it begins. */
export interface ClusterStart {
  ms: number;
  offset: number;
  /** the picture's size its keyframe declares (`WxH`), where it can be read */
  size?: string;
}

export class WebmIndex {
  /** bytes parsed: everything before is counted */
  private offset = 0;
  private clusterMs = 0;
  private scaleNs = 1_000_000;
  frames = 0;
  /** the latest frame's time (ms) */
  lastMs = 0;
  /** bytes before the first cluster: the header any reader needs */
  headerBytes = 0;
  /**
   * The clusters that begin with a video keyframe, in file order. Not audio: Opus decoded from
   * mid-file gets its pre-skip again (6.5 ms off) and a fresh decoder state; a voice's file is
   * small, and read from its start.
   */
  readonly starts: ClusterStart[] = [];
  private video = false;
  private codec = '';
  /** where the cluster whose first block is awaited begins */
  private clusterAt: number | undefined;

  constructor(readonly file: string) {}

  /** Reads what was appended since the last call. */
  update(): this {
    const fd = openSync(this.file, 'r');
    try {
      const size = fstatSync(fd).size;
      let window = CHUNK;
      while (this.offset < size) {
        if (!scratch || scratch.length < window) scratch = Buffer.allocUnsafe(window);
        const got = readSync(fd, scratch, 0, Math.min(window, size - this.offset), this.offset);
        const used = this.parse(scratch.subarray(0, got));
        if (used === 0) {
          if (got < window) break; // an element still being written
          if (window >= MAX_ELEMENT)
            throw new Error(`${this.file}: an element over ${MAX_ELEMENT} bytes at ${this.offset}`);
          window = MAX_ELEMENT; // a frame over the usual window: read it whole
          continue;
        }
        this.offset += used;
        window = CHUNK;
      }
    } finally {
      closeSync(fd);
    }
    return this;
  }

  /** Parses whole elements from the start of `buf`; the bytes used. */
  private parse(buf: Buffer): number {
    let at = 0;
    for (;;) {
      const id = vint(buf, at, true);
      const size = id && vint(buf, at + id.length, false);
      if (!id || !size) return at;
      const body = at + id.length + size.length;
      if (id.value === CLUSTER) {
        this.clusterAt = this.offset + at;
        this.headerBytes ||= this.clusterAt;
      }
      if (DESCEND.has(id.value)) {
        at = body; // a master element: its children follow
        continue;
      }
      if (size.unknown || body + size.value > buf.length) return at;
      const data = buf.subarray(body, body + size.value);
      if (id.value === CODEC_ID) this.codec = data.toString('latin1');
      else if (id.value === CLUSTER_TIMESTAMP || id.value === TIMESTAMP_SCALE || id.value === TRACK_TYPE) {
        let v = 0;
        for (const b of data) v = v * 256 + b;
        if (id.value === CLUSTER_TIMESTAMP) this.clusterMs = (v * this.scaleNs) / 1e6;
        else if (id.value === TIMESTAMP_SCALE) this.scaleNs = v;
        else this.video ||= v === VIDEO_TRACK;
      } else if (id.value === SIMPLE_BLOCK || id.value === BLOCK) {
        const track = vint(data, 0, false);
        if (track && data.length >= track.length + 2) {
          const ms = this.clusterMs + (data.readInt16BE(track.length) * this.scaleNs) / 1e6;
          this.frames++;
          this.lastMs = Math.max(this.lastMs, ms);
          const keyframe = id.value === SIMPLE_BLOCK && (data[track.length + 2]! & 0x80) !== 0;
          if (this.clusterAt !== undefined && keyframe && this.video)
            this.starts.push({ ms, offset: this.clusterAt, size: this.pictureSize(data.subarray(track.length + 3)) });
          this.clusterAt = undefined;
        }
      }
      at = body + size.value;
    }
  }

  /** The size a keyframe's bytes declare, if they can be read. */
  private pictureSize(frame: Buffer): string | undefined {
    try {
      const size = this.codec === 'V_VP8' ? vp8KeyframeSize(frame) : h264PictureSize([frame]);
      return size && `${size.width}x${size.height}`;
    } catch {
      return undefined;
    }
  }

  /**
   * The keyframe clusters between `fromMs` and `toMs` of the file's time (both excluded) where the
   * picture's size changes from the one before: where a reader that starts there gets a picture
   * of one size (until the next).
   */
  sizeChanges(fromMs: number, toMs: number): number[] {
    const changes: number[] = [];
    // from the size at fromMs: that of the last keyframe at or before it that declares one
    let k = this.startAt(fromMs);
    let size: string | undefined;
    for (let j = k; j >= 0 && size === undefined; j--) size = this.starts[j]!.size;
    for (k++; k < this.starts.length && this.starts[k]!.ms < toMs; k++) {
      const next = this.starts[k]!.size;
      if (next === undefined) continue;
      if (size !== undefined && next !== size) changes.push(this.starts[k]!.ms);
      size = next;
    }
    return changes;
  }

  /** The index in `starts` of the last keyframe cluster at or before `ms` of the file's time; -1 if none. */
  startAt(ms: number): number {
    let lo = 0;
    let hi = this.starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid]!.ms <= ms) lo = mid + 1;
      else hi = mid;
    }
    return lo - 1;
  }
}

/** Whether inputFrom reads from `seekMs` (-ss: times from there) or from the file's start. */
export const isSeek = (seekMs: number) => seekMs >= 0.5;

/**
 * ffmpeg's input arguments for `index.file` read from `seekMs` of the file's time. A WebM being
 * written has no cues, so ffmpeg's seek scans it from its start: each part read every camera's
 * file from the beginning (0.08 CPU s in a 217 MB file 48 min into a call, the compose's cost
 * growing with the call). Instead ffmpeg gets the header and then the file from the last keyframe
 * cluster at or before the point (two byte ranges of the file, through its concat and subfile
 * protocols) and seeks within that; -seek_timestamp keeps -ss on the file's own clock.
 */
export function inputFrom(index: WebmIndex, seekMs: number): string[] {
  const { file, starts, headerBytes } = index;
  if (!isSeek(seekMs)) return ['-i', file];
  const ss = ['-ss', (seekMs / 1000).toFixed(3)];
  const start = starts[index.startAt(seekMs)];
  // '|' separates concat's parts
  if (!start || start.offset === headerBytes || file.includes('|')) return [...ss, '-i', file];
  const range = (from: number, to: number) => `subfile,,start,${from},end,${to},,:${file}`;
  return ['-seek_timestamp', '1', ...ss, '-i', `concat:${range(0, headerBytes)}|${range(start.offset, 0)}`];
}
