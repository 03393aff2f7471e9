/**
 * The speculative-sampling verification step (Leviathan et al. 2023, Algorithm 1; Chen et al. 2023
 * with p and q swapped). Pure: distributions and uniforms in, tokens and statistics out.
 *
 *   for i = 1..γ: accept x_i with probability min(1, p_i(x_i) / q_i(x_i));
 *   at the first rejection emit a draw from norm(max(0, p_i − q_i)) and stop;
 *   if all γ are accepted emit a bonus draw from p_{γ+1}.
 *
 * The emitted tokens are distributed exactly as p, whatever q is. With a one-hot p (greedy) the
 * rule reduces to "accept while the draft equals the verifier's argmax, then emit the argmax".
 */
import type { Rng } from "../core/rng.ts";
import { overlap, sampleIndex } from "./sampling.ts";

export interface Verification {
  /** Accepted draft tokens followed by the one token the verifier adds (residual or bonus). */
  tokens: number[];
  /** Number of draft tokens accepted, 0..γ. */
  accepted: number;
  /** True when every draft was accepted and the added token came from p_{γ+1}. */
  bonus: boolean;
  /** β_i = Σ_x min(p_i(x), q_i(x)) for each draft position the sequence actually reached. */
  beta: number[];
}

/**
 * @param draft γ tokens drawn from q
 * @param q     γ proposal distributions (q[i] is what draft[i] was drawn from)
 * @param p     γ + 1 target distributions from one verifier call
 */
export function verifyDraft(draft: readonly number[], q: readonly Float64Array[], p: readonly Float64Array[], rng: Rng): Verification {
  const gamma = draft.length;
  if (q.length !== gamma || p.length !== gamma + 1) {
    throw new Error(`verifyDraft: need γ proposal rows and γ+1 target rows, got γ=${gamma}, q=${q.length}, p=${p.length}`);
  }
  const tokens: number[] = [];
  const beta: number[] = [];
  for (let i = 0; i < gamma; i++) {
    const x = draft[i]!;
    const pi = p[i]!;
    const qi = q[i]!;
    beta.push(overlap(pi, qi));
    // Accept with probability min(1, p/q); written as u·q < p to avoid dividing (q(x) > 0 since x ~ q).
    if (rng.uniform() * qi[x]! < pi[x]!) {
      tokens.push(x);
      continue;
    }
    tokens.push(sampleIndex(residual(pi, qi), rng.uniform()));
    return { tokens, accepted: i, bonus: false, beta };
  }
  tokens.push(sampleIndex(p[gamma]!, rng.uniform()));
  return { tokens, accepted: gamma, bonus: true, beta };
}

/** norm(max(0, p − q)). If p ≤ q everywhere (only possible through rounding), p itself. */
export function residual(p: Float64Array, q: Float64Array): Float64Array {
  const r = new Float64Array(p.length);
  let sum = 0;
  for (let i = 0; i < p.length; i++) {
    const d = p[i]! - q[i]!;
    if (d > 0) {
      r[i] = d;
      sum += d;
    }
  }
  if (sum <= 0) return p;
  for (let i = 0; i < r.length; i++) r[i]! /= sum;
  return r;
}
