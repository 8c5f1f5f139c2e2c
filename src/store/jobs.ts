// Job records in Redis. Every change of status goes through one Lua script that checks the
// current status first (compare-and-set), so two processes can never both start, finish or
// cancel the same job; admission to a job slot is a second script that counts and takes a slot
// in the same step.
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import {
  type InputData,
  type Job,
  type JobStatus,
  type JobType,
  activeStatuses,
  finalStatuses,
} from '../jobs/schema.js';
import { type Keys, script } from './redis.js';
import { MASK } from '../jobs/input-data.js';
import { captionCounts } from '../jobs/contract.js';

export interface JobRecord {
  id: string;
  type: JobType;
  runner: string;
  max_duration_sec: number;
  input: InputData;
  client: string;
  live: boolean;
  status: JobStatus;
  created_at: number;
  start_at?: number;
  stop_at?: number;
  exit_code?: number;
  error?: string;
  output?: Record<string, unknown>;
  worker?: string;
}

export interface Retention {
  succeededMs: number;
  failedMs: number;
}

/** Same alphabet and length as Mattermost ids: 26 characters of [a-z0-9]. */
export function newId(): string {
  const alphabet = 'ybndrfg8ejkmcpqxot1uwisza345h769';
  const bytes = randomBytes(26);
  let id = '';
  for (const b of bytes) id += alphabet[b & 31];
  return id;
}

// Every time in these scripts is Redis' own clock (TIME), never a host's: leases written by a
// worker and read by a sweeper on another host agree however far apart their clocks are.
const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

// Creates a job unless its client has too many unfinished. KEYS: job, jobs, client's jobs, queued,
// open jobs, finished. ARGV: id, client, quota, how long it may wait queued (ms), finished jobs the
// client keeps, then the record's field/value pairs. Returns created_at, or -1 past the quota.
// A client past what it keeps has its oldest finished jobs' retention ended now (the sweeper
// deletes them), leaving room for the new one once it finishes: a client that creates and
// cancels jobs without end fills nothing. Its at most `quota` unfinished ones may be among its
// oldest too, so that many more are looked at. The count is charged to the client's id in the
// record's 'charged' field, which an unregister leaves alone (it changes 'client'): whoever
// registers the id again starts with the jobs still open, not with a fresh quota.
const CREATE = `${NOW}
local id, client = ARGV[1], ARGV[2]
local open = tonumber(redis.call('HGET', KEYS[5], client) or '0')
if open >= tonumber(ARGV[3]) then return -1 end
local over = redis.call('ZCARD', KEYS[3]) - open - tonumber(ARGV[5]) + 1
if over > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[3], 0, over - 1 + tonumber(ARGV[3]))) do
    if over == 0 then break end
    if redis.call('ZSCORE', KEYS[6], old) then
      redis.call('ZADD', KEYS[6], now, old)
      over = over - 1
    end
  end
end
redis.call('HINCRBY', KEYS[5], client, 1)
redis.call('HSET', KEYS[1], 'created_at', now, unpack(ARGV, 6))
redis.call('ZADD', KEYS[2], now, id)
redis.call('ZADD', KEYS[3], now, id)
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[4]), id)
return now
`;

// KEYS: job, queued, slots, finished, open jobs. ARGV: id, from (comma-separated), to, retention
// ms ('' when not final), lease guard ('' or a time the lease must have run out by), slot
// channel, then field/value pairs. Returns {applied 0|1, previous status, now}.
const TRANSITION = `${NOW}
local id, from, to, retention, leaseGuard = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {0, '', now} end
if not string.find(',' .. from .. ',', ',' .. status .. ',', 1, true) then return {0, status, now} end
if leaseGuard ~= '' then
  local lease = redis.call('ZSCORE', KEYS[3], id)
  if not lease or tonumber(lease) > tonumber(leaseGuard) then return {0, status, now} end
end
redis.call('HSET', KEYS[1], 'status', to, unpack(ARGV, 7))
if to ~= 'queued' then redis.call('ZREM', KEYS[2], id) end
if retention ~= '' then
  local client = redis.call('HGET', KEYS[1], 'charged') or redis.call('HGET', KEYS[1], 'client')
  if client and status ~= 'succeeded' and status ~= 'failed' and status ~= 'canceled'
      and tonumber(redis.call('HGET', KEYS[5], client) or '0') > 0 then
    -- none left: the field goes (a client id used once keeps nothing)
    if redis.call('HINCRBY', KEYS[5], client, -1) <= 0 then redis.call('HDEL', KEYS[5], client) end
  end
  redis.call('HSET', KEYS[1], 'stop_at', now)
  if redis.call('ZREM', KEYS[3], id) == 1 then redis.call('PUBLISH', ARGV[6], id) end
  redis.call('ZADD', KEYS[4], now + tonumber(retention), id)
end
return {1, status, now}
`;

