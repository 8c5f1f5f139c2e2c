// A recording read with its index first ("fast start": a browser plays it while it downloads),
// without rewriting the file. The recording's MP4 is written as the call goes on, so its index
// (the moov box) comes last, after the media; ffmpeg's +faststart moves it in front with a second
// pass that copies the whole file (6 s for an hour of four cameras, all of it after the stop).
// Here the file is read in that order instead, as it is uploaded or copied: ftyp, the moov with
// each chunk offset moved by the moov's own size, then the media. Byte for byte what +faststart
// writes (test/fast-start.test.ts compares them).
import { closeSync, openSync, readSync } from 'node:fs';
import { type FileSource, fileSource, type Piece, piecesSource } from './file-source.js';

interface Box {
  type: string;
  start: number;
  end: number;
  /** where its content begins (after the size and type) */
  body: number;
}

/** The boxes in `read`'s bytes from `start` to `end`. */
function boxes(read: (at: number, length: number) => Buffer, start: number, end: number): Box[] {
  const found: Box[] = [];
  for (let at = start; at + 8 <= end; ) {
    const head = read(at, 16);
    let size = head.readUInt32BE(0);
    let body = at + 8;
    if (size === 1) {
      size = Number(head.readBigUInt64BE(8));
      body += 8;
    } else if (size === 0) size = end - at; // to the end
    if (size < body - at || at + size > end) throw new Error(`a malformed MP4 box at ${at}`);
    found.push({ type: head.toString('latin1', 4, 8), start: at, end: at + size, body });
    at += size;
  }
  return found;
}

// The boxes on the way from moov to the chunk offsets (stco: 32-bit, co64: 64-bit).
const CONTAINERS = new Set(['moov', 'trak', 'mdia', 'minf', 'stbl']);

/**
 * Adds `shift` to every chunk offset in `moov` (in place). False when a 32-bit offset would
 * overflow (ffmpeg then rewrites the table as 64-bit; not worth it here: the file plays as it is).
 */
function shiftChunkOffsets(moov: Buffer, shift: number): boolean {
  const read = (at: number, length: number) => moov.subarray(at, at + length);
  const walk = (start: number, end: number): boolean =>
    boxes(read, start, end).every((box) => {
      if (CONTAINERS.has(box.type)) return walk(box.body, box.end);
      const wide = box.type === 'co64';
      if (!wide && box.type !== 'stco') return true;
      const count = moov.readUInt32BE(box.body + 4); // after version and flags
      for (let i = 0, at = box.body + 8; i < count; i++, at += wide ? 8 : 4) {
        if (wide) moov.writeBigUInt64BE(moov.readBigUInt64BE(at) + BigInt(shift), at);
        else if (moov.readUInt32BE(at) + shift > 0xffffffff) return false;
        else moov.writeUInt32BE(moov.readUInt32BE(at) + shift, at);
      }
      return true;
    });
  return walk(0, moov.length);
}

/** The MP4 at `path`, read with its moov before its media (as it is when already so). */
export function fastStart(path: string): FileSource {
  const file = fileSource(path);
  const fd = openSync(path, 'r');
  try {
    const read = (at: number, length: number) => {
      const buffer = Buffer.alloc(length);
      return buffer.subarray(0, readSync(fd, buffer, 0, length, at));
    };
    const top = boxes(read, 0, file.size);
    const moov = top.find((b) => b.type === 'moov');
    const mdat = top.findIndex((b) => b.type === 'mdat');
    if (!moov || mdat < 0 || moov.start < top[mdat]!.start) return file;
    const index = read(moov.start, moov.end - moov.start);
    // The moov goes where the first box after ftyp was (a free box, then the mdat, as ffmpeg writes).
    const at = top[0]?.type === 'ftyp' ? top[0].end : 0;
    if (!shiftChunkOffsets(index, index.length)) return file;
    const pieces: Piece[] = [
      { start: 0, end: at },
      index,
      { start: at, end: moov.start },
      { start: moov.end, end: file.size },
    ];
    return piecesSource(path, pieces);
  } finally {
    closeSync(fd);
  }
}
