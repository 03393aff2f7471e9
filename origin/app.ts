/**
 * The fairspec origin: an OpenAI-compatible speculative-inference server as a Hono app.
 *
 * Runtime-neutral core: no Node imports here. Models and the engine are injected, and the one
 * adapter per runtime (origin/server.ts for Node) only loads models and binds a port. Routes:
 *
 *   POST /v1/chat/completions, POST /v1/completions   (stream and non-stream)
 *   GET  /v1/models, GET /healthz, GET /metrics
 *
 * Per-request speculative parameters travel in the `speculative` extension field (see
 * openai.ts); omitted ones take this pool's defaults. Admission is bounded (queue.ts): a full
 * queue answers 429 with Retry-After at once. Every request has a deadline covering queueing and
 * generation; a client that goes away stops its generation at the next verifier step.
 */
import { Hono, type Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { streamSSE } from "hono/streaming";
import type { CausalLM } from "../engine/causal-lm.ts";
import { speculativeSteps, type StepStats } from "../engine/speculative.ts";
import { ChatTemplateError, chatTemplateFor } from "./chat-template.ts";
import { runGeneration, type GenerationOutcome, type StepsFn } from "./generation.ts";
import { createMetrics, recordRequest, recordStep, renderPrometheus, type FinishedReason, type OriginMetrics } from "./metrics.ts";
import {
  chatChunk,
  chatCompletion,
  chatRequestSchema,
  completionChunk,
  completionRequestSchema,
  errorBody,
  MAX_GAMMA,
  messageText,
  textCompletion,
  usage,
  usageChunk,
  validationError,
  type ChatRequest,
  type CompletionRequest,
  type EffectiveSpeculative,
  type FinishReason,
  type OpenAIErrorBody,
  type ResponseHead,
  type ResponseMetrics,
  type SpeculativeParams,
} from "./openai.ts";
import { AdmissionQueue, retryAfterSeconds } from "./queue.ts";

export interface SpeculativeDefaults {
  drafter: string | null;
  gamma: number;
  proposal_temperature: number | null;
}

export interface OriginDeps {
  /** The name clients send as `model` and get back (GET /v1/models lists it). */
  modelName: string;
  verifier: CausalLM;
  /** Drafters by the name requests use in `speculative.drafter`, e.g. { base, balanced }. */
  drafters: Readonly<Record<string, CausalLM>>;
  /** This pool's defaults for the extension field. */
  defaults: SpeculativeDefaults;
  /** Reported by /healthz and /v1/models so a caller can tell pools apart. */
  poolId?: string;
  /** Overrides the model's own chat template (and the default one). */
  chatTemplate?: string | null;
  /** Generations at once. Default 1: CPU inference gains nothing from interleaving. */
  concurrency?: number;
  /** Requests that may wait for a slot; beyond that 429. Default 8. */
  maxWaiting?: number;
  /** Deadline per request, queueing included. Default 120 000 ms. */
  timeoutMs?: number;
  /** Largest request body accepted (413 beyond). Default 1 MiB: far more than any prompt that fits the context. */
  maxBodyBytes?: number;
  /** Pass one in to read the counters from outside (tests, a co-hosted exporter). */
  metrics?: OriginMetrics;
  /** The engine; default `speculativeSteps`. */
  engine?: StepsFn;
  /** Sees every verifier step of every request as it completes. */
  onStep?: (step: StepStats) => void;
}

/** Why a request's signal fired. */
class RequestTimeout extends Error {}
class ClientGone extends Error {}

type Kind = "chat" | "completion";

const HTTP_TIMEOUT = 504;

function randomId(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().replace(/-/g, "")}`;
}

function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]!;
}

/** Everything resolved from a valid body, ready to run. */
interface Prepared {
  prompt: number[];
  promptText: string;
  drafter: CausalLM | undefined;
  speculative: EffectiveSpeculative;
  temperature: number;
  topP: number | undefined;
  topK: number | undefined;
  maxNewTokens: number;
  seed: number;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
  echo: boolean;
}

export function createOriginApp(deps: OriginDeps): Hono {
  const { verifier, drafters, defaults, modelName } = deps;
  const engine = deps.engine ?? speculativeSteps;
  const metrics = deps.metrics ?? createMetrics();
  const queue = new AdmissionQueue(deps.concurrency ?? 1, deps.maxWaiting ?? 8);
  const timeoutMs = deps.timeoutMs ?? 120_000;
  const template = chatTemplateFor(deps.chatTemplate, verifier.meta);
  // Misconfiguration fails at start, not on the first request.
  checkDefaults(defaults, drafters);

  const app = new Hono();

  const fail = (c: Context, status: 400 | 404 | 413 | 429 | 500 | 504, body: OpenAIErrorBody, headers?: Record<string, string>) => {
    if (status === 400 || status === 404 || status === 413) metrics.requestsInvalid++;
    return c.json(body, status, headers);
  };

  app.get("/healthz", (c) => c.json({ status: "ok", pool: deps.poolId ?? null, model: modelName, running: queue.running, waiting: queue.waiting }));

  app.get("/v1/models", (c) =>
    c.json({
      object: "list",
      data: [
        {
          id: modelName,
          object: "model",
          created: 0,
          owned_by: "fairspec",
          root: verifier.id,
          max_model_len: verifier.maxPositions,
          // Extension: what the `speculative` field accepts here.
          speculative: { drafters: Object.keys(drafters), max_gamma: MAX_GAMMA, defaults, pool: deps.poolId ?? null },
        },
      ],
    }),
  );

  app.get("/metrics", (c) => {
    c.header("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    return c.body(renderPrometheus(metrics, { running: queue.running, waiting: queue.waiting }, modelName));
  });

  /** The prompt of a valid body: chat messages through the template, or the completion prompt. */
  function promptOf(req: ChatRequest | CompletionRequest): { prompt: number[]; promptText: string } | OpenAIErrorBody {
    if ("messages" in req) {
      let promptText: string;
      try {
        promptText = template.render(req.messages.map((m) => ({ role: m.role, content: messageText(m.content), ...(m.name ? { name: m.name } : {}) })));
      } catch (e) {
        if (!(e instanceof ChatTemplateError)) throw e;
        return errorBody(`the chat template rejected these messages: ${e.message}`, "invalid_request_error", "messages", "invalid_value");
      }
      return { prompt: verifier.tokenizer.encode(promptText), promptText };
    }
    // A one-element batch is the same as its element.
    const raw = req.prompt;
    const p = Array.isArray(raw) && raw.length === 1 && (typeof raw[0] === "string" || Array.isArray(raw[0])) ? (raw[0] as string | number[]) : (raw as string | number[]);
    if (typeof p === "string") return { prompt: verifier.tokenizer.encode(p), promptText: p };
    const bad = p.find((t) => t >= verifier.vocabSize);
    if (bad !== undefined) return errorBody(`prompt: token id ${bad} is outside the vocabulary of ${verifier.vocabSize}`, "invalid_request_error", "prompt", "invalid_value");
    return { prompt: [...p], promptText: verifier.tokenizer.decode(p) };
  }

  /** Body → Prepared, or the 4xx to send. */
  function prepare(kind: Kind, body: unknown): Prepared | { status: 400 | 404; error: OpenAIErrorBody } {
    const parsed = kind === "chat" ? chatRequestSchema.safeParse(body) : completionRequestSchema.safeParse(body);
    if (!parsed.success) return { status: 400, error: validationError(parsed.error) };
    const req: ChatRequest | CompletionRequest = parsed.data;
    if (req.model !== modelName) {
      return { status: 404, error: errorBody(`The model '${req.model}' does not exist here; this origin serves '${modelName}'.`, "not_found_error", "model", "model_not_found") };
    }
    const spec = resolveSpeculative(req.speculative ?? {}, defaults, drafters);
    if ("error" in spec) return { status: 400, error: spec.error };
    const pr = promptOf(req);
    if ("error" in pr) return { status: 400, error: pr };
    const { prompt, promptText } = pr;
    const promptParam = kind === "chat" ? "messages" : "prompt";
    if (prompt.length === 0) return { status: 400, error: errorBody(`${promptParam}: the prompt is empty (0 tokens)`, "invalid_request_error", promptParam, "invalid_value") };
    // Over-long prompts are refused, not left-truncated: silently dropping a conversation's start changes its meaning.
    const room = Math.min(verifier.maxPositions, spec.drafter?.maxPositions ?? Infinity);
    if (prompt.length >= room) {
      return {
        status: 400,
        error: errorBody(
          `This model's maximum context length is ${room} tokens, and the prompt has ${prompt.length}: shorten it to at most ${room - 1} tokens.`,
          "invalid_request_error",
          promptParam,
          "context_length_exceeded",
        ),
      };
    }
    const chatMax = "messages" in req ? req.max_completion_tokens : null;
    const maxTokensField = chatMax ?? req.max_tokens;
    const fit = room - prompt.length;
    if (maxTokensField != null && maxTokensField > fit) {
      const param = chatMax != null ? "max_completion_tokens" : "max_tokens";
      return {
        status: 400,
        error: errorBody(
          `This model's maximum context length is ${room} tokens; the prompt has ${prompt.length}, so ${param} can be at most ${fit} (got ${maxTokensField}). Omit it to fill the context.`,
          "invalid_request_error",
          param,
          "context_length_exceeded",
        ),
      };
    }
    const stop = req.stop == null ? [] : typeof req.stop === "string" ? [req.stop] : req.stop;
    return {
      prompt,
      promptText,
      drafter: spec.drafter,
      speculative: spec.effective,
      temperature: req.temperature ?? 1,
      topP: req.top_p ?? undefined,
      topK: req.top_k == null || req.top_k < 0 ? undefined : req.top_k,
      maxNewTokens: maxTokensField ?? fit,
      seed: req.seed ?? randomSeed(),
      stop,
      stream: req.stream === true,
      includeUsage: req.stream === true && req.stream_options?.include_usage === true,
      echo: "echo" in req && req.echo === true,
    };
  }

  async function handle(c: Context, kind: Kind) {
    const arrival = performance.now();
    let body: unknown;
    try {
      body = JSON.parse(await c.req.text());
    } catch {
      return fail(c, 400, errorBody("The request body is not valid JSON.", "invalid_request_error", null, "invalid_json"));
    }
    const p = prepare(kind, body);
    if ("error" in p) return fail(c, p.status, p.error);

    // One signal for everything that ends this request early: the deadline or the client leaving.
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(new RequestTimeout(`request exceeded the origin's ${timeoutMs} ms deadline`)), timeoutMs);
    const clientSignal = c.req.raw.signal;
    const onClientGone = () => ac.abort(new ClientGone("client disconnected"));
    clientSignal.addEventListener("abort", onClientGone, { once: true });
    const cleanup = () => {
      clearTimeout(timer);
      clientSignal.removeEventListener("abort", onClientGone);
    };

    const admitted = queue.tryAcquire(ac.signal);
    if (!admitted) {
      cleanup();
      metrics.requestsRejected++;
      const mean = metrics.e2eLatency.count ? metrics.e2eLatency.sum / metrics.e2eLatency.count : NaN;
      const retry = retryAfterSeconds(queue.running, queue.waiting, queue.concurrency, mean);
      return fail(c, 429, errorBody(`The origin is at capacity (${queue.running} running, ${queue.waiting} waiting); retry after ${retry} s.`, "rate_limit_error", null, "queue_full"), {
        "Retry-After": String(retry),
      });
    }

    const head: ResponseHead = { id: randomId(kind === "chat" ? "chatcmpl" : "cmpl"), created: Math.floor(Date.now() / 1000), model: modelName };
    let release: (() => void) | undefined;
    let admittedAt = arrival;
    let outcome: GenerationOutcome | undefined;
    // Record exactly once, whatever way the request ends.
    const finish = (reason: FinishedReason) => {
      cleanup();
      release?.();
      const end = performance.now();
      recordRequest(metrics, {
        reason,
        promptTokens: p.prompt.length,
        generationTokens: outcome?.completionTokens ?? 0,
        e2eS: (end - arrival) / 1000,
        queueS: (admittedAt - arrival) / 1000,
        ttftS: outcome?.firstTokenAt != null ? (outcome.firstTokenAt - arrival) / 1000 : null,
      });
    };
    const reasonOf = (e: unknown): FinishedReason | null => (e instanceof RequestTimeout ? "timeout" : e instanceof ClientGone ? "abort" : null);

    try {
      release = await admitted;
      admittedAt = performance.now();
    } catch (e) {
      const reason = reasonOf(e);
      if (!reason) throw e;
      finish(reason);
      // Nobody reads the answer to a client that left; the deadline gets a proper 504.
      return fail(c, HTTP_TIMEOUT, errorBody((e as Error).message + " while waiting in the queue", "timeout_error", null, "timeout"));
    }

    const run = (onText: (delta: string) => void | Promise<void>) =>
      runGeneration(
        engine,
        {
          verifier,
          drafter: p.drafter,
          gamma: p.speculative.gamma,
          proposalTemperature: p.speculative.proposal_temperature,
          temperature: p.temperature,
          topP: p.topP,
          topK: p.topK,
          prompt: p.prompt,
          maxNewTokens: p.maxNewTokens,
          seed: p.seed,
          stop: p.stop,
          signal: ac.signal,
        },
        onText,
        (step) => {
          recordStep(metrics, step);
          deps.onStep?.(step);
        },
      );
    const responseMetrics = (o: GenerationOutcome): ResponseMetrics => {
      const now = performance.now();
      return {
        speculative_decoding: usage(0, 0, o.spec).speculative_decoding,
        timing: { queue_ms: admittedAt - arrival, time_to_first_token_ms: o.firstTokenAt === null ? null : o.firstTokenAt - arrival, e2e_ms: now - arrival },
      };
    };

    if (!p.stream) {
      try {
        outcome = await run(() => {});
      } catch (e) {
        const reason = reasonOf(e);
        if (!reason) {
          finish("abort");
          throw e;
        }
        finish(reason);
        return fail(c, HTTP_TIMEOUT, errorBody((e as Error).message, "timeout_error", null, "timeout"));
      }
      finish(outcome.finishReason);
      const u = usage(p.prompt.length, outcome.completionTokens, outcome.spec);
      const text = p.echo ? p.promptText + outcome.text : outcome.text;
      const build = kind === "chat" ? chatCompletion : textCompletion;
      return c.json(build(head, text, outcome.finishReason, u, responseMetrics(outcome), p.speculative));
    }

    return streamSSE(c, async (stream) => {
      stream.onAbort(onClientGone);
      const send = (data: unknown) => stream.writeSSE({ data: JSON.stringify(data) });
      const chunk = (text: string, finishReason: FinishReason | null) =>
        kind === "chat"
          ? chatChunk(head, finishReason ? {} : { content: text }, finishReason, p.includeUsage)
          : completionChunk(head, text, finishReason, p.includeUsage);
      try {
        if (kind === "chat") await send(chatChunk(head, { role: "assistant", content: "" }, null, p.includeUsage));
        if (p.echo) await send(chunk(p.promptText, null));
        outcome = await run((delta) => send(chunk(delta, null)));
        await send(chunk("", outcome.finishReason));
        if (p.includeUsage) {
          const u = usage(p.prompt.length, outcome.completionTokens, outcome.spec);
          await send(usageChunk(head, kind === "chat" ? "chat.completion.chunk" : "text_completion", u, responseMetrics(outcome), p.speculative));
        }
        await stream.writeSSE({ data: "[DONE]" });
        finish(outcome.finishReason);
      } catch (e) {
        const reason = reasonOf(e) ?? "abort";
        finish(reason);
        // Headers are gone already: the error travels as a data event (what OpenAI's clients raise on), no [DONE].
        if (reason === "abort" && !(e instanceof ClientGone)) {
          await send(errorBody(`generation failed: ${(e as Error).message}`, "server_error", null, "internal_error"));
        } else if (reason === "timeout") {
          await send(errorBody((e as Error).message, "timeout_error", null, "timeout"));
        }
      }
    });
  }

  // Bodies are read whole before validation: cap them so one request cannot exhaust memory.
  const limit = bodyLimit({
    maxSize: deps.maxBodyBytes ?? 1 << 20,
    onError: (c) => fail(c, 413, errorBody(`The request body exceeds ${deps.maxBodyBytes ?? 1 << 20} bytes.`, "invalid_request_error", null, "body_too_large")),
  });
  app.post("/v1/chat/completions", limit, (c) => handle(c, "chat"));
  app.post("/v1/completions", limit, (c) => handle(c, "completion"));

  app.notFound((c) => c.json(errorBody(`no route ${c.req.method} ${new URL(c.req.url).pathname}`, "not_found_error", null, "not_found"), 404));
  app.onError((e, c) => c.json(errorBody(`internal error: ${e.message}`, "server_error", null, "internal_error"), 500));

  return app;
}

