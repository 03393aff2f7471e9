import { describe, expect, it } from "vitest";
import type { Rng } from "../core/rng.ts";
import { residual, verifyDraft } from "../engine/rejection-sampler.ts";
import { targetDistribution } from "../engine/sampling.ts";

/** Replays a fixed list of uniforms so each case is worked out by hand. */
const scripted = (...us: number[]): Rng => ({
  uniform: () => {
    if (!us.length) throw new Error("the case drew more uniforms than scripted");
    return us.shift()!;
  },
});
const d = (...xs: number[]) => Float64Array.from(xs);

describe("verifyDraft on hand-made distributions", () => {
  it("all accepted, then the bonus token comes from p_{γ+1}", () => {
    // row 1: q(0)=.5, p(0)=.6 → p/q = 1.2 ≥ 1: accepted whatever u (u=.99)
    // row 2: q(1)=.3, p(1)=.3 → ratio 1: accepted (u=.999)
    // bonus: p3 = [.2, .3, .5], u = .95 → cumulative .2, .5, 1.0 → token 2
    const v = verifyDraft([0, 1], [d(0.5, 0.3, 0.2), d(0.5, 0.3, 0.2)], [d(0.6, 0.3, 0.1), d(0.4, 0.3, 0.3), d(0.2, 0.3, 0.5)], scripted(0.99, 0.999, 0.95));
    expect(v).toEqual({ tokens: [0, 1, 2], accepted: 2, bonus: true, beta: [0.5 + 0.3 + 0.1, 0.4 + 0.3 + 0.2] });
  });

  it("first draft rejected: the replacement comes from norm(max(0, p − q))", () => {
    // q = [.2, .6, .2], p = [.5, .3, .2], draft 1: accept prob p/q = .5; u = .7 → .7·.6 = .42 ≥ .3: rejected
    // residual = norm([.3, 0, 0]) = [1, 0, 0] → token 0 whatever u (u=.123)
    const v = verifyDraft([1], [d(0.2, 0.6, 0.2)], [d(0.5, 0.3, 0.2), d(1, 0, 0)], scripted(0.7, 0.123));
    expect(v.tokens).toEqual([0]);
    expect(v.accepted).toBe(0);
    expect(v.bonus).toBe(false);
    expect(v.beta[0]).toBeCloseTo(0.2 + 0.3 + 0.2, 12); // Σ min(p, q)
  });

  it("a draft with p < q is accepted when u < p/q", () => {
    // same rows as above, u = .4 → .4·.6 = .24 < .3: accepted (prob .5); bonus from p2 = one-hot(0)
    const v = verifyDraft([1], [d(0.2, 0.6, 0.2)], [d(0.5, 0.3, 0.2), d(1, 0, 0)], scripted(0.4, 0.5));
    expect(v).toMatchObject({ tokens: [1, 0], accepted: 1, bonus: true });
  });

  it("second draft rejected: tokens are the first draft plus the residual draw at position 2", () => {
    // row 1: q(2)=.2, p(2)=.4 → ratio 2: accepted (u=.9)
    // row 2: q(0)=.7, p(0)=.1 → ratio 1/7; u=.5 → .35 ≥ .1: rejected
    //   residual = max(0, [.1,.6,.3] − [.7,.1,.2]) = [0,.5,.1] → norm [0, 5/6, 1/6]; u=.9 → cumulative 0, .833, 1 → token 2
    const v = verifyDraft([2, 0], [d(0.4, 0.4, 0.2), d(0.7, 0.1, 0.2)], [d(0.3, 0.3, 0.4), d(0.1, 0.6, 0.3), d(1, 0, 0)], scripted(0.9, 0.5, 0.9));
    expect(v.tokens).toEqual([2, 2]);
    expect(v.accepted).toBe(1);
    expect(v.beta).toHaveLength(2);
  });

  it("greedy (one-hot p) accepts exactly while the draft equals the verifier's argmax", () => {
    const p = [d(0, 1, 0), d(0, 0, 1), d(1, 0, 0)];
    const q = [d(0, 1, 0), d(0, 1, 0)]; // greedy drafts: 1, then 1 (verifier wants 2)
    for (const u of [0, 0.5, 0.999]) {
      const v = verifyDraft([1, 1], q, p, scripted(u, u, u));
      expect(v.tokens).toEqual([1, 2]); // accepted 1, then the verifier's argmax 2
      expect(v.accepted).toBe(1);
    }
  });

  it("residual falls back to p when p ≤ q everywhere (rounding only)", () => {
    const p = d(0.5, 0.5);
    expect(residual(p, d(0.5, 0.5))).toBe(p);
    expect(Array.from(residual(d(0.7, 0.3), d(0.4, 0.6)))).toEqual([1, 0]);
  });

  it("refuses mismatched row counts", () => {
    expect(() => verifyDraft([0], [d(1)], [d(1)], scripted())).toThrow(/γ\+1/);
  });
});

describe("target distribution", () => {
  it("applies temperature, then top-k, then top-p", () => {
    const logits = [Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)];
    // temperature 1, top-p .7: keep .5, .3 (cumulative .8 ≥ .7) → [.625, .375, 0, 0]
    const p = targetDistribution(logits, { temperature: 1, topP: 0.7 });
    expect(Array.from(p).map((x) => +x.toFixed(6))).toEqual([0.625, 0.375, 0, 0]);
    // top-k 3: renormalise .5, .3, .15 over .95
    const k = targetDistribution(logits, { temperature: 1, topK: 3 });
    expect(k[2]).toBeCloseTo(0.15 / 0.95, 12);
    expect(k[3]).toBe(0);
    // temperature 0: one-hot argmax
    expect(Array.from(targetDistribution(logits, { temperature: 0 }))).toEqual([1, 0, 0, 0]);
    // temperature 2 flattens: p ∝ sqrt(p)
    const t = targetDistribution(logits, { temperature: 2 });
    const z = Math.sqrt(0.5) + Math.sqrt(0.3) + Math.sqrt(0.15) + Math.sqrt(0.05);
    expect(t[0]).toBeCloseTo(Math.sqrt(0.5) / z, 12);
  });
});
