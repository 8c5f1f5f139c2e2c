// One place that knows how to reach Redis and how our keys are named: every key lives under the
// configured prefix so that several deployments (or test runs) can share one server.
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';

export function connect(url: string, onError: (err: Error) => void, options: RedisOptions = {}): Redis {
  // BullMQ needs maxRetriesPerRequest: null on the connections it blocks on; the rest of the
  // service wants a quick error instead of a request that waits for Redis forever.
  const redis = new Redis(url, { enableOfflineQueue: true, maxRetriesPerRequest: 2, ...options });
  // ioredis reconnects by itself; one line per outage is enough.
  let down = false;
  redis.on('error', (err) => {
    if (!down) onError(err);
    down = true;
  });
  redis.on('ready', () => (down = false));
  return redis;
}

/** Whether an error says Redis cannot be reached right now (rather than that a command failed). */
export function isRedisDown(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: string }).code;
  return (
    err.name === 'MaxRetriesPerRequestError' ||
    /^Connection is closed|Stream isn't writeable/.test(err.message) ||
    code === 'ECONNREFUSED' ||
    code === 'ECONNRESET' ||
    code === 'ETIMEDOUT'
  );
}

/** Attempts at a piece of work while Redis is unreachable: about ten minutes of them. */
const REDIS_ATTEMPTS = 130;

/** `work`, tried again while Redis cannot be reached; `onDown` hears the first failure. */
export async function whileRedisDown<T>(work: () => Promise<T>, onDown?: (err: Error) => void): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await work();
    } catch (err) {
      if (!isRedisDown(err) || attempt >= REDIS_ATTEMPTS) throw err;
      if (attempt === 0) onDown?.(err as Error);
      await sleep(Math.min(5000, 250 * 2 ** attempt));
    }
  }
}

export type Keys = ReturnType<typeof keysFor>;

export function keysFor(prefix: string) {
  return {
    prefix,
    job: (id: string) => `${prefix}:job:${id}`,
    log: (id: string) => `${prefix}:job:${id}:log`,
    /** every job by created_at (admin listing) */
    jobs: `${prefix}:jobs`,
    clientJobs: (clientId: string) => `${prefix}:client:${clientId}:jobs`,
    /** the calls a client has claimed (first token or job on them), by when each claim runs out */
    clientCalls: (clientId: string) => `${prefix}:client:${clientId}:claims`,
    /** the client a call belongs to */
    callOwner: (callId: string) => `${prefix}:call:${callId}:owner`,
    /** what callOwner puts before the call id, for scripts that build owner keys of their own */
    callOwnerPrefix: `${prefix}:call:`,
    /** the Mattermost site each job type of a client is pinned to (first use) */
    clientSites: (clientId: string) => `${prefix}:client:${clientId}:sites`,
    /** queued jobs by created_at (start timeout) */
    queued: `${prefix}:queued`,
    /** admitted jobs by lease expiry: the concurrency semaphore */
    slots: `${prefix}:slots`,
    /** when sweeps last ran and since when without a gap (Redis' clock): after an outage, leases wait */
    sweeps: `${prefix}:sweeps`,
    /** finished jobs by the time their retention ends */
    finished: `${prefix}:finished`,
    clients: `${prefix}:clients`,
    /** unfinished (queued or running) jobs per client: the per-client quota */
    openJobs: `${prefix}:open-jobs`,
    session: (tokenHash: string) => `${prefix}:session:${tokenHash}`,
    /** a client's session keys, newest first: the oldest past the cap are revoked */
    clientSessions: (clientId: string) => `${prefix}:client-sessions:${clientId}`,
    outcomes: `${prefix}:stats:outcomes`,
    durations: (type: string) => `${prefix}:stats:duration:${type}`,
    /** live caption windows of finished jobs: captioned, dropped (recognition fell behind), empty */
    captions: `${prefix}:stats:captions`,
    sfuSecret: `${prefix}:sfu:token-secret`,
    /** pub/sub channel: job ids to stop */
    stopChannel: `${prefix}:control:stop`,
    /** pub/sub channel: a job slot was released */
    slotFreedChannel: `${prefix}:control:slot-freed`,
  };
}

/** Registers a Lua script on a connection and returns a typed caller (EVALSHA with fallback). */
export function script<R>(redis: Redis, name: string, numberOfKeys: number, lua: string) {
  redis.defineCommand(name, { numberOfKeys, lua });
  const call = (redis as unknown as Record<string, (...args: (string | number)[]) => Promise<R>>)[name]!.bind(redis);
  return (keys: string[], args: (string | number)[]): Promise<R> => call(...keys, ...args);
}

/** A secret every instance shares: created once (SET NX), then read by all. */
export async function sharedSecret(redis: Redis, key: string): Promise<string> {
  await redis.set(key, randomBytes(32).toString('base64url'), 'NX');
  return (await redis.get(key))!;
}
