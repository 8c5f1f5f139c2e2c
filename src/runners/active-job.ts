// The supervision of one admitted job, whichever runner starts its program: the job's directory
// and log, its environment (the contract's), the lease renewed until the outcome is recorded, the
// stop (SIGTERM, then SIGKILL after the grace, or after the delivery's own time), max_duration_sec,
// one `--recover` run after a crash, and the final status with the reason.
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { EXIT, JOB_ENV, crashed, RECOVER_ARG, jobEnv, readDelivering, readOutput } from '../jobs/contract.js';
import { ignoredInputKeys } from '../jobs/input-data.js';
import { type MediaSource, formatMediaSources } from '../jobs/media-access.js';
import { imageNameOf } from '../jobs/runner-image.js';
import type { JobStatus, JobType } from '../jobs/schema.js';
import type { Logger } from '../log.js';
import { mintToken } from '../sfu/token.js';
import type { JobRecord, JobStore } from '../store/jobs.js';
import { whileRedisDown } from '../store/redis.js';
import { type JobExit, type Runner, type RunningJob, hostText } from './runner.js';

export interface SupervisionOptions {
  stopGraceMs: number;
  /** after the grace, a program that is delivering its finished file gets this long more */
  deliveryTimeoutMs: number;
  leaseMs: number;
  maxLogBytes: number;
  /** the program's output written to job.log; past it only the tail in Redis goes on */
  maxLogFileBytes: number;
  dataDir: string;
  /** jobs on a call get the SFU's address and a bot token for it */
  sfuUrl: string;
  /** where a media_url job may read from, besides its site (JOBS_MEDIAURLALLOW) */
  mediaUrlAllow: MediaSource[];
  tokenSecret(): Promise<string>;
}

const botNames: Record<JobType, string> = {
  recording: 'Recording',
  transcribing: 'Transcription',
  captioning: 'Live captions',
};

const LOG_FLUSH_MS = 250;

/** One admitted job, from spawn to final status. */
export class ActiveJob {
  private handle?: RunningJob;
  private stopReason?: string;
  private signaled = false;
  private killed = false;
  /** the file a program was delivering when it was killed */
  private killedDelivering?: string;
  private lostLease = false;
  private timers: NodeJS.Timeout[] = [];
  private logFile?: WriteStream;
  private pendingLog: string[] = [];
  private pendingBytes = 0;
  /** the program's output written to job.log, and what the cap left out */
  private fileBytes = 0;
  private droppedBytes = 0;
  private flushing: Promise<void> = Promise.resolve();
  private writingLog = false;
  private lastStderrLine = '';

  constructor(
    private readonly rec: JobRecord,
    private readonly store: JobStore,
    private readonly runner: Runner,
    private readonly opts: SupervisionOptions,
    private readonly workerId: string,
    jobsDir: string,
    private readonly log: Logger,
    readonly dir = join(jobsDir, rec.id),
  ) {}

  async run(): Promise<void> {
    const { rec, store } = this;
    const problem = this.runner.check(imageNameOf(rec.runner));
    if (problem) {
      await store.appendLog(rec.id, `[offloader] ${problem}\n`, this.opts.maxLogBytes);
      await this.finish('failed', { error: problem });
      return;
    }
    try {
      await mkdir(this.dir, { recursive: true });
    } catch (err) {
      const error = `the job directory ${this.dir} could not be made: ${(err as Error).message}`;
      await store.appendLog(rec.id, `[offloader] ${error}\n`, this.opts.maxLogBytes);
      await this.finish('failed', { error });
      return;
    }
    this.logFile = createWriteStream(join(this.dir, 'job.log'), { flags: 'a' });
    // A full disk must not take the worker down: the log goes on in Redis, and says so there.
    this.logFile.on('error', (err) => {
      this.logFile?.destroy();
      this.logFile = undefined;
      this.note(`job.log cannot be written (${err.message}); the log goes on here only`);
    });
    this.note(`starting ${rec.runner} with the ${this.runner.kind} runner (worker ${this.workerId})`);
    const ignored = ignoredInputKeys(rec.type, rec.input);
    if (ignored.length) this.note(`input_data keys this service does not use, ignored: ${ignored.join(', ')}`);

    // The lease is renewed until the job is final, through the start (a busy Docker engine, a slow
    // Kubernetes API server) and a recovery run too: a lease that ran out meanwhile would have the
    // job failed as "the worker stopped responding".
    const renewal = setInterval(() => void this.renew(), Math.max(500, this.opts.leaseMs / 3));
    try {
      await this.supervise();
    } finally {
      clearInterval(renewal);
    }
  }

