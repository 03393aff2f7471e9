/**
 * One request's generation: runs the engine's step stream, turns tokens into text, applies stop
 * strings, and counts the speculative work. Both the streaming and the non-streaming handlers
 * run through here, so they produce the same text and the same counts for the same request.
 *
 * Stop strings are matched on decoded text, token by token, so `completion_tokens` counts exactly
 * the tokens up to the one that completed the stop string. While streaming, text that could still
 * turn out to be the start of a stop string is held back until it is decided.
 */
import { Xoshiro128 } from "../core/rng.ts";
import type { CausalLM } from "../engine/causal-lm.ts";
import type { GenerateOptions, StepEvent, StepStats } from "../engine/speculative.ts";
import type { FinishReason, SpecCounts } from "./openai.ts";

/** The engine as the origin sees it: `speculativeSteps` or a stand-in with its signature. */
export type StepsFn = (o: GenerateOptions) => AsyncIterable<StepEvent>;

export interface GenerationRequest {
  verifier: CausalLM;
  drafter?: CausalLM;
  gamma: number;
  /** null/undefined: the engine's default (the target temperature). */
  proposalTemperature?: number | null;
  temperature: number;
  topP?: number;
  topK?: number;
  prompt: readonly number[];
  maxNewTokens: number;
  seed: number;
  stop: readonly string[];
  signal?: AbortSignal;
}

export interface GenerationOutcome {
  text: string;
  finishReason: FinishReason;
  completionTokens: number;
  spec: SpecCounts;
  /** performance.now() when the first token was generated; null if none was. */
  firstTokenAt: number | null;
}

export const emptyCounts = (): SpecCounts => ({ steps: 0, drafts: 0, draftTokens: 0, accepted: 0, acceptedPerPos: [] });

export function countStep(c: SpecCounts, s: StepStats): void {
  c.steps++;
  if (s.drafted > 0) c.drafts++;
  c.draftTokens += s.drafted;
  c.accepted += s.accepted;
  s.acceptedAt.forEach((a, i) => {
    c.acceptedPerPos[i] = (c.acceptedPerPos[i] ?? 0) + (a ? 1 : 0);
  });
}

/** The earliest stop string occurrence starting at or after `from`, or null. Pure. */
export function findStop(text: string, stops: readonly string[], from = 0): number | null {
  let best: number | null = null;
  for (const s of stops) {
    const i = text.indexOf(s, from);
    if (i >= 0 && (best === null || i < best)) best = i;
  }
  return best;
}

/** Length of the longest suffix of `text` that is a proper prefix of some stop string: text not yet safe to send. Pure. */
export function heldBackLength(text: string, stops: readonly string[]): number {
  let hold = 0;
  for (const s of stops) {
    for (let k = Math.min(s.length - 1, text.length); k > hold; k--) {
      if (text.endsWith(s.slice(0, k))) {
        hold = k;
        break;
      }
    }
  }
  return hold;
}

/**
 * Run one generation. `onText` receives the text in order, at most once per verifier step (so a
 * speculative step's several tokens travel in one chunk); awaiting it gives the stream's
 * backpressure to the engine. `onStep` sees every verifier step as it completes.
 * Throws the signal's reason if the signal aborts.
 */
export async function runGeneration(
  engine: StepsFn,
  r: GenerationRequest,
  onText: (delta: string) => void | Promise<void>,
  onStep?: (step: StepStats) => void,
): Promise<GenerationOutcome> {
  const decode = r.verifier.tokenizer.streamDecoder();
  const maxStop = Math.max(0, ...r.stop.map((s) => s.length));
  const spec = emptyCounts();
  let text = "";
  let sent = 0;
  let completionTokens = 0;
  let finishReason: FinishReason = "length";
  let firstTokenAt: number | null = null;
  let stopped = false;

  const steps = engine({
    verifier: r.verifier,
    drafter: r.gamma > 0 ? r.drafter : undefined,
    gamma: r.gamma,
    proposalTemperature: r.proposalTemperature ?? undefined,
    temperature: r.temperature,
    topP: r.topP,
    topK: r.topK,
    prompt: r.prompt,
    maxNewTokens: r.maxNewTokens,
    rng: new Xoshiro128(r.seed),
    signal: r.signal,
  });
  for await (const ev of steps) {
    countStep(spec, ev.step);
    onStep?.(ev.step);
    if (ev.tokens.length > 0) firstTokenAt ??= performance.now();
    for (const t of ev.tokens) {
      const before = text.length;
      text += decode([t]);
      completionTokens++;
      if (maxStop === 0) continue;
      const at = findStop(text, r.stop, Math.max(0, before - maxStop + 1));
      if (at !== null) {
        text = text.slice(0, at);
        stopped = true;
        break;
      }
    }
    if (stopped) {
      finishReason = "stop";
      break; // ends the engine's generator: no further steps run
    }
    if (ev.done) {
      finishReason = ev.done;
      text += decode([], true);
      break;
    }
    const safe = text.length - heldBackLength(text, r.stop);
    if (safe > sent) {
      await onText(text.slice(sent, safe));
      sent = safe;
    }
  }
  if (text.length > sent) await onText(text.slice(sent));
  return { text, finishReason, completionTokens, spec, firstTokenAt };
}
