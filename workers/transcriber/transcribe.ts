// After the call: each speaker's PCM file is cut into utterances by VAD and recognised; segments
// are placed on the call clock (the track's start plus the utterance's offset) and carry the
// speaker's display name. Speakers are independent, so crosstalk never mixes two voices.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Segment } from './formats.js';
import type { VoiceTrack } from './listen.js';
import { SAMPLE_RATE, type SpeechEngine } from './speech/engine.js';
import { EnergyVad } from './speech/vad.js';

/** The tracks of tracks.jsonl, the last line of each file winning. */
export function readTracks(dir: string): VoiceTrack[] {
  let text = '';
  try {
    text = readFileSync(join(dir, 'tracks.jsonl'), 'utf8');
  } catch {
    return [];
  }
  const byFile = new Map<string, VoiceTrack>();
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const t = JSON.parse(line) as VoiceTrack;
      byFile.set(t.file, t);
    } catch {
      // a line cut short by a crash
    }
  }
  return [...byFile.values()];
}

export function readPcm(path: string): Int16Array {
  const buf = readFileSync(path);
  return new Int16Array(buf.buffer, buf.byteOffset, Math.floor(buf.length / 2));
}

/** Recognises one speaker's stream; `offsetMs` is where its sample 0 is on the call clock. */
export async function transcribeStream(engine: SpeechEngine, pcm: Int16Array, speaker: string, offsetMs: number): Promise<Segment[]> {
  const vad = new EnergyVad();
  const utterances = [...vad.push(pcm), ...vad.flush()];
  const segments: Segment[] = [];
  for (const u of utterances) {
    const { text, words } = await engine.recognize(u.pcm);
    if (!text.trim() || words.length === 0) continue;
    const at = offsetMs + (u.start / SAMPLE_RATE) * 1000;
    segments.push({
      speaker,
      startMs: Math.round(at + words[0]!.start * 1000),
      endMs: Math.round(at + words[words.length - 1]!.end * 1000),
      text: words.map((w) => w.word).join(' '),
    });
  }
  return segments;
}

/** Every captured speaker of a job directory, in time order. */
export async function transcribeCall(engine: SpeechEngine, dir: string): Promise<Segment[]> {
  const segments: Segment[] = [];
  for (const t of readTracks(dir)) {
    segments.push(...(await transcribeStream(engine, readPcm(join(dir, t.file)), t.displayName, t.startMs)));
  }
  return segments.sort((a, b) => a.startMs - b.startMs);
}
