/**
 * Validation: timed speculative runs at the fitted parameters vs verifier-only on the same
 * prompts and seeds, back to back (so drift on a shared host hits both alike). Measured S is a
 * ratio of summed wall times, with a bootstrap interval over prompts; ms per output character is
 * what a user feels (a CJK character is 3 bytes, so 3 byte-tokens).
 *
 * Each pair runs in alternating order (the second run of a pair is measurably slower).
 *
 * The same prompts are also teacher-forced (untimed): the drafter scored along the verifier-only
 * run's own output, which is a verifier sample at T. That gives the tokens per step these prompts
 * yield at this γ, so the speed-up model can be checked on exactly the workload that was timed —
 * apart from the sampling error between the calibration prompts and these held-out ones, which
 * at T = 0 is large on some tasks (greedy continuations that fall into a loop are accepted whole).
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
import { generate } from "../engine/speculative.ts";
import { timePair, type PairSample } from "./costs.ts";
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
}

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
  /** Paired cost samples to take at this cell, spread between the prompts (`count` of them, cycling through `prompts`, starting at `offset`). */
  costProbes?: { prompts: readonly number[][]; count: number; offset: number };
}): Promise<ValidationResult> {
  const units: { base: number; spec: number; chars: number; baseChars: number }[] = [];
  const forced = [];
  const probes: PairSample[] = [];
  const probe = o.gamma > 0 && o.drafter && o.costProbes?.prompts.length ? o.costProbes : undefined;
  // Probe k goes after prompt ⌊(k + 1)·n / (count + 1)⌋ − 1: evenly between the timed pairs.
  const probeAfter = probe ? Array.from({ length: probe.count }, (_, k) => Math.max(0, Math.floor(((k + 1) * o.prompts.length) / (probe.count + 1)) - 1)) : [];
  for (const [i, prompt] of o.prompts.entries()) {
    const common = { verifier: o.verifier, prompt, maxNewTokens: o.newTokens, temperature: o.temperature, topP: o.topP, stopAtEos: false };
    const runBase = () => generate({ ...common, gamma: 0, rng: new Xoshiro128(o.seed + i) });
    const runSpec = () =>
      o.gamma > 0 && o.drafter
        ? generate({ ...common, drafter: o.drafter, gamma: o.gamma, proposalTemperature: o.proposalTemperature ?? undefined, rng: new Xoshiro128(o.seed + i) })
        : generate({ ...common, gamma: 0, rng: new Xoshiro128(o.seed + i) });
    let base;
    let spec;
    if (i % 2) {
      spec = await runSpec();
      base = await runBase();
    } else {
      base = await runBase();
      spec = await runSpec();
    }
    const chars = (g: typeof base) => Math.max(1, [...o.verifier.tokenizer.decode(g.tokens)].length);
    units.push({ base: base.stats.totalMs, spec: spec.stats.totalMs, chars: chars(spec), baseChars: chars(base) });
    if (o.gamma > 0 && o.drafter)
      forced.push(await measurePrompt(o.drafter, await continuationOf(o.verifier, prompt, base.tokens), { temperature: o.temperature, topP: o.topP }, [o.proposalTemperature ?? o.temperature], [o.gamma]));
    for (const [k, after] of probeAfter.entries()) {
      if (after !== i || !probe) continue;
      const j = probe.offset + k;
      // Probes sample the proposal at τ = T, as the cost model does: τ barely moves a step's cost.
      probes.push(await timePair(o.verifier, o.drafter!, { gamma: o.gamma, temperature: o.temperature, prompt: probe.prompts[j % probe.prompts.length]!, newTokens: o.newTokens, seed: o.seed + 7919 + j, specFirst: j % 2 === 0 }));
    }
  }
  const s = bootstrap(units, ratioOfSums((u) => u.base, (u) => u.spec), o.rng, o.resamples);
  const tf = forced.length ? summarizePrompts(forced, [o.proposalTemperature ?? o.temperature], o.rng, o.resamples) : null;
  const tps = tf?.tokensPerStep[0]?.[String(o.gamma)];
  const rejecting = tf?.rejectingFraction[0]?.[String(o.gamma)];
  const sum = (f: (u: (typeof units)[number]) => number) => units.reduce((a, u) => a + f(u), 0);
  return {
    measuredSpeedup: { estimate: s.estimate, lo: s.lo, hi: s.hi },
    msPerChar: sum((u) => u.spec) / sum((u) => u.chars),
    verifierOnlyMsPerChar: sum((u) => u.base) / sum((u) => u.baseChars),
    via: "in-process",
    ...(probes.length && { costProbes: probes }),
    ...(tps && { teacherForced: { tokensPerStep: { estimate: tps.estimate, lo: tps.lo, hi: tps.hi }, ...(rejecting !== undefined && { rejectingFraction: rejecting }), promptTokens: o.prompts.reduce((a, p) => a + p.length, 0) / o.prompts.length } }),
  };
}
