/**
 * An in-isolate cache with a TTL and stale-while-revalidate, for values read from libSQL.
 *
 * - fresh (younger than its TTL): returned, nothing else happens;
 * - stale: returned at once (last-known-good), and one refresh starts in the background (handed to
 *   `background`, i.e. `ctx.waitUntil`); a failed refresh keeps the old value and the next try
 *   waits `retryMs`, so a slow or down database is neither waited on nor hammered;
 * - missing: the load is awaited, but at most `timeoutMs`; a load that finishes later still fills
 *   the cache. A failed (or timed-out) miss is remembered for `retryMs`, during which further
 *   misses for that key fail at once instead of waiting again.
 *
 * Concurrent requests share one load per key. Entries beyond `maxEntries` are evicted least
 * recently used first. Never the source of truth: isolates are evicted, requests are not pinned.
 */

export type Background = (p: Promise<unknown>) => void;

export interface CacheOptions<V> {
  /** How long a loaded value is fresh (may depend on the value, e.g. shorter for "not found"). */
  ttlMs: number | ((value: V) => number);
  timeoutMs: number;
  retryMs: number;
  maxEntries?: number;
}

export type CacheState = "fresh" | "stale" | "loaded";

export class CacheMissError extends Error {
  override name = "CacheMissError";
}

interface Entry<V> {
  has: boolean;
  value: V | undefined;
  loadedAt: number;
  freshUntil: number;
  /** The load or refresh in flight. */
  inflight: Promise<V> | null;
  /** No new load before this time (after a failure). */
  nextTryAt: number;
  lastError: string | null;
}

export interface CacheStats {
  hits: number;
  stale: number;
  misses: number;
  loadErrors: number;
}

export class SwrCache<K, V> {
  private readonly entries = new Map<K, Entry<V>>();
  readonly stats: CacheStats = { hits: 0, stale: 0, misses: 0, loadErrors: 0 };

  constructor(
    private readonly now: () => number,
    private readonly opts: CacheOptions<V>,
  ) {}

  private ttl(v: V): number {
    return typeof this.opts.ttlMs === "function" ? this.opts.ttlMs(v) : this.opts.ttlMs;
  }

  private touch(key: K, e: Entry<V>): void {
    // Map order is insertion order: re-insert to mark as most recently used.
    this.entries.delete(key);
    this.entries.set(key, e);
    const max = this.opts.maxEntries;
    if (max !== undefined && this.entries.size > max) {
      for (const k of this.entries.keys()) {
        if (this.entries.size <= max) break;
        this.entries.delete(k);
      }
    }
  }

  /** Start a load for `key` (shared by concurrent callers); fills the entry when it settles. */
  private startLoad(key: K, e: Entry<V>, load: () => Promise<V>): Promise<V> {
    if (e.inflight) return e.inflight;
    const p = (async () => load())().then(
      (v) => {
        const t = this.now();
        e.has = true;
        e.value = v;
        e.loadedAt = t;
        e.freshUntil = t + this.ttl(v);
        e.inflight = null;
        e.nextTryAt = 0;
        e.lastError = null;
        return v;
      },
      (err: unknown) => {
        this.stats.loadErrors++;
        e.inflight = null;
        e.nextTryAt = this.now() + this.opts.retryMs;
        e.lastError = err instanceof Error ? err.message : String(err);
        throw err;
      },
    );
    e.inflight = p;
    return p;
  }

  async get(key: K, load: () => Promise<V>, background: Background): Promise<{ value: V; state: CacheState; ageMs: number }> {
    const t = this.now();
    let e = this.entries.get(key);
    if (e?.has) {
      this.touch(key, e);
      if (t < e.freshUntil) {
        this.stats.hits++;
        return { value: e.value as V, state: "fresh", ageMs: t - e.loadedAt };
      }
      this.stats.stale++;
      if (!e.inflight && t >= e.nextTryAt) {
        const p = this.startLoad(key, e, load);
        background(p.catch(() => {}));
      }
      return { value: e.value as V, state: "stale", ageMs: t - e.loadedAt };
    }
    this.stats.misses++;
    if (!e) {
      e = { has: false, value: undefined, loadedAt: 0, freshUntil: 0, inflight: null, nextTryAt: 0, lastError: null };
    }
    this.touch(key, e);
    if (!e.inflight && t < e.nextTryAt) throw new CacheMissError(`not cached, and the last load failed ${Math.round(t - (e.nextTryAt - this.opts.retryMs))} ms ago: ${e.lastError}`);
    const p = this.startLoad(key, e, load);
    // Whatever the caller does, a slow load may finish after it gave up and still fill the cache.
    background(p.catch(() => {}));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new CacheMissError(`no answer from the database within ${this.opts.timeoutMs} ms`)), this.opts.timeoutMs);
    });
    try {
      const value = await Promise.race([p, timeout]);
      return { value, state: "loaded", ageMs: 0 };
    } catch (err) {
      // Mark the miss as failed for retryMs even on a timeout (the load may still finish and fill it).
      if (e.nextTryAt <= t) e.nextTryAt = this.now() + this.opts.retryMs;
      if (err instanceof CacheMissError) throw err;
      throw new CacheMissError(`loading failed: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The cached value (fresh or stale), without loading. */
  peek(key: K): { value: V; ageMs: number; fresh: boolean } | undefined {
    const e = this.entries.get(key);
    if (!e?.has) return undefined;
    const t = this.now();
    return { value: e.value as V, ageMs: t - e.loadedAt, fresh: t < e.freshUntil };
  }

  /** Mark entries stale (the next get refreshes them in the background); `all` when no predicate. */
  invalidate(pred?: (key: K, value: V) => boolean): number {
    let n = 0;
    for (const [k, e] of this.entries) {
      if (e.has && (!pred || pred(k, e.value as V))) {
        e.freshUntil = 0;
        e.nextTryAt = 0;
        n++;
      }
    }
    return n;
  }

  /** Drop entries (the next get loads them, waiting as a miss does); `all` when no predicate. */
  evict(pred?: (key: K, value: V | undefined) => boolean): number {
    let n = 0;
    for (const [k, e] of this.entries) {
      if (!pred || pred(k, e.value)) {
        this.entries.delete(k);
        n++;
      }
    }
    return n;
  }

  lastError(key: K): string | null {
    return this.entries.get(key)?.lastError ?? null;
  }

  get size(): number {
    return this.entries.size;
  }
}
