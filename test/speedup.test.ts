import { describe, expect, it } from "vitest";
import { bestGamma, costAtGamma, expectedRejectingSteps, expectedSteps, expectedTokensPerCall, measuredVerifyCost, operationsFactor, requestSpeedup, requestSpeedupAt, wallTimeFactor } from "../core/speedup.ts";

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

  it("whole-request speed-up counts the prefill both decoders pay and the step cost measured at γ", () => {
    // α=.5, γ=2, P=100 prompt tokens, N=50 new; verifier-only step 2 ms, speculative step at γ=2 2.6 ms,
    // prefill .2 + .02 ms/token: base = 100·.2 + 50·2 = 120; tokens/call = 1.75 → 28.571 steps
    // spec = 100·.22 + 28.571·2.6 = 96.286 → S = 1.24629…
    const c = { baseStepMs: 2, specStepMs: 2.6, verifierPrefillMsPerToken: 0.2, drafterPrefillMsPerToken: 0.02 };
    expect(requestSpeedup(0.5, 2, 100, 50, c)).toBeCloseTo(120 / (22 + (50 / 1.75) * 2.6), 12);
    expect(requestSpeedup(0.9, 0, 100, 50, c)).toBe(1);
    // no prompt: the loop-only factor with these costs
    expect(requestSpeedup(0.5, 2, 0, 50, c)).toBeCloseTo((50 * 2) / ((50 / 1.75) * 2.6), 12);
  });

  it("a per-γ step-cost table is read as measured, interpolated between points and extrapolated beyond", () => {
    const table = { "1": 1.6, "3": 2.0, "6": 2.3 };
    expect(costAtGamma(table, 3)).toBe(2.0);
    expect(costAtGamma(table, 2)).toBeCloseTo(1.8, 12);
    expect(costAtGamma(table, 8)).toBeCloseTo(2.5, 12);
  });

  it("expected steps along a β sequence: hand cases, and the i.i.d. formula in the limit", () => {
    // Every draft accepted: ⌈n / (γ + 1)⌉ steps; none: one token per step.
    expect(expectedSteps(new Float64Array(10).fill(1), 3)).toBe(3);
    expect(expectedSteps(new Float64Array(10).fill(0), 3)).toBe(10);
    expect(expectedSteps([0.3, 0.9, 0.5], 0)).toBe(3);
    // n = 2, γ = 1: the first step drafts one token (β_0): accepted → 2 tokens, done; else 1 more step.
    expect(expectedSteps([0.25, 0.6], 1)).toBeCloseTo(1 + 0.75 * 1, 12);
    // n = 3, γ = 2, β = (.5, .4, .7): the first step drafts 2 tokens and accepts k = 0 (p .5, next at 1),
    // 1 (p .5·.6, next at 2) or 2 (p .5·.4, done). From 1: one draft (β_1), 1 + .6·E[2]; from 2: 1 step.
    expect(expectedSteps([0.5, 0.4, 0.7], 2)).toBeCloseTo(1 + 0.5 * (1 + 0.6 * 1) + 0.5 * 0.6 * 1, 12);
    // A long i.i.d. sequence: tokens per step → (1 − α^{γ+1}) / (1 − α).
    for (const [a, g] of [[0.6, 3], [0.8, 5], [0.3, 1]] as const) {
      const n = 20_000;
      expect(n / expectedSteps(new Float64Array(n).fill(a), g)).toBeCloseTo(expectedTokensPerCall(a, g), 2);
    }
  });

  it("expected rejecting steps along a β sequence: hand cases, and 1 − α^γ per step in the i.i.d. limit", () => {
    // Every draft accepted: no rejection. None: every step that drafts rejects (all but the last, which has no room to draft).
    expect(expectedRejectingSteps(new Float64Array(10).fill(1), 3)).toBe(0);
    expect(expectedRejectingSteps(new Float64Array(10).fill(0), 3)).toBe(9);
    expect(expectedRejectingSteps([0.3, 0.9, 0.5], 0)).toBe(0);
    // n = 2, γ = 1: the first step rejects with probability .75, then one more step that cannot draft.
    expect(expectedRejectingSteps([0.25, 0.6], 1)).toBeCloseTo(0.75, 12);
    // n = 3, γ = 2, β = (.5, .4, .7): reject at k = 0 (p .5) then from 1 one draft (rejects w.p. .6);
    // reject at k = 1 (p .5·.6) then from 2 nothing; accept both (p .2): done.
    expect(expectedRejectingSteps([0.5, 0.4, 0.7], 2)).toBeCloseTo(0.5 * (1 + 0.6) + 0.5 * 0.6 * 1, 12);
    for (const [a, g] of [[0.6, 3], [0.8, 5], [0.3, 1]] as const) {
      const beta = new Float64Array(20_000).fill(a);
      expect(expectedRejectingSteps(beta, g) / expectedSteps(beta, g)).toBeCloseTo(1 - a ** g, 2);
    }
  });

  it("a request's speed-up charges the rejection extra on the fraction of steps that reject", () => {
    const c = { verifierPrefillMsPerToken: 0.1, drafterPrefillMsPerToken: 0.02, baseStepMs: 2, specStepMs: 3, rejectionMs: 0.8 };
    // P = 50, N = 64, 2 tokens per step, half the steps reject: (5 + 128) / (6 + 32·(3 + 0.4)).
    expect(requestSpeedupAt(2, 50, 64, c, 0.5)).toBeCloseTo(133 / (6 + 32 * 3.4), 12);
    expect(requestSpeedupAt(2, 50, 64, c)).toBeCloseTo(133 / (6 + 32 * 3), 12); // no rejection
    expect(requestSpeedupAt(2, 50, 64, { ...c, rejectionMs: undefined }, 1)).toBeCloseTo(133 / (6 + 32 * 3), 12); // an older cost model
    expect(() => requestSpeedupAt(2, 50, 64, c, 1.5)).toThrow(RangeError);
    // i.i.d.: the fraction is 1 − α^γ.
    const a = 0.7;
    expect(requestSpeedup(a, 3, 50, 64, c)).toBeCloseTo(requestSpeedupAt(expectedTokensPerCall(a, 3), 50, 64, c, 1 - a ** 3), 12);
  });

  it("tokens per step depend on how acceptance is arranged, not only on its mean α", () => {
    // Easy and hard stretches (β = 1 for 200 positions, then 0 for 200, …): α = .5, but the easy
    // half takes n/2/(γ+1) steps and the hard half n/2: 1 / (.5/5 + .5) = 1.667 tokens per step
    // at γ = 4, where i.i.d. acceptance with α = .5 gives 1.9375.
    const beta = Array.from({ length: 4000 }, (_, i) => (Math.floor(i / 200) % 2 === 0 ? 1 : 0));
    expect(4000 / expectedSteps(beta, 4)).toBeCloseTo(1 / (0.5 / 5 + 0.5), 6);
    expect(expectedTokensPerCall(0.5, 4)).toBeCloseTo(1.9375, 12);
    // Alternating 1, 0: every step accepts one draft then fails: 2 tokens per step at any γ ≥ 1.
    const alt = Array.from({ length: 1000 }, (_, i) => (i % 2 === 0 ? 1 : 0));
    expect(1000 / expectedSteps(alt, 3)).toBeCloseTo(2, 6);
  });

  it("rejects impossible inputs", () => {
    expect(() => wallTimeFactor(1.2, 2, 0.1)).toThrow(/alpha/);
    expect(() => wallTimeFactor(0.5, -1, 0.1)).toThrow(/gamma/);
    expect(() => wallTimeFactor(0.5, 1.5, 0.1)).toThrow(/gamma/);
  });
});

