// The call's transcript, recognised while the call goes on. Every few seconds each speaker's file
// is read on from where the last read ended, cut by a VAD that carries on across reads, and the
// utterances that ended are recognised. So after the stop only the last seconds are left: the
// transcript is posted seconds after the stop whatever the call's length, and the stop grace
// (JOBS_STOPGRACESEC) bounds that rest, not the call.
//
// What is recognised is appended to recognised.jsonl, a read of a file (up to 60 s) at a time in
// cut order, so each file's lines are the first of its utterances. A run with --recover keeps
// them and reads each file on from the end of its last one.
import { appendFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readLines } from '../shared/job.js';
import type { Segment } from './formats.js';
import { SAMPLE_RATE, type SpeechEngine } from './speech/engine.js';
import type { Silero } from './speech/silero.js';
import type { VoiceTrack } from './listen.js';
import { Cutter, inTimeOrder, type Piece, readPcm, readTracks, recognise } from './transcribe.js';

const RECOGNISED = 'recognised.jsonl';
/** How often the files are read on during the call. */
const ROUND_MS = 10_000;
/** A file is read and recognised at most 60 s at a time, so a run that resumes a long call holds little in memory. */
const READ_SAMPLES = SAMPLE_RATE * 60;
/** Silence in a file that is worth a line in recognised.jsonl (markSilence). */
const MARK_SAMPLES = SAMPLE_RATE * 60;

/** One line of recognised.jsonl: an utterance of `file` of `samples` that ended at sample `end`, and what was heard. */
export interface Recognised {
  file: string;
  end: number;
  /** absent in the lines of an earlier version */
  samples?: number;
  segment?: Segment;
}

/** The whole transcript in time order, with the seconds of speech recognised after the stop and before it. */
export interface FinishedTranscript {
  segments: Segment[];
  leftSec: number;
  earlySec: number;
}

interface Reading {
  file: string;
  /** the file's path */
  path: string;
  cutter: Cutter;
  /** the sample of the file where the cutter's stream begins */
  base: number;
  /** samples of the file read so far */
  read: number;
  flushed: boolean;
  /** the sample of the file up to which recognised.jsonl says it is done */
  marked: number;
}

