/**
 * Percentile bootstrap confidence intervals over independent units (prompts). Pure; the RNG is
 * passed in so a calibration run is reproducible.
 */
import type { Rng } from "./rng.ts";

export interface Interval {
  estimate: number;
  lo: number;
  hi: number;
  /** Confidence level, e.g. 0.95. */
  level: number;
}

/**
 * `statistic` is computed on the original units for the estimate, and on `resamples` resamples
 * drawn with replacement for the interval (percentiles (1−level)/2 and (1+level)/2).
 */
export function bootstrap<T>(units: readonly T[], statistic: (sample: readonly T[]) => number, rng: Rng, resamples = 1000, level = 0.95): Interval {
  if (units.length === 0) return { estimate: NaN, lo: NaN, hi: NaN, level };
  const estimate = statistic(units);
  const stats = new Float64Array(resamples);
  const sample: T[] = new Array(units.length);
  for (let r = 0; r < resamples; r++) {
    for (let i = 0; i < units.length; i++) sample[i] = units[Math.floor(rng.uniform() * units.length)]!;
    stats[r] = statistic(sample);
  }
  stats.sort();
  const at = (q: number) => stats[Math.min(resamples - 1, Math.max(0, Math.floor(q * resamples)))]!;
  return { estimate, lo: at((1 - level) / 2), hi: at((1 + level) / 2), level };
}

/** Ratio-of-sums statistic (e.g. accepted / drafted pooled over prompts), for use with bootstrap. */
export const ratioOfSums =
  <T>(num: (u: T) => number, den: (u: T) => number) =>
  (sample: readonly T[]) => {
    let a = 0;
    let b = 0;
    for (const u of sample) {
      a += num(u);
      b += den(u);
    }
    return b === 0 ? NaN : a / b;
  };
