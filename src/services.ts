// Wiring shared by every subcommand: Redis connections, stores, queues and the runner.
import type { Redis } from 'ioredis';
import { type Config, ConfigError, sfuBaseUrl, variables } from './config.js';
import { urlHost } from './url-host.js';
import { connect, keysFor, sharedSecret } from './store/redis.js';
import { JobStore } from './store/jobs.js';
import { ClientStore, SessionStore } from './store/clients.js';
import { closeQueues, createQueues } from './queue/queues.js';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ProcessRunner } from './runners/process.js';
import { DockerRunner } from './runners/docker.js';
import { KubernetesRunner } from './runners/kubernetes.js';
import type { Runner } from './runners/runner.js';
import { activeStatuses } from './jobs/schema.js';
import type { Logger } from './log.js';
import type { AddressInfo } from 'node:net';
import { type ApiDeps, buildServer } from './api/server.js';
import { Sweeper } from './queue/sweeper.js';
import { JobWorker } from './queue/worker.js';
import { Sfu } from './sfu/server/server.js';
import { joinTokenPolicy } from './sfu/server/policy.js';
import { useNativeSrtp } from './sfu/srtp-native.js';

export interface Services extends Omit<ApiDeps, 'config' | 'log'> {
  /** for BullMQ: blocking commands must never give up */
  bullConnection: Redis;
  close(): Promise<void>;
}

export function createRunner(config: Config): Runner {
  if (config.apiType === 'process') return new ProcessRunner(config.processPrograms);
  if (config.apiType === 'docker') {
    return new DockerRunner({
      images: config.jobImages,
      network: config.dockerNetwork,
      limits: config.dockerLimits,
      user: config.dockerUser,
      seccompProfile: config.dockerSeccompProfile ? readFileSync(config.dockerSeccompProfile, 'utf8') : undefined,
      service: config.redisPrefix,
      artifactsDir: resolve(config.dataDir, 'artifacts'),
      socketPath: config.dockerSocket,
    });
  }
  return new KubernetesRunner({
    namespace: config.k8sNamespace,
    images: config.jobImages,
    resources: config.k8sResources,
    tolerations: config.k8sTolerations,
    nodeSelector: config.k8sNodeSelector,
    sysctls: config.k8sSysctls,
    claimName: config.k8sClaim || undefined,
    dataDir: resolve(config.dataDir),
    deadlineMarginSec: config.stopGraceSec + config.deliveryTimeoutSec + 300,
    ttlSecondsAfterFinished: config.k8sTtlSec,
    service: config.redisPrefix,
  });
}

export function createServices(config: Config, log: Logger): Services {
  const runner = createRunner(config);
  const keys = keysFor(config.redisPrefix);
  const onError = (err: Error) => log.error({ err: err.message }, 'redis connection lost; reconnecting');
  const redis = connect(config.redisUrl, onError);
  const bullConnection = connect(config.redisUrl, onError, { maxRetriesPerRequest: null });
  const store = new JobStore(redis, keys, {
    succeededMs: config.succeededJobsRetention,
    failedMs: config.failedJobsRetention,
  });
  const queues = createQueues(bullConnection, config.redisPrefix, onError);
  let secret: Promise<string> | undefined;
  return {
    tokenSecret: () =>
      (secret ??= config.sfuTokenSecret
        ? Promise.resolve(config.sfuTokenSecret)
        : sharedSecret(redis, keys.sfuSecret).catch((err) => {
            secret = undefined; // try Redis again next time
            throw err;
          })),
    redis,
    bullConnection,
    store,
    clients: new ClientStore(redis, keys),
    sessions: new SessionStore(redis, keys, config.sessionExpirationMinutes * 60_000),
    queues,
    runner,
    async close() {
      await closeQueues(queues);
      await Promise.all([redis.quit().catch(() => undefined), bullConnection.quit().catch(() => undefined)]);
    },
  };
}