/** Appends to recognised.jsonl: what a recovery keeps. */
export function appendRecognised(dir: string, lines: Recognised[]): void {
  if (lines.length > 0) appendFileSync(join(dir, RECOGNISED), lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
}

/** The segments recognised.jsonl holds, in time order: what a stop that failed keeps. */
export const recognisedSegments = (dir: string): Segment[] =>
  inTimeOrder(readLines<Recognised>(join(dir, RECOGNISED)).map((r) => r.segment));

export class CallTranscript {
  private readonly readings = new Map<string, Reading>();
  private readonly segments: Segment[] = [];
  /** where each file's recognised utterances end, from an earlier run */
  private readonly resumeAt = new Map<string, number>();
  /** the background rounds; resolves with their error, if one ended them */
  private running: Promise<unknown> | undefined;
  private stopping = false;
  private wake: () => void = () => undefined;
  /** seconds of speech recognised so far, by earlier runs too */
  private heardSec = 0;
  private fail: (why: string) => void = () => undefined;
  /** Resolves with why, if recognition failed during the call (finish() then throws the error). */
  readonly failed = new Promise<string>((r) => {
    this.fail = r;
  });

  constructor(
    private readonly engines: SpeechEngine[],
    private readonly dir: string,
    private readonly silero?: Silero,
    private readonly roundMs = ROUND_MS,
  ) {
    for (const r of readLines<Recognised>(join(dir, RECOGNISED))) {
      this.resumeAt.set(r.file, Math.max(this.resumeAt.get(r.file) ?? 0, r.end));
      if (r.segment) this.segments.push(r.segment);
      this.heardSec += (r.samples ?? 0) / SAMPLE_RATE;
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
        if (!this.stopping) await this.round(false);
      }
    };
    // An engine's error ends the rounds and is thrown by finish(), not left unhandled meanwhile.
    this.running = loop().then(
      () => undefined,
      (err: unknown) => {
        this.fail(`recognition failed: ${(err as Error).message}`);
        return err;
      },
    );
  }

  /**
   * Recognises what is left, every file to its end, and returns the whole transcript in time
   * order, with the seconds of speech recognised after the stop (a round running then included)
   * and before it.
   */
  async finish(): Promise<FinishedTranscript> {
    const earlySec = this.heardSec;
    this.stopping = true;
    this.wake();
    const failed = await this.running;
    if (failed) throw failed;
    await this.round(true);
    return { segments: inTimeOrder(this.segments), leftSec: this.heardSec - earlySec, earlySec };
  }

  /**
   * Reads every file on, up to what was written at the round's start, and recognises the
   * utterances that ended: up to 60 s of each file at a time, every speaker's together, so that
   * every engine has work.
   */
  private async round(last: boolean): Promise<void> {
    const files = readTracks(this.dir)
      .map((track) => ({ track, reading: this.reading(track) }))
      .filter(({ reading }) => !reading.flushed)
      .map((f) => ({
        ...f,
        written: Math.floor((statSync(f.reading.path, { throwIfNoEntry: false })?.size ?? 0) / 2),
      }));
    for (let more = true; more; ) {
      more = false;
      const batch: { reading: Reading; piece: Piece }[] = [];
      for (const f of files) {
        const { reading } = f;
        if (reading.read >= f.written) continue;
        const pcm = readPcm(reading.path, reading.read, Math.min(f.written - reading.read, READ_SAMPLES));
        if (pcm.length === 0) f.written = reading.read; // shorter than it was: read no more of it
        reading.read += pcm.length;
        for (const piece of await reading.cutter.push(pcm)) batch.push({ reading, piece });
        more ||= reading.read < f.written;
      }
      // A track that ended has been written out (listen.ts): its open utterance is its last.
      if (!more)
        for (const { track, reading } of files)
          if (last || track.endMs !== undefined) {
            reading.flushed = true;
            for (const piece of reading.cutter.flush()) batch.push({ reading, piece });
          }
      await this.recognise(batch);
      this.markSilence(files.map((f) => f.reading));
    }
  }

  /**
   * Writes where a file's VAD is idle, once that is a minute past what recognised.jsonl says of it:
   * a run that resumes (a new transcript process, the stop) reads on from there. Otherwise it read
   * on from the last utterance, and a quiet listener's hour of silence went through Silero again
   * at the stop.
   */
  private markSilence(readings: Reading[]): void {
    const lines: Recognised[] = [];
    for (const r of readings) {
      const idle = r.flushed ? undefined : r.cutter.idleFrom();
      if (idle === undefined || r.base + idle - r.marked < MARK_SAMPLES) continue;
      r.marked = r.base + idle;
      lines.push({ file: r.file, end: r.marked, samples: 0 });
    }
    appendRecognised(this.dir, lines);
  }

  private reading(track: VoiceTrack): Reading {
    let reading = this.readings.get(track.file);
    if (!reading) {
      const base = this.resumeAt.get(track.file) ?? 0;
      const offsetMs = track.startMs + (base / SAMPLE_RATE) * 1000;
      reading = {
        file: track.file,
        path: join(this.dir, track.file),
        cutter: new Cutter(track.displayName, offsetMs, this.silero),
        base,
        read: base,
        flushed: false,
        marked: base,
      };
      this.readings.set(track.file, reading);
    }
    return reading;
  }

  /** Recognises the pieces and records them, each file's in cut order. */
  private async recognise(batch: { reading: Reading; piece: Piece }[]): Promise<void> {
    if (batch.length === 0) return;
    const heard = await recognise(
      this.engines,
      batch.map((b) => b.piece),
    );
    const lines = batch.map(
      ({ reading, piece }, i): Recognised => ({
        file: reading.file,
        end: reading.base + piece.end,
        samples: piece.pcm.length,
        segment: heard[i],
      }),
    );
    appendRecognised(this.dir, lines);
    for (const [i, { reading }] of batch.entries()) reading.marked = Math.max(reading.marked, lines[i]!.end);
    for (const s of heard) if (s) this.segments.push(s);
    this.heardSec += batch.reduce((n, b) => n + b.piece.pcm.length, 0) / SAMPLE_RATE;
  }
}
