/**
 * The cost model measured on this hardware:
 * - isolated (the paper's terms): one drafter step vs one verifier step (c), and the verifier's
 *   cost as a function of the tokens verified in one call (the verify-cost curve v(n));
 * - in the loop (what predictions use): the cost of a whole decoding step at every γ and target
 *   temperature, and the prefill per prompt token, timed inside real generations.
 */
import { Xoshiro128 } from "../core/rng.ts";
import { costAtGamma } from "../core/speedup.ts";
import type { CausalLM } from "../engine/causal-lm.ts";
import { generate, type Generation } from "../engine/speculative.ts";

/** The most a rejection may add to a step, in verifier-only steps (measured: 0.24–0.49). */
const MAX_REJECTION_STEPS = 1;
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
     * One speculative step (γ drafts + one verification + sampling) whose drafts are all accepted,
     * per target temperature and γ: the per-γ medians (`step_ms_measured`), made non-decreasing in
     * γ (`nonDecreasingInGamma`). A step that ends in a rejection costs `rejection_ms` more.
     */
    step_ms: ByTemperature<Record<string, number>>;
    step_ms_measured: ByTemperature<Record<string, number>>;
  }[];
  /**
   * The extra cost of a step that ends in a rejection (rollbacks, then the compacting append; at
   * T > 0 the residual sample), per target temperature, ms; shared by every drafter and γ. Absent
   * in older cost models (every step then costs the same).
   */
  rejection_ms?: ByTemperature<number>;
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
  const reps = o.reps ?? 5;
  const gammas = [...new Set(o.gammas.filter((g) => g > 0))].sort((a, b) => a - b);
  const text = "The quick brown fox jumps over the lazy dog; a man page explains options, files and examples. ".repeat(4);
  const prompts = o.prompts?.length ? o.prompts.filter((p) => p.length >= 2) : [verifier.tokenizer.encode(text).slice(0, o.promptTokens ?? 96)];
  if (!prompts.length) throw new Error("measureLoopCosts: every prompt is shorter than 2 tokens");
  type Cell = { T: number; drafter: number; gamma: number };
  const cells: Cell[] = [];
  for (const T of o.temperatures) for (const d of drafters.keys()) for (const g of gammas) cells.push({ T, drafter: d, gamma: g });
  // Per cell and round: the speculative run's step and prefill, each relative to a verifier-only
  // run on the same prompt, temperature and seed right next to it (a pair). A ratio to one
  // verifier-only run per round let that single run's luck move every ratio of the round alike: the
  // cost models of two runs minutes apart implied γ = 2 step ratios of 1.46 and 1.66 at T = 0.
  const samples = cells.map(() => ({ ratio: [] as number[], rejecting: [] as number[], prefillExtra: [] as number[] }));
  const baseStep = new Map<number, number[]>(o.temperatures.map((T) => [T, []]));
  const basePrefill: number[] = [];
  for (let r = 0; r <= reps; r++) {
    const prompt = prompts[r % prompts.length]!;
    for (let i = 0; i < cells.length; i++) {
      const k = (i + r) % cells.length; // rotate: no cell always first after the previous round
      const c = cells[k]!;
      const pair = await timePair(verifier, drafters[c.drafter]!, { gamma: c.gamma, temperature: c.T, prompt, newTokens: o.newTokens, seed: r + 1, specFirst: r % 2 === 0 });
      if (r === 0) continue; // warm-up round
      samples[k]!.ratio.push(pair.stepRatio);
      samples[k]!.rejecting.push(pair.rejectingFraction);
      samples[k]!.prefillExtra.push(pair.prefillExtraPerToken);
      baseStep.get(c.T)!.push(pair.baseStepMs);
      basePrefill.push(pair.basePrefillPerToken);
    }
    o.onRound?.();
  }
  const at = (T: number, d: number, g: number) => samples[cells.findIndex((c) => c.T === T && c.drafter === d && c.gamma === g)]!;
  const key = (x: number) => String(x);
  const baseMs = new Map(o.temperatures.map((T) => [T, median(baseStep.get(T)!)]));
  // A step that ends in a rejection costs more (measured on this CPU: +0.24 to +0.49 verifier-only
  // steps, by T and run), so a cell's mean cost depends on how often its prompts' drafts are rejected: the
  // cost model must separate the two, or every task whose rejection rate differs from the cost
  // prompts' mix is mispredicted (at T = 0 the high-acceptance tasks were under-predicted by
  // ~10%). Per T one slope over every drafter and γ, each cell keeping its own intercept.
  // The slope is held to [0, 1] verifier-only steps: a rejection adds work (never removes it), and
  // less than a whole verifier step. From few short runs the pooled slope of a handful of pairs can
  // come out anywhere (6-token runs, 2 rounds: ×10, making a full-accept step cost negative).
  const slope = new Map(
    o.temperatures.map((T) => [T, Math.min(MAX_REJECTION_STEPS, Math.max(0, pooledTheilSen(cells.flatMap((c, k) => (c.T === T ? [{ x: samples[k]!.rejecting, y: samples[k]!.ratio }] : [])))))]),
  );
  // A cell's ratio with no rejection: its samples moved to rejecting fraction 0 along the slope.
  const ratioAtZero = (T: number, d: number, g: number) => {
    const s = at(T, d, g);
    return median(s.ratio.map((y, i) => y - slope.get(T)! * s.rejecting[i]!));
  };
  return {
    promptTokens: prompts.reduce((a, p) => a + p.length, 0) / prompts.length,
    newTokens: o.newTokens,
    reps,
    verifier_prefill_ms_per_token: median(basePrefill),
    verifier_step_ms: Object.fromEntries(o.temperatures.map((T) => [key(T), baseMs.get(T)!])),
    rejection_ms: Object.fromEntries(o.temperatures.map((T) => [key(T), slope.get(T)! * baseMs.get(T)!])),
    drafters: drafters.map((lm, d) => {
      // A full-accept step's cost: the median of its paired ratio moved to no rejection, times the
      // median verifier-only step.
      const measured = o.temperatures.map((T) => gammas.map((g) => ratioAtZero(T, d, g) * baseMs.get(T)!));
      return {
        id: lm.id,
        prefill_ms_per_token: Math.max(0, median(o.temperatures.flatMap((T) => gammas.flatMap((g) => at(T, d, g).prefillExtra)))),
        step_ms: Object.fromEntries(o.temperatures.map((T, i) => [key(T), Object.fromEntries(nonDecreasingInGamma(measured[i]!).map((ms, k) => [key(gammas[k]!), ms]))])),
        step_ms_measured: Object.fromEntries(o.temperatures.map((T, i) => [key(T), Object.fromEntries(measured[i]!.map((ms, k) => [key(gammas[k]!), ms]))])),
      };
    }),
  };
}