  /** The program from its start to the job's outcome. */
  private async supervise(): Promise<void> {
    const { rec, store } = this;
    try {
      this.handle = await this.runner.start(await this.spec());
    } catch (err) {
      const error = `the job program could not be started: ${(err as Error).message}`;
      this.note(error);
      await this.flushLog();
      await this.finish('failed', { error });
      return;
    }
    // lost while starting (Redis unreachable longer than the lease): the job is failed already
    if (this.lostLease) this.handle.signal('SIGKILL');
    const flushing = setInterval(() => void this.flushLog(), LOG_FLUSH_MS);
    this.timers.push(
      setTimeout(() => this.stop(`max_duration_sec (${rec.max_duration_sec} s) reached`), rec.max_duration_sec * 1000),
    );
    // Supervised from here whatever Redis does: a program whose job could not be marked running
    // is stopped, not left to run on unseen.
    const previous = await this.whileRedisDown('mark the job running', () =>
      store.transition(rec.id, ['starting'], 'running'),
    ).then(
      (r) => r.previous,
      (err: Error) => {
        this.stop(`the job could not be marked running: ${err.message}`);
        return undefined;
      },
    );
    if (this.stopReason || previous === 'stopping')
      this.stop(this.stopReason ?? 'stop requested before the job started');

    const exit = await this.handle.exited;
    for (const t of this.timers) clearInterval(t);
    this.note(describeExit(exit));
    if (crashed(exit) && !this.lostLease) await this.recover();
    await this.removeHalfKept();
    if (this.droppedBytes)
      this.note(
        `${this.droppedBytes} bytes of the program's output past JOBS_MAXLOGFILEBYTES (${this.opts.maxLogFileBytes}) are not in job.log; the log's tail is in GET /jobs/${this.rec.id}/logs`,
      );
    clearInterval(flushing);
    await this.flushLog();
    await new Promise((r) => (this.logFile ? this.logFile.end(r) : r(undefined)));
    if (this.lostLease) return; // the job was already failed by a sweeper; nothing to add

    const output = readOutput(this.dir);
    const fields: Record<string, string | number> = { exit_code: exit.code ?? 128 };
    if (output) fields.output = JSON.stringify(output);
    if (exit.code === EXIT.ok) await this.finish('succeeded', fields);
    else await this.finish('failed', { ...fields, error: this.failureReason(exit) });
  }

  private async spec(args?: string[]) {
    return {
      job: this.rec,
      env: {
        ...jobEnv(this.rec, this.dir),
        [JOB_ENV.artifacts]: resolve(this.opts.dataDir, 'artifacts'),
        ...(await this.sfuEnv()),
        ...(typeof this.rec.input.media_url === 'string'
          ? { [JOB_ENV.mediaUrlAllow]: formatMediaSources(this.opts.mediaUrlAllow) }
          : {}),
      },
      dir: this.dir,
      args,
      onOutput: (chunk: Buffer, stream: 'stdout' | 'stderr') => this.output(chunk, stream),
    };
  }

  /**
   * A program killed while it kept an artifact leaves it half-written beside its name
   * (keepArtifact writes `<name>.tmp` and renames it): removed once the job's last run has ended.
   * Nothing else sweeps the artifacts directory. The names of a job's artifacts hold its id.
   */
  private async removeHalfKept(): Promise<void> {
    const dir = resolve(this.opts.dataDir, 'artifacts');
    for (const name of await readdir(dir).catch(() => [] as string[]))
      if (name.endsWith('.tmp') && name.includes(this.rec.id)) await rm(join(dir, name), { force: true });
  }

