/**
 * Teacher-forced measurement of drafter–verifier fit on a task.
 *
 * 1. For each prompt, the verifier samples a continuation at the target temperature (so the
 *    contexts are the ones speculative decoding would really meet).
 * 2. One verifier pass and one drafter pass over prompt + continuation give p and q at every
 *    continuation position; from them, per position:
 *      β_τ = Σ min(p_T, q_τ) for every proposal temperature τ at once (p_T: target temperature T,
 *            top-p; q_τ ∝ q^{1/τ}) — α_T(τ) is the mean β_τ;
 *      H(p, q), KL(p‖q), TV(p, q) on the raw (temperature-1) distributions — the paper's D_T, K_T;
 *    and, from the β sequence, the expected verifier steps to emit the continuation at every γ
 *    (core/speedup.ts expectedSteps): tokens per step without assuming β i.i.d.
 * Units of the bootstrap are prompts: positions of one prompt are not independent.
 */
import { bootstrap, ratioOfSums, type Interval } from "../core/bootstrap.ts";
import { crossEntropy, kl, pinskerAlphaBound, totalVariation } from "../core/divergence.ts";
import { expectedStepCounts } from "../core/speedup.ts";
import type { Rng } from "../core/rng.ts";
import type { CausalLM } from "../engine/causal-lm.ts";
import { overlap, softmax, targetDistribution } from "../engine/sampling.ts";
import { generate } from "../engine/speculative.ts";

export interface Continuation {
  prompt: number[];
  continuation: number[];
  /** Verifier logits predicting continuation[i], i = 0..n−1. */
  verifierRows: Float32Array[];
}

/**
 * Verifier-sampled continuations and the verifier's logits along them. With a drafter, the
 * continuations are sampled by speculative decoding: exactly the verifier's law (that is the point
 * of speculative sampling), in less time.
 */
export async function sampleContinuations(
  verifier: CausalLM,
  prompts: readonly number[][],
  opts: { newTokens: number; temperature: number; topP?: number; rng: Rng; drafter?: CausalLM; gamma?: number; onPrompt?: () => void },
): Promise<Continuation[]> {
  const out: Continuation[] = [];
  const gamma = opts.drafter ? (opts.gamma ?? 3) : 0;
  for (const prompt of prompts) {
    const room = verifier.maxPositions - prompt.length;
    const g = await generate({ verifier, drafter: opts.drafter, gamma, prompt, maxNewTokens: Math.min(opts.newTokens, room), temperature: opts.temperature, topP: opts.topP, rng: opts.rng, stopAtEos: false });
    out.push(await continuationOf(verifier, prompt, g.tokens));
    opts.onPrompt?.();
  }
  return out;
}

/** A continuation the verifier produced, with the verifier's logits along it (one verifier pass). */
export async function continuationOf(verifier: CausalLM, prompt: number[], continuation: number[]): Promise<Continuation> {
  const rows = await verifier.newSession().append([...prompt, ...continuation]);
  return { prompt, continuation, verifierRows: rows.slice(prompt.length - 1, prompt.length - 1 + continuation.length).map((r) => r.slice()) };
}

/** Sums over one prompt's positions (the bootstrap unit). */
export interface PromptStats {
  positions: number;
  betaSum: number[]; // per proposal temperature
  /** Expected verifier steps to emit the continuation, per proposal temperature, per γ of `gammas`. */
  steps: number[][];
  /** Of those, the expected steps that end in a rejection (same shape); absent in older checkpoints. */
  rejecting?: number[][];
  gammas: number[];
  ceSum: number;
  klSum: number;
  tvSum: number;
}

export async function measurePrompt(
  drafter: CausalLM,
  c: Continuation,
  target: { temperature: number; topP?: number },
  taus: readonly number[],
  gammas: readonly number[] = [],
): Promise<PromptStats> {
  const rows = await drafter.newSession().append([...c.prompt, ...c.continuation]);
  const s: PromptStats = { positions: 0, betaSum: taus.map(() => 0), steps: [], gammas: [...gammas], ceSum: 0, klSum: 0, tvSum: 0 };
  const beta = taus.map(() => new Float64Array(c.continuation.length));
  for (let i = 0; i < c.continuation.length; i++) {
    const v = c.verifierRows[i]!;
    const d = rows[c.prompt.length - 1 + i]!;
    const pRaw = softmax(v, 1);
    const qRaw = softmax(d, 1);
    s.ceSum += crossEntropy(pRaw, qRaw);
    s.klSum += kl(pRaw, qRaw);
    s.tvSum += totalVariation(pRaw, qRaw);
    const pT = targetDistribution(v, target);
    taus.forEach((tau, k) => {
      const b = overlap(pT, tau === 1 ? qRaw : softmax(d, tau));
      beta[k]![i] = b;
      s.betaSum[k]! += b;
    });
    s.positions++;
  }
  const counts = beta.map((b) => gammas.map((g) => expectedStepCounts(b, g)));
  s.steps = counts.map((byGamma) => byGamma.map((c) => c.steps));
  s.rejecting = counts.map((byGamma) => byGamma.map((c) => c.rejecting));
  return s;
}

export interface FitStats {
  /** α per proposal temperature (same order as taus). */
  alpha: Interval[];
  /** E[tokens per verifier step] per proposal temperature, per γ (γ → interval), from the β sequences. */
  tokensPerStep: Record<string, Interval>[];
  /** The fraction of those steps that end in a rejection (they cost more), same shape; {} where not measured. */
  rejectingFraction: Record<string, number>[];
  crossEntropy: Interval;
  kl: Interval;
  meanTv: number;
  pinskerBound: number;
  prompts: number;
  positions: number;
}

export function summarizePrompts(units: readonly PromptStats[], taus: readonly number[], rng: Rng, resamples = 1000): FitStats {
  const pos = (u: PromptStats) => u.positions;
  const alpha = taus.map((_, k) => bootstrap(units, ratioOfSums((u) => u.betaSum[k]!, pos), rng, resamples));
  // Only the γ every unit measured (a checkpoint of an older shape has none: the i.i.d. model then).
  const gammas = units.length && units.every((u) => u.gammas?.length) ? units[0]!.gammas.filter((g) => units.every((u) => u.gammas.includes(g))) : [];
  const tokensPerStep = taus.map((_, k) =>
    Object.fromEntries(gammas.map((g) => [String(g), bootstrap(units, ratioOfSums(pos, (u) => u.steps[k]![u.gammas.indexOf(g)]!), rng, resamples)])),
  );
  const sum = (f: (u: PromptStats) => number) => units.reduce((a, u) => a + f(u), 0);
  const withRejecting = units.every((u) => u.rejecting);
  const rejectingFraction = taus.map((_, k) =>
    withRejecting ? Object.fromEntries(gammas.map((g) => [String(g), sum((u) => u.rejecting![k]![u.gammas.indexOf(g)]!) / sum((u) => u.steps[k]![u.gammas.indexOf(g)]!)])) : {},
  );
  const klI = bootstrap(units, ratioOfSums((u) => u.klSum, pos), rng, resamples);
  const positions = units.reduce((a, u) => a + u.positions, 0);
  return {
    alpha,
    tokensPerStep,
    rejectingFraction,
    crossEntropy: bootstrap(units, ratioOfSums((u) => u.ceSum, pos), rng, resamples),
    kl: klI,
    meanTv: units.reduce((a, u) => a + u.tvSum, 0) / positions,
    pinskerBound: pinskerAlphaBound(klI.estimate),
    prompts: units.length,
    positions,
  };
}
