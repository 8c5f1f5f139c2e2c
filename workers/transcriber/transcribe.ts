// After the call: each speaker's PCM file is cut into utterances by VAD and recognised; segments
// are placed on the call clock (the track's start plus the utterance's offset) and carry the
// speaker's display name. Speakers are independent, so crosstalk never mixes two voices.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readLines } from '../shared/job.js';
import type { Segment } from './formats.js';
import type { VoiceTrack } from './listen.js';
import { SAMPLE_RATE, type SpeechEngine } from './speech/engine.js';
import type { Silero } from './speech/silero.js';
import { Vad } from './speech/vad.js';

/** The tracks of tracks.jsonl, the last line of each file winning. */
export function readTracks(dir: string): VoiceTrack[] {
  return [...new Map(readLines<VoiceTrack>(join(dir, 'tracks.jsonl')).map((t) => [t.file, t])).values()];
}

export function readPcm(path: string): Int16Array {
  const buf = readFileSync(path);
  return new Int16Array(buf.buffer, buf.byteOffset, Math.floor(buf.length / 2));
}

interface Piece {
  speaker: string;
  /** where the utterance starts on the call clock */
  atMs: number;
  pcm: Int16Array;
}

/**
 * A speaker's stream cut into utterances (by Silero when given, else by energy); `offsetMs` is
 * where its sample 0 is on the call clock.
 */
async function cut(pcm: Int16Array, speaker: string, offsetMs: number, silero?: Silero): Promise<Piece[]> {
  const vad = new Vad({}, undefined, silero ? await silero.detector(pcm) : undefined);
  return [...vad.push(pcm), ...vad.flush()].map((u) => ({
    speaker,
    atMs: offsetMs + (u.start / SAMPLE_RATE) * 1000,
    pcm: u.pcm,
  }));
}

/**
 * Recognises the pieces with every engine busy at once (pocketsphinx runs one helper per
 * NUM_THREADS; whisper.cpp one engine with that many threads) and returns segments in time order.
 */
async function recognise(engines: SpeechEngine[], pieces: Piece[]): Promise<Segment[]> {
  const segments: Segment[] = [];
  let next = 0;
  await Promise.all(
    engines.map(async (engine) => {
      while (next < pieces.length) {
        const p = pieces[next++]!;
        const { text, words } = await engine.recognize(p.pcm);
        if (!text.trim() || words.length === 0) continue;
        segments.push({
          speaker: p.speaker,
          startMs: Math.round(p.atMs + words[0]!.start * 1000),
          endMs: Math.round(p.atMs + words[words.length - 1]!.end * 1000),
          text: words.map((w) => w.word).join(' '),
        });
      }
    }),
  );
  return segments.sort((a, b) => a.startMs - b.startMs);
}

/** One stream (a recording's mixed audio, or a test's speaker). */
export async function transcribeStream(
  engines: SpeechEngine[],
  pcm: Int16Array,
  speaker: string,
  offsetMs: number,
  silero?: Silero,
): Promise<Segment[]> {
  return recognise(engines, await cut(pcm, speaker, offsetMs, silero));
}

/** Every captured speaker of a job directory, in time order. */
export async function transcribeCall(engines: SpeechEngine[], dir: string, silero?: Silero): Promise<Segment[]> {
  const pieces: Piece[] = [];
  for (const t of readTracks(dir))
    pieces.push(...(await cut(readPcm(join(dir, t.file)), t.displayName, t.startMs, silero)));
  return recognise(engines, pieces);
}
