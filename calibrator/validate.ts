/**
 * Validation: timed speculative runs at the fitted parameters vs verifier-only on the same
 * prompts and seeds, back to back (so drift on a shared host hits both alike). Measured S is a
 * ratio of summed wall times, with a bootstrap interval over prompts; ms per output character is
 * what a user feels (a CJK character is 3 bytes, so 3 byte-tokens).
 *
 * Every parameter set of one task at one temperature is validated together (validateGroup), against
 * one verifier-only run per prompt, its place among the back-to-back runs rotating (a run's place
 * in the sequence shifts its time: the second run of a pair is measurably slower).
 *
 * The same prompts are also teacher-forced (untimed): the drafter scored along each speculative
 * run's own output, a verifier sample at T like any other (speculative sampling is lossless), so
 * its expected tokens per step are an unbiased estimate like those along the verifier-only run's
 * output. That gives the tokens per step these prompts yield at this γ, so the speed-up model can
 * be checked on exactly the workload that was timed — apart from the sampling error between the
 * calibration prompts and these held-out ones, which at T = 0 is large on some tasks (greedy
 * continuations that fall into a loop are accepted whole). Why each run's own output and not the
 * verifier-only run's: at T > 0 they are different texts, and how easy a text is to draft varies
 * far more from one sample to the next than the accept/reject draws along one text do; along its
 * own text the prediction differs from what the run realised only by those draws. At T = 0 the
 * texts are the same (greedy exactness) and one pass serves every cell.
 *
 * Cost probes: a few paired step-cost samples at this unit's (drafter, γ, T), on the calibration
 * prompts, spread between the validated prompts. The cost model was timed minutes earlier; on a
 * shared host the relative step costs drift over minutes (one run's model was ~5% low on every
 * cell), and the probes let the run measure that drift under the same conditions as the timed runs.
 */
import type { Interval95 } from "../core/calibration.ts";
import { bootstrap, ratioOfSums } from "../core/bootstrap.ts";
import { Xoshiro128, type Rng } from "../core/rng.ts";
import type { CausalLM } from "../engine/causal-lm.ts";
import { generate, type Generation } from "../engine/speculative.ts";
import { rejectingSteps, timePair, type PairSample } from "./costs.ts";
import type { Workload } from "./predict.ts";
import { continuationOf, measurePrompt, summarizePrompts } from "./measure.ts";

export interface ValidationResult {
  measuredSpeedup: Interval95;
  msPerChar: number;
  verifierOnlyMsPerChar: number | null;
  /** Where it was measured: in-process, or the remote pool's id. */
  via: string;
  /** Remote runs only: α observed online from the origin's per-position acceptance counts. */
  onlineAlpha?: Interval95 | null;
  /**
   * In-process runs with a drafter: tokens per step at this γ and τ, teacher-forced on the validated
   * prompts (expected steps along their β sequences), and their mean length in tokens.
   */
  teacherForced?: Workload;
  /** In-process runs with a drafter and probes asked for: paired step-cost samples at this cell. */
  costProbes?: PairSample[];
  /**
   * In-process runs with a drafter: what the timed speculative runs themselves realised (tokens
   * per step, rejecting steps). A diagnostic, not a prediction: the model fed these isolates the
   * cost model's error from the acceptance sampling error.
   */
  realized?: { tokensPerStep: number; rejectingFraction: number };
}

/** One set of parameters to validate: a drafter (none, or γ = 0: verifier-only) and its γ and τ. */
export interface ValidationCell {
  drafter: CausalLM | undefined;
  gamma: number;
  proposalTemperature: number | null;
  /** Bootstrap randomness for this cell's interval. */
  rng: Rng;
  /** Paired cost samples to take at this cell, spread between the prompts (`count` of them, cycling through `prompts`, starting at `offset`). */
  costProbes?: { prompts: readonly number[][]; count: number; offset: number };
}

/**
 * Validates several parameter sets on one task's prompts at one target temperature, against one
 * verifier-only run per prompt: for each prompt, the verifier-only run and every cell's run go
 * back to back, the verifier-only run's place among them rotating from prompt to prompt (a run's
 * place in a back-to-back sequence shifts its time by a few percent). Sharing the verifier-only
 * run, and its teacher-forcing pass, is what makes validating every policy's pools affordable.
 */
