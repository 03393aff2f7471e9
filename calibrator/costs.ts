/**
 * The cost model measured on this hardware:
 * - isolated (the paper's terms): one drafter step vs one verifier step (c), and the verifier's
 *   cost as a function of the tokens verified in one call (the verify-cost curve v(n));
 * - in the loop (what predictions use): the cost of a whole decoding step at every γ and target
 *   temperature, and the prefill per prompt token, timed inside real generations.
 */
import type { CausalLM } from "../engine/causal-lm.ts";
import type { Generation } from "../engine/speculative.ts";

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

/** JSON-friendly tables: target temperature → (γ →) ms. Keys are `String(number)`. */
export type ByTemperature<V> = Record<string, V>;

export interface LoopCosts {
  promptTokens: number;
  newTokens: number;
  /** Timed repetitions per cell (after one warm-up round); every figure is a median over them. */
  reps: number;
  verifier_prefill_ms_per_token: number;
  /** One step of verifier-only decoding (one token), per target temperature. */
  verifier_step_ms: ByTemperature<number>;
  drafters: {
    id: string;
    /** The drafter's prefill on top of the verifier's, per prompt token. */
    prefill_ms_per_token: number;
    /**
     * One speculative step (γ drafts + one verification + sampling), per target temperature and γ:
     * the least-squares line over γ through the per-γ medians (`step_ms_measured`).
     */
    step_ms: ByTemperature<Record<string, number>>;
    step_ms_measured: ByTemperature<Record<string, number>>;
  }[];
}

export interface Costs {
  context: number;
  verifier_step_ms: number;
  drafters: { id: string; step_ms: number; c: number }[];
  /** [tokens verified in one call, cost relative to a one-token call] */
  verifyCost: [number, number][];
  /**
   * The costs a request really pays, measured inside real generations (caches warm with the other
   * model's weights, rollbacks, sampling); what predictions use. The isolated figures above are
   * the paper's c and v(n), reported for comparison.
   */
  loop?: LoopCosts;
}

/**
 * Step and prefill costs from real generations, for every (target temperature, drafter, γ). Each
 * round runs every cell once, as a pair with a verifier-only run next to it; each figure is the
 * median over rounds of the pair's ratio, so a burst of load on a shared host drops out. A step's
 * cost depends a little on what is generated (see `prompts`), so rounds cycle through real
 * prompts when given.
 */
