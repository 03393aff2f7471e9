/**
 * Validation: timed speculative runs at the fitted parameters vs verifier-only on the same
 * prompts and seeds, back to back (so drift on a shared host hits both alike). Measured S is a
 * ratio of summed wall times, with a bootstrap interval over prompts; ms per output character is
 * what a user feels (a CJK character is 3 bytes, so 3 byte-tokens).
 *
 * The same prompts are also teacher-forced (untimed): the drafter scored along the verifier-only
 * run's own output, which is a verifier sample at T. That gives the tokens per step these prompts
 * yield at this γ, so the speed-up model can be checked on exactly the workload that was timed —
 * apart from the sampling error between the calibration prompts and these held-out ones, which
 * at T = 0 is large on some tasks (greedy continuations that fall into a loop are accepted whole).
 */
import type { Interval95 } from "../core/calibration.ts";
import { bootstrap, ratioOfSums } from "../core/bootstrap.ts";
import { Xoshiro128, type Rng } from "../core/rng.ts";
import type { CausalLM } from "../engine/causal-lm.ts";
import { generate } from "../engine/speculative.ts";
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
  teacherForced?: { tokensPerStep: Interval95; promptTokens: number };
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
}): Promise<ValidationResult> {
  const units: { base: number; spec: number; chars: number; baseChars: number }[] = [];
  const forced = [];
  for (const [i, prompt] of o.prompts.entries()) {
    const common = { verifier: o.verifier, prompt, maxNewTokens: o.newTokens, temperature: o.temperature, topP: o.topP, stopAtEos: false };
    const base = await generate({ ...common, gamma: 0, rng: new Xoshiro128(o.seed + i) });
    const spec =
      o.gamma > 0 && o.drafter
        ? await generate({ ...common, drafter: o.drafter, gamma: o.gamma, proposalTemperature: o.proposalTemperature ?? undefined, rng: new Xoshiro128(o.seed + i) })
        : await generate({ ...common, gamma: 0, rng: new Xoshiro128(o.seed + i) });
    const chars = (g: typeof base) => Math.max(1, [...o.verifier.tokenizer.decode(g.tokens)].length);
    units.push({ base: base.stats.totalMs, spec: spec.stats.totalMs, chars: chars(spec), baseChars: chars(base) });
    if (o.gamma > 0 && o.drafter)
      forced.push(await measurePrompt(o.drafter, await continuationOf(o.verifier, prompt, base.tokens), { temperature: o.temperature, topP: o.topP }, [o.proposalTemperature ?? o.temperature], [o.gamma]));
  }
  const s = bootstrap(units, ratioOfSums((u) => u.base, (u) => u.spec), o.rng, o.resamples);
  const tf = forced.length ? summarizePrompts(forced, [o.proposalTemperature ?? o.temperature], o.rng, o.resamples) : null;
  const tps = tf?.tokensPerStep[0]?.[String(o.gamma)];
  const sum = (f: (u: (typeof units)[number]) => number) => units.reduce((a, u) => a + f(u), 0);
  return {
    measuredSpeedup: { estimate: s.estimate, lo: s.lo, hi: s.hi },
    msPerChar: sum((u) => u.spec) / sum((u) => u.chars),
    verifierOnlyMsPerChar: sum((u) => u.base) / sum((u) => u.baseChars),
    via: "in-process",
    ...(tps && { teacherForced: { tokensPerStep: { estimate: tps.estimate, lo: tps.lo, hi: tps.hi }, promptTokens: o.prompts.reduce((a, p) => a + p.length, 0) / o.prompts.length } }),
  };
}
