/**
 * The analytic model of speculative decoding (Leviathan et al. 2023, §3.3–3.4), as pure functions.
 *
 * Notation: α = acceptance rate (probability a drafted token is accepted, assumed i.i.d. across
 * positions), γ = draft length, c = cost of one drafter step / cost of one verifier step.
 *
 * Deviation from the paper (flagged): the paper assumes a verifier call on γ+1 tokens costs the
 * same as on one token. On CPUs (and at large batch on GPUs) it does not, so every function here
 * takes an optional verify-cost curve v(n) = cost of verifying n tokens / cost of one verifier
 * step; the paper's model is v(n) = 1.
 */

/** Relative cost of one verifier call on n tokens (n = γ + 1), in units of a 1-token verifier call. */
export type VerifyCost = (tokens: number) => number;
export const FLAT_VERIFY_COST: VerifyCost = () => 1;

function check(alpha: number, gamma: number, c: number) {
  if (!(alpha >= 0 && alpha <= 1)) throw new RangeError(`alpha must be in [0, 1], got ${alpha}`);
  if (!Number.isInteger(gamma) || gamma < 0) throw new RangeError(`gamma must be a non-negative integer, got ${gamma}`);
  if (!(c >= 0)) throw new RangeError(`c must be >= 0, got ${c}`);
}

/**
 * Expected tokens emitted per verifier call: (1 − α^{γ+1}) / (1 − α), i.e. 1 + α + … + α^γ.
 * This is vLLM's "mean acceptance length" (it includes the token each verifier call adds).
 */
export function expectedTokensPerCall(alpha: number, gamma: number): number {
  check(alpha, gamma, 0);
  if (alpha === 1) return gamma + 1;
  return (1 - alpha ** (gamma + 1)) / (1 - alpha);
}

/**
 * Wall-time improvement factor over verifier-only decoding:
 *   (1 − α^{γ+1}) / ((1 − α)(γc + v(γ+1))).
 * γ = 0 is plain decoding: exactly 1 with v(1) = 1.
 */
export function wallTimeFactor(alpha: number, gamma: number, c: number, verifyCost: VerifyCost = FLAT_VERIFY_COST): number {
  check(alpha, gamma, c);
  return expectedTokensPerCall(alpha, gamma) / (gamma * c + verifyCost(gamma + 1));
}

/**
 * Total arithmetic relative to verifier-only decoding, with ĉ = drafter / verifier operations per
 * token: (1 − α)(γĉ + γ + 1) / (1 − α^{γ+1}). Speculation spends extra compute, more when α is low.
 */
export function operationsFactor(alpha: number, gamma: number, cHat: number): number {
  check(alpha, gamma, cHat);
  return (gamma * cHat + gamma + 1) / expectedTokensPerCall(alpha, gamma);
}

export interface BestGamma {
  gamma: number;
  factor: number;
}

/** The γ in [0, γmax] with the largest wall-time factor (γ = 0 when speculation does not pay). */
export function bestGamma(alpha: number, c: number, gammaMax = 16, verifyCost: VerifyCost = FLAT_VERIFY_COST): BestGamma {
  let best: BestGamma = { gamma: 0, factor: wallTimeFactor(alpha, 0, c, verifyCost) };
  for (let g = 1; g <= gammaMax; g++) {
    const f = wallTimeFactor(alpha, g, c, verifyCost);
    if (f > best.factor) best = { gamma: g, factor: f };
  }
  return best;
}

/**
 * Points (x, y) as a function: linearly interpolated between them, extrapolated from the last two
 * beyond the largest x, the first y below the smallest.
 */
export function piecewiseLinear(points: ReadonlyArray<readonly [x: number, y: number]>): (x: number) => number {
  const pts = [...points].sort((a, b) => a[0] - b[0]);
  if (pts.length === 0) throw new RangeError("no points");
  return (n) => {
    if (n <= pts[0]![0]) return pts[0]![1];
    for (let i = 1; i < pts.length; i++) {
      const [n1, c1] = pts[i]!;
      if (n <= n1) {
        const [n0, c0] = pts[i - 1]!;
        return c0 + ((c1 - c0) * (n - n0)) / (n1 - n0);
      }
    }
    if (pts.length === 1) return pts[0]![1];
    const [na, ca] = pts[pts.length - 2]!;
    const [nb, cb] = pts[pts.length - 1]!;
    return cb + ((cb - ca) / (nb - na)) * (n - nb);
  };
}

/** A verify-cost curve from measurements: points (tokens, cost relative to a 1-token call). */
export function measuredVerifyCost(points: ReadonlyArray<readonly [tokens: number, relCost: number]>): VerifyCost {
  return points.length === 0 ? FLAT_VERIFY_COST : piecewiseLinear(points);
}

/** Costs of one whole request at one draft length γ, measured inside the running engine (calibrator/costs.ts). */
export interface RequestCosts {
  /** Prefill cost per prompt token, ms: the verifier's, and the drafter's on top of it. */
  verifierPrefillMsPerToken: number;
  drafterPrefillMsPerToken: number;
  /** One step of verifier-only decoding (one token), all included (sampling, bookkeeping), ms. */
  baseStepMs: number;
  /**
   * One speculative step at this γ, all included: γ drafter calls, one verifier call on γ + 1
   * tokens, the rejection sampler and the rollbacks, ms.
   */
  specStepMs: number;
  /**
   * What a step that ends in a rejection costs on top of `specStepMs` (then the cost of a step
   * whose drafts are all accepted), ms. A rejection rolls both caches back (the next append
   * compacts them) and, at T > 0, samples from the residual max(0, p − q): measured 0.24 to 0.49
   * verifier-only steps on this CPU, by T and run. Absent: steps cost the same whatever is accepted.
   */
  rejectionMs?: number;
}

