import { describe, expect, it } from "vitest";
import { bootstrap, ratioOfSums } from "../core/bootstrap.ts";
import { crossEntropy, entropy, kl, pinskerAlphaBound, totalVariation } from "../core/divergence.ts";
import { jainsIndex, shiftByMinimumWeights, spread, unfairnessU } from "../core/fairness.ts";
import { Xoshiro128 } from "../core/rng.ts";

describe("divergences (nats)", () => {
  const p = [0.5, 0.5, 0];
  const q = [0.25, 0.5, 0.25];
  it("cross-entropy, entropy and KL by hand", () => {
    // H(p,q) = −(.5 ln .25 + .5 ln .5) = .5·1.3863 + .5·.6931 = 1.0397
    expect(crossEntropy(p, q)).toBeCloseTo(0.5 * Math.log(4) + 0.5 * Math.log(2), 12);
    expect(entropy(p)).toBeCloseTo(Math.log(2), 12);
    // KL = H(p,q) − H(p) = .5 ln 2
    expect(kl(p, q)).toBeCloseTo(0.5 * Math.log(2), 12);
    // TV = ½(.25 + 0 + .25) = .25, so β = .75
    expect(totalVariation(p, q)).toBeCloseTo(0.25, 12);
  });
  it("Pinsker bound: 1 − TV ≥ 1 − √(KL/2) on random pairs", () => {
    const rng = new Xoshiro128(3);
    for (let n = 0; n < 200; n++) {
      const a = Array.from({ length: 5 }, () => rng.uniform() ** 3);
      const b = Array.from({ length: 5 }, () => rng.uniform() ** 3);
      const sa = a.reduce((s, x) => s + x);
      const sb = b.reduce((s, x) => s + x);
      const pp = a.map((x) => x / sa);
      const qq = b.map((x) => x / sb);
      expect(1 - totalVariation(pp, qq)).toBeGreaterThanOrEqual(pinskerAlphaBound(kl(pp, qq)) - 1e-12);
    }
  });
});

describe("fairness metrics", () => {
  it("U is the population variance of D_T", () => {
    // D = [1, 2, 3]: mean 2, squared deviations 1, 0, 1 → U = 2/3
    expect(unfairnessU([1, 2, 3])).toBeCloseTo(2 / 3, 12);
    expect(unfairnessU([2, 2])).toBe(0);
  });
  it("Jain's index: 1 when even, 1/m when one task takes everything", () => {
    expect(jainsIndex([1.5, 1.5, 1.5])).toBeCloseTo(1, 12);
    expect(jainsIndex([1, 0, 0, 0])).toBeCloseTo(0.25, 12);
    // [1, 2]: 9 / (2·5) = .9
    expect(jainsIndex([1, 2])).toBeCloseTo(0.9, 12);
  });
  it("spread reports mean, variance, extremes and worst-to-best", () => {
    expect(spread([1, 2])).toMatchObject({ mean: 1.5, variance: 0.25, min: 1, max: 2, worstToBest: 0.5 });
  });
  it("shift-by-minimum weights: best task gets 0, the rest in proportion to their gap", () => {
    // D = {en: 1, ja: 3, zh: 2}: gaps 0, 2, 1 → weights 0, 2/3, 1/3
    const w = shiftByMinimumWeights({ en: 1, ja: 3, zh: 2 });
    expect(w.en).toBe(0);
    expect(w.ja).toBeCloseTo(2 / 3, 12);
    expect(w.zh).toBeCloseTo(1 / 3, 12);
    expect(shiftByMinimumWeights({ a: 2, b: 2 })).toEqual({ a: 0.5, b: 0.5 });
    expect(() => shiftByMinimumWeights({ a: NaN })).toThrow(/finite/);
  });
});

describe("bootstrap", () => {
  it("covers the true mean about 95% of the time and is reproducible with a seed", () => {
    const rng = new Xoshiro128(11);
    let covered = 0;
    const trials = 200;
    for (let t = 0; t < trials; t++) {
      const xs = Array.from({ length: 40 }, () => rng.uniform()); // true mean .5
      const ci = bootstrap(xs, (s) => s.reduce((a, x) => a + x, 0) / s.length, rng, 300);
      if (ci.lo <= 0.5 && 0.5 <= ci.hi) covered++;
    }
    expect(covered / trials).toBeGreaterThan(0.88);
    expect(covered / trials).toBeLessThan(0.99);
    const units = [{ a: 1, d: 2 }, { a: 3, d: 4 }, { a: 0, d: 4 }];
    const stat = ratioOfSums<{ a: number; d: number }>((u) => u.a, (u) => u.d);
    expect(bootstrap(units, stat, new Xoshiro128(1), 100)).toEqual(bootstrap(units, stat, new Xoshiro128(1), 100));
    expect(stat(units)).toBeCloseTo(0.4, 12);
  });
});
