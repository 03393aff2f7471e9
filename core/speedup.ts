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
 * A verify-cost curve from measurements: points (tokens, cost relative to a 1-token call),
 * linearly interpolated, and extrapolated from the last two points beyond the largest measured n.
 */
export function measuredVerifyCost(points: ReadonlyArray<readonly [tokens: number, relCost: number]>): VerifyCost {
  const pts = [...points].sort((a, b) => a[0] - b[0]);
  if (pts.length === 0) return FLAT_VERIFY_COST;
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

/** Costs of one whole request, measured inside the running engine (see calibrator/costs.ts). */
export interface RequestCosts {
  /** One verifier step (one token) in the decoding loop, ms. */
  verifierStepMs: number;
  /** One drafter step in the decoding loop, ms. */
  drafterStepMs: number;
  /** Prefill cost per prompt token, ms: the verifier's, and the drafter's on top of it. */
  verifierPrefillMsPerToken: number;
  drafterPrefillMsPerToken: number;
  verifyCost: VerifyCost;
}

/**
 * Predicted speed-up of a whole request (what the validation runs measure), not just of the
 * decoding loop. Deviation from Leviathan et al., flagged: the paper's factor ignores the prompt
 * prefill, which both decoders pay and speculation does not shorten (and the drafter adds its own
 * prefill); for short completions it dilutes the speed-up noticeably.
 *   T_base = P·pv + N·tv
 *   T_spec = P·(pv + pd) + (N / E[tokens per call])·(γ·td + tv·v(γ+1))
 */
export function requestSpeedup(alpha: number, gamma: number, promptTokens: number, newTokens: number, c: RequestCosts): number {
  check(alpha, gamma, 0);
  if (gamma === 0) return 1;
  const base = promptTokens * c.verifierPrefillMsPerToken + newTokens * c.verifierStepMs;
  const calls = newTokens / expectedTokensPerCall(alpha, gamma);
  const spec = promptTokens * (c.verifierPrefillMsPerToken + c.drafterPrefillMsPerToken) + calls * (gamma * c.drafterStepMs + c.verifierStepMs * c.verifyCost(gamma + 1));
  return base / spec;
}
