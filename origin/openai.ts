/**
 * The OpenAI wire format, as data: request schemas (zod), the error shape, and builders for
 * responses and stream chunks. No I/O, so the exact bytes a client sees are tested without a
 * server.
 *
 * Unknown request fields are ignored (as vLLM does); known features this origin cannot honour
 * (n > 1, logprobs, penalties, logit_bias, tools, suffix) are refused with a 400 that names the
 * field rather than silently ignored.
 */
import { z } from "zod";

// ---------- errors ----------

export type ErrorType = "invalid_request_error" | "not_found_error" | "rate_limit_error" | "timeout_error" | "server_error";

export interface OpenAIErrorBody {
  error: { message: string; type: ErrorType; param: string | null; code: string | null };
}

export function errorBody(message: string, type: ErrorType = "invalid_request_error", param: string | null = null, code: string | null = null): OpenAIErrorBody {
  return { error: { message, type, param, code } };
}

/** ["messages", 0, "content"] → "messages[0].content" */
export function paramName(path: readonly PropertyKey[]): string | null {
  let s = "";
  for (const p of path) s += typeof p === "number" ? `[${p}]` : s ? `.${String(p)}` : String(p);
  return s || null;
}

/** The first zod issue as a 400 body whose `param` names the field. */
export function validationError(error: z.ZodError): OpenAIErrorBody {
  const issue = error.issues[0]!;
  const path: PropertyKey[] = [...issue.path];
  // An unknown key inside our own extension object: name the key itself (likely a typo).
  if (issue.code === "unrecognized_keys" && issue.keys[0] !== undefined) path.push(issue.keys[0]);
  const param = paramName(path);
  return errorBody(param ? `${param}: ${issue.message}` : issue.message, "invalid_request_error", param, "invalid_value");
}

// ---------- requests ----------

/**
 * The extension field: per-request speculative parameters (fairspec pools only; vLLM and SGLang
 * pools have them fixed at server start). Omitted fields take the pool's defaults.
 */
export const MAX_GAMMA = 16;
export const speculativeSchema = z.strictObject({
  /** A drafter name the origin serves ("base", "balanced"); null = no drafter (then γ must be 0). */
  drafter: z.string().min(1).nullable().optional(),
  /** Draft tokens per verifier step; 0 = plain decoding. */
  gamma: z.number().int().min(0).max(MAX_GAMMA).optional(),
  /** Temperature of the drafter's proposal; null = the request's temperature. Never changes the output law. */
  proposal_temperature: z.number().min(0).max(10).nullable().optional(),
});
export type SpeculativeParams = z.infer<typeof speculativeSchema>;

const unsupported = (what: string) => ({ error: `${what} is not supported by this origin` });
const zeroOnly = (what: string) => z.number().refine((x) => x === 0, unsupported(`${what} other than 0`)).nullable().optional();

const sampling = {
  model: z.string().min(1),
  stream: z.boolean().nullable().optional(),
  stream_options: z.object({ include_usage: z.boolean().nullable().optional() }).nullable().optional(),
  /** 0 = greedy. Default 1 (as OpenAI). */
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().gt(0).max(1).nullable().optional(),
  /** Extension (as vLLM): keep the k most likely tokens; 0 or -1 = no limit. */
  top_k: z.number().int().min(-1).nullable().optional(),
  max_tokens: z.number().int().min(1).nullable().optional(),
  seed: z.number().int().min(Number.MIN_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER).nullable().optional(),
  stop: z
    .union([z.string().min(1), z.array(z.string().min(1)).max(16)], { error: "must be a non-empty string or an array of at most 16 non-empty strings" })
    .nullable()
    .optional(),
  n: z.number().int().min(1).max(1, unsupported("n > 1")).nullable().optional(),
  presence_penalty: zeroOnly("presence_penalty"),
  frequency_penalty: zeroOnly("frequency_penalty"),
  logit_bias: z
    .record(z.string(), z.number())
    .refine((m) => Object.keys(m).length === 0, unsupported("logit_bias"))
    .nullable()
    .optional(),
  user: z.string().optional(),
  speculative: speculativeSchema.nullable().optional(),
};

const textPart = z.object({ type: z.literal("text", { error: "only text content parts are supported" }), text: z.string() });
const message = z.object({
  role: z.enum(["system", "developer", "user", "assistant", "tool"]),
  content: z.union([z.string(), z.array(textPart)], { error: "must be a string or an array of text parts" }).nullable().optional(),
  name: z.string().optional(),
});

export const chatRequestSchema = z.object({
  ...sampling,
  messages: z.array(message).min(1),
  max_completion_tokens: z.number().int().min(1).nullable().optional(),
  logprobs: z.boolean().refine((x) => !x, unsupported("logprobs")).nullable().optional(),
  top_logprobs: zeroOnly("top_logprobs"),
  tools: z.array(z.unknown()).max(0, unsupported("tools")).nullable().optional(),
});
export type ChatRequest = z.infer<typeof chatRequestSchema>;

