import { describe, expect, it } from "vitest";
import { continuationOf, measurePrompt, sampleContinuations, summarizePrompts, type PromptStats } from "../calibrator/measure.ts";
import { Xoshiro128 } from "../core/rng.ts";
import { taskPrompts } from "../corpora/index.ts";
import { generate } from "../engine/speculative.ts";
import { validateGroup, validateParams } from "../calibrator/validate.ts";
import { model } from "./support/models.ts";

describe("teacher-forced measurement", () => {
  it("α(τ=1, T=1) = 1 − mean TV, the Pinsker bound holds, and α predicts the acceptance seen online", async () => {
    const verifier = await model("verifier");
    const drafter = await model("drafter-base");
    const prompts = [...taskPrompts("en", 6, 64, "validation"), ...taskPrompts("de", 6, 64, "validation")].map((p) => verifier.tokenizer.encode(p));
    const conts = await sampleContinuations(verifier, prompts, { newTokens: 48, temperature: 1, rng: new Xoshiro128(3) });
    expect(conts.every((c) => c.continuation.length === 48 && c.verifierRows.length === 48)).toBe(true);
    const taus = [0.5, 1, 2];
    const units = [];
    for (const c of conts) units.push(await measurePrompt(drafter, c, { temperature: 1 }, taus));
    const s = summarizePrompts(units, taus, new Xoshiro128(4), 300);
    expect(s.positions).toBe(12 * 48);
    expect(s.alpha[1]!.estimate).toBeCloseTo(1 - s.meanTv, 9);
    expect(1 - s.meanTv).toBeGreaterThanOrEqual(s.pinskerBound);
    expect(s.kl.estimate).toBeLessThanOrEqual(s.crossEntropy.estimate);
    expect(s.alpha[1]!.lo).toBeLessThanOrEqual(s.alpha[1]!.estimate);
    expect(s.alpha[1]!.hi).toBeGreaterThanOrEqual(s.alpha[1]!.estimate);

    // Online: with γ = 1 every verifier step tests exactly one draft, accepted with probability β of
    // a context that (by exactness) follows the verifier's own law — so the observed acceptance
    // rate estimates the same α.
    let accepted = 0;
    let drafted = 0;
    for (const [i, prompt] of prompts.entries()) {
      for (let r = 0; r < 3; r++) {
        const g = await generate({ verifier, drafter, gamma: 1, prompt, maxNewTokens: 48, temperature: 1, rng: new Xoshiro128(100 * i + r), stopAtEos: false });
        accepted += g.stats.accepted;
        drafted += g.stats.drafted;
      }
    }
    expect(Math.abs(accepted / drafted - s.alpha[1]!.estimate)).toBeLessThan(0.06);
  });

  it("tokens per step (and rejecting steps) from the β sequences match what real speculative runs take, at T = 0 exactly", async () => {
    const verifier = await model("verifier");
    const drafter = await model("drafter-base");
    const prompts = [...taskPrompts("en", 4, 64, "validation"), ...taskPrompts("code-py", 4, 64, "validation")].map((p) => verifier.tokenizer.encode(p));
    const gammas = [1, 3, 5];
    // Greedy: the spec path is the verifier's greedy path whatever γ, and β ∈ {0, 1} along it (τ = 0),
    // so the recursion counts exactly the steps the engine takes.
    const conts = await sampleContinuations(verifier, prompts, { newTokens: 40, temperature: 0, rng: new Xoshiro128(1) });
    for (const [i, c] of conts.entries()) {
      const u = await measurePrompt(drafter, c, { temperature: 0 }, [0], gammas);
      for (const [k, g] of gammas.entries()) {
        const run = await generate({ verifier, drafter, gamma: g, prompt: prompts[i]!, maxNewTokens: 40, temperature: 0, proposalTemperature: 0, rng: new Xoshiro128(1), stopAtEos: false });
        expect(run.tokens).toEqual(c.continuation);
        expect(u.steps[0]![k]).toBeCloseTo(run.stats.steps, 6);
        expect(u.rejecting![0]![k]).toBeCloseTo(run.stepStats.filter((st) => st.accepted < st.drafted).length, 6);
      }
    }
  });
});

