// Recognition: a speaker's stream is cut into utterances by VAD and each is recognised; segments
// are placed on the call clock (where the stream starts plus the utterance's offset) and carry the
// speaker's display name. Speakers are independent, so crosstalk never mixes two voices.
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readLines } from '../shared/job.js';
import type { Segment } from './formats.js';
import type { VoiceTrack } from './listen.js';
import { SAMPLE_RATE, type SpeechEngine } from './speech/engine.js';
import type { Silero, StreamDetector } from './speech/silero.js';
import { Vad } from './speech/vad.js';

/** The tracks of tracks.jsonl, the last line of each file winning. */
export function readTracks(dir: string): VoiceTrack[] {
  return [...new Map(readLines<VoiceTrack>(join(dir, 'tracks.jsonl')).map((t) => [t.file, t])).values()];
}

/** A 16 kHz PCM file's samples: `count` from sample `from` (fewer if it holds fewer), or all of them. */
export function readPcm(path: string, from = 0, count = Math.floor(statSync(path).size / 2) - from): Int16Array {
  const buf = Buffer.alloc(Math.max(0, count) * 2);
  const fd = openSync(path, 'r');
  try {
    const n = readSync(fd, buf, 0, buf.length, from * 2);
    return new Int16Array(buf.buffer, buf.byteOffset, Math.floor(n / 2));
  } finally {
    closeSync(fd);
  }
}

export interface Piece {
  speaker: string;
  /** where the utterance starts on the call clock */
  atMs: number;
  pcm: Int16Array;
  /** the sample after it on the stream given to the Cutter */
  end: number;
}

/**
 * A speaker's stream cut into utterances (by Silero when given, else by energy) as it comes:
 * `push` samples that follow the previous ones. `offsetMs` is where its sample 0 is on the call clock.
 */
export class Cutter {
  private readonly detector: StreamDetector | undefined;
  private readonly vad: Vad;

  constructor(
    private readonly speaker: string,
    private readonly offsetMs: number,
    silero?: Silero,
  ) {
    this.detector = silero?.stream();
    this.vad = new Vad({}, undefined, this.detector);
  }

  /** The utterances these samples completed. */
  async push(pcm: Int16Array): Promise<Piece[]> {
    await this.detector?.feed(pcm);
    return this.vad.push(pcm).map((u) => this.piece(u));
  }

  /** Where on the stream nothing is left to cut before (Vad.idleFrom), or undefined. */
  idleFrom(): number | undefined {
    return this.vad.idleFrom();
  }

  /** The stream ended: its open utterance, if any. */
  flush(): Piece[] {
    return this.vad.flush().map((u) => this.piece(u));
  }

  private piece(u: { start: number; pcm: Int16Array }): Piece {
    const atMs = this.offsetMs + (u.start / SAMPLE_RATE) * 1000;
    return { speaker: this.speaker, atMs, pcm: u.pcm, end: u.start + u.pcm.length };
  }
}

/**
 * Recognises the pieces with every engine busy at once (pocketsphinx runs one helper per
 * NUM_THREADS; whisper.cpp one engine with that many threads). The result is in the pieces'
 * order: a piece's segment, or undefined where nothing was recognised.
 */
export async function recognise(engines: SpeechEngine[], pieces: Piece[]): Promise<(Segment | undefined)[]> {
  const out: (Segment | undefined)[] = new Array(pieces.length).fill(undefined);
  let next = 0;
  await Promise.all(
    engines.map(async (engine) => {
      while (next < pieces.length) {
        const i = next++;
        const p = pieces[i]!;
        const { text, words } = await engine.recognize(p.pcm);
        if (!text.trim() || words.length === 0) continue;
        out[i] = {
          speaker: p.speaker,
          startMs: Math.round(p.atMs + words[0]!.start * 1000),
          endMs: Math.round(p.atMs + words[words.length - 1]!.end * 1000),
          text: words.map((w) => w.word).join(' '),
        };
      }
    }),
  );
  return out;
}

export const inTimeOrder = (segments: (Segment | undefined)[]): Segment[] =>
  segments.filter((s): s is Segment => s !== undefined).sort((a, b) => a.startMs - b.startMs);

/** A 16 kHz PCM file read `sec` at a time, so that memory stays flat whatever its length. */
export function* pcmChunks(path: string, sec = 60): Generator<Int16Array> {
  const total = Math.floor(statSync(path).size / 2);
  for (let from = 0; from < total; from += sec * SAMPLE_RATE) yield readPcm(path, from, sec * SAMPLE_RATE);
}

export interface StreamOptions {
  speaker: string;
  /** where the stream's first sample is on the transcript's clock */
  offsetMs: number;
  silero?: Silero;
  /** gets what each piece added, as soon as it is recognised (a recovery keeps it) */
  heard?: (segments: Segment[]) => void;
}

/** One whole stream (a recording's mixed audio, or a test's speaker), in consecutive pieces. */
export async function transcribeStream(
  engines: SpeechEngine[],
  stream: Iterable<Int16Array>,
  { speaker, offsetMs, silero, heard }: StreamOptions,
): Promise<Segment[]> {
  const cutter = new Cutter(speaker, offsetMs, silero);
  const segments: (Segment | undefined)[] = [];
  const add = (recognised: (Segment | undefined)[]) => {
    segments.push(...recognised);
    heard?.(inTimeOrder(recognised));
  };
  for (const pcm of stream) add(await recognise(engines, await cutter.push(pcm)));
  add(await recognise(engines, cutter.flush()));
  return inTimeOrder(segments);
}
