/**
 * Validation: timed speculative runs at the fitted parameters vs verifier-only on the same
 * prompts and seeds, back to back (so drift on a shared host hits both alike). Measured S is a
 * ratio of summed wall times, with a bootstrap interval over prompts; ms per output character is
 * what a user feels (a CJK character is 3 bytes, so 3 byte-tokens).
 */
import type { Interval95 } from "../core/calibration.ts";
import { bootstrap, ratioOfSums } from "../core/bootstrap.ts";
import { Xoshiro128, type Rng } from "../core/rng.ts";
import type { CausalLM } from "../engine/causal-lm.ts";
import { generate } from "../engine/speculative.ts";

export interface ValidationResult {
  measuredSpeedup: Interval95;
  msPerChar: number;
  verifierOnlyMsPerChar: number | null;
  /** Where it was measured: in-process, or the remote pool's id. */
  via: string;
  /** Remote runs only: α observed online from the origin's per-position acceptance counts. */
  onlineAlpha?: Interval95 | null;
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
  for (const [i, prompt] of o.prompts.entries()) {
    const common = { verifier: o.verifier, prompt, maxNewTokens: o.newTokens, temperature: o.temperature, topP: o.topP, stopAtEos: false };
    const base = await generate({ ...common, gamma: 0, rng: new Xoshiro128(o.seed + i) });
    const spec =
      o.gamma > 0 && o.drafter
        ? await generate({ ...common, drafter: o.drafter, gamma: o.gamma, proposalTemperature: o.proposalTemperature ?? undefined, rng: new Xoshiro128(o.seed + i) })
        : await generate({ ...common, gamma: 0, rng: new Xoshiro128(o.seed + i) });
    const chars = (g: typeof base) => Math.max(1, [...o.verifier.tokenizer.decode(g.tokens)].length);
    units.push({ base: base.stats.totalMs, spec: spec.stats.totalMs, chars: chars(spec), baseChars: chars(base) });
  }
  const s = bootstrap(units, ratioOfSums((u) => u.base, (u) => u.spec), o.rng, o.resamples);
  const sum = (f: (u: (typeof units)[number]) => number) => units.reduce((a, u) => a + f(u), 0);
  return {
    measuredSpeedup: { estimate: s.estimate, lo: s.lo, hi: s.hi },
    msPerChar: sum((u) => u.spec) / sum((u) => u.chars),
    verifierOnlyMsPerChar: sum((u) => u.base) / sum((u) => u.baseChars),
    via: "in-process",
  };
}