export async function validateGroup(o: {
  verifier: CausalLM;
  cells: readonly ValidationCell[];
  temperature: number;
  topP?: number;
  prompts: readonly number[][];
  newTokens: number;
  seed: number;
  resamples: number;
}): Promise<ValidationResult[]> {
  const speculative = (c: ValidationCell) => c.gamma > 0 && c.drafter !== undefined;
  const perCell = o.cells.map((c) => ({
    specMs: [] as number[],
    chars: [] as number[],
    forced: [] as Awaited<ReturnType<typeof measurePrompt>>[],
    probes: [] as PairSample[],
    tokens: 0,
    steps: 0,
    rejecting: 0,
    // Probe k goes after prompt ⌊(k + 1)·n / (count + 1)⌋ − 1: evenly between the timed prompts.
    probeAfter: speculative(c) && c.costProbes?.prompts.length ? Array.from({ length: c.costProbes.count }, (_, k) => Math.max(0, Math.floor(((k + 1) * o.prompts.length) / (c.costProbes!.count + 1)) - 1)) : [],
  }));
  const baseMs: number[] = [];
  const baseChars: number[] = [];
  const chars = (g: Generation) => Math.max(1, [...o.verifier.tokenizer.decode(g.tokens)].length);
  for (const [i, prompt] of o.prompts.entries()) {
    const common = { verifier: o.verifier, prompt, maxNewTokens: o.newTokens, temperature: o.temperature, topP: o.topP, stopAtEos: false };
    const rng = () => new Xoshiro128(o.seed + i);
    const run = (c: ValidationCell | null) =>
      c && speculative(c) ? generate({ ...common, drafter: c.drafter, gamma: c.gamma, proposalTemperature: c.proposalTemperature ?? undefined, rng: rng() }) : generate({ ...common, gamma: 0, rng: rng() });
    // Slot 0 is the verifier-only run. Each prompt starts the sequence one slot later than the
    // one before, so every slot takes every place in turn.
    const slots = [null, ...o.cells];
    const runs: Generation[] = new Array(slots.length);
    for (let j = 0; j < slots.length; j++) {
      const k = (j + i) % slots.length;
      runs[k] = await run(slots[k]!);
    }
    const base = runs[0]!;
    baseMs.push(base.stats.totalMs);
    baseChars.push(chars(base));
    // At T = 0 every run's output is the verifier-only run's (greedy exactness), so one pass serves all.
    const baseForced = o.temperature === 0 && o.cells.some(speculative) ? await continuationOf(o.verifier, prompt, base.tokens) : null;
    for (const [j, c] of o.cells.entries()) {
      const spec = runs[j + 1]!;
      const acc = perCell[j]!;
      acc.specMs.push(spec.stats.totalMs);
      acc.chars.push(chars(spec));
      if (!speculative(c)) continue;
      acc.tokens += spec.tokens.length;
      acc.steps += spec.stats.steps;
      acc.rejecting += rejectingSteps(spec);
      const forcedOn = baseForced ?? (await continuationOf(o.verifier, prompt, spec.tokens));
      acc.forced.push(await measurePrompt(c.drafter!, forcedOn, { temperature: o.temperature, topP: o.topP }, [c.proposalTemperature ?? o.temperature], [c.gamma]));
    }
    for (const [j, c] of o.cells.entries()) {
      const acc = perCell[j]!;
      for (const [k, after] of acc.probeAfter.entries()) {
        if (after !== i) continue;
        const n = c.costProbes!.offset + k;
        // Probes sample the proposal at τ = T, as the cost model does: τ barely moves a step's cost.
        acc.probes.push(await timePair(o.verifier, c.drafter!, { gamma: c.gamma, temperature: o.temperature, prompt: c.costProbes!.prompts[n % c.costProbes!.prompts.length]!, newTokens: o.newTokens, seed: o.seed + 7919 + n, specFirst: n % 2 === 0 }));
      }
    }
  }
  const sum = (xs: readonly number[]) => xs.reduce((a, x) => a + x, 0);
  const promptTokens = sum(o.prompts.map((p) => p.length)) / o.prompts.length;
  return o.cells.map((c, j) => {
    const acc = perCell[j]!;
    const units = baseMs.map((base, i) => ({ base, spec: acc.specMs[i]! }));
    const s = bootstrap(units, ratioOfSums((u) => u.base, (u) => u.spec), c.rng, o.resamples);
    const tau = c.proposalTemperature ?? o.temperature;
    const tf = acc.forced.length ? summarizePrompts(acc.forced, [tau], c.rng, o.resamples) : null;
    const tps = tf?.tokensPerStep[0]?.[String(c.gamma)];
    const rejecting = tf?.rejectingFraction[0]?.[String(c.gamma)];
    return {
      measuredSpeedup: { estimate: s.estimate, lo: s.lo, hi: s.hi },
      msPerChar: sum(acc.specMs) / sum(acc.chars),
      verifierOnlyMsPerChar: sum(baseMs) / sum(baseChars),
      via: "in-process",
      ...(acc.probes.length && { costProbes: acc.probes }),
      ...(acc.steps > 0 && { realized: { tokensPerStep: acc.tokens / acc.steps, rejectingFraction: acc.rejecting / acc.steps } }),
      ...(tps && { teacherForced: { tokensPerStep: { estimate: tps.estimate, lo: tps.lo, hi: tps.hi }, ...(rejecting !== undefined && { rejectingFraction: rejecting }), promptTokens } }),
    };
  });
}

/** One parameter set on its own (validateGroup with one cell). */
export async function validateParams(o: {
  verifier: CausalLM;
  drafter: CausalLM | undefined;
  gamma: number;
  proposalTemperature: number | null;
  temperature: number;
  topP?: number;
  prompts: readonly number[][];
  newTokens: number;
  seed: number;
  rng: Rng;
  resamples: number;
  costProbes?: ValidationCell["costProbes"];
}): Promise<ValidationResult> {
  const [r] = await validateGroup({ ...o, cells: [{ drafter: o.drafter, gamma: o.gamma, proposalTemperature: o.proposalTemperature, rng: o.rng, costProbes: o.costProbes }] });
  return r!;
}
