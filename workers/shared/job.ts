// What a job program gets from its worker: settings in its environment, the artifacts directory,
// SIGTERM to stop, JSON-lines files it appends as it goes, and media or models it downloads.
import { copyFileSync, createWriteStream, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * Where a job's artifacts go without Mattermost (or when delivery failed): ARTIFACTS_DIR, set by
 * the worker, or the job directory's artifacts/ when the program is run by hand. Copies `file`
 * there as `name` and returns its path there.
 */
export function keepArtifact(file: string, name: string): string {
  const dir = process.env.ARTIFACTS_DIR ?? join(process.env.JOB_DIR ?? '.', 'artifacts');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, name);
  copyFileSync(file, path);
  return path;
}

/** The worker's JOB_DIR (or another variable it sets); a clear error when absent. */
export function workerSetting(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required (the worker sets it)`);
  return value;
}

/** Resolves with why the job should stop: SIGTERM (stop, max duration, shutdown) or SIGINT. */
export const stopSignal = () => new Promise<string>((resolve) => {
  process.once('SIGTERM', () => resolve('stop requested'));
  process.once('SIGINT', () => resolve('interrupted'));
});

/** The records of a JSON-lines file the job appended to; a line cut short by a crash is skipped. */
export function readLines<T>(path: string): T[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter(Boolean).flatMap((l) => {
    try {
      return [JSON.parse(l) as T];
    } catch {
      return [];
    }
  });
}

/** Streams `url` (http or https) into `path`; rejects with the status when it is not a 2xx. */
export async function download(url: string, path: string): Promise<void> {
  const res = await fetch(url);
  if (!res.ok || !res.body) throw new Error(`GET ${url}: ${res.status} ${res.statusText}`);
  await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), createWriteStream(path));
}
