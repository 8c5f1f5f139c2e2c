// API clients (clientID + authKey) and the bearer sessions of /login. Keys are stored only as an
// scrypt hash. Since the Calls plugin sends Basic auth on every request, each process remembers
// for a while which key it last verified for a client (as an HMAC under a per-process secret),
// so that the slow hash runs once per client, not once per request.
import { createHash, createHmac, randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import type { Redis } from 'ioredis';
import type { Keys } from './redis.js';

const scrypt = promisify(scryptCb) as (key: string, salt: Buffer, len: number, opts: object) => Promise<Buffer>;

export const MIN_KEY_LENGTH = 32;
const COST = { N: 16384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
const VERIFIED_TTL_MS = 5 * 60_000;

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
    N: Number(N), r: Number(r), p: Number(p), maxmem: COST.maxmem,
  });
  return timingSafeEqual(actual, expected);
}

/** Constant-time comparison of two secrets of any length. */
export function secretsEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb) && a.length === b.length;
}

export class ClientStore {
  private readonly processSecret = randomBytes(32);
  private readonly verified = new Map<string, { stored: string; mac: Buffer; until: number }>();

  constructor(private readonly redis: Redis, private readonly keys: Keys) {}

  /** Adds a client; false when the id is taken. */
  async register(clientId: string, authKey: string): Promise<boolean> {
    const added = await this.redis.hsetnx(this.keys.clients, clientId, await hashKey(authKey));
    return added === 1;
  }

  async unregister(clientId: string): Promise<boolean> {
    this.verified.delete(clientId);
    return (await this.redis.hdel(this.keys.clients, clientId)) === 1;
  }

  async exists(clientId: string): Promise<boolean> {
    return (await this.redis.hexists(this.keys.clients, clientId)) === 1;
  }

  /** 'ok', 'unknown' (no such client) or 'wrong' (bad key). */
  async authenticate(clientId: string, authKey: string): Promise<'ok' | 'unknown' | 'wrong'> {
    const stored = await this.redis.hget(this.keys.clients, clientId);
    if (stored === null) return 'unknown';
    const mac = createHmac('sha256', this.processSecret).update(authKey).digest();
    const seen = this.verified.get(clientId);
    // The cached entry counts only for the same stored hash: a re-registered client is checked anew.
    if (seen && seen.stored === stored && seen.until > Date.now() && timingSafeEqual(seen.mac, mac)) return 'ok';
    if (!(await verifyKey(authKey, stored))) return 'wrong';
    this.verified.set(clientId, { stored, mac, until: Date.now() + VERIFIED_TTL_MS });
    return 'ok';
  }
}

export class SessionStore {
  constructor(private readonly redis: Redis, private readonly keys: Keys, private readonly ttlMs: number) {}

  private key(token: string) {
    return this.keys.session(createHash('sha256').update(token).digest('hex'));
  }

  async create(clientId: string): Promise<string> {
    const token = randomBytes(32).toString('base64url');
    await this.redis.set(this.key(token), clientId, 'PX', this.ttlMs);
    return token;
  }

  /** The client a token belongs to, or null when unknown or expired. */
  clientFor(token: string): Promise<string | null> {
    return this.redis.get(this.key(token));
  }
}