// KEYS: job, queued, slots. ARGV: id, max slots, lease ms, worker. Returns {1 admitted | 0 full | -1 gone, status}.
const ACQUIRE = `${NOW}
local id, max, leaseMs, worker = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' then return {-1, status or ''} end
if redis.call('ZCARD', KEYS[3]) >= max then return {0, status} end
redis.call('ZADD', KEYS[3], now + leaseMs, id)
redis.call('ZREM', KEYS[2], id)
redis.call('HSET', KEYS[1], 'status', 'starting', 'worker', worker, 'start_at', now)
return {1, 'starting'}
`;

// Gives back the slot a worker was admitted to before it started anything (it is closing): the
// job is queued again, by its deadline as before, and waiting workers hear of the slot. KEYS: job,
// queued, slots; ARGV: id, worker, queued deadline, slot-freed channel. Returns 'queued', or the
// job's status when it is no longer this worker's start (a stop asked, or failed meanwhile).
const REQUEUE = `
local fields = redis.call('HMGET', KEYS[1], 'status', 'worker')
if fields[1] ~= 'starting' or fields[2] ~= ARGV[2] then return fields[1] or '' end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[1], 'status', 'queued')
redis.call('HDEL', KEYS[1], 'worker', 'start_at')
if redis.call('ZREM', KEYS[3], ARGV[1]) == 1 then redis.call('PUBLISH', ARGV[4], ARGV[1]) end
return 'queued'
`;

// Renews a lease only while this worker still holds it; answers the job's status so that the
// worker also learns of a stop asked through another API instance. KEYS: job, slots; ARGV: id,
// worker, lease ms.
const RENEW = `${NOW}
if redis.call('HGET', KEYS[1], 'worker') ~= ARGV[2] then return false end
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then return false end
redis.call('ZADD', KEYS[2], 'XX', now + tonumber(ARGV[3]), ARGV[1])
return redis.call('HGET', KEYS[1], 'status')
`;

// The jobs whose lease ran out by ARGV[1] (at most 100), none until Redis has been live for a whole
// lease: a sweep finds the gap since the last one (any instance's) longer than ARGV[3] after an
// outage (or a Redis that was frozen), and the leases every worker could not renew meanwhile are
// not taken for dead workers; each gets a lease to renew. KEYS: slots, sweeps; ARGV: at, lease ms,
// gap ms.
const EXPIRED_LEASES = `${NOW}
local at, lease, gap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local marks = redis.call('HMGET', KEYS[2], 'last', 'since')
local last, since = tonumber(marks[1]) or 0, tonumber(marks[2]) or 0
if now - last > gap then since = now end
redis.call('HSET', KEYS[2], 'last', now, 'since', since)
if now - since < lease then return {} end
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', at, 'LIMIT', 0, 100)
`;

// A sweep's end, as its start is in EXPIRED_LEASES: the gap measures the time no sweep ran, not a
// slow sweep's own length. KEYS: sweeps.
const SWEPT = `${NOW}
redis.call('HSET', KEYS[1], 'last', now)
`;