describe("loop step costs", () => {
  it("keep the measured per-γ medians, lifted only where a larger γ came out cheaper than a smaller one", async () => {
    const { nonDecreasingInGamma } = await import("../calibrator/costs.ts");
    const bent = [2.1, 2.3, 2.4, 2.57, 2.72, 3.03]; // the shape measured: not a line (γ = 6 costs more)
    expect(nonDecreasingInGamma(bent)).toEqual(bent);
    expect(nonDecreasingInGamma([2.1, 2.3, 2.25, 2.5])).toEqual([2.1, 2.3, 2.3, 2.5]);
    expect(nonDecreasingInGamma([1.7])).toEqual([1.7]);
    expect(nonDecreasingInGamma([])).toEqual([]);
  });

  it("drift: one factor per temperature, the median of probe ÷ model over cells, and it rescales every speculative step", async () => {
    const { costDrift, withDrift } = await import("../calibrator/costs.ts");
    const loop = {
      promptTokens: 40,
      newTokens: 64,
      reps: 10,
      verifier_prefill_ms_per_token: 0.1,
      verifier_step_ms: { "0": 2, "1": 2 },
      drafters: [{ id: "d", prefill_ms_per_token: 0.02, step_ms: { "0": { "1": 2.6, "2": 3.0 }, "1": { "1": 2.8, "2": 3.2 } }, step_ms_measured: { "0": { "1": 2.6, "2": 3.0 }, "1": { "1": 2.8, "2": 3.2 } } }],
    };
    // At T = 0: model ratios 1.3 (γ 1) and 1.5 (γ 2); probes 5% above, 5% above, 20% above (an outlier the median ignores).
    const probes = [
      { drafter: "d", gamma: 1, temperature: 0, stepRatio: 1.3 * 1.05 },
      { drafter: "d", gamma: 2, temperature: 0, stepRatio: 1.5 * 1.05 },
      { drafter: "d", gamma: 2, temperature: 0, stepRatio: 1.5 * 1.2 },
      { drafter: "d", gamma: 1, temperature: 0.9, stepRatio: 1.4 * 0.96 }, // nearest measured T is 1
    ];
    const drift = costDrift(loop, probes);
    expect(drift["0"]!.factor).toBeCloseTo(1.05, 9);
    expect(drift["0"]!.samples).toBe(3);
    expect(drift["1"]!.factor).toBeCloseTo(0.96, 9);
    const moved = withDrift(loop, drift);
    expect(moved.drafters[0]!.step_ms["0"]!["2"]).toBeCloseTo(3.0 * 1.05, 9);
    expect(moved.drafters[0]!.step_ms["1"]!["1"]).toBeCloseTo(2.8 * 0.96, 9);
    expect(moved.verifier_step_ms).toEqual(loop.verifier_step_ms); // the verifier-only step is the unit
    expect(() => costDrift(loop, [{ drafter: "x", gamma: 1, temperature: 0, stepRatio: 1 }])).toThrow(/no loop costs for drafter x/);
  });

  it("drift around each unit: the median over the units within the window, following a trend a single factor averages away", async () => {
    const { localDrift } = await import("../calibrator/costs.ts");
    // Units in the order they ran, their probes' ratios: a host that slows speculation by 1% per unit.
    const byUnit = Array.from({ length: 12 }, (_, i) => [1 + 0.01 * i, 1 + 0.01 * i]);
    const d = localDrift(byUnit, 2);
    expect(d[6]).toBeCloseTo(1.06, 9);
    expect(d[0]).toBeCloseTo(1.01, 9); // units 0..2
    expect(d[11]).toBeCloseTo(1.10, 9); // units 9..11
    // No probes near (verifier-only units): no correction.
    expect(localDrift([[], [], []], 1)).toEqual([1, 1, 1]);
  });

  it("share one rejection slope across cells with their own intercepts, robust to a burst", async () => {
    const { pooledTheilSen } = await import("../calibrator/costs.ts");
    // Three cells (γ), intercepts 1.3, 1.5, 1.7, slope 0.35 in the rejecting fraction.
    const groups = [1.3, 1.5, 1.7].map((b, g) => {
      const x = Array.from({ length: 12 }, (_, i) => 0.1 + 0.07 * ((i * 5 + g) % 12));
      return { x, y: x.map((v) => b + 0.35 * v) };
    });
    expect(pooledTheilSen(groups)).toBeCloseTo(0.35, 9);
    // One timing 40% high (a burst of load) barely moves it; least squares would.
    groups[1]!.y[3] = groups[1]!.y[3]! * 1.4;
    expect(Math.abs(pooledTheilSen(groups) - 0.35)).toBeLessThan(0.02);
    // No spread in x: no slope to see.
    expect(pooledTheilSen([{ x: [0.5, 0.5, 0.51], y: [1, 2, 3] }])).toBe(0);
  });

  it("cycle through the tasks' prompts task-major, skipping tasks that have fewer", async () => {
    const { loopCostPrompts } = await import("../calibrator/costs.ts");
    expect(loopCostPrompts([[[1, 1], [1, 2]], [[2, 1]], [[3, 1], [3, 2]]])).toEqual([[1, 1], [2, 1], [3, 1], [1, 2], [3, 2]]);
  });

  it("are timed on the real prompts given, round by round: prefill per token over prompts of different lengths", async () => {
    const { measureLoopCosts } = await import("../calibrator/costs.ts");
    const { model } = await import("./support/models.ts");
    const verifier = await model("verifier");
    const drafter = await model("drafter-base");
    const prompts = [verifier.tokenizer.encode("Guten Tag, wie geht es dir heute?"), verifier.tokenizer.encode("def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n# prints 5")];
    const c = await measureLoopCosts(verifier, [drafter], { gammas: [1, 2], temperatures: [0], newTokens: 6, prompts, reps: 2 });
    expect(c.promptTokens).toBeCloseTo((prompts[0]!.length + prompts[1]!.length) / 2, 9);
    expect(c.verifier_prefill_ms_per_token).toBeGreaterThan(0);
    const d = c.drafters[0]!;
    for (const g of ["1", "2"]) expect(d.step_ms_measured["0"]![g]).toBeGreaterThan(0);
    await expect(measureLoopCosts(verifier, [drafter], { gammas: [1], temperatures: [0], newTokens: 2, prompts: [[5]], reps: 1 })).rejects.toThrow(/shorter than 2 tokens/);
  });
});

