/**
 * Logits → the distributions speculative sampling works with. Pure functions.
 *
 * p (target): the verifier's distribution after temperature, top-k and top-p. Speculative
 * sampling preserves *this* distribution exactly. Temperature 0 means greedy: p is one-hot on the
 * argmax.
 * q (proposal): the drafter's distribution at the proposal temperature τ; τ = 0 drafts greedily.
 * Any q keeps the output exact, as long as acceptance uses the q the draft was sampled from.
 */

export interface TargetParams {
  /** 0 = greedy. */
  temperature: number;
  /** Keep the k most likely tokens (0 or undefined: no limit). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose mass reaches topP (1 or undefined: no limit). */
  topP?: number;
}

/** Index of the largest logit; ties go to the lowest index, on every path, so greedy is reproducible. */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  let bestV = logits[0]!;
  for (let i = 1; i < logits.length; i++) {
    const v = logits[i]!;
    if (v > bestV) {
      bestV = v;
      best = i;
    }
  }
  return best;
}

export function oneHot(n: number, index: number): Float64Array {
  const d = new Float64Array(n);
  d[index] = 1;
  return d;
}

/** softmax(logits / temperature) in float64; temperature 0 gives the one-hot argmax. */
export function softmax(logits: ArrayLike<number>, temperature = 1): Float64Array {
  const n = logits.length;
  if (temperature === 0) return oneHot(n, argmax(logits));
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (logits[i]! > max) max = logits[i]!;
  const out = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const e = Math.exp((logits[i]! - max) / temperature);
    out[i] = e;
    sum += e;
  }
  for (let i = 0; i < n; i++) out[i]! /= sum;
  return out;
}

/** The target distribution p: temperature, then top-k, then top-p (the order HF and vLLM use). */
export function targetDistribution(logits: ArrayLike<number>, params: TargetParams): Float64Array {
  const p = softmax(logits, params.temperature);
  if (params.temperature === 0) return p;
  const n = p.length;
  const topK = params.topK && params.topK > 0 && params.topK < n ? params.topK : 0;
  const topP = params.topP !== undefined && params.topP < 1 ? params.topP : 1;
  if (!topK && topP >= 1) return p;
  // Sort once, descending by probability (index breaks ties so the kept set is deterministic).
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => p[b]! - p[a]! || a - b);
  let keep = topK || n;
  if (topP < 1) {
    let mass = 0;
    for (let r = 0; r < keep; r++) {
      mass += p[order[r]!]!;
      if (mass >= topP) {
        keep = r + 1;
        break;
      }
    }
  }
  const out = new Float64Array(n);
  let sum = 0;
  for (let r = 0; r < keep; r++) {
    const i = order[r]!;
    out[i] = p[i]!;
    sum += p[i]!;
  }
  for (let r = 0; r < keep; r++) out[order[r]!]! /= sum;
  return out;
}

/** Inverse-CDF draw from a distribution with a uniform u in [0, 1). */
export function sampleIndex(dist: ArrayLike<number>, u: number): number {
  let acc = 0;
  let last = 0;
  for (let i = 0; i < dist.length; i++) {
    const d = dist[i]!;
    if (d <= 0) continue;
    acc += d;
    last = i;
    if (u < acc) return i;
  }
  return last; // u within rounding of 1: the last token with mass
}

/** Σ_x min(p(x), q(x)) = 1 − TV(p, q): the probability a draft from q is accepted against p. */
export function overlap(p: ArrayLike<number>, q: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < p.length; i++) s += Math.min(p[i]!, q[i]!);
  return s;
}