// Keeps the tail: the end of a log says why a job failed.
const APPEND_LOG = `
local len = redis.call('APPEND', KEYS[1], ARGV[1])
local cap = tonumber(ARGV[2])
if len > cap then
  local keep = math.floor(cap * 3 / 4)
  local tail = redis.call('GETRANGE', KEYS[1], len - keep, -1)
  redis.call('SET', KEYS[1], '[earlier output dropped here; the whole log is job.log in the job directory]\\n' .. tail)
end
return len
`;

/** Upper bounds (seconds) of the job duration histogram. */
export const durationBuckets = [10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800];

export class JobStore {
  private readonly transitionScript;
  /** Redis' clock (ms): what leases, retention and start timeouts are measured on. */
  async clock(): Promise<number> {
    const [seconds, micros] = await this.redis.time();
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  }

  private readonly createScript;
  private readonly acquireScript;
  private readonly requeueScript;
  private readonly renewScript;
  private readonly appendLogScript;
  private readonly expiredLeasesScript;
  private readonly sweptScript;

  constructor(
    readonly redis: Redis,
    readonly keys: Keys,
    private readonly retention: Retention,
  ) {
    this.createScript = script<number>(redis, 'coCreate', 6, CREATE);
    this.transitionScript = script<[number, string, number]>(redis, 'coTransition', 5, TRANSITION);
    this.acquireScript = script<[number, string]>(redis, 'coAcquire', 3, ACQUIRE);
    this.requeueScript = script<string>(redis, 'coRequeue', 3, REQUEUE);
    this.renewScript = script<string | null>(redis, 'coRenew', 2, RENEW);
    this.appendLogScript = script<number>(redis, 'coAppendLog', 1, APPEND_LOG);
    this.expiredLeasesScript = script<string[]>(redis, 'coExpiredLeases', 2, EXPIRED_LEASES);
    this.sweptScript = script<null>(redis, 'coSwept', 1, SWEPT);
  }

  /**
   * A new queued job that may wait `waitMs` for a slot (the queued index is ordered by that
   * deadline, so sweeping reads only the jobs past it); null when its client already has `quota`
   * unfinished jobs. The client keeps at most `keep` finished ones.
   */
  async create(
    rec: Omit<JobRecord, 'id' | 'status' | 'created_at'>,
    limits: { quota: number; keep: number },
    waitMs: number,
  ): Promise<JobRecord | null> {
    const id = newId();
    const k = this.keys;
    const fields = {
      type: rec.type,
      runner: rec.runner,
      max_duration_sec: rec.max_duration_sec,
      input: JSON.stringify(rec.input),
      client: rec.client,
      charged: rec.client,
      live: rec.live ? '1' : '0',
      status: 'queued',
    };
    const createdAt = await this.createScript(
      [k.job(id), k.jobs, k.clientJobs(rec.client), k.queued, k.openJobs, k.finished],
      [
        id,
        rec.client,
        limits.quota,
        waitMs,
        limits.keep,
        ...Object.entries(fields).flatMap(([f, v]) => [f, String(v)]),
      ],
    );
    return createdAt < 0 ? null : { ...rec, id, status: 'queued', created_at: createdAt };
  }

  async get(id: string): Promise<JobRecord | null> {
    return parseRecord(id, await this.redis.hgetall(this.keys.job(id)));
  }

  async getMany(ids: string[]): Promise<JobRecord[]> {
    if (ids.length === 0) return [];
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hgetall(this.keys.job(id));
    const rows = (await pipe.exec()) ?? [];
    return rows
      .map(([, h], i) => parseRecord(ids[i]!, h as Record<string, string>))
      .filter((j): j is JobRecord => j !== null);
  }

