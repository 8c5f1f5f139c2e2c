// Housekeeping that every API instance and worker runs; each step is a compare-and-set in Redis,
// so it does not matter how many run at once.
//  - a job whose worker stopped renewing its lease is failed (the worker died: never run twice),
//    but not for a lease that ran out while Redis itself was away (store.expiredLeases);
//  - a job still queued after its wait limit (the start timeout for a live job, the queue timeout
//    for a finished recording's transcription) is failed with the reason;
//  - finished jobs past their retention are deleted (a worker also removes their directories, once
//    unchanged for the shortest retention: a Redis that lost its data does not take them at once).
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { activeStatuses } from '../jobs/schema.js';
import type { JobStore } from '../store/jobs.js';
import type { Logger } from '../log.js';

export interface SweeperOptions {
  maxConcurrentJobs: number;
  startTimeoutMs: number;
  queueTimeoutMs: number;
  leaseMs: number;
  maxLogBytes: number;
  /** set in workers: job directories whose record is gone are removed */
  jobsDir?: string;
  /** the shortest retention: a directory changed more recently is kept even without its record (a Redis that lost its data) */
  dirRetentionMs?: number;
  intervalMs?: number;
}

type WaitLimits = Pick<SweeperOptions, 'startTimeoutMs' | 'queueTimeoutMs'>;

/** How long a job may stay queued: a live call does not wait; a finished file may. */
export const waitLimitMs = (live: boolean, opts: WaitLimits) => (live ? opts.startTimeoutMs : opts.queueTimeoutMs);

export function startTimeoutReason(limitMs: number, running: number, max: number): string {
  const s = Math.round(limitMs / 1000);
  const setting = limitMs >= 60_000 && s % 60 === 0 ? `${s / 60} min` : `${s} s`;
  return running >= max
    ? `could not start within ${setting}: all ${max} job slots (JOBS_MAXCONCURRENTJOBS) stayed busy`
    : `no worker took the job within ${setting}: is a worker running against this Redis?`;
}

export class Sweeper {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private lastDirSweep = 0;

  constructor(
    private readonly store: JobStore,
    private readonly opts: SweeperOptions,
    private readonly log: Logger,
  ) {}

  start(): void {
    const interval = this.opts.intervalMs ?? Math.min(1000, this.opts.leaseMs / 3);
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = this.sweep()
        .catch((err) => this.log.warn({ err }, 'sweep failed'))
        .finally(() => (this.running = undefined));
    }, interval);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** `now`: Redis' clock unless given (tests move time on). */
  async sweep(at?: number): Promise<void> {
    const { store, opts } = this;
    const now = at ?? (await store.clock());
    for (const { id, worker = 'unknown' } of await store.getMany(await store.expiredLeases(now, opts.leaseMs))) {
      // the worker's id is host:pid:nonce; the files stay on that host
      const error = `the worker running this job (${worker}) stopped responding (no lease renewal for ${Math.round(opts.leaseMs / 1000)} s); the job was abandoned: its log is kept, and what it wrote stays in JOBS_DATADIR/jobs/${id} on ${worker.split(':')[0]}`;
      const { applied } = await store.transition(id, activeStatuses, 'failed', { error }, now);
      if (applied) {
        this.log.warn({ job: id }, 'job failed: its worker stopped responding');
        await store.appendLog(id, `[offloader ${new Date(now).toISOString()}] ${error}\n`, opts.maxLogBytes);
      }
    }

    const late = await store.queuedPastDeadline(now);
    if (late.length > 0) {
      const running = await store.runningCount();
      for (const job of await store.getMany(late)) {
        const error = startTimeoutReason(waitLimitMs(job.live, opts), running, opts.maxConcurrentJobs);
        if ((await store.transition(job.id, ['queued'], 'failed', { error })).applied)
          this.log.warn({ job: job.id }, error);
      }
    }

    for (const id of await store.retentionEnded(now)) await store.purge(id);

    if (opts.jobsDir && now - this.lastDirSweep > 60_000) {
      this.lastDirSweep = now;
      await this.sweepDirectories(opts.jobsDir, now);
    }
    await store.swept();
  }

  private async sweepDirectories(jobsDir: string, now: number): Promise<void> {
    const names = await readdir(jobsDir).catch(() => [] as string[]);
    for (const name of names) {
      if (!/^[a-z0-9]{26}$/.test(name)) continue;
      const dir = join(jobsDir, name);
      const changed = (await stat(dir).catch(() => undefined))?.mtimeMs ?? 0;
      if (now - changed < (this.opts.dirRetentionMs ?? 0)) continue;
      if (!(await this.store.get(name))) await rm(dir, { recursive: true, force: true });
    }
  }
}
