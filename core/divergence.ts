/**
 * Per-context divergences between the verifier p and the drafter q, in nats. Pure.
 *
 * The paper's task divergence D_T is the expected cross-entropy H(p, q) over the task's contexts;
 * K_T the expected KL(p‖q); β = Σ min(p, q) = 1 − TV(p, q) is the acceptance probability of one
 * draft, and α_T = E[β]. Theorem 1 (via Pinsker and Jensen): α_T ≥ 1 − √(K_T / 2).
 */

/** Probabilities below this count as zero for q in log terms (a q of exactly 0 where p > 0 makes H infinite). */
const Q_FLOOR = 1e-30;

export function crossEntropy(p: ArrayLike<number>, q: ArrayLike<number>): number {
  let h = 0;
  for (let i = 0; i < p.length; i++) if (p[i]! > 0) h -= p[i]! * Math.log(Math.max(q[i]!, Q_FLOOR));
  return h;
}

export function entropy(p: ArrayLike<number>): number {
  let h = 0;
  for (let i = 0; i < p.length; i++) if (p[i]! > 0) h -= p[i]! * Math.log(p[i]!);
  return h;
}

/** KL(p‖q) = H(p, q) − H(p). */
export function kl(p: ArrayLike<number>, q: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < p.length; i++) if (p[i]! > 0) d += p[i]! * (Math.log(p[i]!) - Math.log(Math.max(q[i]!, Q_FLOOR)));
  return Math.max(0, d);
}

export function totalVariation(p: ArrayLike<number>, q: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < p.length; i++) s += Math.abs(p[i]! - q[i]!);
  return s / 2;
}

/** Theorem 1's floor on acceptance from the mean KL: 1 − √(K/2), clipped at 0. */
export function pinskerAlphaBound(meanKl: number): number {
  return Math.max(0, 1 - Math.sqrt(meanKl / 2));
}
