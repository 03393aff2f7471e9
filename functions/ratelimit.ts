/**
 * A token bucket per API key, in the isolate: `burst` requests at once, refilled at `perSecond`.
 * Per isolate, so the effective limit across a fleet is a multiple of it — a guard against one
 * key flooding an isolate, not a billing-grade quota (that needs a Durable Object or a counter
 * service).
 */

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly now: () => number,
    private readonly burst: number,
    private readonly perSecond: number,
    private readonly maxKeys = 10_000,
  ) {}

  /** Takes one token; returns 0 when allowed, else the seconds to wait (≥ 1) for the next token. */
  take(key: string): number {
    const t = this.now();
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= this.maxKeys) {
        // Forget the oldest buckets: a forgotten key simply starts full again.
        const drop = this.buckets.keys().next();
        if (!drop.done) this.buckets.delete(drop.value);
      }
      b = { tokens: this.burst, at: t };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) / 1000) * this.perSecond);
      b.at = t;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.perSecond));
  }
}