function checkDefaults(d: SpeculativeDefaults, drafters: Readonly<Record<string, CausalLM>>): void {
  if (!Number.isInteger(d.gamma) || d.gamma < 0 || d.gamma > MAX_GAMMA) throw new RangeError(`default gamma must be an integer from 0 to ${MAX_GAMMA}, got ${d.gamma}`);
  if (d.drafter !== null && !(d.drafter in drafters)) throw new RangeError(`default drafter '${d.drafter}' is not loaded — loaded: ${Object.keys(drafters).join(", ") || "none"}`);
  if (d.gamma > 0 && d.drafter === null) throw new RangeError(`default gamma ${d.gamma} needs a default drafter`);
}

/** The request's extension field over the pool's defaults; a 400 body if it names what is not here. */
function resolveSpeculative(
  s: SpeculativeParams,
  d: SpeculativeDefaults,
  drafters: Readonly<Record<string, CausalLM>>,
): { drafter: CausalLM | undefined; effective: EffectiveSpeculative } | { error: OpenAIErrorBody } {
  const gamma = s.gamma ?? d.gamma;
  const name = s.drafter === undefined ? d.drafter : s.drafter;
  if (name !== null && !Object.hasOwn(drafters, name)) {
    return { error: errorBody(`speculative.drafter: unknown drafter '${name}' — this origin has: ${Object.keys(drafters).join(", ")}`, "invalid_request_error", "speculative.drafter", "invalid_value") };
  }
  if (gamma > 0 && name === null) {
    return { error: errorBody("speculative.gamma: gamma > 0 needs a drafter (set speculative.drafter, or gamma 0 for plain decoding)", "invalid_request_error", "speculative.gamma", "invalid_value") };
  }
  const proposal = s.proposal_temperature === undefined ? d.proposal_temperature : s.proposal_temperature;
  // γ = 0 runs no drafter at all; report it so.
  if (gamma === 0) return { drafter: undefined, effective: { drafter: null, gamma: 0, proposal_temperature: null } };
  return { drafter: drafters[name!], effective: { drafter: name, gamma, proposal_temperature: proposal } };
}