/**
 * Predicted speed-up of a whole request (what the validation runs measure), not just of the
 * decoding loop:
 *   T_base = P·pv + N·t_0
 *   T_spec = P·(pv + pd) + (N / E[tokens per call])·t_γ
 * Deviations from Leviathan et al., flagged:
 * - the paper's factor ignores the prompt prefill, which both decoders pay and speculation does not
 *   shorten (and the drafter adds its own); for short completions it dilutes the speed-up;
 * - the paper composes a step's cost as γc + 1 (here γc + v(γ+1)) from isolated model timings; t_γ
 *   is instead the step's cost measured in the decoding loop at each γ. On this CPU the composed
 *   cost under-estimated the loop's by ~15% at γ = 3 (cache state, allocation, sampling), which
 *   made every prediction optimistic and pushed the fit to too long drafts.
 */
export function requestSpeedup(alpha: number, gamma: number, promptTokens: number, newTokens: number, c: RequestCosts): number {
  check(alpha, gamma, 0);
  if (gamma === 0) return 1;
  // i.i.d. acceptance: a step's γ drafts are all accepted with probability α^γ.
  return requestSpeedupAt(expectedTokensPerCall(alpha, gamma), promptTokens, newTokens, c, 1 - alpha ** gamma);
}

/**
 * `requestSpeedup` with the tokens each step yields given directly (e.g. from `expectedSteps`),
 * and the fraction of steps that end in a rejection (`expectedRejectingSteps` ÷ steps), which
 * cost `c.rejectionMs` more: T_spec's decoding term is (N / tokens per step)·(t_γ + f·t_rej).
 */
export function requestSpeedupAt(tokensPerStep: number, promptTokens: number, newTokens: number, c: RequestCosts, rejectingFraction = 0): number {
  if (!(tokensPerStep >= 1)) throw new RangeError(`tokens per step must be >= 1, got ${tokensPerStep}`);
  if (!(rejectingFraction >= 0 && rejectingFraction <= 1)) throw new RangeError(`rejecting fraction must be in [0, 1], got ${rejectingFraction}`);
  const base = promptTokens * c.verifierPrefillMsPerToken + newTokens * c.baseStepMs;
  const step = c.specStepMs + rejectingFraction * (c.rejectionMs ?? 0);
  const spec = promptTokens * (c.verifierPrefillMsPerToken + c.drafterPrefillMsPerToken) + (newTokens / tokensPerStep) * step;
  return base / spec;
}

/**
 * Expected verifier steps to emit a sequence whose draft at position i is accepted with
 * probability β_i (given the prefix), at draft length γ — the engine's loop (engine/speculative.ts)
 * in expectation: a step starting at position j drafts g = min(γ, n − j − 1) tokens, accepts the
 * first k with probability β_j···β_{j+k−1}·(1 − β_{j+k}) (all g: β_j···β_{j+g−1}) and emits k + 1.
 *   E[j] = 1 + Σ_k P(k | j)·E[j + k + 1],  E[j ≥ n] = 0.
 * Deviation from the paper, flagged: the paper takes β i.i.d. with mean α, so that E[tokens per
 * step] = (1 − α^{γ+1}) / (1 − α). Along real text β is not i.i.d. — easy stretches (boilerplate,
 * repetitions) and hard ones — and tokens per step depend on that arrangement, in either
 * direction (see test/speedup.test.ts); most at T = 0, where β ∈ {0, 1} and this recursion over
 * the greedy path is exact. After a rejection at T > 0 the real path leaves the teacher-forced
 * one; the recursion assumes the β measured along it still describe what follows.
 */
export function expectedSteps(beta: ArrayLike<number>, gamma: number): number {
  return expectedStepCounts(beta, gamma).steps;
}

/**
 * Expected verifier steps that end in a rejection (some draft rejected) while emitting the
 * sequence, by the same recursion (exact at T = 0): a rejection at draft k counts one and moves to
 * j + k + 1; accepting all g drafts moves to j + g + 1 without one.
 */
export function expectedRejectingSteps(beta: ArrayLike<number>, gamma: number): number {
  return expectedStepCounts(beta, gamma).rejecting;
}

/** `expectedSteps` and `expectedRejectingSteps` in one pass. */
export function expectedStepCounts(beta: ArrayLike<number>, gamma: number): { steps: number; rejecting: number } {
  check(0, gamma, 0);
  const n = beta.length;
  const E = new Float64Array(n + gamma + 2); // E[j] = 0 for j ≥ n
  const R = new Float64Array(n + gamma + 2); // R[j] = 0 for j ≥ n
  for (let j = n - 1; j >= 0; j--) {
    const g = Math.min(gamma, n - j - 1);
    let run = 1; // β_j···β_{j+k−1}
    let e = 1;
    let r = 0;
    for (let k = 0; k < g; k++) {
      const rejectAtK = run * (1 - beta[j + k]!);
      e += rejectAtK * E[j + k + 1]!;
      r += rejectAtK * (1 + R[j + k + 1]!);
      run *= beta[j + k]!;
    }
    E[j] = e + run * E[j + g + 1]!;
    R[j] = r + run * R[j + g + 1]!;
  }
  return { steps: E[0]!, rejecting: R[0]! };
}

/** A per-γ step-cost table (γ → ms) read at γ: measured points as they are, others piecewise linear. */
export function costAtGamma(table: Readonly<Record<string, number>>, gamma: number): number {
  return piecewiseLinear(Object.entries(table).map(([g, ms]) => [Number(g), ms] as const))(gamma);
}
