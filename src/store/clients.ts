// API clients (clientID + authKey) and the bearer sessions of /login. Keys are stored only as an
// scrypt hash. Since the Calls plugin sends Basic auth on every request, each process remembers
// for a while which key it last verified for a client (as an HMAC under a per-process secret),
// so that the slow hash runs once per client, not once per request.
import { createHash, createHmac, randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import type { Redis } from 'ioredis';
import { type Keys, script } from './redis.js';

const scrypt = promisify(scryptCb) as (key: string, salt: Buffer, len: number, opts: object) => Promise<Buffer>;

export const MIN_KEY_LENGTH = 32;
const COST = { N: 16384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
const VERIFIED_TTL_MS = 5 * 60_000;
/** Wrong keys a client may send a minute before it is answered 429 without a slow hash being run. */
export const WRONG_KEYS_PER_MINUTE = 10;
/** scrypt runs at once (each 16 MiB and ~50 ms of a core), and how many may wait for one. */
const HASHING = { concurrent: 2, waiting: 64 };

async function hashKey(authKey: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scrypt(authKey, salt, 32, COST);
  return `scrypt$${COST.N}$${COST.r}$${COST.p}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

async function verifyKey(authKey: string, stored: string): Promise<boolean> {
  const [alg, N, r, p, salt, hash] = stored.split('$');
  if (alg !== 'scrypt' || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64');
  const actual = await scrypt(authKey, Buffer.from(salt, 'base64'), expected.length, {
    N: Number(N),
    r: Number(r),
    p: Number(p),
    maxmem: COST.maxmem,
  });
  return timingSafeEqual(actual, expected);
}

/** Constant-time comparison of two secrets of any length. */
export function secretsEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb) && a.length === b.length;
}

/**
 * Removes a client and disowns its jobs in one step, so that whoever registers the same id next
 * inherits none of them. Its count of open jobs stays with the id until they end (jobs.ts's
 * 'charged', set here too on records made before it was): unregistering and registering again
 * would otherwise be a way past the quota.
 * KEYS: clients hash, the client's job index, its pinned sites, its calls; ARGV: client id, the
 * job key prefix, the call key prefix. Returns 1 when the client existed.
 */
const UNREGISTER = `
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('DEL', KEYS[3])
for _, call in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  local owner = ARGV[3] .. call .. ':owner'
  if redis.call('GET', owner) == ARGV[1] then redis.call('DEL', owner) end
end
redis.call('DEL', KEYS[4])
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local job = ARGV[2] .. id
  if redis.call('EXISTS', job) == 1 then
    redis.call('HSETNX', job, 'charged', ARGV[1])
    redis.call('HSET', job, 'client', '!unregistered')
  end
end
redis.call('DEL', KEYS[2])
return 1
`;

/** KEYS: clients hash; ARGV: client id, stored key, most clients. Returns 1 added, 0 taken, -1 full. */
const REGISTER = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`;

/**
 * Claims a call for a client unless another has it, for CLAIM_TTL_MS from its last use. A client's
 * calls are a sorted set by the time each claim runs out, as its owner key does: at the cap, those
 * that ran out are dropped by score, not found by reading every owner key.
 * KEYS: the call's owner, the client's calls; ARGV: client id, call id, ttl ms, max calls. Returns
 * the owner, or '' when the client holds its maximum.
 */
const CLAIM_CALL = `
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return owner end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if not owner then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return '' end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return ARGV[1]
`;
/** A call unused this long (no token minted, no job created) is no client's any more. */
export const CLAIM_TTL_MS = 30 * 24 * 3600 * 1000;
/** Calls one client holds at once. */
export const MAX_CALLS_PER_CLIENT = 10_000;

/** The fingerprint of one registration: a re-registered client id is another client. */
const registrationOf = (stored: string) => createHash('sha256').update(stored).digest('hex').slice(0, 16);

export class ClientStore {
  private readonly processSecret = randomBytes(32);
  private readonly verified = new Map<string, { stored: string; mac: Buffer; until: number }>();
  private readonly wrongKeys = new Map<string, number[]>();
  private hashesRunning = 0;
  private readonly hashQueue: (() => void)[] = [];
  private readonly unregisterScript;
  private readonly registerScript;
  private readonly claimScript;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
  ) {
    this.unregisterScript = script<number>(redis, 'coUnregister', 4, UNREGISTER);
    this.registerScript = script<number>(redis, 'coRegister', 1, REGISTER);
    this.claimScript = script<string>(redis, 'coClaimCall', 2, CLAIM_CALL);
  }

  /**
   * The client a call of the bundled SFU belongs to: the first that minted a token or created a
   * job for it, until it goes unused for CLAIM_TTL_MS. It is then out of every other client's
   * reach. '' when this client holds MAX_CALLS_PER_CLIENT calls already.
   */
  claimCall(clientId: string, callId: string): Promise<string> {
    return this.claimScript(
      [this.keys.callOwner(callId), this.keys.clientCalls(clientId)],
      [clientId, callId, CLAIM_TTL_MS, MAX_CALLS_PER_CLIENT],
    );
  }

  /** Adds a client: 'taken' when the id is, 'full' when `maxClients` are registered already, 'busy' as authenticate. */
  async register(clientId: string, authKey: string, maxClients: number): Promise<'added' | 'taken' | 'full' | 'busy'> {
    const hashed = await this.hashing(() => hashKey(authKey));
    if (hashed === 'busy') return 'busy';
    const r = await this.registerScript([this.keys.clients], [clientId, hashed, maxClients]);
    return r === 1 ? 'added' : r === 0 ? 'taken' : 'full';
  }

  /** Removes the client; its jobs are disowned (kept, visible to the admin only). */
  async unregister(clientId: string): Promise<boolean> {
    this.verified.delete(clientId);
    const jobKeyPrefix = this.keys.job('');
    const keys = [
      this.keys.clients,
      this.keys.clientJobs(clientId),
      this.keys.clientSites(clientId),
      this.keys.clientCalls(clientId),
    ];
    return (await this.unregisterScript(keys, [clientId, jobKeyPrefix, this.keys.callOwnerPrefix])) === 1;
  }

  /**
   * The Mattermost site (origin) a client's jobs of one type go to: the first one it used, kept
   * (trust on first use, where no admin listed the sites). One per job type: the plugin's
   * recorder and transcriber overrides (MM_CALLS_*_SITE_URL) may differ.
   */
  async pinSite(clientId: string, jobType: string, origin: string): Promise<string> {
    const key = this.keys.clientSites(clientId);
    const [, [, pinned]] = (await this.redis.multi().hsetnx(key, jobType, origin).hget(key, jobType).exec())! as [
      unknown,
      [unknown, string],
    ];
    return pinned;
  }

  /** The current registration of a client id, or null when it is not registered. */
  async registration(clientId: string): Promise<string | null> {
    const stored = await this.redis.hget(this.keys.clients, clientId);
    return stored === null ? null : registrationOf(stored);
  }

  /**
   * 'ok', 'unknown' (no such client), 'wrong' (bad key), 'throttled' (too many wrong keys for
   * this client in the last minute: no hash is run) or 'busy' (too many hashes waiting).
   */
  async authenticate(clientId: string, authKey: string): Promise<'ok' | 'unknown' | 'wrong' | 'throttled' | 'busy'> {
    const stored = await this.redis.hget(this.keys.clients, clientId);
    if (stored === null) return 'unknown';
    const mac = createHmac('sha256', this.processSecret).update(authKey).digest();
    const seen = this.verified.get(clientId);
    // The cached entry counts only for the same stored hash: a re-registered client is checked anew.
    if (seen && seen.stored === stored && seen.until > Date.now() && timingSafeEqual(seen.mac, mac)) return 'ok';
    const now = Date.now();
    const wrong = (this.wrongKeys.get(clientId) ?? []).filter((t) => now - t < 60_000);
    if (wrong.length >= WRONG_KEYS_PER_MINUTE) return 'throttled';
    const verdict = await this.hashing(() => verifyKey(authKey, stored));
    if (verdict === 'busy') return 'busy';
    if (!verdict) {
      this.wrongKeys.set(clientId, [...wrong, now]);
      if (this.wrongKeys.size > 10_000) this.wrongKeys.delete(this.wrongKeys.keys().next().value!);
      return 'wrong';
    }
    this.verified.set(clientId, { stored, mac, until: Date.now() + VERIFIED_TTL_MS });
    return 'ok';
  }

  /** Runs a slow hash within HASHING's bounds; 'busy' when too many wait already. */
  private async hashing<T>(work: () => Promise<T>): Promise<T | 'busy'> {
    if (this.hashesRunning >= HASHING.concurrent) {
      if (this.hashQueue.length >= HASHING.waiting) return 'busy';
      await new Promise<void>((resolve) => this.hashQueue.push(resolve));
    }
    this.hashesRunning++;
    try {
      return await work();
    } finally {
      this.hashesRunning--;
      this.hashQueue.shift()?.();
    }
  }
}

/** Bearer tokens one client holds at once: a plugin per Mattermost node logs in once a day. */
export const MAX_SESSIONS_PER_CLIENT = 32;

export class SessionStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly ttlMs: number,
  ) {}

  private key(token: string) {
    return this.keys.session(createHash('sha256').update(token).digest('hex'));
  }

  /**
   * A bearer token for this registration of the client: it dies with an unregister. A client holds
   * at most MAX_SESSIONS_PER_CLIENT: each login past them revokes its oldest token (a loop of logins
   * otherwise stored a key each for a day).
   */
  async create(clientId: string, registration: string): Promise<string> {
    const token = randomBytes(32).toString('base64url');
    const key = this.key(token);
    const list = this.keys.clientSessions(clientId);
    const replies = await this.redis
      .multi()
      .set(key, `${registration}:${clientId}`, 'PX', this.ttlMs)
      .lpush(list, key)
      .lrange(list, MAX_SESSIONS_PER_CLIENT, -1)
      .ltrim(list, 0, MAX_SESSIONS_PER_CLIENT - 1)
      .pexpire(list, this.ttlMs)
      .exec();
    const revoked = (replies?.[2]?.[1] as string[] | undefined) ?? [];
    if (revoked.length > 0) await this.redis.del(...revoked);
    return token;
  }

  /** Whose a token is, or null when unknown or expired. */
  async clientFor(token: string): Promise<{ clientId: string; registration: string } | null> {
    const value = await this.redis.get(this.key(token));
    const colon = value?.indexOf(':') ?? -1;
    return value && colon > 0 ? { registration: value.slice(0, colon), clientId: value.slice(colon + 1) } : null;
  }
}
