/**
 * Greedy speculative decoding must emit exactly the verifier's own greedy output, byte for byte,
 * whatever the drafter and γ — on every task's held-out prompts.
 */
import { describe, expect, it } from "vitest";
import { TASKS } from "../core/tasks.ts";
import { Xoshiro128 } from "../core/rng.ts";
import { taskPrompts } from "../corpora/index.ts";
import { generate } from "../engine/speculative.ts";
import { model } from "./support/models.ts";

const PROMPTS_PER_TASK = 4;
const NEW_TOKENS = 48;

describe("greedy speculative output is byte-identical to verifier-only greedy", () => {
  for (const task of TASKS) {
    it(`${task}`, async () => {
      const verifier = await model("verifier");
      const drafters = [await model("drafter-base"), await model("drafter-balanced")];
      let drafted = 0;
      let accepted = 0;
      for (const [i, text] of taskPrompts(task, PROMPTS_PER_TASK).entries()) {
        const prompt = verifier.tokenizer.encode(text);
        const plain = await generate({ verifier, gamma: 0, prompt, maxNewTokens: NEW_TOKENS, temperature: 0, rng: new Xoshiro128(1) });
        const expected = Buffer.from(verifier.tokenizer.decodeBytes(plain.tokens));
        const drafter = drafters[i % 2]!;
        for (const gamma of [1, 3, 6]) {
          const spec = await generate({ verifier, drafter, gamma, prompt, maxNewTokens: NEW_TOKENS, temperature: 0, rng: new Xoshiro128(2) });
          expect(Buffer.from(verifier.tokenizer.decodeBytes(spec.tokens)).equals(expected)).toBe(true);
          expect(spec.finishReason).toBe(plain.finishReason);
          drafted += spec.stats.drafted;
          accepted += spec.stats.accepted;
        }
      }
      // Not vacuous: drafts were made and some were accepted, some rejected.
      expect(drafted).toBeGreaterThan(0);
      expect(accepted).toBeGreaterThan(0);
      expect(accepted).toBeLessThan(drafted);
    });
  }
});

describe("determinism", () => {
  it("same seed → same output; another seed → another output (sampled, T = 1)", async () => {
    const verifier = await model("verifier");
    const drafter = await model("drafter-base");
    const prompt = verifier.tokenizer.encode(taskPrompts("de", 1)[0]!);
    const run = (seed: number) => generate({ verifier, drafter, gamma: 4, prompt, maxNewTokens: 64, temperature: 1, rng: new Xoshiro128(seed) });
    const [a, b, c] = [await run(42), await run(42), await run(43)];
    expect(a.tokens).toEqual(b.tokens);
    expect(a.stats.accepted).toBe(b.stats.accepted);
    expect(a.tokens).not.toEqual(c.tokens);
  });

  it("γ = 0 is plain decoding: one verifier call per token and no drafter calls", async () => {
    const verifier = await model("verifier");
    const prompt = verifier.tokenizer.encode("hello world");
    const g = await generate({ verifier, gamma: 0, prompt, maxNewTokens: 20, temperature: 1, rng: new Xoshiro128(5), stopAtEos: false });
    expect(g.tokens).toHaveLength(20);
    expect(g.stats.steps).toBe(20);
    expect(g.stats.drafterCalls).toBe(0);
    expect(g.stats.drafted).toBe(0);
    expect(g.stats.meanAcceptanceLength).toBe(1);
  });

  it("max new tokens is honoured exactly whatever γ", async () => {
    const verifier = await model("verifier");
    const drafter = await model("drafter-base");
    const prompt = verifier.tokenizer.encode("#include <stdio.h>\n");
    for (const n of [1, 2, 7, 33]) {
      const g = await generate({ verifier, drafter, gamma: 5, prompt, maxNewTokens: n, temperature: 0.8, rng: new Xoshiro128(n), stopAtEos: false });
      expect(g.tokens).toHaveLength(n);
      expect(g.finishReason).toBe("length");
    }
  });
});