describe("validation", () => {
  it("teacher-forces the very prompts it timed: at T = 0 their tokens per step are the timed run's exactly; takes the cost probes asked for", async () => {
    const verifier = await model("verifier");
    const drafter = await model("drafter-base");
    const prompts = taskPrompts("math", 4, 64, "test").map((p) => verifier.tokenizer.encode(p));
    const costProbes = { prompts: prompts.slice(0, 1), count: 2, offset: 0 };
    const v = await validateParams({ verifier, drafter, gamma: 3, proposalTemperature: 0, temperature: 0, prompts, newTokens: 32, seed: 5, rng: new Xoshiro128(6), resamples: 100, costProbes });
    let steps = 0;
    let rejecting = 0;
    for (const [i, prompt] of prompts.entries()) {
      const run = await generate({ verifier, drafter, gamma: 3, prompt, maxNewTokens: 32, temperature: 0, proposalTemperature: 0, rng: new Xoshiro128(5 + i), stopAtEos: false });
      steps += run.stats.steps;
      rejecting += run.stepStats.filter((st) => st.accepted < st.drafted).length;
    }
    expect(v.teacherForced).toBeDefined();
    expect(v.teacherForced!.tokensPerStep.estimate).toBeCloseTo((prompts.length * 32) / steps, 9);
    expect(v.teacherForced!.rejectingFraction).toBeCloseTo(rejecting / steps, 9);
    // At T = 0 the timed runs realise exactly what teacher forcing expects.
    expect(v.realized!.tokensPerStep).toBeCloseTo((prompts.length * 32) / steps, 9);
    expect(v.realized!.rejectingFraction).toBeCloseTo(rejecting / steps, 9);
    expect(v.teacherForced!.promptTokens).toBeCloseTo(prompts.reduce((a, p) => a + p.length, 0) / prompts.length, 9);
    // The cost probes asked for, each a paired sample at this cell.
    expect(v.costProbes).toHaveLength(2);
    for (const p of v.costProbes!) expect(p.stepRatio).toBeGreaterThan(0);
    // Verifier-only parameters have nothing to teacher-force, and no speculative step to probe.
    const off = await validateParams({ verifier, drafter: undefined, gamma: 0, proposalTemperature: null, temperature: 0, prompts: prompts.slice(0, 1), newTokens: 8, seed: 5, rng: new Xoshiro128(6), resamples: 50, costProbes });
    expect(off.teacherForced).toBeUndefined();
    expect(off.costProbes).toBeUndefined();
    expect(off.realized).toBeUndefined();
  });

  it("a group shares one verifier-only run per prompt and gives each cell what validating it alone gives (T = 0)", async () => {
    const verifier = await model("verifier");
    const base = await model("drafter-base");
    const balanced = await model("drafter-balanced");
    const prompts = taskPrompts("de", 3, 64, "test").map((p) => verifier.tokenizer.encode(p));
    const common = { verifier, temperature: 0, prompts, newTokens: 24, seed: 9, resamples: 50 };
    const cells = [
      { drafter: base, gamma: 2, proposalTemperature: 0 },
      { drafter: balanced, gamma: 4, proposalTemperature: 0 },
      { drafter: undefined, gamma: 0, proposalTemperature: null },
    ];
    const probes = { prompts: prompts.slice(0, 1), count: 1, offset: 0 };
    const group = await validateGroup({ ...common, cells: cells.map((c) => ({ ...c, rng: new Xoshiro128(1), costProbes: probes })) });
    expect(group).toHaveLength(3);
    for (const [j, c] of cells.entries()) {
      const alone = await validateParams({ ...common, ...c, rng: new Xoshiro128(1) });
      const g = group[j]!;
      // Teacher forcing and the realised acceptance are deterministic at T = 0: identical.
      expect(g.teacherForced?.tokensPerStep.estimate).toBe(alone.teacherForced?.tokensPerStep.estimate);
      expect(g.realized).toEqual(alone.realized);
      expect(g.measuredSpeedup.estimate).toBeGreaterThan(0);
      expect(g.measuredSpeedup.lo).toBeLessThanOrEqual(g.measuredSpeedup.estimate);
      // Every cell is measured against the same verifier-only runs.
      expect(g.verifierOnlyMsPerChar).toBe(group[0]!.verifierOnlyMsPerChar);
      expect(g.costProbes?.length ?? 0).toBe(c.gamma > 0 ? 1 : 0);
    }
    // The verifier-only cell times a second verifier-only run: no speculative statistics.
    expect(group[2]!.teacherForced).toBeUndefined();
    expect(group[2]!.realized).toBeUndefined();
  });

  it("at T = 1 teacher-forces each speculative run along its own output, not the verifier-only run's", async () => {
    const verifier = await model("verifier");
    const drafter = await model("drafter-base");
    const prompts = taskPrompts("fr", 3, 64, "test").map((p) => verifier.tokenizer.encode(p));
    const target = { temperature: 1 };
    const v = await validateParams({ verifier, drafter, gamma: 3, proposalTemperature: 1, ...target, prompts, newTokens: 24, seed: 11, rng: new Xoshiro128(2), resamples: 50 });
    const own: PromptStats[] = [];
    const verifierOnly: PromptStats[] = [];
    for (const [i, prompt] of prompts.entries()) {
      const spec = await generate({ verifier, drafter, gamma: 3, prompt, maxNewTokens: 24, ...target, proposalTemperature: 1, rng: new Xoshiro128(11 + i), stopAtEos: false });
      const base = await generate({ verifier, gamma: 0, prompt, maxNewTokens: 24, ...target, rng: new Xoshiro128(11 + i), stopAtEos: false });
      own.push(await measurePrompt(drafter, await continuationOf(verifier, prompt, spec.tokens), target, [1], [3]));
      verifierOnly.push(await measurePrompt(drafter, await continuationOf(verifier, prompt, base.tokens), target, [1], [3]));
    }
    const tps = (units: PromptStats[]) => summarizePrompts(units, [1], new Xoshiro128(2), 50).tokensPerStep[0]!["3"]!.estimate;
    expect(v.teacherForced!.tokensPerStep.estimate).toBe(tps(own));
    // The two texts differ at T = 1, and so do their expected tokens per step.
    expect(tps(own)).not.toBe(tps(verifierOnly));
  });
});
