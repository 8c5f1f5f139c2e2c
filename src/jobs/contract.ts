// The contract between the service and a job program, whichever runner starts it (a child
// process, a Docker container, a Kubernetes Job): what the program finds in its environment, the
// files it and the worker exchange in its directory, its arguments, its exit codes, and the
// output_data each job type writes. Both job programs and every runner use this one module.
import { closeSync, constants, fstatSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inputEnv } from './input-data.js';
import type { InputData, JobType } from './schema.js';

/**
 * Variables the worker sets beside the job type's inputs (upper-cased: `site_url` → `SITE_URL`).
 * An input can never take one of these names: the worker's value wins.
 */
export const JOB_ENV = {
  id: 'JOB_ID',
  type: 'JOB_TYPE',
  /** the job's working directory: partial media, job.log, output.json, the delivering marker */
  dir: 'JOB_DIR',
  /** where artifacts are kept without Mattermost, or when delivery failed */
  artifacts: 'ARTIFACTS_DIR',
  /** a job on the bundled SFU: its address and a bot token for this call only */
  sfuUrl: 'SFU_URL',
  sfuToken: 'SFU_TOKEN',
  /** a job on a finished file: where media_url may read from (JOBS_MEDIAURLALLOW) */
  mediaUrlAllow: 'MEDIA_URL_ALLOW',
} as const;

export const reservedEnv: ReadonlySet<string> = new Set(Object.values(JOB_ENV));

/** The job's tokens among its environment: the Calls bot's (input auth_token) and the bundled SFU's. */
export const tokenEnv: ReadonlySet<string> = new Set(['AUTH_TOKEN', JOB_ENV.sfuToken]);

/** The argument that asks a program to salvage what a crashed run left in its directory. */
export const RECOVER_ARG = '--recover';

/**
 * Exit codes. A signal or any other code is a crash, followed by one `--recover` run; a failure the
 * program handled (it kept what it could and said where) is not run again.
 */
export const EXIT = {
  ok: 0,
  /** the job failed and said why on its last line of standard error */
  failed: 1,
  /** an input was wrong; nothing started */
  invalidInput: 2,
  /** an error the program did not expect (Node's own exit code for one is 1, taken above) */
  crashed: 70,
} as const;

/** Whether a run ended in a crash, whose directory a `--recover` run salvages. */
export const crashed = (exit: { code: number | null }) =>
  exit.code !== EXIT.ok && exit.code !== EXIT.failed && exit.code !== EXIT.invalidInput;

/** `output.json`: the job's output_data. */
export const OUTPUT_FILE = 'output.json';

/**
 * `delivering`: written by the program once its file is finished and being delivered
 * (`{"file": path}`): the stop grace bounded finishing the file; the delivery gets its own time.
 */
export const DELIVERING_FILE = 'delivering';

/** Live captions of a job: each window counted once, as sent, dropped or empty. */
export interface CaptionStats {
  windows: number;
  sent: number;
  /** not captioned: waited or fell behind too long, still being recognised at the close, or failed */
  dropped: number;
  /** recognised as no words */
  empty: number;
  /** ms from a window's end to its caption being sent */
  p50DelayMs?: number;
  p95DelayMs?: number;
}

/** A recording posted to Mattermost, or kept in the artifacts directory (`file`). */
export type RecordingOutput =
  | { file_id: string; filename: string; duration_ms: number }
  | { file: string; duration_ms: number; partial?: boolean };

interface TranscriptSummary {
  segments: number;
  speakers: string[];
  duration_ms?: number;
  captions?: CaptionStats;
}

/** A transcript posted (`file_ids`: WebVTT and text) or kept (`files`). */
export type TranscribingOutput = TranscriptSummary & ({ file_ids: string[]; filename: string } | { files: string[] });

export interface CaptioningOutput {
  duration_ms: number;
  captions?: CaptionStats;
}

export interface JobOutput {
  recording: RecordingOutput;
  transcribing: TranscribingOutput;
  captioning: CaptioningOutput;
}

/** The environment of a job program: its type's inputs and its identity (runners add the rest). */
export function jobEnv(job: { id: string; type: JobType; input: InputData }, dir: string): Record<string, string> {
  return { ...inputEnv(job.type, job.input), [JOB_ENV.id]: job.id, [JOB_ENV.type]: job.type, [JOB_ENV.dir]: dir };
}

/** What output.json and the delivering marker may hold: a summary and a few paths. */
const MAX_JOB_FILE_BYTES = 1024 * 1024;
/** How deeply output.json may nest (what the job programs write nests 3 deep). */
const MAX_OUTPUT_DEPTH = 16;

/**
 * A JSON file a job program wrote in its directory, parsed; undefined when it is not there, not
 * JSON, or not a regular file of at most MAX_JOB_FILE_BYTES. A program in a container writes the
 * directory the worker then reads, as root where the worker runs as root: a link named like it
 * had the worker read (and rewrite) any file, and a FIFO held the worker's event loop for good.
 */
function readJobFile(dir: string, name: string): unknown {
  let fd: number | undefined;
  try {
    fd = openSync(join(dir, name), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    const stat = fstatSync(fd);
    if (!stat.isFile() || stat.size > MAX_JOB_FILE_BYTES) return undefined;
    return JSON.parse(readFileSync(fd, 'utf8'));
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Whether `value` nests at most `depth` objects or arrays deep. */
const shallow = (value: unknown, depth: number): boolean =>
  !value || typeof value !== 'object' || (depth > 0 && Object.values(value).every((v) => shallow(v, depth - 1)));

/** output.json of a job directory, when it holds a JSON object (nested at most MAX_OUTPUT_DEPTH deep). */
export function readOutput(dir: string): Record<string, unknown> | undefined {
  const data = readJobFile(dir, OUTPUT_FILE);
  return data && typeof data === 'object' && !Array.isArray(data) && shallow(data, MAX_OUTPUT_DEPTH)
    ? (data as Record<string, unknown>)
    : undefined;
}

/**
 * Writes a job's file as a new file: a link a program left under its name is replaced, not
 * followed (the worker rewrites output.json after a container's end).
 */
export function writeJobFile(dir: string, name: string, text: string): void {
  rmSync(join(dir, name), { force: true });
  writeFileSync(join(dir, name), text, { flag: 'wx' });
}

/** The file a job program says it is delivering, or undefined. */
export function readDelivering(dir: string): string | undefined {
  const data = readJobFile(dir, DELIVERING_FILE) as { file?: unknown } | undefined;
  return data && typeof data === 'object' ? String(data.file ?? '') : undefined;
}

/** The live-caption counts of a job's output, when it has them (for the service's metrics). */
export function captionCounts(output: Record<string, unknown> | undefined): CaptionStats | undefined {
  const c = output?.captions as Partial<CaptionStats> | undefined;
  return c && [c.sent, c.dropped, c.empty].every(Number.isInteger) ? (c as CaptionStats) : undefined;
}
