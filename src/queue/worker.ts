// The worker: takes jobs from the queues, admits each into one of the cluster-wide job slots,
// runs it with the runner, and sees it to a final status. One job's life here:
//   queued --acquire--> starting --spawned--> running --stop/max duration--> stopping --exit--> final
// The slot is a lease in Redis that this worker renews; if the worker dies, the lease runs out,
// a sweeper fails the job, and another worker BullMQ hands it to finds it no longer queued.
import { chmod, mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { DelayedError, Worker, type ConnectionOptions, type Job as BullJob } from 'bullmq';
import type { Redis } from 'ioredis';
import { jobTypes } from '../jobs/schema.js';
import { type JobRecord, type JobStore, isActive } from '../store/jobs.js';
import { whileRedisDown } from '../store/redis.js';
import type { Runner } from '../runners/runner.js';
import { ActiveJob, type SupervisionOptions } from '../runners/active-job.js';
import type { Logger } from '../log.js';
import { startTimeoutReason, waitLimitMs } from './sweeper.js';

export interface WorkerOptions extends SupervisionOptions {
  maxConcurrentJobs: number;
  startTimeoutMs: number;
  queueTimeoutMs: number;
  prefix: string;
}

/** A job waiting for a slot asks again at least this often, besides when one is released. */
const SLOT_POLL_MS = 500;
const FILE_JOB_WAIT_MS = 5000;

export class JobWorker {
  readonly id = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  private readonly workers: Worker[] = [];
  private reconciling?: NodeJS.Timeout;
  private readonly active = new Map<string, ActiveJob>();
  private subscriber?: Redis;
  /** jobs waiting for a slot, woken when one is released anywhere */
  private readonly waiters = new Set<() => void>();
  private closing = false;

  constructor(
    private readonly store: JobStore,
    private readonly runner: Runner,
    private readonly connection: ConnectionOptions & Redis,
    private readonly opts: WorkerOptions,
    private readonly log: Logger,
  ) {}

  get jobsDir(): string {
    return resolve(this.opts.dataDir, 'jobs');
  }

  async start(): Promise<void> {
    // Recordings and transcripts are the call's: no other user of the host reads them (a job's own
    // directory is made inside, and given to a container's user by the Docker runner).
    for (const dir of [this.jobsDir, resolve(this.opts.dataDir, 'artifacts')]) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await chmod(dir, 0o700).catch(() => undefined); // made before, or not ours (a shared volume)
    }
    // Stops asked through any API instance arrive here; the lease renewal also reports them, so
    // a missed message only delays a stop by one renewal.
    const { stopChannel, slotFreedChannel } = this.store.keys;
    this.subscriber = this.connection.duplicate();
    await this.subscriber.subscribe(stopChannel, slotFreedChannel);
    this.subscriber.on('message', (channel, id: string) => {
      if (channel === stopChannel) this.active.get(id)?.stop('stop requested through the API');
      else this.wakeWaiters();
    });

    for (const type of jobTypes) {
      const worker = new Worker<{ id: string }>(type, (job, token) => this.process(job, token), {
        connection: this.connection,
        prefix: `${this.opts.prefix}:bull`,
        concurrency: this.opts.maxConcurrentJobs,
        // A job whose worker died (or lost its BullMQ lock in a Redis outage) while it waited for a
        // slot is handed out again: admission starts only a queued job, so none runs twice.
        maxStalledCount: 1_000_000,
      });
      worker.on('error', (err) => this.log.error({ err: err.message }, 'queue worker error'));
      this.workers.push(worker);
    }
    this.log.info({ worker: this.id, runner: this.runner.kind }, 'worker started');
    if (this.runner.reconcile) {
      await this.reconcile();
      this.reconciling = setInterval(() => void this.reconcile(), this.opts.leaseMs);
      this.reconciling.unref();
    }
  }

  /**
   * Programs that outlive their worker (containers) and that no live worker supervises are
   * ended: a job whose worker died is failed by a sweeper and must not go on unseen. A job is
   * supervised when this worker runs it, or while its record is not final (another worker's).
   */
  private async reconcile(): Promise<void> {
    try {
      // A lease that ran out is not enough: after a Redis outage every lease has, and the workers
      // renew them within a lease (store.expiredLeases). A sweeper fails a job whose worker died.
      const ended = await this.runner.reconcile!(async (jobId) => {
        if (this.active.has(jobId)) return 'keep';
        const rec = await this.store.get(jobId);
        return rec && isActive(rec.status) ? 'keep' : 'end';
      });
      for (const id of ended) {
        this.log.warn({ job: id }, 'ended a job program no live worker supervises');
        await this.store.appendLog(
          id,
          `[offloader ${new Date().toISOString()}] worker ${this.id} ended this job's ${this.runner.kind} program: no live worker supervised it\n`,
          this.opts.maxLogBytes,
        );
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'reconciling job programs failed; trying again');
    }
  }

  /** Stops taking jobs, stops the running ones gracefully and waits for them to finish. */
  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.reconciling);
    this.wakeWaiters();
    const closing = this.workers.map((w) => w.close());
    for (const job of this.active.values()) job.stop('the worker is shutting down');
    await Promise.all(closing);
    await this.subscriber?.quit().catch(() => undefined);
  }

  /** Jobs of this worker waiting for a slot. */
  get waiting(): number {
    return this.waiters.size;
  }

  private wakeWaiters(): void {
    for (const wake of this.waiters) wake();
    this.waiters.clear();
  }

  /** Resolves when a slot is released anywhere, or after `ms` (a missed message costs only that). */
  private slotFreed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        resolve();
      };
      // a waiter whose time ran out leaves the list: jobs waiting for hours otherwise left one per poll
      const timer = setTimeout(() => {
        this.waiters.delete(wake);
        resolve();
      }, ms);
      this.waiters.add(wake);
    });
  }

  private async process(bullJob: BullJob<{ id: string }>, token?: string): Promise<void> {
    const { id } = bullJob.data;
    // A Redis that goes away while the job waits is waited for: a throw here failed the job in
    // BullMQ and left its record queued until its deadline, failed then with a reason not true.
    const rec = await whileRedisDown(
      () => this.admit(bullJob, token),
      (err) =>
        this.log.warn({ job: id, err: err.message }, 'Redis unreachable while the job waits for a slot; retrying'),
    );
    if (!rec) return;
    const job = new ActiveJob(
      rec,
      this.store,
      this.runner,
      this.opts,
      this.id,
      this.jobsDir,
      this.log.child({ job: id }),
    );
    this.active.set(id, job);
    try {
      await job.run();
    } finally {
      this.active.delete(id);
    }
  }

  /** Waits for a slot and takes it: the job's record once admitted, or nothing (not this worker's to run now). */
  private async admit(bullJob: BullJob<{ id: string }>, token?: string): Promise<JobRecord | undefined> {
    const { id } = bullJob.data;
    const rec = await this.store.get(id);
    if (!rec) return;
    // The next job in line waits here for a slot and takes it as soon as one is released. A job
    // on a finished file goes back to the queue after a while instead, so it holds no place.
    const waitUntil = Date.now() + (rec.live ? Infinity : FILE_JOB_WAIT_MS);
    const limit = waitLimitMs(rec.live, this.opts);
    /** Back to BullMQ, to be handed out again in `ms`. */
    const later = async (ms: number): Promise<never> => {
      await bullJob.moveToDelayed(Date.now() + ms, token);
      throw new DelayedError();
    };
    for (;;) {
      // a closing worker takes no job: another worker (or this one's successor) will
      if (this.closing) return later(1000);
      const admission = await this.store.acquire(id, this.opts.maxConcurrentJobs, this.opts.leaseMs, this.id);
      if (admission === 'gone') return;
      if (admission === 'admitted') {
        if (!this.closing) break;
        // close() came while the slot was asked for: the job goes back, not started
        const status = await this.store.requeue(id, this.id, rec.created_at + limit);
        if (status === 'stopping') break; // a stop came meanwhile too: the ActiveJob stops it at its start
        if (status !== 'queued') return; // failed meanwhile (its lease swept)
        return later(1000);
      }
      if ((await this.store.clock()) - rec.created_at > limit) {
        const error = startTimeoutReason(limit, await this.store.runningCount(), this.opts.maxConcurrentJobs);
        await this.store.transition(id, ['queued'], 'failed', { error });
        return;
      }
      if (Date.now() > waitUntil) return later(FILE_JOB_WAIT_MS);
      await this.slotFreed(SLOT_POLL_MS);
    }
    return rec;
  }
}
