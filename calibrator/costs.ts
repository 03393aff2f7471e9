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
