// The call's transcript, recognised while the call goes on. Every few seconds each speaker's file
// is read on from where the last read ended, cut by a VAD that carries on across reads, and the
// utterances that ended are recognised. So after the stop only the last seconds are left: the
// transcript is posted seconds after the stop whatever the call's length, and the stop grace
// (JOBS_STOPGRACESEC) bounds that rest, not the call.
//
// What is recognised is appended to recognised.jsonl, a read of a file (up to 60 s) at a time in
// cut order, so each file's lines are the first of its utterances. A run with --recover keeps
// them and reads each file on from the end of its last one.
import { appendFileSync, closeSync, openSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readLines } from '../shared/job.js';
import type { Segment } from './formats.js';
import { SAMPLE_RATE, type SpeechEngine } from './speech/engine.js';
import type { Silero } from './speech/silero.js';
import { Cutter, inTimeOrder, type Piece, readTracks, recognise } from './transcribe.js';

const RECOGNISED = 'recognised.jsonl';
/** How often the files are read on during the call. */
const ROUND_MS = 10_000;
/** A file is read and recognised at most 60 s at a time, so a run that resumes a long call holds little in memory. */
const READ_SAMPLES = SAMPLE_RATE * 60;

/** One line of recognised.jsonl: an utterance of `file` that ended at sample `end`, and what was heard. */
interface Recognised {
  file: string;
  end: number;
  segment?: Segment;
}

interface Reading {
  cutter: Cutter;
  /** the sample of the file where the cutter's stream begins */
  base: number;
  /** samples of the file read so far */
  read: number;
  flushed: boolean;
}

export class CallTranscript {
  private readonly readings = new Map<string, Reading>();
  private readonly segments: Segment[] = [];
  /** where each file's recognised utterances end, from an earlier run */
  private readonly resumeAt = new Map<string, number>();
  /** the background rounds; resolves with their error, if one ended them */
  private running: Promise<unknown> | undefined;
  private stopping = false;
  private wake: () => void = () => undefined;
  /** seconds of speech recognised before finish() */
  private early = 0;

  constructor(
    private readonly engines: SpeechEngine[],
    private readonly dir: string,
    private readonly silero?: Silero,
    private readonly roundMs = ROUND_MS,
  ) {
    for (const r of readLines<Recognised>(join(dir, RECOGNISED))) {
      this.resumeAt.set(r.file, Math.max(this.resumeAt.get(r.file) ?? 0, r.end));
      if (r.segment) this.segments.push(r.segment);
    }
  }

  /** Recognises in the background, a round every `roundMs`, until finish(). */
  start(): void {
    const loop = async () => {
      while (!this.stopping) {
        await new Promise<void>((r) => {
          const timer = setTimeout(r, this.roundMs).unref(); // finish() or the job's exit ends the rounds
          this.wake = () => {
            clearTimeout(timer);
            r();
          };
        });
        if (!this.stopping) this.early += await this.round(false);
      }
    };
    // An engine's error ends the rounds and is thrown by finish(), not left unhandled meanwhile.
    this.running = loop().then(
      () => undefined,
      (err: unknown) => err,
    );
  }

  /**
   * Recognises what is left, every file to its end, and returns the whole transcript in time
   * order with how many seconds of speech were left after the stop and had been recognised before.
   */
  async finish(): Promise<{ segments: Segment[]; leftSec: number; earlySec: number }> {
    this.stopping = true;
    this.wake();
    const failed = await this.running;
    if (failed) throw failed;
    const leftSec = await this.round(true);
    return { segments: inTimeOrder(this.segments), leftSec, earlySec: this.early };
  }

  /** Reads every file on and recognises the utterances that ended. Returns their seconds of speech. */
  private async round(last: boolean): Promise<number> {
    let seconds = 0;
    for (const track of readTracks(this.dir)) {
      let reading = this.readings.get(track.file);
      if (!reading) {
        const base = this.resumeAt.get(track.file) ?? 0;
        const offsetMs = track.startMs + (base / SAMPLE_RATE) * 1000;
        reading = { cutter: new Cutter(track.displayName, offsetMs, this.silero), base, read: base, flushed: false };
        this.readings.set(track.file, reading);
      }
      if (reading.flushed) continue;
      // Up to what is written now: a file that grows while it is recognised waits for the next
      // round, after the other speakers.
      const path = join(this.dir, track.file);
      const written = Math.floor((statSync(path, { throwIfNoEntry: false })?.size ?? 0) / 2);
      while (reading.read < written) {
        const pcm = readSamples(path, reading.read, Math.min(written - reading.read, READ_SAMPLES));
        if (pcm.length === 0) break;
        reading.read += pcm.length;
        seconds += await this.recognise(track.file, reading, await reading.cutter.push(pcm));
      }
      // A track that ended has been written out: its open utterance is its last.
      if (last || track.endMs !== undefined) {
        reading.flushed = true;
        seconds += await this.recognise(track.file, reading, reading.cutter.flush());
      }
    }
    return seconds;
  }

  /** Recognises one read's utterances and records them. Returns their seconds of speech. */
  private async recognise(file: string, reading: Reading, pieces: Piece[]): Promise<number> {
    if (pieces.length === 0) return 0;
    const heard = await recognise(this.engines, pieces);
    const lines = pieces.map((p, i): Recognised => ({ file, end: reading.base + p.end, segment: heard[i] }));
    appendFileSync(join(this.dir, RECOGNISED), lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
    for (const s of heard) if (s) this.segments.push(s);
    return pieces.reduce((n, p) => n + p.pcm.length, 0) / SAMPLE_RATE;
  }
}

/** `count` samples of the file at `path` from sample `from` (fewer if it holds fewer). */
function readSamples(path: string, from: number, count: number): Int16Array {
  const buf = Buffer.alloc(count * 2);
  const fd = openSync(path, 'r');
  try {
    const n = readSync(fd, buf, 0, buf.length, from * 2);
    return new Int16Array(buf.buffer, buf.byteOffset, Math.floor(n / 2));
  } finally {
    closeSync(fd);
  }
}
