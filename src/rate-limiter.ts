// Request rates one process accepts, as token buckets per key (the API's client ids and addresses,
// the SFU's sessions). Held in memory: each instance limits what reaches it, which is what protects
// its CPU; behind a load balancer of n instances a client may reach n times the rate.

/** Keys remembered at most; the least recently seen is forgotten first (a full bucket anyway). */
const MAX_KEYS = 10_000;

export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  /** `perSec` tokens a second, up to `burst` saved. */
  constructor(
    private readonly perSec: number,
    private readonly burst: number,
  ) {}

  /** Takes a token: 0 when there was one, otherwise the seconds until there is. */
  take(key: string, now = Date.now()): number {
    const seen = this.buckets.get(key);
    const tokens = seen ? Math.min(this.burst, seen.tokens + ((now - seen.at) / 1000) * this.perSec) : this.burst;
    this.buckets.delete(key);
    if (tokens < 1) {
      this.buckets.set(key, { tokens, at: now });
      return Math.max(1, Math.ceil((1 - tokens) / this.perSec));
    }
    this.buckets.set(key, { tokens: tokens - 1, at: now });
    if (this.buckets.size > MAX_KEYS) this.buckets.delete(this.buckets.keys().next().value!);
    return 0;
  }
}