  /**
   * After a crash (or a kill), the program gets one bounded run with `--recover` to salvage what
   * the failed run left on disk (a recorder assembles its captured tracks). The job still fails.
   */
  private async recover(): Promise<void> {
    this.note(`running the job program with ${RECOVER_ARG} to salvage what it left`);
    try {
      const run = await this.runner.start(await this.spec([RECOVER_ARG]));
      const timer = setTimeout(() => run.signal('SIGKILL'), this.opts.stopGraceMs);
      const exit = await run.exited;
      clearTimeout(timer);
      this.note(`recovery: ${describeExit(exit)}`);
    } catch (err) {
      this.note(`recovery could not run: ${(err as Error).message}`);
    }
  }

  /**
   * Where a job joins its call: with site_url, the Mattermost server there (the job has the bot's
   * auth_token); without, the bundled SFU, as a bot with a token for this call only.
   */
  private async sfuEnv(): Promise<Record<string, string>> {
    const callId = this.rec.input.call_id;
    if (typeof callId !== 'string' || typeof this.rec.input.site_url === 'string') return {};
    const token = mintToken(await this.opts.tokenSecret(), {
      call: callId,
      session: this.rec.id,
      user: `calls-${this.rec.type}-bot`,
      name: botNames[this.rec.type],
      role: 'bot',
      ttlSec: this.rec.max_duration_sec + 600,
    });
    return { [JOB_ENV.sfuUrl]: this.opts.sfuUrl, [JOB_ENV.sfuToken]: token };
  }

  /** Graceful stop: SIGTERM now, SIGKILL if the program is still there after the grace period. */
  stop(reason: string): void {
    if (!this.stopReason) {
      this.stopReason = reason;
      // best effort: the stop itself goes on (the outcome is recorded when the program ends)
      this.store
        .transition(this.rec.id, ['starting', 'running'], 'stopping')
        .catch((err) => this.log.warn({ err }, 'could not mark the job stopping'));
    }
    if (!this.handle || this.signaled) return;
    this.signaled = true;
    this.note(`${this.stopReason}: sending SIGTERM`);
    this.handle.signal('SIGTERM');
    // The grace bounds finishing the file; a program that has finished it and is delivering it
    // (its Mattermost may be down for a while) is given the delivery's own time.
    const grace = setTimeout(() => {
      const delivering = readDelivering(this.dir);
      if (delivering === undefined) {
        this.kill(`still running ${this.opts.stopGraceMs / 1000} s after SIGTERM`);
        return;
      }
      this.note(
        `the file is finished and being delivered (${delivering}): waiting up to ${this.opts.deliveryTimeoutMs / 1000} s more`,
      );
      this.timers.push(
        setTimeout(() => {
          this.killedDelivering = delivering;
          this.kill(`the delivery did not finish within ${this.opts.deliveryTimeoutMs / 1000} s`);
        }, this.opts.deliveryTimeoutMs),
      );
    }, this.opts.stopGraceMs);
    this.timers.push(grace);
  }

  private kill(why: string): void {
    this.killed = true;
    this.note(`${why}: sending SIGKILL`);
    this.handle!.signal('SIGKILL');
  }

  private async renew(): Promise<void> {
    let status: JobStatus | null;
    try {
      status = await this.store.renew(this.rec.id, this.workerId, this.opts.leaseMs);
    } catch (err) {
      this.log.warn({ err }, 'lease renewal failed; retrying');
      return;
    }
    if (status === null) {
      // Our lease ran out (this process was frozen or cut off from Redis) and the job was failed.
      // It must not go on beside whatever happens next.
      this.lostLease = true;
      this.note('lost the job slot lease: killing the job program');
      this.handle?.signal('SIGKILL');
    } else if (status === 'stopping') {
      this.stop('stop requested through the API');
    }
  }