describe("speed-up model for a given workload", () => {
  it("predictFor with a cell's own tokens per step and prompt length is predict; more tokens per step predict more", async () => {
    const { SpeedupModel } = await import("../calibrator/predict.ts");
    const steps = { "1": 1.5, "2": 1.8, "3": 2.0 };
    const loop = {
      promptTokens: 96,
      newTokens: 64,
      reps: 1,
      verifier_prefill_ms_per_token: 0.1,
      verifier_step_ms: { "1": 1.2 },
      drafters: [{ id: "d", prefill_ms_per_token: 0.01, step_ms: { "1": steps }, step_ms_measured: { "1": steps } }],
    };
    const costs = { context: 96, verifier_step_ms: 1, drafters: [{ id: "d", step_ms: 0.07, c: 0.07 }], verifyCost: [[1, 1], [4, 1.4]] as [number, number][], loop };
    const iv = (x: number) => ({ estimate: x, lo: x - 0.1, hi: x + 0.1 });
    const model = new SpeedupModel(costs, [{ task: "t", drafter: "d", targetTemperature: 1, proposalTemperature: 1, alpha: iv(0.7), tokensPerStep: { "3": iv(2.5) } }], {
      promptTokens: new Map([["t", 90]]),
      newTokens: 64,
    });
    const pool = { id: "p", drafter: "d", gamma: 3, proposalTemperature: 1 };
    expect(model.predictFor("t", pool, 1, { tokensPerStep: iv(2.5), promptTokens: 90 })).toEqual(model.predict("t", pool, 1));
    expect(model.predictFor("t", pool, 1, { tokensPerStep: iv(3), promptTokens: 90 }).estimate).toBeGreaterThan(model.predict("t", pool, 1).estimate);
  });
});
