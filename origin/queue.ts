/**
 * Bounded admission: at most `concurrency` generations run at once and at most `maxWaiting`
 * requests wait for a slot. Anything beyond that is refused at once (the caller answers 429 with
 * Retry-After) instead of piling up: memory stays bounded whatever the load, and a client can
 * retry elsewhere instead of waiting on a queue it cannot see.
 *
 * Runtime-neutral (no Node imports): the Hono app uses it on Node and on Workers alike.
 */

export type Release = () => void;

interface Waiter {
  grant: (release: Release) => void;
}

export class AdmissionQueue {
  private active = 0;
  private readonly waiters: Waiter[] = [];

  constructor(
    readonly concurrency: number,
    readonly maxWaiting: number,
  ) {
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be an integer >= 1, got ${concurrency}`);
    if (!Number.isInteger(maxWaiting) || maxWaiting < 0) throw new RangeError(`max waiting must be an integer >= 0, got ${maxWaiting}`);
  }

  get running(): number {
    return this.active;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /**
   * A slot, now or once one frees up; `null` when the queue is full (refuse the request).
   * If `signal` aborts while waiting, the request leaves the queue and the promise rejects with
   * the signal's reason. The returned release function is idempotent.
   */
  tryAcquire(signal?: AbortSignal): Promise<Release> | null {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.active < this.concurrency) {
      this.active++;
      return Promise.resolve(this.releaser());
    }
    if (this.waiters.length >= this.maxWaiting) return null;
    return new Promise<Release>((resolve, reject) => {
      const onAbort = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal!.reason);
      };
      const waiter: Waiter = {
        grant: (release) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(release);
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  private releaser(): Release {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      // Hand the slot straight to the next waiter (FIFO), so `active` never dips and lets a newcomer jump the queue.
      const next = this.waiters.shift();
      if (next) next.grant(this.releaser());
      else this.active--;
    };
  }
}

/**
 * Seconds a refused client should wait before retrying: the work ahead of it (running + waiting
 * requests, spread over the slots) times the recent mean request latency, at least 1 s and at
 * most `maxS`. Pure, so the estimate is tested without a server.
 */
export function retryAfterSeconds(running: number, waiting: number, concurrency: number, meanLatencyS: number, maxS = 60): number {
  const ahead = (running + waiting) / Math.max(1, concurrency);
  const est = Number.isFinite(meanLatencyS) && meanLatencyS > 0 ? ahead * meanLatencyS : 1;
  return Math.min(maxS, Math.max(1, Math.ceil(est)));
}