  private failureReason(exit: JobExit): string {
    // a container's program names its files by the container's paths
    const here = (text: string) => hostText(text, this.handle?.mounts ?? []);
    if (this.killedDelivering !== undefined) {
      return `the delivery did not finish within ${this.opts.deliveryTimeoutMs / 1000} s after the file was finished (${this.stopReason}); the file is kept at ${here(this.killedDelivering)}`;
    }
    if (this.killed) {
      return `the job program did not stop within ${this.opts.stopGraceMs / 1000} s of SIGTERM (${this.stopReason}) and was killed`;
    }
    const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
    const detail = this.lastStderrLine ? `: ${here(this.lastStderrLine)}` : '';
    return `the job program ${how}${detail}`;
  }

  /**
   * Records the outcome. While Redis cannot be reached it tries again (the lease is renewed
   * meanwhile, so no sweeper takes the job for dead): a job that ended during an outage is
   * reported when Redis is back, not lost.
   */
  private async finish(status: 'succeeded' | 'failed', fields: Record<string, string | number>): Promise<void> {
    await this.whileRedisDown('record the outcome', () =>
      this.store.transition(this.rec.id, ['starting', 'running', 'stopping'], status, fields),
    );
    this.log.info({ status, ...fields }, 'job finished');
  }

  /** `work` on Redis, tried again while Redis cannot be reached (for about ten minutes). */
  private whileRedisDown<T>(what: string, work: () => Promise<T>): Promise<T> {
    return whileRedisDown(work, (err) =>
      this.log.warn({ err: err.message }, `could not ${what}: Redis unreachable; retrying`),
    );
  }

  private output(chunk: Buffer, stream: 'stdout' | 'stderr'): void {
    if (stream === 'stderr') {
      const lines = chunk
        .toString()
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean);
      if (lines.length) this.lastStderrLine = lines[lines.length - 1]!.slice(0, 500);
    }
    const text = chunk.toString();
    // The program's output is the stranger's to choose (a participant's media makes decoders
    // complain): job.log keeps its head, Redis its tail. Our own notes are few and always kept.
    const fits = this.droppedBytes === 0 && this.fileBytes + chunk.length <= this.opts.maxLogFileBytes;
    if (fits) this.fileBytes += chunk.length;
    else {
      if (this.droppedBytes === 0) this.note('job.log is full: the rest of the output is in Redis only (its tail)');
      this.droppedBytes += chunk.length;
    }
    this.append(text, fits);
  }

  /** A line of our own in the job log, so the log tells the whole story. */
  private note(text: string): void {
    this.append(`[offloader ${new Date().toISOString()}] ${text}\n`);
  }

  private append(text: string, toFile = true): void {
    if (toFile) this.logFile?.write(text);
    this.pendingLog.push(text);
    this.pendingBytes += text.length;
    // Redis keeps the tail only: while a flush waits on a slow Redis, no more than that is held here.
    if (this.pendingBytes > 2 * this.opts.maxLogBytes) {
      const tail = this.pendingLog.join('').slice(-this.opts.maxLogBytes);
      this.pendingLog = [tail];
      this.pendingBytes = tail.length;
    }
    if (this.pendingBytes > 64 * 1024) void this.flushLog();
  }

  /** One append to Redis at a time, taking all that is pending when it starts, until none is. */
  private flushLog(): Promise<void> {
    if (this.writingLog || this.pendingLog.length === 0) return this.flushing;
    this.writingLog = true;
    this.flushing = (async () => {
      while (this.pendingLog.length > 0) {
        const text = this.pendingLog.join('');
        this.pendingLog = [];
        this.pendingBytes = 0;
        await this.store
          .appendLog(this.rec.id, text, this.opts.maxLogBytes)
          .catch((err) => this.log.warn({ err }, 'could not store job log in Redis (job.log keeps it)'));
      }
    })().finally(() => (this.writingLog = false));
    return this.flushing;
  }
}

function describeExit(exit: JobExit): string {
  return exit.signal ? `job program ended by ${exit.signal}` : `job program exited with code ${exit.code}`;
}
