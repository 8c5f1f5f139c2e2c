// Wiring shared by every subcommand: Redis connections, stores, queues and the runner.
import { Redis } from 'ioredis';
import { type Config, ConfigError } from './config.js';
import { connect, keysFor } from './store/redis.js';
import { JobStore } from './store/jobs.js';
import { ClientStore, SessionStore } from './store/clients.js';
import { closeQueues, createQueues, type Queues } from './queue/queues.js';
import { ProcessRunner } from './runners/process.js';
import type { Runner } from './runners/runner.js';

export interface Services {
  redis: Redis;
  /** for BullMQ: blocking commands must never give up */
  bullConnection: Redis;
  store: JobStore;
  clients: ClientStore;
  sessions: SessionStore;
  queues: Queues;
  runner: Runner;
  close(): Promise<void>;
}

export function createRunner(config: Config): Runner {
  if (config.apiType === 'process') return new ProcessRunner(config.processPrograms);
  throw new ConfigError('JOBS_APITYPE', `the ${config.apiType} runner is not part of this build yet; use process`);
}

export function createServices(config: Config): Services {
  const runner = createRunner(config);
  const keys = keysFor(config.redisPrefix);
  const redis = connect(config.redisUrl);
  const bullConnection = connect(config.redisUrl, { maxRetriesPerRequest: null });
  const store = new JobStore(redis, keys, {
    succeededMs: config.succeededJobsRetention,
    failedMs: config.failedJobsRetention,
  });
  const queues = createQueues(bullConnection, config.redisPrefix);
  return {
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
  maxConcurrentJobs: config.maxConcurrentJobs,
  startTimeoutMs: config.startTimeoutSec * 1000,
  stopGraceMs: config.stopGraceSec * 1000,
  leaseMs: config.leaseSec * 1000,
  maxLogBytes: config.maxLogBytes,
  dataDir: config.dataDir,
  prefix: config.redisPrefix,
});