  /** Newest first; clientId null lists every client's jobs (admin). */
  async list(
    clientId: string | null,
    filter: { type?: JobType; status?: JobStatus },
    page: number,
    perPage: number,
  ): Promise<{ jobs: JobRecord[]; total: number }> {
    const index = clientId === null ? this.keys.jobs : this.keys.clientJobs(clientId);
    const ids = await this.redis.zrevrange(index, 0, -1);
    let jobs: JobRecord[];
    if (!filter.type && !filter.status) {
      jobs = await this.getMany(ids.slice(page * perPage, (page + 1) * perPage));
      return { jobs, total: ids.length };
    }
    // Filtering needs each record's type and status; one pipelined HMGET per job.
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hmget(this.keys.job(id), 'type', 'status');
    const rows = (await pipe.exec()) ?? [];
    const matching = ids.filter((_, i) => {
      const [type, status] = rows[i]![1] as [string | null, string | null];
      return (!filter.type || type === filter.type) && (!filter.status || status === filter.status);
    });
    jobs = await this.getMany(matching.slice(page * perPage, (page + 1) * perPage));
    return { jobs, total: matching.length };
  }

  /**
   * Moves a job from one of `from` to `to`, setting `fields` too. Returns whether it moved and
   * the status it had. A final status stamps stop_at, frees the job's slot, starts its retention
   * and counts its outcome. `leaseExpiredBefore` makes the move conditional on the job's lease
   * having run out (the reaper must not fail a job whose worker just renewed).
   */
  async transition(
    id: string,
    from: readonly JobStatus[],
    to: JobStatus,
    fields: Partial<Record<'error' | 'exit_code' | 'output' | 'start_at', string | number>> = {},
    leaseExpiredBefore?: number,
  ): Promise<{ applied: boolean; previous: JobStatus | null }> {
    const final = finalStatuses.includes(to);
    const retention = final ? (to === 'succeeded' ? this.retention.succeededMs : this.retention.failedMs) : '';
    const k = this.keys;
    const flat = Object.entries(fields).flatMap(([f, v]) => [f, String(v)]);
    const [applied, previous, now] = await this.transitionScript(
      [k.job(id), k.queued, k.slots, k.finished, k.openJobs],
      [id, from.join(','), to, retention, leaseExpiredBefore ?? '', k.slotFreedChannel, ...flat],
    );
    if (applied === 1 && final) await this.countOutcome(id, to, now);
    return { applied: applied === 1, previous: (previous || null) as JobStatus | null };
  }

  private async countOutcome(id: string, outcome: JobStatus, now: number): Promise<void> {
    const [type, startAt, output] = await this.redis.hmget(this.keys.job(id), 'type', 'start_at', 'output');
    if (!type) return;
    const pipe = this.redis.pipeline().hincrby(this.keys.outcomes, `${type}|${outcome}`, 1);
    const captions = captionCounts(parseOutput(output));
    if (captions) {
      pipe
        .hincrby(this.keys.captions, 'captioned', captions.sent)
        .hincrby(this.keys.captions, 'dropped', captions.dropped);
      pipe.hincrby(this.keys.captions, 'empty', captions.empty);
    }
    if (startAt) {
      const seconds = Math.max(0, (now - Number(startAt)) / 1000);
      const key = this.keys.durations(type);
      for (const le of durationBuckets) if (seconds <= le) pipe.hincrby(key, String(le), 1);
      pipe.hincrby(key, '+Inf', 1).hincrbyfloat(key, 'sum', seconds);
    }
    await pipe.exec();
  }

  /**
   * Atomic admission: takes one of `max` job slots for a queued job. Returns 'admitted',
   * 'full' (try again later) or 'gone' (no longer queued: canceled, failed, or run already).
   */
  async acquire(id: string, max: number, leaseMs: number, worker: string): Promise<'admitted' | 'full' | 'gone'> {
    const k = this.keys;
    const [r] = await this.acquireScript([k.job(id), k.queued, k.slots], [id, max, leaseMs, worker]);
    return r === 1 ? 'admitted' : r === 0 ? 'full' : 'gone';
  }

  /**
   * Queues again a job `worker` was admitted to but did not start: 'queued', or the job's status
   * when it is no longer that worker's start.
   */
  requeue(id: string, worker: string, deadline: number): Promise<string> {
    const k = this.keys;
    return this.requeueScript([k.job(id), k.queued, k.slots], [id, worker, deadline, k.slotFreedChannel]);
  }

