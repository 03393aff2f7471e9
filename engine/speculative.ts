/**
 * Speculative decoding over two CausalLMs: the drafter proposes γ tokens from q, the verifier
 * scores γ + 1 positions in one call, and `verifyDraft` decides. γ = 0 (or no drafter) is plain
 * verifier-only decoding through the same loop, so the two are measured alike.
 *
 * Cache bookkeeping: after every step the last committed token has not been fed to either model
 * yet; the next verifier call feeds [last, d_1..d_γ] and its rows predict d_1..d_γ and the bonus.
 * After k acceptances the verifier cache is rolled back to the committed prefix, and the drafter
 * to whatever of that prefix it has seen.
 */
import type { Rng } from "../core/rng.ts";
import type { CausalLM, LMSession } from "./causal-lm.ts";
import { verifyDraft } from "./rejection-sampler.ts";
import { sampleIndex, softmax, targetDistribution, type TargetParams } from "./sampling.ts";

export interface GenerateOptions extends TargetParams {
  verifier: CausalLM;
  /** Omit (or γ = 0) for verifier-only decoding. */
  drafter?: CausalLM;
  /** Draft length per step; 0 = no speculation. */
  gamma: number;
  /**
   * Temperature τ of the proposal q ∝ q_drafter^{1/τ}. Defaults to the target temperature (so
   * greedy targets get greedy drafts). Changes the acceptance rate, never the output distribution.
   */
  proposalTemperature?: number;
  prompt: readonly number[];
  maxNewTokens: number;
  rng: Rng;
  /** Stop at the verifier's end-of-text token (default true). */
  stopAtEos?: boolean;
  signal?: AbortSignal;
}

/** Plain data per verifier call. */
export interface StepStats {
  /** Draft tokens proposed in this step (γ, or fewer near max_tokens / the context limit). */
  drafted: number;
  /** Draft tokens accepted. */
  accepted: number;
  /** 1 when every draft was accepted and the verifier's bonus token was emitted. */
  bonus: 0 | 1;
  /** Tokens this step added to the output: accepted + 1 (before truncation at a stop). */
  emitted: number;
  /** acceptedAt[i]: was the draft at position i + 1 accepted. */
  acceptedAt: boolean[];
  /** β_i = Σ min(p_i, q_i) at each draft position the output actually reached. */
  beta: number[];
  drafterMs: number;
  verifierMs: number;
  /** Everything else in the step: sampling, verification, bookkeeping. */
  engineMs: number;
}

export type FinishReason = "length" | "stop";

export interface GenerationStats {
  steps: number;
  /** Verifier calls, including the prompt prefill. */
  verifierCalls: number;
  drafterCalls: number;
  drafted: number;
  accepted: number;
  /** accepted / drafted (vLLM's draft_acceptance_rate); NaN when nothing was drafted. */
  acceptanceRate: number;
  /** Tokens per verifier step including the one each step adds (vLLM's convention): 1 + accepted / steps. */
  meanAcceptanceLength: number;
  acceptedPerPosition: number[];
  draftsPerPosition: number[];
  /** Mean β over every reached draft position. */
  meanBeta: number;
  prefillMs: number;
  drafterMs: number;
  verifierMs: number;
  engineMs: number;
  totalMs: number;
}

export interface Generation {
  tokens: number[];
  finishReason: FinishReason;
  stats: GenerationStats;
  stepStats: StepStats[];
}

export interface StepEvent {
  /** Tokens emitted by this step, already truncated at max_tokens / end-of-text. */
  tokens: number[];
  step: StepStats;
  done: FinishReason | null;
}

function validate(o: GenerateOptions) {
  const { verifier, drafter } = o;
  if (!Number.isInteger(o.gamma) || o.gamma < 0) throw new RangeError(`gamma must be an integer >= 0, got ${o.gamma}`);
  if (o.gamma > 0 && !drafter) throw new RangeError("gamma > 0 needs a drafter");
  if (drafter && drafter.vocabSize !== verifier.vocabSize) {
    throw new RangeError(`drafter vocabulary (${drafter.vocabSize}) differs from the verifier's (${verifier.vocabSize})`);
  }
  if (!(o.temperature >= 0)) throw new RangeError(`temperature must be >= 0, got ${o.temperature}`);
  if (o.proposalTemperature !== undefined && !(o.proposalTemperature >= 0)) {
    throw new RangeError(`proposal temperature must be >= 0, got ${o.proposalTemperature}`);
  }
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) throw new RangeError(`top_p must be in (0, 1], got ${o.topP}`);
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) throw new RangeError(`top_k must be an integer >= 0, got ${o.topK}`);
  if (o.prompt.length === 0) throw new RangeError("prompt is empty");
  const room = Math.min(verifier.maxPositions, drafter?.maxPositions ?? Infinity);
  if (o.prompt.length >= room) throw new RangeError(`prompt of ${o.prompt.length} tokens leaves no room in a ${room}-position context`);
  if (!Number.isInteger(o.maxNewTokens) || o.maxNewTokens < 1) throw new RangeError(`max new tokens must be an integer >= 1, got ${o.maxNewTokens}`);
}

/** Max new tokens that fit in the models' context after the prompt. */
export function maxNewTokensFor(o: Pick<GenerateOptions, "verifier" | "drafter" | "prompt">): number {
  const room = Math.min(o.verifier.maxPositions, o.drafter?.maxPositions ?? Infinity);
  return Math.max(0, room - o.prompt.length);
}

