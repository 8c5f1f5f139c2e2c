// How many frames a growing WebM file holds and the time of its last one, read incrementally: each
// call reads only what was appended since the last. Compose needs both for every video file before
// every part (where each file ends, and its frame rate); ffprobe read each file from its start every time, so in a long call with
// short parts the reading grew with the square of the call's length (an hour of four cameras in
// parts of 10 s: about 1 GB read and 200 000 lines parsed per part by the end).
// Matroska/EBML: elements are an ID and a size (both variable-length integers); the Segment and
// Clusters of a file being written have an unknown size (all ones) and are descended into; a
// Cluster's Timestamp is followed by SimpleBlocks whose 16-bit time is relative to it.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

const SEGMENT = 0x18538067;
const CLUSTER = 0x1f43b675;
const INFO = 0x1549a966;
const TIMESTAMP_SCALE = 0x2ad7b1;
const CLUSTER_TIMESTAMP = 0xe7;
const SIMPLE_BLOCK = 0xa3;
const BLOCK_GROUP = 0xa0;
const BLOCK = 0xa1;
const DESCEND = new Set([SEGMENT, CLUSTER, INFO, BLOCK_GROUP]);
const CHUNK = 1 << 20;

/** A variable-length integer at `at`: its value (marker bit kept for IDs), length, and whether all value bits are ones. */
function vint(
  buf: Buffer,
  at: number,
  keepMarker: boolean,
): { value: number; length: number; unknown: boolean } | null {
  if (at >= buf.length) return null;
  const first = buf[at]!;
  let length = 1;
  while (length <= 8 && !(first & (0x80 >> (length - 1)))) length++;
  if (length > 8 || at + length > buf.length) return null;
  let value = keepMarker ? first : first & (0xff >> length);
  let ones = value === 0xff >> length;
  for (let i = 1; i < length; i++) {
    value = value * 256 + buf[at + i]!;
    ones &&= buf[at + i] === 0xff;
  }
  return { value, length, unknown: !keepMarker && ones };
}

export class WebmIndex {
  /** bytes parsed: everything before is counted */
  private offset = 0;
  private clusterMs = 0;
  private scaleNs = 1_000_000;
  frames = 0;
  /** the latest frame's time (ms) */
  lastMs = 0;

  constructor(readonly file: string) {}

  /** Reads what was appended since the last call. */
  update(): this {
    const fd = openSync(this.file, 'r');
    try {
      const size = fstatSync(fd).size;
      while (this.offset < size) {
        const buf = Buffer.alloc(Math.min(CHUNK, size - this.offset));
        const got = readSync(fd, buf, 0, buf.length, this.offset);
        const used = this.parse(buf.subarray(0, got));
        if (used === 0) {
          if (got < CHUNK) break; // an element still being written
          throw new Error(`${this.file}: an element over ${CHUNK} bytes at ${this.offset}`);
        }
        this.offset += used;
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
      if (DESCEND.has(id.value)) {
        at = body; // a master element: its children follow
        continue;
      }
      if (size.unknown || body + size.value > buf.length) return at;
      const data = buf.subarray(body, body + size.value);
      if (id.value === CLUSTER_TIMESTAMP || id.value === TIMESTAMP_SCALE) {
        let v = 0;
        for (const b of data) v = v * 256 + b;
        if (id.value === CLUSTER_TIMESTAMP) this.clusterMs = (v * this.scaleNs) / 1e6;
        else this.scaleNs = v;
      } else if (id.value === SIMPLE_BLOCK || id.value === BLOCK) {
        const track = vint(data, 0, false);
        if (track && data.length >= track.length + 2) {
          const ms = this.clusterMs + (data.readInt16BE(track.length) * this.scaleNs) / 1e6;
          this.frames++;
          this.lastMs = Math.max(this.lastMs, ms);
        }
      }
      at = body + size.value;
    }
  }
}
