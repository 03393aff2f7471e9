/**
 * The cost model measured on this hardware: one drafter step vs one verifier step (c), and the
 * verifier's cost as a function of the number of tokens verified in one call (the verify-cost
 * curve the analytic model takes instead of the paper's flat-cost assumption).
 */
import type { CausalLM } from "../engine/causal-lm.ts";

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Median ms of one append of `n` tokens after a cached prefix of `ctx` tokens. */
async function timeAppend(lm: CausalLM, ctx: number, n: number, reps: number): Promise<number> {
  const s = lm.newSession();
  const prefix = Array.from({ length: ctx }, (_, i) => 65 + (i % 26));
  await s.append(prefix);
  const toks = Array.from({ length: n }, (_, i) => 97 + (i % 26));
  const ts: number[] = [];
  for (let r = 0; r < reps + 3; r++) {
    const t0 = performance.now();
    await s.append(toks);
    const dt = performance.now() - t0;
    s.rollback(ctx);
    if (r >= 3) ts.push(dt);
  }
  return median(ts);
}

export interface Costs {
  context: number;
  verifier_step_ms: number;
  drafters: { id: string; step_ms: number; c: number }[];
  /** [tokens verified in one call, cost relative to a one-token call] */
  verifyCost: [number, number][];
  /**
   * The same costs measured inside real generations (caches warm with the other model's weights,
   * rollbacks, sampling): what a request really pays. Prefill costs are per prompt token.
   */
  loop?: {
    promptTokens: number;
    verifier_step_ms: number;
    verifier_prefill_ms_per_token: number;
    drafters: { id: string; step_ms: number; prefill_ms_per_token: number }[];
    verifyCost: [number, number][];
  };
}

/** Loop costs from real generations on a fixed prompt, greedy (acceptance does not matter here). */
export async function measureLoopCosts(verifier: CausalLM, drafters: CausalLM[], reps = 3): Promise<NonNullable<Costs["loop"]>> {
  const { generate } = await import("../engine/speculative.ts");
  const { Xoshiro128 } = await import("../core/rng.ts");
  const text = "The quick brown fox jumps over the lazy dog; a man page explains options, files and examples. ".repeat(2);
  const prompt = verifier.tokenizer.encode(text).slice(0, 96);
  const run = (drafter: CausalLM | undefined, gamma: number) =>
    generate({ verifier, drafter, gamma, prompt, maxNewTokens: 48, temperature: 0, rng: new Xoshiro128(1), stopAtEos: false });
  const sum = async (drafter: CausalLM | undefined, gamma: number) => {
    const a = { prefill: 0, verifier: 0, steps: 0, drafter: 0, drafterCalls: 0 };
    await run(drafter, gamma); // warm-up
    for (let r = 0; r < reps; r++) {
      const s = (await run(drafter, gamma)).stats;
      a.prefill += s.prefillMs;
      a.verifier += s.verifierMs;
      a.steps += s.steps;
      a.drafter += s.drafterMs;
      a.drafterCalls += s.drafterCalls;
    }
    return a;
  };
  const base = await sum(undefined, 0);
  const tv = base.verifier / base.steps;
  const pv = base.prefill / reps / (prompt.length - 1);
  const ds = [];
  const verifyCost: [number, number][] = [[1, 1]];
  for (const [i, d] of drafters.entries()) {
    const s = await sum(d, 4);
    ds.push({ id: d.id, step_ms: s.drafter / Math.max(1, s.drafterCalls), prefill_ms_per_token: Math.max(0, s.prefill / reps / (prompt.length - 1) - pv) });
    if (i === 0) {
      for (const g of [2, 4, 6]) {
        const sg = g === 4 ? s : await sum(d, g);
        verifyCost.push([g + 1, sg.verifier / sg.steps / tv]);
      }
    }
  }
  return { promptTokens: prompt.length, verifier_step_ms: tv, verifier_prefill_ms_per_token: pv, drafters: ds, verifyCost };
}

export async function measureCosts(verifier: CausalLM, drafters: CausalLM[], maxVerify = 8, ctx = 96, reps = 60): Promise<Costs> {
  const v1 = await timeAppend(verifier, ctx, 1, reps);
  const verifyCost: [number, number][] = [[1, 1]];
  for (let n = 2; n <= maxVerify; n++) verifyCost.push([n, (await timeAppend(verifier, ctx, n, reps)) / v1]);
  const ds = [];
  for (const d of drafters) {
    const ms = await timeAppend(d, ctx, 1, reps * 4);
    ds.push({ id: d.id, step_ms: ms, c: ms / v1 });
  }
  return { context: ctx, verifier_step_ms: v1, drafters: ds, verifyCost };
}
