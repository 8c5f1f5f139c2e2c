// The Docker runner: a container per job run, on the engine of the worker's host. The job's
// directory on the worker's host is bind-mounted at /job (the worker reads output.json and the
// delivering marker from it, as with the process runner) and the artifacts directory at
// /artifacts. The container gets the contract's environment and nothing of the worker's; CPU,
// memory and process limits per job type; no capabilities, no new privileges, a read-only root
// with a /tmp in memory; the network the admin chose. It is removed after success and kept,
// with its directory, after a failure.
import { chownSync, mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import Docker from 'dockerode';
import { EXIT, JOB_ENV } from '../jobs/contract.js';
import { imageNameOf } from '../jobs/runner-image.js';
import type { JobType } from '../jobs/schema.js';
import {
  type JobExit,
  type Reconcile,
  type Runner,
  type RunningJob,
  type StartSpec,
  LOG_END_WAIT_MS,
  exitOf,
  hostPaths,
  tried,
} from './runner.js';

export interface DockerLimits {
  cpus: number;
  memoryMb: number;
}

export interface DockerRunnerOptions {
  /** runner name (`calls-recorder`, `calls-transcriber`) → local image */
  images: Record<string, string>;
  /** `host`, `none` or a network's name (DOCKER_NETWORK) */
  network: string;
  limits: Record<JobType, DockerLimits>;
  /** `uid:gid` the programs run as; their directories are given to it */
  user: string;
  /** a seccomp profile's JSON; Docker's default profile otherwise */
  seccompProfile?: string;
  /** labels every container with it: several services may share one engine */
  service: string;
  artifactsDir: string;
  socketPath?: string;
}

export const LABELS = {
  service: 'com.mattermost.calls-offloader.service',
  job: 'com.mattermost.calls-offloader.job',
  type: 'com.mattermost.calls-offloader.type',
} as const;

const IN_CONTAINER = { dir: '/job', artifacts: '/artifacts' };

export class DockerRunner implements Runner {
  readonly kind = 'docker';
  private readonly docker: Docker;
  /** the daemon's log driver: the admin's choice, capped only where it is json-file's default */
  private logDriver?: Promise<string | undefined>;

  constructor(private readonly opts: DockerRunnerOptions) {
    this.docker = new Docker({ socketPath: opts.socketPath ?? '/var/run/docker.sock' });
  }

  check(imageName: string): string | null {
    return this.opts.images[imageName] ? null : `the docker runner has no image for ${imageName} (JOBS_JOBIMAGES)`;
  }

  /** Each image on the engine, pulled when missing (where a registry is reachable). */
  async prepare(names: string[]): Promise<string | null> {
    const problems: string[] = [];
    for (const name of new Set(names)) {
      const image = this.opts.images[name];
      if (!image) {
        problems.push(`no image for ${name} (JOBS_JOBIMAGES)`);
        continue;
      }
      if (
        await this.docker
          .getImage(image)
          .inspect()
          .then(
            () => true,
            () => false,
          )
      )
        continue;
      const pulled = await this.pull(image);
      if (pulled)
        problems.push(
          `image ${image} is not on the Docker engine and could not be pulled (${pulled}); build it with docker/build-job-image.sh or load it`,
        );
    }
    return problems.length ? problems.join('; ') : null;
  }

  /** Pulls an image; the error's message, or null once it is there. */
  private async pull(image: string): Promise<string | null> {
    try {
      const stream = await this.docker.pull(image);
      await new Promise<void>((resolve, reject) =>
        this.docker.modem.followProgress(stream, (err) => (err ? reject(err) : resolve())),
      );
      return null;
    } catch (err) {
      return (err as Error).message.split('\n')[0]!.slice(0, 200);
    }
  }

  async start(spec: StartSpec): Promise<RunningJob> {
    const imageName = imageNameOf(spec.job.runner);
    const image = this.opts.images[imageName];
    if (!image) throw new Error(this.check(imageName)!);
    const recover = (spec.args ?? []).length > 0;
    const name = `calls-offloader-${spec.job.id}${recover ? '-recover' : ''}`;
    // A container of this name is a leftover of an earlier attempt the worker ended: never run beside it.
    await this.docker
      .getContainer(name)
      .remove({ force: true })
      .catch(() => undefined);
    this.giveToJob(spec.dir);
    this.giveToJob(this.opts.artifactsDir);

    const env = { ...spec.env, [JOB_ENV.dir]: IN_CONTAINER.dir, [JOB_ENV.artifacts]: IN_CONTAINER.artifacts };
    this.logDriver ??= this.docker.info().then(
      (info: { LoggingDriver?: string }) => info.LoggingDriver,
      () => undefined,
    );
    const limits = this.opts.limits[spec.job.type];
    const container = await this.docker.createContainer({
      name,
      Image: image,
      Cmd: spec.args?.length ? spec.args : undefined,
      Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      User: this.opts.user,
      WorkingDir: IN_CONTAINER.dir,
      Labels: { [LABELS.service]: this.opts.service, [LABELS.job]: spec.job.id, [LABELS.type]: spec.job.type },
      HostConfig: {
        Binds: [
          `${resolve(spec.dir)}:${IN_CONTAINER.dir}`,
          `${resolve(this.opts.artifactsDir)}:${IN_CONTAINER.artifacts}`,
        ],
        NetworkMode: this.opts.network,
        NanoCpus: Math.round(limits.cpus * 1e9),
        Memory: limits.memoryMb * 1024 * 1024,
        MemorySwap: limits.memoryMb * 1024 * 1024,
        PidsLimit: 512,
        CapDrop: ['ALL'],
        SecurityOpt: [
          'no-new-privileges',
          ...(this.opts.seccompProfile ? [`seccomp=${this.opts.seccompProfile}`] : []),
        ],
        ReadonlyRootfs: true,
        // The output reaches job.log through the attach; the daemon's own copy (json-file keeps
        // all of it by default) would grow with whatever a job prints, on the daemon's disk.
        ...((await this.logDriver) === 'json-file'
          ? { LogConfig: { Type: 'json-file', Config: { 'max-size': '8m', 'max-file': '1' } } }
          : {}),
        Tmpfs: { '/tmp': 'rw,nosuid,nodev,size=256m' },
        Init: true,
      },
    });
    const stream = await container.attach({ stream: true, stdout: true, stderr: true, logs: true });
    const out = new PassThrough();
    const err = new PassThrough();
    out.on('data', (c: Buffer) => spec.onOutput(c, 'stdout'));
    err.on('data', (c: Buffer) => spec.onOutput(c, 'stderr'));
    this.docker.modem.demuxStream(stream, out, err);
    const streamEnded = new Promise<void>((r) => stream.once('end', () => r()));
    await container.start();

    const mounts: [string, string][] = [
      [IN_CONTAINER.dir, resolve(spec.dir)],
      [IN_CONTAINER.artifacts, resolve(this.opts.artifactsDir)],
    ];
    const exited = (async (): Promise<JobExit> => {
      // The supervision awaits this: it must settle even if the engine loses the container.
      let StatusCode: number;
      try {
        ({ StatusCode } = (await tried(() => container.wait())) as { StatusCode: number });
      } catch (err) {
        spec.onOutput(Buffer.from(`the container could not be waited for: ${(err as Error).message}\n`), 'stderr');
        // ended here where the engine answers, so that the --recover run that salvages it does not
        // share the job's directory with it
        await container.remove({ force: true, v: true }).catch(() => undefined);
        hostPaths(spec.dir, mounts);
        return { code: EXIT.crashed, signal: null }; // an end the program never saw
      }
      await Promise.race([streamEnded, new Promise((r) => setTimeout(r, LOG_END_WAIT_MS))]); // the log is complete
      hostPaths(spec.dir, mounts);
      // Removed whatever the outcome: its output is in the job log, and its configuration holds the
      // job's tokens (AUTH_TOKEN, SFU_TOKEN), which `docker inspect` showed for as long as it stayed.
      await container.remove({ v: true }).catch(() => undefined);
      return exitOf(StatusCode);
    })();
    return {
      signal: (sig) => void container.kill({ signal: sig }).catch(() => undefined),
      exited,
      mounts,
    };
  }

  /**
   * Ends the containers of this service whose job no live worker supervises (its worker died):
   * they must not run on unseen. Returns the job ids of those it ended. Such a container that is not
   * running (its worker died before starting or removing it) is removed, with the tokens it holds.
   */
  async reconcile(decide: Reconcile): Promise<string[]> {
    const containers = await this.docker.listContainers({
      all: true,
      filters: { label: [`${LABELS.service}=${this.opts.service}`] },
    });
    const ended: string[] = [];
    for (const c of containers) {
      const jobId = c.Labels[LABELS.job] ?? '';
      if ((await decide(jobId)) === 'keep') continue;
      const container = this.docker.getContainer(c.Id);
      if (c.State !== 'running') {
        // ended, or created and never started (its worker died between the two)
        if (c.State !== 'restarting' && c.State !== 'removing')
          await container.remove({ v: true, force: true }).catch(() => undefined);
        continue;
      }
      await container.stop({ t: 10 }).catch(() => undefined);
      ended.push(jobId);
    }
    return ended;
  }

  /** The job's program runs as the configured user: it must be able to write its directory. */
  private giveToJob(dir: string): void {
    mkdirSync(dir, { recursive: true });
    const [uid, gid] = this.opts.user.split(':').map(Number);
    if (process.getuid?.() === 0 && Number.isInteger(uid)) chownSync(dir, uid!, Number.isInteger(gid) ? gid! : uid!);
  }
}
