// A file's bytes as they are to be delivered: their size (an upload session is opened with it) and
// a stream of them from any offset (an interrupted upload resumes where Mattermost says it got to).
// Usually the file as it is on disk; a recording is read in another order (fast-start.ts).
import { createReadStream, statSync } from 'node:fs';
import { Readable } from 'node:stream';

// Read in chunks of 1 MiB, not the stream's default 64 KiB: each chunk costs a read on libuv's pool
// and a turn of the event loop on both ends, and the sender's CPU for a recording's upload halves
// (figures in the README, "The recorder job").
const READ_CHUNK = 1024 * 1024;

/** Bytes `start` to `end` (inclusive; to the end of the file without it) of `path`. */
const readRange = (path: string, start: number, end?: number) =>
  createReadStream(path, { start, end, highWaterMark: READ_CHUNK });

export interface FileSource {
  readonly path: string;
  readonly size: number;
  read(from: number): Readable;
}

/** The file as it is on disk. */
export function fileSource(path: string): FileSource {
  return { path, size: statSync(path).size, read: (from) => readRange(path, from) };
}

/** A piece of a source: a range of the file on disk, or bytes held in memory. */
export type Piece = { start: number; end: number } | Buffer;

/** A source made of `pieces` in order: ranges of `path` and bytes in memory. */
export function piecesSource(path: string, pieces: Piece[]): FileSource {
  const length = (p: Piece) => (Buffer.isBuffer(p) ? p.length : p.end - p.start);
  const size = pieces.reduce((sum, p) => sum + length(p), 0);
  async function* from(offset: number): AsyncGenerator<Buffer> {
    for (const p of pieces) {
      const skip = Math.min(offset, length(p));
      offset -= skip;
      if (skip === length(p)) continue;
      if (Buffer.isBuffer(p)) yield p.subarray(skip);
      else yield* readRange(path, p.start + skip, p.end - 1);
    }
  }
  return { path, size, read: (offset) => Readable.from(from(offset), { objectMode: false }) };
}
