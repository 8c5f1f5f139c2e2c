// Real recorded English speech for the transcriber's tests and bench: the LibriVox utterances of
// Debian's pocketsphinx-testdata with their reference transcripts, and word error rate.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Gives this process a temporary directory of its own (TMPDIR) and returns what removes it:
 * onnxruntime's telemetry opens a mat-debug-<pid>.log there at each load of Silero (at some
 * moment after it) and never removes it.
 */
export function ownTmpdir(prefix: string): () => void {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  process.env.TMPDIR = dir;
  return () => rmSync(dir, { recursive: true, force: true });
}

export const LIBRIVOX = '/usr/share/pocketsphinx/test/data/librivox';

export interface Utterance {
  wav: string;
  text: string;
}

/** The five utterances (25 s in all, one reader, 16 kHz mono WAV) and what is said in each. */
export function librivox(): Utterance[] {
  return readFileSync(join(LIBRIVOX, 'transcription'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => {
      const m = /^<s> (.*) <\/s> \((.*)\)$/.exec(line.trim());
      if (!m) throw new Error(`unexpected transcription line: ${line}`);
      return { wav: join(LIBRIVOX, `${m[2]}.wav`), text: m[1]! };
    });
}

/** The samples of a 16-bit mono WAV (the data chunk, wherever it is). */
export function wavSamples(path: string): Int16Array {
  const buf = readFileSync(path);
  let at = 12;
  while (at + 8 <= buf.length) {
    const id = buf.toString('latin1', at, at + 4);
    const size = buf.readUInt32LE(at + 4);
    if (id === 'data') return new Int16Array(buf.buffer.slice(buf.byteOffset + at + 8, buf.byteOffset + at + 8 + size));
    at += 8 + size + (size % 2);
  }
  throw new Error(`${path}: no data chunk`);
}

export const words = (s: string) =>
  s
    .toLowerCase()
    .replace(/[^a-z' ]+/g, ' ')
    .split(/\s+/)
    .filter(Boolean);

/** (substitutions + deletions + insertions) / reference words, by word-level edit distance. */
export function wordErrorRate(reference: string, hypothesis: string): number {
  const r = words(reference);
  const h = words(hypothesis);
  let prev = Array.from({ length: h.length + 1 }, (_, j) => j);
  for (let i = 1; i <= r.length; i++) {
    const row = [i];
    for (let j = 1; j <= h.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (r[i - 1] === h[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return r.length === 0 ? (h.length === 0 ? 0 : 1) : prev[h.length]! / r.length;
}

/** Writes 16 kHz mono samples as a WAV file (a fake microphone's input). */
export function writeWav(path: string, samples: Int16Array): string {
  const header = Buffer.alloc(44);
  header.write('RIFF', 0, 'latin1');
  header.writeUInt32LE(36 + samples.byteLength, 4);
  header.write('WAVEfmt ', 8, 'latin1');
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(16_000, 24);
  header.writeUInt32LE(32_000, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36, 'latin1');
  header.writeUInt32LE(samples.byteLength, 40);
  writeFileSync(path, Buffer.concat([header, Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength)]));
  return path;
}

/** The streams one after another. */
export function concat(parts: Int16Array[]): Int16Array {
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Utterances one after another with `gapSeconds` of silence between them and `tailSeconds` after. */
export function speechTrack(utterances: Utterance[], gapSeconds: number, tailSeconds: number): Int16Array {
  return concat(
    utterances.flatMap((u, i) => [
      wavSamples(u.wav),
      new Int16Array(16_000 * (i === utterances.length - 1 ? tailSeconds : gapSeconds)),
    ]),
  );
}
