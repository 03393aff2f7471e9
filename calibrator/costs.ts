/**
 * The cost model measured on this hardware:
 * - isolated (the paper's terms): one drafter step vs one verifier step (c), and the verifier's
 *   cost as a function of the tokens verified in one call (the verify-cost curve v(n));
 * - in the loop (what predictions use): the cost of a whole decoding step at every γ and target
 *   temperature, and the prefill per prompt token, timed inside real generations.
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
 * Step and prefill costs from real generations on a fixed prompt, for every (target temperature,
 * drafter, γ). Rounds are interleaved — each round runs every cell once — and each figure is the
 * median over rounds, so a burst of load on a shared host hits all cells alike and drops out.
 * Acceptance barely matters here: a step costs the same whether its drafts are accepted or not.
 */
export async function measureLoopCosts(
  verifier: CausalLM,
  drafters: CausalLM[],
  o: { gammas: readonly number[]; temperatures: readonly number[]; newTokens: number; promptTokens?: number; reps?: number; onRound?: () => void },
): Promise<LoopCosts> {
  const { generate } = await import("../engine/speculative.ts");
  const { Xoshiro128 } = await import("../core/rng.ts");
  const reps = o.reps ?? 5;
  const gammas = [...new Set(o.gammas.filter((g) => g > 0))].sort((a, b) => a - b);
  const text = "The quick brown fox jumps over the lazy dog; a man page explains options, files and examples. ".repeat(4);
  const prompt = verifier.tokenizer.encode(text).slice(0, o.promptTokens ?? 96);
  const prefixTokens = prompt.length - 1; // the last prompt token is fed by the first step
  type Cell = { T: number; drafter: number; gamma: number };
  const cells: Cell[] = [];
  for (const T of o.temperatures) {
    cells.push({ T, drafter: -1, gamma: 0 });
    for (const d of drafters.keys()) for (const g of gammas) cells.push({ T, drafter: d, gamma: g });
  }
  const samples = cells.map(() => ({ step: [] as number[], prefill: [] as number[] }));
  for (let r = 0; r <= reps; r++) {
    for (const [k, c] of cells.entries()) {
      const drafter = c.drafter >= 0 ? drafters[c.drafter] : undefined;
      const g = await generate({ verifier, drafter, gamma: c.gamma, prompt, maxNewTokens: o.newTokens, temperature: c.T, rng: new Xoshiro128(r + 1), stopAtEos: false });
      if (r === 0) continue; // warm-up round
      samples[k]!.step.push((g.stats.totalMs - g.stats.prefillMs) / g.stats.steps);
      samples[k]!.prefill.push(g.stats.prefillMs);
    }
    o.onRound?.();
  }
  const at = (T: number, d: number, g: number) => samples[cells.findIndex((c) => c.T === T && c.drafter === d && c.gamma === g)]!;
  const key = (x: number) => String(x);
  // A speculative step's cost is the median of its ratio to the verifier-only step of the same
  // round (paired: load that slows a whole round cancels), times the median verifier-only step.
  const pairedMedian = (spec: number[], base: number[]) => median(spec.map((x, r) => x / base[r]!)) * median(base);
  const basePrefill = o.temperatures.flatMap((T) => at(T, -1, 0).prefill);
  return {
    promptTokens: prompt.length,
    newTokens: o.newTokens,
    reps,
    verifier_prefill_ms_per_token: median(basePrefill) / prefixTokens,
    verifier_step_ms: Object.fromEntries(o.temperatures.map((T) => [key(T), median(at(T, -1, 0).step)])),
    drafters: drafters.map((lm, d) => {
      const measured = o.temperatures.map((T) => gammas.map((g) => pairedMedian(at(T, d, g).step, at(T, -1, 0).step)));
      return {
        id: lm.id,
        prefill_ms_per_token: Math.max(0, median(o.temperatures.flatMap((T) => gammas.flatMap((g) => at(T, d, g).prefill.map((x, r) => x - at(T, -1, 0).prefill[r]!)))) / prefixTokens),
        step_ms: Object.fromEntries(o.temperatures.map((T, i) => [key(T), Object.fromEntries(linearInGamma(gammas, measured[i]!).map((ms, k) => [key(gammas[k]!), ms]))])),
        step_ms_measured: Object.fromEntries(o.temperatures.map((T, i) => [key(T), Object.fromEntries(measured[i]!.map((ms, k) => [key(gammas[k]!), ms]))])),
      };
    }),
  };
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