const tokenIds = z.array(z.number().int().min(0));
export const completionRequestSchema = z.object({
  ...sampling,
  prompt: z.union([z.string(), z.array(z.string()).length(1), tokenIds, z.array(tokenIds).length(1)], {
    error: "must be a string, an array of token ids, or a one-element array of either (batches are not supported)",
  }),
  echo: z.boolean().nullable().optional(),
  logprobs: zeroOnly("logprobs"),
  best_of: z.number().int().min(1).max(1, unsupported("best_of > 1")).nullable().optional(),
  suffix: z.null().optional(),
});
export type CompletionRequest = z.infer<typeof completionRequestSchema>;

/** A chat message's content as plain text (text parts joined). */
export function messageText(content: ChatRequest["messages"][number]["content"]): string {
  if (content == null) return "";
  return typeof content === "string" ? content : content.map((p) => p.text).join("");
}

// ---------- responses ----------

export type FinishReason = "stop" | "length";

/** Plain counts of one request's verifier steps. */
export interface SpecCounts {
  steps: number;
  drafts: number;
  draftTokens: number;
  accepted: number;
  acceptedPerPos: number[];
}

/**
 * vLLM's speculative-decoding names for one request. mean_acceptance_length includes the token
 * each verifier step adds (1 + accepted / steps); draft_acceptance_rate is null when nothing was
 * drafted (γ = 0).
 */
export interface SpeculativeDecodingUsage {
  num_verifier_steps: number;
  num_drafts: number;
  num_draft_tokens: number;
  num_accepted_draft_tokens: number;
  num_accepted_tokens_per_pos: number[];
  mean_acceptance_length: number;
  draft_acceptance_rate: number | null;
}

export function speculativeDecodingUsage(c: SpecCounts): SpeculativeDecodingUsage {
  return {
    num_verifier_steps: c.steps,
    num_drafts: c.drafts,
    num_draft_tokens: c.draftTokens,
    num_accepted_draft_tokens: c.accepted,
    num_accepted_tokens_per_pos: [...c.acceptedPerPos],
    mean_acceptance_length: c.steps > 0 ? 1 + c.accepted / c.steps : 1,
    draft_acceptance_rate: c.draftTokens > 0 ? c.accepted / c.draftTokens : null,
  };
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  speculative_decoding: SpeculativeDecodingUsage;
}

export interface ResponseMetrics {
  speculative_decoding: SpeculativeDecodingUsage;
  /** Server-side times in ms, from the request's arrival. */
  timing: { queue_ms: number; time_to_first_token_ms: number | null; e2e_ms: number };
}

/** The speculative parameters a request actually ran with (the extension field, resolved). */
export interface EffectiveSpeculative {
  drafter: string | null;
  gamma: number;
  proposal_temperature: number | null;
}

export function usage(promptTokens: number, completionTokens: number, spec: SpecCounts): Usage {
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens, speculative_decoding: speculativeDecodingUsage(spec) };
}

export interface ResponseHead {
  id: string;
  created: number;
  model: string;
}

export function chatCompletion(h: ResponseHead, text: string, finish: FinishReason, u: Usage, metrics: ResponseMetrics, speculative: EffectiveSpeculative) {
  return {
    id: h.id,
    object: "chat.completion" as const,
    created: h.created,
    model: h.model,
    choices: [{ index: 0, message: { role: "assistant" as const, content: text, refusal: null }, logprobs: null, finish_reason: finish }],
    usage: u,
    system_fingerprint: null,
    metrics,
    speculative,
  };
}

export function textCompletion(h: ResponseHead, text: string, finish: FinishReason, u: Usage, metrics: ResponseMetrics, speculative: EffectiveSpeculative) {
  return {
    id: h.id,
    object: "text_completion" as const,
    created: h.created,
    model: h.model,
    choices: [{ index: 0, text, logprobs: null, finish_reason: finish }],
    usage: u,
    system_fingerprint: null,
    metrics,
    speculative,
  };
}

/**
 * Stream chunks. With stream_options.include_usage every chunk carries `usage: null` and one last
 * chunk (choices: []) carries the usage; without it no chunk has a usage field (OpenAI's rule).
 */
export function chatChunk(h: ResponseHead, delta: { role?: "assistant"; content?: string }, finish: FinishReason | null, includeUsage: boolean) {
  return {
    id: h.id,
    object: "chat.completion.chunk" as const,
    created: h.created,
    model: h.model,
    system_fingerprint: null,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    ...(includeUsage ? { usage: null } : {}),
  };
}

export function completionChunk(h: ResponseHead, text: string, finish: FinishReason | null, includeUsage: boolean) {
  return {
    id: h.id,
    object: "text_completion" as const,
    created: h.created,
    model: h.model,
    system_fingerprint: null,
    choices: [{ index: 0, text, logprobs: null, finish_reason: finish }],
    ...(includeUsage ? { usage: null } : {}),
  };
}

export function usageChunk(h: ResponseHead, object: "chat.completion.chunk" | "text_completion", u: Usage, metrics: ResponseMetrics, speculative: EffectiveSpeculative) {
  return { id: h.id, object, created: h.created, model: h.model, system_fingerprint: null, choices: [], usage: u, metrics, speculative };
}