export async function measureLoopCosts(
  verifier: CausalLM,
  drafters: CausalLM[],
  o: {
    gammas: readonly number[];
    temperatures: readonly number[];
    newTokens: number;
    /**
     * Round r runs every cell on prompts[r mod n]. Real prompts from the tasks, not one fixed text:
     * a step's cost moves with what is generated — after a rejection the next append compacts the
     * KV cache (measured: +0.13 ms on the verifier, about 6% of a γ = 3 step) — and a repetitive
     * fixed text is accepted far more often than the tasks' own.
     */
    prompts?: readonly number[][];
    promptTokens?: number;
    reps?: number;
    onRound?: () => void;
  },
): Promise<LoopCosts> {
  const { generate } = await import("../engine/speculative.ts");
  const { Xoshiro128 } = await import("../core/rng.ts");
  const reps = o.reps ?? 5;
  const gammas = [...new Set(o.gammas.filter((g) => g > 0))].sort((a, b) => a - b);
  const text = "The quick brown fox jumps over the lazy dog; a man page explains options, files and examples. ".repeat(4);
  const prompts = o.prompts?.length ? o.prompts.filter((p) => p.length >= 2) : [verifier.tokenizer.encode(text).slice(0, o.promptTokens ?? 96)];
  if (!prompts.length) throw new Error("measureLoopCosts: every prompt is shorter than 2 tokens");
  // The last prompt token is fed by the first step: the prefill covers the rest.
  const prefixTokens = (p: readonly number[]) => p.length - 1;
  type Cell = { T: number; drafter: number; gamma: number };
  const cells: Cell[] = [];
  for (const T of o.temperatures) for (const d of drafters.keys()) for (const g of gammas) cells.push({ T, drafter: d, gamma: g });
  // Per cell and round: the speculative run's step and prefill, each relative to a verifier-only
  // run on the same prompt, temperature and seed right next to it (a pair). A ratio to one
  // verifier-only run per round let that single run's luck move every ratio of the round alike: the
  // cost models of two runs minutes apart implied γ = 2 step ratios of 1.46 and 1.66 at T = 0.
  const samples = cells.map(() => ({ ratio: [] as number[], prefillExtra: [] as number[] }));
  const baseStep = new Map<number, number[]>(o.temperatures.map((T) => [T, []]));
  const basePrefill: number[] = [];
  for (let r = 0; r <= reps; r++) {
    const prompt = [...prompts[r % prompts.length]!];
    for (let i = 0; i < cells.length; i++) {
      const k = (i + r) % cells.length; // rotate: no cell always first after the previous round
      const c = cells[k]!;
      const run = (drafter: CausalLM | undefined, gamma: number) =>
        generate({ verifier, drafter, gamma, prompt, maxNewTokens: o.newTokens, temperature: c.T, rng: new Xoshiro128(r + 1), stopAtEos: false });
      // Alternate which of the pair goes first, so cache warmth favours neither.
      let base: Generation;
      let spec: Generation;
      if (r % 2) {
        base = await run(undefined, 0);
        spec = await run(drafters[c.drafter], c.gamma);
      } else {
        spec = await run(drafters[c.drafter], c.gamma);
        base = await run(undefined, 0);
      }
      if (r === 0) continue; // warm-up round
      const step = (g: Generation) => (g.stats.totalMs - g.stats.prefillMs) / g.stats.steps;
      samples[k]!.ratio.push(step(spec) / step(base));
      samples[k]!.prefillExtra.push((spec.stats.prefillMs - base.stats.prefillMs) / prefixTokens(prompt)); // per prompt token
      baseStep.get(c.T)!.push(step(base));
      basePrefill.push(base.stats.prefillMs / prefixTokens(prompt));
    }
    o.onRound?.();
  }
  const at = (T: number, d: number, g: number) => samples[cells.findIndex((c) => c.T === T && c.drafter === d && c.gamma === g)]!;
  const key = (x: number) => String(x);
  const baseMs = new Map(o.temperatures.map((T) => [T, median(baseStep.get(T)!)]));
  return {
    promptTokens: prompts.reduce((a, p) => a + p.length, 0) / prompts.length,
    newTokens: o.newTokens,
    reps,
    verifier_prefill_ms_per_token: median(basePrefill),
    verifier_step_ms: Object.fromEntries(o.temperatures.map((T) => [key(T), baseMs.get(T)!])),
    drafters: drafters.map((lm, d) => {
      // A step's cost: the median of its paired ratio, times the median verifier-only step.
      const measured = o.temperatures.map((T) => gammas.map((g) => median(at(T, d, g).ratio) * baseMs.get(T)!));
      return {
        id: lm.id,
        prefill_ms_per_token: Math.max(0, median(o.temperatures.flatMap((T) => gammas.flatMap((g) => at(T, d, g).prefillExtra)))),
        step_ms: Object.fromEntries(o.temperatures.map((T, i) => [key(T), Object.fromEntries(linearInGamma(gammas, measured[i]!).map((ms, k) => [key(gammas[k]!), ms]))])),
        step_ms_measured: Object.fromEntries(o.temperatures.map((T, i) => [key(T), Object.fromEntries(measured[i]!.map((ms, k) => [key(gammas[k]!), ms]))])),
      };
    }),
  };
}

/**
 * The prompts the loop cost rounds cycle through: the first `perTask` prompts of every task, in
 * task-major order (prompt 0 of each task, then prompt 1, …), so consecutive rounds differ in
 * script and content. `promptsByTask[t]`: task t's prompts, token ids.
 */
export function loopCostPrompts(promptsByTask: readonly (readonly number[][])[], perTask = 2): number[][] {
  return Array.from({ length: perTask }, (_, k) => promptsByTask.map((ps) => ps[k]).filter((p): p is number[] => p !== undefined)).flat();
}

/**
 * A step is γ drafter calls plus one verification of γ + 1 tokens: to first order linear in γ
 * (measured here: successive differences within ±25% of their mean). The least-squares line
 * through the per-γ medians lets every γ's rounds inform the others, so one cell that a burst of
 * load made look cheap cannot make the fit prefer that γ (it did: a γ = 4 cell 10% low made the
 * fit choose γ = 4 on every task). With fewer than three γ, the medians as they are.
 */
export function linearInGamma(gammas: readonly number[], ms: readonly number[]): number[] {
  const n = gammas.length;
  if (n < 3) return [...ms];
  const mx = gammas.reduce((a, g) => a + g, 0) / n;
  const my = ms.reduce((a, y) => a + y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (gammas[i]! - mx) * (ms[i]! - my);
    sxx += (gammas[i]! - mx) ** 2;
  }
  const b = sxy / sxx;
  return gammas.map((g) => my + b * (g - mx));
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