  /** Renews this worker's lease; null when the lease was lost (the job was failed meanwhile). */
  async renew(id: string, worker: string, leaseMs: number): Promise<JobStatus | null> {
    return (await this.renewScript([this.keys.job(id), this.keys.slots], [id, worker, leaseMs])) as JobStatus | null;
  }

  async appendLog(id: string, chunk: string | Buffer, maxBytes: number): Promise<void> {
    await this.appendLogScript([this.keys.log(id)], [chunk.toString(), maxBytes]);
  }

  async log(id: string): Promise<string> {
    return (await this.redis.get(this.keys.log(id))) ?? '';
  }

  /** Deletes a record, its log and its index entries. */
  async purge(id: string): Promise<void> {
    const k = this.keys;
    const client = await this.redis.hget(k.job(id), 'client');
    const tx = this.redis
      .multi()
      .del(k.job(id), k.log(id))
      .zrem(k.jobs, id)
      .zrem(k.queued, id)
      .zrem(k.slots, id)
      .zrem(k.finished, id);
    if (client) tx.zrem(k.clientJobs(client), id);
    await tx.exec();
  }

  runningCount(): Promise<number> {
    return this.redis.zcard(this.keys.slots);
  }

  /**
   * Jobs whose lease ran out before `now`: their worker is gone. None until Redis has been live
   * for `leaseMs` since a gap of `leaseMs / 2` without a sweep (an outage every worker lived through).
   */
  expiredLeases(now: number, leaseMs: number): Promise<string[]> {
    return this.expiredLeasesScript([this.keys.slots, this.keys.sweeps], [now, leaseMs, leaseMs / 2]);
  }

  /** Marks a sweep's end (see expiredLeases). */
  async swept(): Promise<void> {
    await this.sweptScript([this.keys.sweeps], []);
  }

  /** Queued jobs whose wait ran out before `now`. */
  queuedPastDeadline(now: number): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys.queued, '-inf', now, 'LIMIT', 0, 100);
  }

  retentionEnded(now: number): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys.finished, '-inf', now, 'LIMIT', 0, 100);
  }
}

export const isActive = (s: JobStatus) => activeStatuses.includes(s);
export const isFinal = (s: JobStatus) => finalStatuses.includes(s);

function parseRecord(id: string, h: Record<string, string> | null | undefined): JobRecord | null {
  if (!h?.status) return null;
  const num = (v: string | undefined) => (v === undefined || v === '' ? undefined : Number(v));
  return {
    id,
    type: h.type as JobType,
    runner: h.runner ?? '',
    max_duration_sec: Number(h.max_duration_sec),
    input: h.input ? JSON.parse(h.input) : {},
    client: h.client ?? '',
    live: h.live === '1',
    status: h.status as JobStatus,
    created_at: Number(h.created_at),
    start_at: num(h.start_at),
    stop_at: num(h.stop_at),
    exit_code: num(h.exit_code),
    error: h.error || undefined,
    output: h.output ? JSON.parse(h.output) : undefined,
    worker: h.worker || undefined,
  };
}

/** The record as the API shows it: upstream's fields plus ours, secrets masked. */
export function toApiJob(rec: JobRecord): Job {
  const input = { ...rec.input };
  if (typeof input.auth_token === 'string') input.auth_token = MASK;
  const job: Job = {
    id: rec.id,
    type: rec.type,
    max_duration_sec: rec.max_duration_sec,
    runner: rec.runner,
    status: rec.status,
    created_at: rec.created_at,
    start_at: rec.start_at ?? rec.created_at,
  };
  if (Object.keys(input).length > 0) job.input_data = input;
  if (rec.stop_at) job.stop_at = rec.stop_at;
  if (rec.exit_code !== undefined) job.exit_code = rec.exit_code;
  if (rec.error) job.error = rec.error;
  if (rec.output && Object.keys(rec.output).length > 0) job.output_data = rec.output;
  return job;
}

function parseOutput(output: string | null): Record<string, unknown> | undefined {
  try {
    return JSON.parse(output ?? 'null') ?? undefined;
  } catch {
    return undefined;
  }
}
