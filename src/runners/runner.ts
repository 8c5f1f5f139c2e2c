// What a runner does for the worker: start one job's program and hand back a handle to signal it
// and await its end. The worker owns everything around it (slots, leases, stop and kill timing,
// logs), so each runner (process, docker, kubernetes) stays small and they all behave alike.
import type { JobRecord } from '../store/jobs.js';
import { inputEnv } from '../jobs/input-data.js';

export interface JobExit {
  /** exit code, or null when ended by a signal */
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RunningJob {
  readonly pid?: number;
  signal(sig: 'SIGTERM' | 'SIGKILL'): void;
  readonly exited: Promise<JobExit>;
}

export interface StartSpec {
  job: JobRecord;
  /** the job type's inputs as upper-cased variables, plus JOB_ID, JOB_TYPE and JOB_DIR */
  env: Record<string, string>;
  /** the job's working directory: partial media, log, output.json */
  dir: string;
  /** extra arguments: `--recover` asks the program to salvage what a crashed run left */
  args?: string[];
  onOutput(chunk: Buffer, stream: 'stdout' | 'stderr'): void;
}

export interface Runner {
  readonly kind: string;
  /** Why this runner cannot run the image, or null when it can. */
  check(imageName: string): string | null;
  start(spec: StartSpec): Promise<RunningJob>;
}

/** The job type's inputs as upper-cased environment variables (`site_url` → `SITE_URL`), and the job's identity. */
export function jobEnv(job: JobRecord, dir: string): Record<string, string> {
  const env = inputEnv(job.type, job.input);
  env.JOB_ID = job.id;
  env.JOB_TYPE = job.type;
  env.JOB_DIR = dir;
  return env;
}
