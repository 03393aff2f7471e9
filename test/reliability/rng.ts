/**
 * The seeded draws the generators use (core/rng.ts's xoshiro128**): same seed, same cases.
 */
import { Xoshiro128 } from "../../core/rng.ts";

export class Draw {
  private rng: Xoshiro128;
  constructor(seed: number) {
    this.rng = new Xoshiro128(seed);
  }
  /** [0, 1) */
  u(): number {
    return this.rng.uniform();
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.rng.uniform() * n);
  }
  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.rng.uniform() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  /** A weighted choice: [[weight, value], …]. */
  weighted<T>(xs: readonly (readonly [number, T])[]): T {
    const total = xs.reduce((a, [w]) => a + w, 0);
    let x = this.u() * total;
    for (const [w, v] of xs) {
      if ((x -= w) < 0) return v;
    }
    return xs[xs.length - 1]![1];
  }
  /** Bytes, uniformly. */
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}