/** Speculative decoding as a stream of steps (what a server streams from). */
export async function* speculativeSteps(o: GenerateOptions): AsyncGenerator<StepEvent, void, undefined> {
  validate(o);
  const gamma = o.drafter ? o.gamma : 0;
  const tau = o.proposalTemperature ?? o.temperature;
  const target: TargetParams = { temperature: o.temperature, topK: o.topK, topP: o.topP };
  const maxNew = Math.min(o.maxNewTokens, maxNewTokensFor(o));
  const eos = o.stopAtEos === false ? -1 : (o.verifier.eosTokenId ?? -1);
  const V: LMSession = o.verifier.newSession();
  const D: LMSession | null = gamma > 0 ? o.drafter!.newSession() : null;

  // Prefill: everything but the last prompt token, which the first step feeds (see file comment).
  const committed = [...o.prompt];
  const prefix = committed.slice(0, -1);
  if (prefix.length) {
    await V.append(prefix);
    if (D) await D.append(prefix);
  }
  let emitted = 0;
  while (emitted < maxNew) {
    o.signal?.throwIfAborted();
    const t0 = performance.now();
    let drafterMs = 0;
    // Fewer drafts near the end: a step emits at most γ + 1 tokens and we need only `maxNew − emitted`.
    const g = Math.min(gamma, maxNew - emitted - 1);
    const draft: number[] = [];
    const q: Float64Array[] = [];
    if (D && g > 0) {
      // The drafter has seen a prefix of `committed`; feed the rest, then draft one token at a time.
      let pending = committed.slice(D.length);
      for (let i = 0; i < g; i++) {
        const td = performance.now();
        const rows = await D.append(pending);
        drafterMs += performance.now() - td;
        const qi = softmax(rows[rows.length - 1]!, tau);
        const x = sampleIndex(qi, o.rng.uniform());
        q.push(qi);
        draft.push(x);
        pending = [x];
      }
    }
    const tv = performance.now();
    const rows = await V.append([committed[committed.length - 1]!, ...draft]);
    const verifierMs = performance.now() - tv;
    const p = rows.map((r) => targetDistribution(r, target));
    const v = verifyDraft(draft, q, p, o.rng);
    // The verifier cache keeps `last` and the accepted drafts; the drafter at most that.
    const keep = committed.length + v.accepted;
    V.rollback(keep);
    if (D && D.length > keep) D.rollback(keep);
    committed.push(...v.tokens);

    let out = v.tokens;
    let done: FinishReason | null = null;
    const eosAt = out.indexOf(eos);
    if (eosAt >= 0) {
      out = out.slice(0, eosAt);
      done = "stop";
    }
    if (emitted + out.length >= maxNew) {
      out = out.slice(0, maxNew - emitted);
      done ??= "length";
    }
    emitted += out.length;
    const step: StepStats = {
      drafted: draft.length,
      accepted: v.accepted,
      bonus: v.bonus && draft.length > 0 ? 1 : 0,
      emitted: v.tokens.length,
      acceptedAt: draft.map((_, i) => i < v.accepted),
      beta: v.beta.slice(0, Math.min(draft.length, v.accepted + 1)),
      drafterMs,
      verifierMs,
      engineMs: 0,
    };
    step.engineMs = Math.max(0, performance.now() - t0 - drafterMs - verifierMs);
    yield { tokens: out, step, done };
    if (done) return;
  }
}

/** Run a whole generation and aggregate its statistics. */
export async function generate(o: GenerateOptions): Promise<Generation> {
  const t0 = performance.now();
  const tokens: number[] = [];
  const stepStats: StepStats[] = [];
  let finishReason: FinishReason = "length";
  let prefillMs = 0;
  let first = true;
  for await (const ev of speculativeSteps(o)) {
    if (first) {
      // Time before the first step's own work is the prefill.
      prefillMs = performance.now() - t0 - ev.step.drafterMs - ev.step.verifierMs - ev.step.engineMs;
      first = false;
    }
    tokens.push(...ev.tokens);
    stepStats.push(ev.step);
    if (ev.done) finishReason = ev.done;
  }
  return { tokens, finishReason, stepStats, stats: summarize(stepStats, prefillMs, performance.now() - t0, o.prompt.length > 1) };
}

export function summarize(steps: readonly StepStats[], prefillMs: number, totalMs: number, prefilled = true): GenerationStats {
  const s: GenerationStats = {
    steps: steps.length,
    verifierCalls: steps.length + (prefilled ? 1 : 0),
    drafterCalls: 0,
    drafted: 0,
    accepted: 0,
    acceptanceRate: NaN,
    meanAcceptanceLength: NaN,
    acceptedPerPosition: [],
    draftsPerPosition: [],
    meanBeta: NaN,
    prefillMs,
    drafterMs: 0,
    verifierMs: 0,
    engineMs: 0,
    totalMs,
  };
  let betaSum = 0;
  let betaN = 0;
  for (const st of steps) {
    s.drafted += st.drafted;
    s.accepted += st.accepted;
    s.drafterCalls += st.drafted;
    s.drafterMs += st.drafterMs;
    s.verifierMs += st.verifierMs;
    s.engineMs += st.engineMs;
    st.acceptedAt.forEach((a, i) => {
      s.draftsPerPosition[i] = (s.draftsPerPosition[i] ?? 0) + 1;
      s.acceptedPerPosition[i] = (s.acceptedPerPosition[i] ?? 0) + (a ? 1 : 0);
    });
    for (const b of st.beta) {
      betaSum += b;
      betaN++;
    }
  }
  if (s.drafted > 0) s.acceptanceRate = s.accepted / s.drafted;
  if (s.steps > 0) s.meanAcceptanceLength = 1 + s.accepted / s.steps;
  if (betaN > 0) s.meanBeta = betaSum / betaN;
  return s;
}