/** One paired sample: a speculative run and a verifier-only run on the same prompt, T and seed. */
export interface PairSample {
  /** Speculative step ÷ verifier-only step (decoding only, prefill excluded). */
  stepRatio: number;
  /** The speculative run's steps that ended in a rejection, as a fraction of its steps. */
  rejectingFraction: number;
  baseStepMs: number;
  /** The verifier-only prefill, and the speculative run's extra prefill, per prompt token. */
  basePrefillPerToken: number;
  prefillExtraPerToken: number;
}

/**
 * Times one pair, back to back. `specFirst` alternates across samples: the second run of a pair is
 * measurably slower (garbage from the first; measured: S 1–4% higher with the speculative run
 * first), so a fixed order would bias every ratio the same way.
 */
export async function timePair(
  verifier: CausalLM,
  drafter: CausalLM,
  o: { gamma: number; temperature: number; prompt: readonly number[]; newTokens: number; seed: number; specFirst: boolean },
): Promise<PairSample> {
  if (o.prompt.length < 2) throw new Error("timePair: the prompt is shorter than 2 tokens");
  const run = (d: CausalLM | undefined, gamma: number) =>
    generate({ verifier, drafter: d, gamma, prompt: [...o.prompt], maxNewTokens: o.newTokens, temperature: o.temperature, rng: new Xoshiro128(o.seed), stopAtEos: false });
  let base: Generation;
  let spec: Generation;
  if (o.specFirst) {
    spec = await run(drafter, o.gamma);
    base = await run(undefined, 0);
  } else {
    base = await run(undefined, 0);
    spec = await run(drafter, o.gamma);
  }
  const step = (g: Generation) => (g.stats.totalMs - g.stats.prefillMs) / g.stats.steps;
  // The last prompt token is fed by the first step: the prefill covers the rest.
  const prefixTokens = o.prompt.length - 1;
  return {
    stepRatio: step(spec) / step(base),
    rejectingFraction: rejectingSteps(spec) / spec.stats.steps,
    baseStepMs: step(base),
    basePrefillPerToken: base.stats.prefillMs / prefixTokens,
    prefillExtraPerToken: (spec.stats.prefillMs - base.stats.prefillMs) / prefixTokens,
  };
}

/** Steps of a generation that ended in a rejection (some draft not accepted). */
export const rejectingSteps = (g: Generation): number => g.stepStats.filter((st) => st.accepted < st.drafted).length;

/** A paired cost sample taken after the cost model was timed, at some drafter, γ and T. */
export type CostProbe = { drafter: string; gamma: number; temperature: number; stepRatio: number; rejectingFraction?: number };

/**
 * How far the host's relative step costs have moved since a cost model was timed, per target
 * temperature: the median over paired samples taken later (each for some drafter and γ) of the
 * sample's step ratio ÷ the model's ratio for its cell. One factor per T, not per cell: a handful
 * of later samples per cell would be noisier than the drift they measure, while a shift in load
 * moves every speculative step alike (the fit's cost model of one run was ~5% low on every cell).
 */
