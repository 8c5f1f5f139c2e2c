// The recording's MP4, written while the call goes on. One ffmpeg muxes it from two pipes: each
// composed part's picture (H.264 in MPEG-TS, which can be fed file after file, each written by the
// part's compose at its place on the MP4's clock; compose.ts PartStreams), and its voices as PCM,
// encoded to AAC in one stream for the whole call (no seams between parts). Each part adds exactly
// its frames' worth of samples, so the sound stays on the picture however many parts there are.
// After the stop only the last part is left to add, whatever the call's length: the MP4's index
// (moov) is written last and moved in front as the file is delivered (fast-start.ts). This
// replaced a join after the stop that copied every part into the MP4 (6.3 s for an hour of four
// cameras), and before that a sound encode of the whole call after it (33 s for an hour).
import { createReadStream } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { startFfmpeg } from '../shared/ffmpeg.js';
import { aacArgs } from './aac.js';
import { frameAt, type PartStreams, type Window } from './compose.js';
import type { RecorderInputs } from './inputs.js';

const RATE = 48000;
const BYTES_PER_SAMPLE = 4; // s16le, stereo
// Every part's times are moved a second later: x264 decodes a part's first frames before they
// show, at negative times, which ffmpeg would shift by a different amount in the first part only.
const LEAD_S = 1;

export class LiveMp4 {
  private readonly muxer: ReturnType<typeof startFfmpeg>;
  private samples = 0;
  private failure?: Error;

  constructor(
    readonly file: string,
    private readonly q: Pick<RecorderInputs, 'audio_rate' | 'frame_rate'>,
  ) {
    // Nothing to probe on either pipe: waiting for more than a part holds would stall the feed.
    const live = ['-analyzeduration', '0', '-probesize', '32'];
    this.muxer = startFfmpeg(
      [
        ...['-hide_banner', '-loglevel', 'error', '-y'],
        ...[...live, '-f', 'mpegts', '-i', 'pipe:0'],
        ...[...live, '-f', 's16le', '-ar', String(RATE), '-ac', '2', '-i', 'pipe:3'],
        ...['-map', '0:v', '-map', '1:a', '-c:v', 'copy', ...aacArgs(q.audio_rate)],
        ...['-f', 'mp4', file],
      ],
      { pipe: 'stdin', pipe3: true },
    );
    this.muxer.done.catch((err: Error) => (this.failure ??= err));
    for (const pipe of this.pipes()) pipe.on('error', (err) => (this.failure ??= err));
  }

  private pipes(): [picture: Writable, sound: Writable] {
    return [this.muxer.child.stdin!, this.muxer.child.stdio[3] as Writable];
  }

  /** Where the compose of the part `file` for `w` writes what the MP4 takes from it. */
  streamsFor(file: string, w: Window): PartStreams {
    const fps = this.q.frame_rate;
    return { picture: `${file}.ts`, pictureAtS: frameAt(w.fromMs, fps) / fps + LEAD_S, sound: `${file}.pcm` };
  }

  /** Adds the part composed for `w` (its `streams`): its picture, and its sound up to its last frame. */
  async append(streams: PartStreams, w: Window): Promise<void> {
    if (this.failure) throw this.failure;
    const [picture, sound] = this.pipes();
    const untilSamples = samplesAt(frameAt(w.toMs, this.q.frame_rate), this.q.frame_rate);
    await Promise.all([
      forward(createReadStream(streams.picture), picture),
      // The sound cut, or padded with silence, so that the sound so far ends at `untilSamples`.
      forward(createReadStream(streams.sound), sound, (untilSamples - this.samples) * BYTES_PER_SAMPLE),
    ]);
    this.samples = untilSamples;
    if (this.failure) throw this.failure;
  }

  /** Ends the MP4: it is complete once this resolves. */
  async close(): Promise<void> {
    for (const pipe of this.pipes()) pipe.end();
    await this.muxer.done;
    if (this.failure) throw this.failure;
  }

  /** Stops the muxer (its file is not used). */
  abandon(): void {
    this.muxer.child.kill('SIGKILL');
  }
}

/** Samples of sound from the start to frame `frame` at `fps`. */
const samplesAt = (frame: number, fps: number) => Math.round((frame * RATE) / fps);

/** Sends `from` to `to`: all of it, or exactly `bytes` (cut, or padded with zeros). */
async function forward(from: Readable, to: Writable, bytes = Infinity): Promise<void> {
  let sent = 0;
  for await (const chunk of from) {
    const take = (chunk as Buffer).subarray(0, Math.max(0, bytes - sent));
    if (take.length > 0) await write(to, take);
    sent += take.length;
  }
  if (bytes !== Infinity && sent < bytes) await write(to, Buffer.alloc(bytes - sent));
}

function write(stream: Writable, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(chunk, (err) => (err ? reject(err) : resolve()));
  });
}