export const workerOptions = (config: Config) => ({
  sfuUrl: sfuBaseUrl(config),
  maxConcurrentJobs: config.maxConcurrentJobs,
  startTimeoutMs: config.startTimeoutSec * 1000,
  queueTimeoutMs: config.queueTimeoutSec * 1000,
  stopGraceMs: config.stopGraceSec * 1000,
  deliveryTimeoutMs: config.deliveryTimeoutSec * 1000,
  leaseMs: config.leaseSec * 1000,
  maxLogBytes: config.maxLogBytes,
  maxLogFileBytes: config.maxLogFileBytes,
  dataDir: config.dataDir,
  prefix: config.redisPrefix,
  mediaUrlAllow: config.mediaUrlAllow,
});

/** `listen()`, its failure (a name that does not resolve, a port taken) told as the setting's. */
const listening = <T>(variable: string, at: { host: string; port: number }, listen: () => Promise<T>): Promise<T> =>
  listen().catch((err: NodeJS.ErrnoException) => {
    throw new ConfigError(variable, `cannot listen on ${at.host}:${at.port}: ${err.code ?? err.message}`);
  });

/** An API instance with its sweeper, listening: what `calls-offloader api` runs. */
export async function startApiInstance(config: Config, log: Logger) {
  const services = createServices(config, log);
  const { app } = await buildServer({ config, log, ...services });
  const sweeper = new Sweeper(services.store, workerOptions(config), log);
  sweeper.start();
  const close = async () => {
    await app.close();
    await sweeper.stop();
    await services.close();
  };
  await listening(variables.listen.name, config.listen, () =>
    app.listen({ host: config.listen.host, port: config.listen.port }),
  ).catch(async (err) => {
    await close().catch(() => undefined);
    throw err;
  });
  const { port } = app.server.address() as AddressInfo;
  return {
    app,
    services,
    url: `${config.tlsEnable ? 'https' : 'http'}://${urlHost(config.listen.host)}:${port}`,
    close,
  };
}

/** A worker with its sweeper: what `calls-offloader worker` runs. */
export async function startWorkerInstance(config: Config, log: Logger) {
  const services = createServices(config, log);
  const worker = new JobWorker(
    services.store,
    services.runner,
    services.bullConnection,
    { ...workerOptions(config), tokenSecret: services.tokenSecret },
    log,
  );
  await worker.start();
  const sweeper = new Sweeper(
    services.store,
    {
      ...workerOptions(config),
      jobsDir: worker.jobsDir,
      dirRetentionMs: Math.min(config.failedJobsRetention, config.succeededJobsRetention),
    },
    log,
  );
  sweeper.start();
  return {
    worker,
    sweeper,
    services,
    async close() {
      await worker.close();
      await sweeper.stop();
      await services.close();
    },
  };
}

/** The bundled SFU: what `calls-offloader sfu` runs. */
export async function startSfuInstance(config: Config, log: Logger) {
  // Redis for the shared token secret and for whether a bot's job still runs.
  const redis = connect(config.redisUrl, (err) => log.error({ err: err.message }, 'redis connection lost'));
  const keys = keysFor(config.redisPrefix);
  const secret = config.sfuTokenSecret || (await sharedSecret(redis, keys.sfuSecret));
  const jobRunning = async (jobId: string) => {
    const status = await redis.hget(keys.job(jobId), 'status');
    return status !== null && (activeStatuses as readonly string[]).includes(status);
  };
  const srtp = useNativeSrtp(config.sfuNativeSrtp);
  const sfu = new Sfu({
    host: config.sfuListen.host,
    port: config.sfuListen.port,
    ice: {
      bindAddress: config.sfuIceAddress,
      announce: config.sfuIceHostOverride || undefined,
      portRange: config.sfuIcePortRange,
    },
    policy: joinTokenPolicy(secret, jobRunning),
    maxCallParticipants: config.sfuMaxCallParticipants,
    trustedProxies: config.sfuTrustedProxies,
    log,
  });
  const close = async () => {
    await sfu.close();
    await redis.quit().catch(() => undefined);
  };
  const url = await listening(variables.sfuListen.name, config.sfuListen, () => sfu.listen()).catch(async (err) => {
    await close();
    throw err;
  });
  return { sfu, url, srtp, close };
}
