import { describe, expect, it } from "vitest";
import { bestGamma, expectedTokensPerCall, measuredVerifyCost, operationsFactor, requestSpeedup, wallTimeFactor } from "../core/speedup.ts";

// Every expected value below is worked out by hand in the comment beside it.
describe("analytic speed-up model", () => {
  it("expected tokens per verifier call matches the geometric series", () => {
    // α = 0.8, γ = 4: 1 + .8 + .64 + .512 + .4096 = 3.3616
    expect(expectedTokensPerCall(0.8, 4)).toBeCloseTo(3.3616, 12);
    // α = 0: every draft rejected, the verifier still adds one token
    expect(expectedTokensPerCall(0, 5)).toBe(1);
    // α = 1: every draft accepted plus the bonus token
    expect(expectedTokensPerCall(1, 5)).toBe(6);
    // γ = 0 is plain decoding
    expect(expectedTokensPerCall(0.5, 0)).toBe(1);
  });

  it("wall-time factor follows Leviathan et al. eq. (1 − α^{γ+1}) / ((1 − α)(γc + 1))", () => {
    // 3.3616 / (4·0.1 + 1) = 3.3616 / 1.4 = 2.401142857…
    expect(wallTimeFactor(0.8, 4, 0.1)).toBeCloseTo(2.4011428571, 9);
    // α = 0, γ = 3, c = 0.2: 1 / 1.6 = 0.625 — speculation that never hits is pure cost
    expect(wallTimeFactor(0, 3, 0.2)).toBeCloseTo(0.625, 12);
    expect(wallTimeFactor(0.9, 0, 0.5)).toBe(1);
  });

  it("γ = 1 gives at least (1 + α)/(1 + c) when α > c", () => {
    // α = 0.6, c = 0.1: (1 + .6)/(1.1) = 1.4545…
    expect(wallTimeFactor(0.6, 1, 0.1)).toBeCloseTo(1.6 / 1.1, 12);
  });

  it("best γ is the argmax of the wall-time factor", () => {
    // α = .8, c = .1: γ=5 → 3.68928/1.5 = 2.45952; γ=6 → 3.951424/1.6 = 2.46964; γ=7 → 4.1611392/1.7 = 2.44773
    const b = bestGamma(0.8, 0.1);
    expect(b.gamma).toBe(6);
    expect(b.factor).toBeCloseTo(3.951424 / 1.6, 9);
    // α = 0.1, c = 0.5: γ=1 gives 1.1/1.5 < 1, so speculation is switched off
    expect(bestGamma(0.1, 0.5)).toEqual({ gamma: 0, factor: 1 });
  });

  it("total-operations factor (1 − α)(γĉ + γ + 1)/(1 − α^{γ+1})", () => {
    // α = .5, γ = 2, ĉ = .1: .5 · 3.2 / .875 = 1.828571…
    expect(operationsFactor(0.5, 2, 0.1)).toBeCloseTo(1.8285714286, 9);
  });

  it("a measured verify-cost curve replaces the flat-cost assumption", () => {
    const v = measuredVerifyCost([
      [1, 1],
      [5, 1.4],
    ]);
    expect(v(3)).toBeCloseTo(1.2, 12); // halfway between 1 and 1.4
    expect(v(7)).toBeCloseTo(1.6, 12); // extrapolated: +0.1 per token
    // α = .8, γ = 4, c = .1 with v(5) = 1.4: 3.3616 / (0.4 + 1.4) = 1.867555…
    expect(wallTimeFactor(0.8, 4, 0.1, v)).toBeCloseTo(3.3616 / 1.8, 12);
  });

  it("whole-request speed-up counts the prefill both decoders pay", () => {
    // α=.5, γ=2, P=100 prompt tokens, N=50 new; tv=2 ms, td=.1 ms, prefill .2 + .02 ms/token, v(3)=1.2
    // base = 100·.2 + 50·2 = 120; tokens/call = 1.75 → 28.571 calls of 2·.1 + 2·1.2 = 2.6 ms
    // spec = 100·.22 + 28.571·2.6 = 96.286 → S = 1.24629…
    const c = { verifierStepMs: 2, drafterStepMs: 0.1, verifierPrefillMsPerToken: 0.2, drafterPrefillMsPerToken: 0.02, verifyCost: measuredVerifyCost([[1, 1], [3, 1.2]]) };
    expect(requestSpeedup(0.5, 2, 100, 50, c)).toBeCloseTo(120 / (22 + (50 / 1.75) * 2.6), 12);
    expect(requestSpeedup(0.9, 0, 100, 50, c)).toBe(1);
    // no prompt: the loop-only factor with these costs
    expect(requestSpeedup(0.5, 2, 0, 50, c)).toBeCloseTo((50 * 2) / ((50 / 1.75) * 2.6), 12);
  });

  it("rejects impossible inputs", () => {
    expect(() => wallTimeFactor(1.2, 2, 0.1)).toThrow(/alpha/);
    expect(() => wallTimeFactor(0.5, -1, 0.1)).toThrow(/gamma/);
    expect(() => wallTimeFactor(0.5, 1.5, 0.1)).toThrow(/gamma/);
  });
});
