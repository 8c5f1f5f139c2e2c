// Where a job's artifacts go without Mattermost (or when delivery failed): ARTIFACTS_DIR, set by
// the worker, or the job directory's artifacts/ when the program is run by hand.
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

/** Copies `file` into the artifacts directory as `name`; returns its path there. */
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
