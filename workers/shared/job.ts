// What a job program gets from its worker: settings in its environment, the artifacts directory,
// SIGTERM to stop, JSON-lines files it appends as it goes, and media or models it downloads.
import { createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DELIVERING_FILE, EXIT, readDelivering } from '../../src/jobs/contract.js';
import type { FileSource } from './file-source.js';

/**
 * Where a job's artifacts go without Mattermost (or when delivery failed): ARTIFACTS_DIR, set by
 * the worker, or the job directory's artifacts/ when the program is run by hand. Writes `file`
 * there as `name` and returns its path there.
 */
export async function keepArtifact(file: FileSource, name: string): Promise<string> {
  const dir = process.env.ARTIFACTS_DIR ?? join(process.env.JOB_DIR ?? '.', 'artifacts');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, name);
  // Whole or not at all: a recovery keeps the recording so far, then more of it under the same name.
  await pipeline(file.read(0), createWriteStream(`${path}.tmp`));
  renameSync(`${path}.tmp`, path);
  return path;
}

/** The worker's JOB_DIR (or another variable it sets); a clear error when absent. */
export function workerSetting(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required (the worker sets it)`);
  return value;
}

/**
 * Tells the worker the file is finished and is being delivered: the stop grace bounded finishing
 * it; the delivery (retried while Mattermost is down) gets its own time (JOBS_DELIVERYTIMEOUTSEC).
 */
export function delivering(file: string): void {
  writeFileSync(join(workerSetting('JOB_DIR'), DELIVERING_FILE), JSON.stringify({ file }));
}

/**
 * Whether the run before this recovery died delivering `file` (its marker names it), finished:
 * `file` and the `others` delivered with it whole on disk, to be kept as they are.
 */
export const diedDelivering = (dir: string, file: string, ...others: string[]): boolean =>
  readDelivering(dir) === file && [file, ...others].every((f) => existsSync(f));

/**
 * Resolves with why the job should stop: SIGTERM (stop, max duration, shutdown) or SIGINT. Every
 * later one is heard too and changes nothing: the worker's death sends another (setpriv's
 * pdeathsig) while the job finishes after a stop, and Node's default for it killed the job mid-upload.
 */
export const stopSignal = () =>
  new Promise<string>((resolve) => {
    process.on('SIGTERM', () => resolve('stop requested'));
    process.on('SIGINT', () => resolve('interrupted'));
  });

/** Rejects with the stop's reason, raced against a step a stop must not wait for (the join: up to minutes). */
export const stopped = (stop: Promise<string>, during: string): Promise<never> =>
  stop.then((why) => Promise.reject(new Error(`${why} ${during}`)));

/** The records of a JSON-lines file the job appended to; a line cut short by a crash is skipped. */
export function readLines<T>(path: string): T[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as T];
      } catch {
        return [];
      }
    });
}

export interface DownloadLimits {
  /** why a URL (the first, or one redirected to) may not be fetched, or null when it may */
  refuse?: (url: string) => string | null;
  maxBytes?: number;
  /** for the whole transfer */
  timeoutMs?: number;
}

const MAX_REDIRECTS = 5;

/**
 * Streams `url` (http or https) into `path`, following at most 5 redirects, each checked again
 * by `refuse`; stops past `maxBytes` or `timeoutMs`. Errors say what went wrong without telling
 * more about the far side than its HTTP status.
 */
export async function download(url: string, path: string, limits: DownloadLimits = {}): Promise<void> {
  const signal = AbortSignal.timeout(limits.timeoutMs ?? 60 * 60_000);
  let at = url;
  for (let hop = 0; ; hop++) {
    const refusal = limits.refuse?.(at);
    if (refusal) throw new Error(refusal);
    const res = await fetch(at, { redirect: 'manual', signal }).catch((err: Error) => {
      throw new Error(err.name === 'TimeoutError' ? 'the download took too long' : 'the source could not be reached');
    });
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location) {
      if (hop >= MAX_REDIRECTS) throw new Error(`more than ${MAX_REDIRECTS} redirects`);
      at = new URL(location, at).toString();
      continue;
    }
    if (!res.ok || !res.body) throw new Error(`the source answered ${res.status} ${res.statusText}`);
    const max = limits.maxBytes ?? Infinity;
    if (Number(res.headers.get('content-length') ?? 0) > max) throw new Error(`the file is larger than ${max} bytes`);
    let bytes = 0;
    const counted = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream).on('data', (c: Buffer) => {
      bytes += c.length;
      if (bytes > max) counted.destroy(new Error(`the file is larger than ${max} bytes`));
    });
    await pipeline(counted, createWriteStream(path));
    return;
  }
}

/**
 * Runs a job program's main: EXIT.ok when it returns; an error it did not expect, thrown from it or
 * anywhere else (an event handler, a promise nobody awaited), is a crash (EXIT.crashed), which the
 * worker follows with a `--recover` run. A failure the program handles exits EXIT.failed itself.
 */
export function runMain(name: string, main: () => Promise<void>): void {
  const crash = (err: unknown) => {
    process.stderr.write(`${name} failed: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(EXIT.crashed);
  };
  process.on('uncaughtException', crash);
  process.on('unhandledRejection', crash);
  main().then(() => process.exit(EXIT.ok), crash);
}

/**
 * The first write of a job's files that failed (a full disk): the job stops and finishes with what
 * is on disk, instead of the error escaping from a media or signalling callback as a crash.
 */
export class WriteFailure {
  private report: (why: string) => void = () => undefined;
  /** Resolves with why the job must stop, once a write failed. */
  readonly stopped = new Promise<string>((resolve) => (this.report = resolve));

  /** Runs `write`; an error stops the job. */
  guard(what: string, write: () => void): void {
    try {
      write();
    } catch (err) {
      this.fail(what, err);
    }
  }

  fail(what: string, err: unknown): void {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    this.report(`${what} could not be written (${code}); stopping with what is on disk`);
  }
}

/**
 * `started` (the start's report, retried for minutes while the plugin refuses it), waited for at
 * most 30 s: a failure is reported after it where it can be, and within the stop's grace.
 */
export const reportedOrLate = (started: Promise<unknown>) =>
  Promise.race([started, new Promise((r) => setTimeout(r, 30_000).unref())]);
