// The recording's sound encoded to AAC while the call goes on: each composed part's voices (FLAC in
// the part) are decoded and fed to one ffmpeg encoding for the whole call, so the encode has no
// seams between parts, as one pass at the end had, and the join after the stop only copies. (That
// pass grew with the call: an hour of audio took 33 s to encode, all of it between the stop and
// the post.) Each part adds exactly its frames' worth of samples, so the sound stays on the
// picture however many parts there are.
import type { Writable } from 'node:stream';
import { startFfmpeg } from '../shared/ffmpeg.js';

const RATE = 48000;
const BYTES_PER_SAMPLE = 4; // s16le, stereo

export class AudioEncoder {
  private readonly encoder: ReturnType<typeof startFfmpeg>;
  private samples = 0;
  private failure?: Error;

  constructor(
    readonly file: string,
    bitrateK: number,
    nice?: number,
  ) {
    this.encoder = startFfmpeg(
      [
        ...['-hide_banner', '-loglevel', 'error', '-y'],
        ...['-f', 's16le', '-ar', String(RATE), '-ac', '2', '-i', 'pipe:0'],
        ...['-c:a', 'aac', '-b:a', `${bitrateK}k`, '-f', 'mp4', file],
      ],
      { nice, pipe: 'stdin' },
    );
    this.encoder.done.catch((err: Error) => (this.failure ??= err));
    this.encoder.child.stdin!.on('error', (err) => (this.failure ??= err));
  }

  /** Appends `part`'s sound, cut or padded with silence so that the sound so far ends at `untilSamples`. */
  async append(part: string, untilSamples: number, nice?: number): Promise<void> {
    if (this.failure) throw this.failure;
    const decoder = startFfmpeg(
      [
        '-hide_banner',
        '-loglevel',
        'error',
        '-i',
        part,
        '-map',
        '0:a',
        '-f',
        's16le',
        '-ar',
        String(RATE),
        '-ac',
        '2',
        '-',
      ],
      { nice, pipe: 'stdout' },
    );
    const stdin = this.encoder.child.stdin!;
    const wanted = (untilSamples - this.samples) * BYTES_PER_SAMPLE;
    let sent = 0;
    for await (const chunk of decoder.child.stdout! as AsyncIterable<Buffer>) {
      const take = chunk.subarray(0, Math.max(0, wanted - sent));
      if (take.length > 0) await write(stdin, take);
      sent += take.length;
    }
    await decoder.done;
    if (sent < wanted) await write(stdin, Buffer.alloc(wanted - sent));
    this.samples = untilSamples;
    if (this.failure) throw this.failure;
  }

  /** Ends the encode: the file is complete once this resolves. */
  async close(): Promise<void> {
    this.encoder.child.stdin!.end();
    await this.encoder.done;
    if (this.failure) throw this.failure;
  }

  /** Stops the encode (its file is not used). */
  abandon(): void {
    this.encoder.child.kill('SIGKILL');
  }
}

/** Samples of sound from the start to frame `frame` at `fps`. */
export const samplesAt = (frame: number, fps: number) => Math.round((frame * RATE) / fps);

function write(stream: Writable, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(chunk, (err) => (err ? reject(err) : resolve()));
  });
}