export function costDrift(loop: LoopCosts, samples: readonly CostProbe[]): Record<string, { factor: number; samples: number }> {
  const byT = new Map<string, number[]>();
  const ratios = probeRatios(loop, samples);
  samples.forEach((s, i) => {
    const t = nearestTemperature(loop, s.temperature);
    byT.set(t, [...(byT.get(t) ?? []), ratios[i]!]);
  });
  return Object.fromEntries([...byT].map(([t, xs]) => [t, { factor: median(xs), samples: xs.length }]));
}

/** Each probe's step ratio ÷ the cost model's ratio for its cell at its rejecting fraction. */
export function probeRatios(loop: LoopCosts, samples: readonly CostProbe[]): number[] {
  return samples.map((s) => {
    const t = nearestTemperature(loop, s.temperature);
    const d = loop.drafters.find((x) => x.id === s.drafter);
    if (!d) throw new Error(`cost probe: no loop costs for drafter ${s.drafter}`);
    const model = (costAtGamma(d.step_ms[t]!, s.gamma) + (s.rejectingFraction ?? 0) * (loop.rejection_ms?.[t] ?? 0)) / loop.verifier_step_ms[t]!;
    return s.stepRatio / model;
  });
}

/**
 * The drift around each of a sequence of validation units, in the order they ran: the median
 * probe ratio over the units within `window` of it (every temperature: the host's load moves every
 * speculative step alike). One factor for a whole validation phase missed a trend within it: in
 * one run the units validated last were predicted ~5% higher than those validated first. Nor each
 * unit's own probes alone: with 4 per unit the prediction error's spread doubled (sd 7.5% over
 * 50 cells, against 3.6% with the window, in the same run).
 * 1 where no probe is near.
 */
export function localDrift(ratiosByUnit: readonly (readonly number[])[], window: number): number[] {
  return ratiosByUnit.map((_, i) => {
    const near = ratiosByUnit.slice(Math.max(0, i - window), i + window + 1).flat();
    return near.length ? median(near) : 1;
  });
}

/** The loop costs with every speculative step (and its rejection extra) scaled by its temperature's drift factor. */
export function withDrift(loop: LoopCosts, drift: Readonly<Record<string, { factor: number }>>): LoopCosts {
  const scale = (t: string, ms: number) => ms * (drift[t]?.factor ?? 1);
  const each = (table: ByTemperature<Record<string, number>>) =>
    Object.fromEntries(Object.entries(table).map(([t, row]) => [t, Object.fromEntries(Object.entries(row).map(([g, ms]) => [g, scale(t, ms)]))]));
  return {
    ...loop,
    drafters: loop.drafters.map((d) => ({ ...d, step_ms: each(d.step_ms), step_ms_measured: each(d.step_ms_measured) })),
    ...(loop.rejection_ms && { rejection_ms: Object.fromEntries(Object.entries(loop.rejection_ms).map(([t, ms]) => [t, scale(t, ms)])) }),
  };
}

/**
 * The slope of y on x shared by several groups, each with its own intercept: the median over
 * every within-group pair of points of (y_i − y_j) / (x_i − x_j) (Theil–Sen, pooled). Robust to
 * the bursts of load a shared host puts into single timings, which least squares is not. Pairs
 * whose x differ by less than `minDx` say nothing about the slope and are skipped; none left: 0.
 */
export function pooledTheilSen(groups: readonly { x: readonly number[]; y: readonly number[] }[], minDx = 0.05): number {
  const slopes: number[] = [];
  for (const { x, y } of groups)
    for (let i = 0; i < x.length; i++)
      for (let j = i + 1; j < x.length; j++) {
        const dx = x[j]! - x[i]!;
        if (Math.abs(dx) >= minDx) slopes.push((y[j]! - y[i]!) / dx);
      }
  return slopes.length ? median(slopes) : 0;
}

/** The key of the measured temperature nearest to T. */
export function nearestTemperature(loop: LoopCosts, T: number): string {
  const temps = Object.keys(loop.verifier_step_ms).map(Number);
  return String(temps.reduce((b, x) => (Math.abs(x - T) < Math.abs(b - T) ? x : b)));
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
 * A step's cost over γ: the per-γ medians as measured, lifted where one falls below a smaller γ's
 * (a step at a larger γ does strictly more work). Not a line through them: the curve is not
 * linear. Over three runs and every (drafter, T), the least-squares line sat 60–88 µs under the
 * γ = 6 median and 36–83 µs over the γ = 5 one (≈ 3% of a step), which made the fit prefer
 * γ = 6 where the timed runs found γ = 5 best (code-py at T = 0: 96.4% of the best). The medians
 * are precise enough to be used as they are: two drafters of the same size, timed in one run,
 * agreed within 24 µs at every γ. (The line was there because one burst of load had made a
 * γ = 4 cell 10% cheap; that noise came from the heap, see heap.ts, and 22 rounds' medians
 * absorb a burst.)
 */
export function nonDecreasingInGamma(ms: readonly number[]): number[] {
  const out: number[] = [];
  for (const y of ms) out.push(out.length ? Math.max(out[out.length - 1]!, y) : y);
  return out;
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
