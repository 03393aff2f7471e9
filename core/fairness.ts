/**
 * Fairness analytics across tasks. Pure.
 *
 * - U (the paper's unfairness metric) = (1/m) Σ_T (D_T − D̄)²: the population variance of the
 *   per-task divergences.
 * - Jain's index J(x) = (Σ x)² / (m Σ x²) ∈ [1/m, 1]; 1 means every task gets the same speed-up.
 * - s-CDF task weights, "shift-by-minimum" (reconstructed from the paper): w_T ∝ D_T − min D,
 *   so the best-fitted task gets no weight and no task is pushed to get worse.
 */

export function mean(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  return xs.reduce((s, x) => s + x, 0) / xs.length;
}

/** Population variance (divides by m, as U does). */
export function variance(xs: readonly number[]): number {
  const m = mean(xs);
  return mean(xs.map((x) => (x - m) ** 2));
}

export const unfairnessU = variance;

export function jainsIndex(xs: readonly number[]): number {
  const s = xs.reduce((a, x) => a + x, 0);
  const s2 = xs.reduce((a, x) => a + x * x, 0);
  return s2 === 0 ? 1 : (s * s) / (xs.length * s2);
}

export interface Spread {
  mean: number;
  variance: number;
  min: number;
  max: number;
  /** min / max: 1 is perfectly even. */
  worstToBest: number;
  jain: number;
}

export function spread(xs: readonly number[]): Spread {
  const min = Math.min(...xs);
  const max = Math.max(...xs);
  return { mean: mean(xs), variance: variance(xs), min, max, worstToBest: max === 0 ? 1 : min / max, jain: jainsIndex(xs) };
}

/**
 * Shift-by-minimum weights over tasks: w_T = (D_T − min_T' D_T') / Σ (…). Uniform when every D_T
 * is equal (nothing to correct). Keys keep their order.
 */
export function shiftByMinimumWeights<K extends string>(divergence: Readonly<Record<K, number>>): Record<K, number> {
  const keys = Object.keys(divergence) as K[];
  const d = keys.map((k) => divergence[k]);
  if (d.some((x) => !Number.isFinite(x))) throw new RangeError("every task divergence must be a finite number");
  const lo = Math.min(...d);
  const shifted = d.map((x) => x - lo);
  const total = shifted.reduce((s, x) => s + x, 0);
  const out = {} as Record<K, number>;
  keys.forEach((k, i) => (out[k] = total > 0 ? shifted[i]! / total : 1 / keys.length));
  return out;
}
