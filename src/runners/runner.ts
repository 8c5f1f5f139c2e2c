// What a runner does for the worker: start one job's program and hand back a handle to signal it
// and await its end. The worker owns everything around it (slots, leases, stop and kill timing,
// logs), so each runner (process, docker, kubernetes) stays small and they all behave alike.
import { setTimeout as sleep } from 'node:timers/promises';
import { OUTPUT_FILE, readOutput, writeJobFile } from '../jobs/contract.js';
import type { JobRecord } from '../store/jobs.js';

export interface JobExit {
  /** exit code, or null when ended by a signal */
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RunningJob {
  readonly pid?: number;
  /** a container's mounts, [path in the container, path on the worker's host]: what its messages' paths are here */
  readonly mounts?: [string, string][];
  signal(sig: 'SIGTERM' | 'SIGKILL'): void;
  readonly exited: Promise<JobExit>;
}

export interface StartSpec {
  job: JobRecord;
  /** the job's environment, as the contract (src/jobs/contract.ts) names it */
  env: Record<string, string>;
  /** the job's working directory: partial media, log, output.json */
  dir: string;
  /** extra arguments: `--recover` asks the program to salvage what a crashed run left */
  args?: string[];
  onOutput(chunk: Buffer, stream: 'stdout' | 'stderr'): void;
}

/** What to do with a job's program found running: a live worker supervises it, or none does. */
export type Reconcile = (jobId: string) => Promise<'keep' | 'end'>;

export interface Runner {
  readonly kind: string;
  /** Why this runner cannot run the image, or null when it can. */
  check(imageName: string): string | null;
  start(spec: StartSpec): Promise<RunningJob>;
  /**
   * Runners whose programs outlive a worker (containers, Kubernetes Jobs) end those no live
   * worker supervises; returns their job ids. A child process dies with its worker instead.
   */
  reconcile?(decide: Reconcile): Promise<string[]>;
  /** Makes sure what these runner names need is there (images); says what is missing, or null. */
  prepare?(imageNames: string[]): Promise<string | null>;
}

/** How long the end of a program's log is awaited after its end: its last lines (a failure's reason) may come after it. */
export const LOG_END_WAIT_MS = 2_000;

/** A container's or pod's exit code as an exit: the engine and Kubernetes report a kill as 128 + the signal's number. */
export function exitOf(code: number): JobExit {
  const signal = code === 137 ? 'SIGKILL' : code === 143 ? 'SIGTERM' : null;
  return { code: signal ? null : code, signal };
}

/**
 * A program in a container names its files by the container's paths (`/artifacts/x.mp4`): its
 * output.json is rewritten with the paths they have where the worker runs, so that a job's record
 * says where its files are. `mounts`: [path in the container, path on the worker's host].
 */
export function hostPaths(dir: string, mounts: [string, string][]): void {
  const output = readOutput(dir);
  if (!output || mounts.length === 0) return;
  const host = (v: unknown): unknown => {
    if (typeof v === 'string') return hostText(v, mounts);
    if (Array.isArray(v)) return v.map(host);
    return v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, host(x)])) : v;
  };
  writeJobFile(dir, OUTPUT_FILE, JSON.stringify(host(output)));
}

/**
 * `text` with each path under a mount (the mount's path alone, or followed by `/…`) as it is on the
 * worker's host: in one pass, so that a host path is not taken for another mount's.
 */
export function hostText(text: string, mounts: [string, string][]): string {
  if (mounts.length === 0) return text;
  const host = new Map(mounts);
  const inside = mounts.map(([path]) => path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|');
  return text.replace(new RegExp(`(?<![\\w./-])(?:${inside})(?![\\w.-])`, 'g'), (path) => host.get(path)!);
}

/**
 * A call to a container engine or an API server, tried `attempts` times, 1, 2, 4… s apart: one
 * restarting or briefly unreachable must not be taken for the end of a program still running
 * (a --recover run would then share its directory). The last error when none succeeds.
 */
export async function tried<T>(work: () => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (err) {
      if (attempt === attempts) throw err;
      await sleep(1000 * 2 ** (attempt - 1));
    }
  }
}
