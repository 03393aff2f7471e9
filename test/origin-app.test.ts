/**
 * The origin's Hono app through `app.request` (no sockets): the OpenAI wire format, the
 * speculative extension and its usage counts, determinism against the engine called directly,
 * stop strings, max_tokens, timeouts, and every 4xx in OpenAI's error shape. Plus the pure parts
 * (stop-string matching, the admission queue, Prometheus rendering, the chat template).
 *
 * Model-backed, so no assertion names generated text: only properties and equalities.
 */
import { describe, expect, it } from "vitest";
import { Xoshiro128 } from "../core/rng.ts";
import { generate, speculativeSteps, type GenerateOptions } from "../engine/speculative.ts";
import { createOriginApp, type OriginDeps } from "../origin/app.ts";
import { ChatTemplate, chatTemplateFor, DEFAULT_CHAT_TEMPLATE } from "../origin/chat-template.ts";
import { findStop, heldBackLength } from "../origin/generation.ts";
import { createMetrics, recordRequest, recordStep, renderPrometheus } from "../origin/metrics.ts";
import { AdmissionQueue, retryAfterSeconds } from "../origin/queue.ts";
import { model } from "./support/models.ts";

const MODEL = "fairspec-test";

async function deps(over: Partial<OriginDeps> = {}): Promise<OriginDeps> {
  return {
    modelName: MODEL,
    verifier: await model("verifier"),
    drafters: { base: await model("drafter-base"), balanced: await model("drafter-balanced") },
    defaults: { drafter: "base", gamma: 3, proposal_temperature: null },
    ...over,
  };
}

const post = (app: { request: (url: string, init: RequestInit) => Response | Promise<Response> }, path: string, body: unknown) =>
  app.request(path, { method: "POST", headers: { "content-type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body) });

/** `data: …` events of an SSE body, parsed ("[DONE]" kept as a string). */
async function sse(res: Response): Promise<unknown[]> {
  const text = await res.text();
  expect(text.endsWith("\n\n")).toBe(true);
  return text
    .split("\n\n")
    .filter(Boolean)
    .map((ev) => {
      expect(ev.startsWith("data: ")).toBe(true);
      const d = ev.slice(6);
      return d === "[DONE]" ? d : JSON.parse(d);
    });
}

type Json = Record<string, any>;

function expectConsistentUsage(u: Json) {
  const s = u.speculative_decoding;
  expect(u.total_tokens).toBe(u.prompt_tokens + u.completion_tokens);
  expect(s.num_accepted_draft_tokens).toBeLessThanOrEqual(s.num_draft_tokens);
  expect(u.completion_tokens).toBeLessThanOrEqual(s.num_accepted_draft_tokens + s.num_verifier_steps);
  expect(s.mean_acceptance_length).toBeCloseTo(1 + s.num_accepted_draft_tokens / s.num_verifier_steps, 12);
  expect(s.num_accepted_tokens_per_pos.reduce((a: number, b: number) => a + b, 0)).toBe(s.num_accepted_draft_tokens);
  if (s.num_draft_tokens > 0) expect(s.draft_acceptance_rate).toBeCloseTo(s.num_accepted_draft_tokens / s.num_draft_tokens, 12);
  else expect(s.draft_acceptance_rate).toBeNull();
}

/** The engine, slowed down per step: makes deadlines deterministic without timing assertions. */
const slowEngine = (ms: number) =>
  async function* (o: GenerateOptions) {
    for await (const ev of speculativeSteps(o)) {
      await new Promise((r) => setTimeout(r, ms));
      yield ev;
    }
  };

describe("wire format", () => {
  it("chat, non-stream: OpenAI fields, usage and vLLM-named speculative counts", async () => {
    const app = createOriginApp(await deps());
    const res = await post(app, "/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: "Hello there" }], max_tokens: 20, seed: 3 });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    const b = (await res.json()) as Json;
    expect(b.id).toMatch(/^chatcmpl-/);
    expect(b.object).toBe("chat.completion");
    expect(Number.isInteger(b.created)).toBe(true);
    expect(b.model).toBe(MODEL);
    expect(b.choices).toHaveLength(1);
    expect(b.choices[0].index).toBe(0);
    expect(b.choices[0].message.role).toBe("assistant");
    expect(typeof b.choices[0].message.content).toBe("string");
    expect(["stop", "length"]).toContain(b.choices[0].finish_reason);
    expect(b.usage.completion_tokens).toBeLessThanOrEqual(20);
    expectConsistentUsage(b.usage);
    expect(b.metrics.speculative_decoding).toEqual(b.usage.speculative_decoding);
    expect(b.metrics.speculative_decoding.num_drafts).toBeGreaterThan(0);
    expect(b.speculative).toEqual({ drafter: "base", gamma: 3, proposal_temperature: null });
  });

  it("chat, stream with include_usage: role chunk first, usage: null on chunks, one usage chunk, [DONE]", async () => {
    const app = createOriginApp(await deps());
    const body = { model: MODEL, messages: [{ role: "user", content: "Hi" }], max_tokens: 24, seed: 9, temperature: 0.8 };
    const res = await post(app, "/v1/chat/completions", { ...body, stream: true, stream_options: { include_usage: true } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = await sse(res);
    expect(events.at(-1)).toBe("[DONE]");
    const chunks = events.slice(0, -1) as Json[];
    const usageChunk = chunks.at(-1)!;
    const content = chunks.slice(0, -1);
    expect(content[0]!.choices[0].delta).toEqual({ role: "assistant", content: "" });
    for (const c of content) {
      expect(c.object).toBe("chat.completion.chunk");
      expect(c.id).toBe(content[0]!.id);
      expect(c.usage).toBeNull();
      expect(c.choices[0].index).toBe(0);
    }
    const last = content.at(-1)!;
    expect(["stop", "length"]).toContain(last.choices[0].finish_reason);
    expect(content.slice(0, -1).every((c) => c.choices[0].finish_reason === null)).toBe(true);
    expect(usageChunk.choices).toEqual([]);
    expectConsistentUsage(usageChunk.usage);
    // The streamed text is the non-streamed text for the same seed.
    const streamed = content.map((c) => c.choices[0].delta.content ?? "").join("");
    const plain = (await (await post(app, "/v1/chat/completions", body)).json()) as Json;
    expect(streamed).toBe(plain.choices[0].message.content);
    expect(usageChunk.usage.completion_tokens).toBe(plain.usage.completion_tokens);
  });

  it("stream without include_usage: no usage field at all", async () => {
    const app = createOriginApp(await deps());
    const events = await sse(await post(app, "/v1/completions", { model: MODEL, prompt: "abc", max_tokens: 8, stream: true }));
    const chunks = events.slice(0, -1) as Json[];
    expect(events.at(-1)).toBe("[DONE]");
    for (const c of chunks) {
      expect(c.object).toBe("text_completion");
      expect("usage" in c).toBe(false);
    }
    expect(chunks.at(-1)!.choices[0].finish_reason).not.toBeNull();
  });

  it("completions: echo prepends the prompt; token-id prompts work", async () => {
    const app = createOriginApp(await deps());
    const prompt = "The weather today";
    const a = (await (await post(app, "/v1/completions", { model: MODEL, prompt, max_tokens: 10, seed: 1, echo: true })).json()) as Json;
    const b = (await (await post(app, "/v1/completions", { model: MODEL, prompt, max_tokens: 10, seed: 1 })).json()) as Json;
    expect(a.object).toBe("text_completion");
    expect(a.id).toMatch(/^cmpl-/);
    expect(a.choices[0].text).toBe(prompt + b.choices[0].text);
    const ids = (await model("verifier")).tokenizer.encode(prompt);
    const c = (await (await post(app, "/v1/completions", { model: MODEL, prompt: ids, max_tokens: 10, seed: 1 })).json()) as Json;
    expect(c.choices[0].text).toBe(b.choices[0].text);
    expect(c.usage.prompt_tokens).toBe(ids.length);
  });

  it("GET /v1/models, /healthz, /metrics", async () => {
    const metrics = createMetrics();
    const app = createOriginApp(await deps({ metrics, poolId: "p1" }));
    const models = (await (await app.request("/v1/models")).json()) as Json;
    expect(models.object).toBe("list");
    expect(models.data[0].id).toBe(MODEL);
    expect(models.data[0].speculative.drafters).toEqual(["base", "balanced"]);
    const h = (await (await app.request("/healthz")).json()) as Json;
    expect(h).toMatchObject({ status: "ok", pool: "p1", running: 0, waiting: 0 });
    await post(app, "/v1/completions", { model: MODEL, prompt: "x y", max_tokens: 6, seed: 2 });
    const res = await app.request("/metrics");
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    for (const name of [
      "vllm:spec_decode_num_drafts_total",
      "vllm:spec_decode_num_draft_tokens_total",
      "vllm:spec_decode_num_accepted_tokens_total",
      'vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name="fairspec-test",position="0"}',
      "vllm:e2e_request_latency_seconds_bucket",
      "vllm:e2e_request_latency_seconds_sum",
      "vllm:e2e_request_latency_seconds_count",
      "vllm:time_to_first_token_seconds_bucket",
      "vllm:request_success_total",
      "vllm:num_requests_running",
      "vllm:num_requests_waiting",
      "fairspec:verifier_steps_total",
    ]) {
      expect(text).toContain(name);
    }
    expect(text).toContain(`fairspec:verifier_steps_total{model_name="fairspec-test"} ${metrics.verifierSteps}`);
    expect(metrics.verifierSteps).toBeGreaterThan(0);
  });
});

describe("speculative parameters and determinism", () => {
  it("same seed and parameters → the engine's own output (completions and chat)", async () => {
    const d = await deps();
    const app = createOriginApp(d);
    const prompt = "Speculative decoding makes";
    const spec = { drafter: "balanced", gamma: 2, proposal_temperature: 0.7 };
    const body = { model: MODEL, prompt, max_tokens: 24, seed: 1234, temperature: 0.9, top_p: 0.95, top_k: 40, speculative: spec };
    const served = (await (await post(app, "/v1/completions", body)).json()) as Json;
    const direct = await generate({
      verifier: d.verifier,
      drafter: d.drafters.balanced,
      gamma: 2,
      proposalTemperature: 0.7,
      temperature: 0.9,
      topP: 0.95,
      topK: 40,
      prompt: d.verifier.tokenizer.encode(prompt),
      maxNewTokens: 24,
      rng: new Xoshiro128(1234),
    });
    expect(served.choices[0].text).toBe(d.verifier.tokenizer.decode(direct.tokens));
    expect(served.choices[0].finish_reason).toBe(direct.finishReason);
    expect(served.usage.completion_tokens).toBe(direct.tokens.length);
    expect(served.usage.speculative_decoding.num_accepted_draft_tokens).toBe(direct.stats.accepted);
    expect(served.usage.speculative_decoding.num_draft_tokens).toBe(direct.stats.drafted);
    expect(served.speculative).toEqual(spec);

    const messages = [{ role: "system", content: "Be brief." }, { role: "user", content: "Name a colour." }];
    const chat = (await (await post(app, "/v1/chat/completions", { model: MODEL, messages, max_tokens: 16, seed: 5 })).json()) as Json;
    const chatPrompt = d.verifier.tokenizer.encode(new ChatTemplate().render(messages));
    const chatDirect = await generate({ verifier: d.verifier, drafter: d.drafters.base, gamma: 3, temperature: 1, prompt: chatPrompt, maxNewTokens: 16, rng: new Xoshiro128(5) });
    expect(chat.choices[0].message.content).toBe(d.verifier.tokenizer.decode(chatDirect.tokens));
    expect(chat.usage.prompt_tokens).toBe(chatPrompt.length);
  });

  it("γ = 0 is plain decoding: no drafts counted, one verifier step per token", async () => {
    const app = createOriginApp(await deps());
    const b = (await (await post(app, "/v1/completions", { model: MODEL, prompt: "Once upon", max_tokens: 16, seed: 4, speculative: { gamma: 0 } })).json()) as Json;
    const s = b.usage.speculative_decoding;
    expect(s).toMatchObject({ num_drafts: 0, num_draft_tokens: 0, num_accepted_draft_tokens: 0, mean_acceptance_length: 1, draft_acceptance_rate: null });
    expect(s.num_verifier_steps).toBe(b.usage.completion_tokens + (b.choices[0].finish_reason === "stop" ? 1 : 0));
    expect(b.speculative).toEqual({ drafter: null, gamma: 0, proposal_temperature: null });
  });

  it("pool defaults apply when the extension is absent; a γ = 0 pool needs no drafter", async () => {
    const app = createOriginApp(await deps({ defaults: { drafter: null, gamma: 0, proposal_temperature: null } }));
    const b = (await (await post(app, "/v1/completions", { model: MODEL, prompt: "abc", max_tokens: 6 })).json()) as Json;
    expect(b.usage.speculative_decoding.num_drafts).toBe(0);
    const r = await post(app, "/v1/completions", { model: MODEL, prompt: "abc", max_tokens: 6, speculative: { gamma: 2 } });
    expect(r.status).toBe(400);
    expect(((await r.json()) as Json).error.param).toBe("speculative.gamma");
    // A misconfigured pool fails at start, naming the problem.
    const d = await deps();
    expect(() => createOriginApp({ ...d, defaults: { drafter: "nope", gamma: 2, proposal_temperature: null } })).toThrow(/nope/);
    expect(() => createOriginApp({ ...d, defaults: { drafter: null, gamma: 2, proposal_temperature: null } })).toThrow(/needs a default drafter/);
  });
});

describe("stop sequences and max_tokens", () => {
  it("max_tokens is honoured (finish_reason length when nothing stops earlier)", async () => {
    const app = createOriginApp(await deps());
    for (const max_tokens of [1, 7]) {
      const b = (await (await post(app, "/v1/completions", { model: MODEL, prompt: "Hello", max_tokens, seed: 8 })).json()) as Json;
      expect(b.usage.completion_tokens).toBeLessThanOrEqual(max_tokens);
      if (b.usage.completion_tokens < max_tokens) expect(b.choices[0].finish_reason).toBe("stop");
      else expect(b.choices[0].finish_reason).toBe("length");
    }
    const chat = (await (await post(app, "/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: "x" }], max_completion_tokens: 5, seed: 8 })).json()) as Json;
    expect(chat.usage.completion_tokens).toBeLessThanOrEqual(5);
  });

  it("a stop string is cut from the output, finish_reason stop, in both modes", async () => {
    const app = createOriginApp(await deps());
    const body = { model: MODEL, prompt: "List: one, two, three,", max_tokens: 32, seed: 11, temperature: 0 };
    const free = (await (await post(app, "/v1/completions", body)).json()) as Json;
    const text: string = free.choices[0].text;
    expect(text.length).toBeGreaterThan(1);
    // A stop string taken from the free output's middle is certain to occur.
    const cut = Math.max(1, Math.floor(text.length / 2));
    const stop = text.slice(cut, cut + 2) || text.slice(0, 1);
    expect(stop.length).toBeGreaterThan(0);
    const stopped = (await (await post(app, "/v1/completions", { ...body, stop: [stop, "\u0000never"] })).json()) as Json;
    expect(stopped.choices[0].finish_reason).toBe("stop");
    expect(stopped.choices[0].text).toBe(text.slice(0, text.indexOf(stop)));
    expect(stopped.choices[0].text).not.toContain(stop);
    expect(stopped.usage.completion_tokens).toBeLessThanOrEqual(free.usage.completion_tokens);
    const events = await sse(await post(app, "/v1/completions", { ...body, stop, stream: true }));
    const chunks = events.slice(0, -1) as Json[];
    expect(chunks.map((c) => c.choices[0].text).join("")).toBe(stopped.choices[0].text);
    expect(chunks.at(-1)!.choices[0].finish_reason).toBe("stop");
  });

  it("stop-string matching and hold-back (pure)", () => {
    expect(findStop("hello world", ["wor", "lo"])).toBe(3);
    expect(findStop("hello", ["x"])).toBeNull();
    expect(findStop("abcabc", ["abc"], 1)).toBe(3);
    expect(heldBackLength("the en", ["end", "x"])).toBe(2);
    expect(heldBackLength("the e", ["end"])).toBe(1);
    expect(heldBackLength("the", ["end"])).toBe(1); // "e" may start "end"
    expect(heldBackLength("then", ["end"])).toBe(2);
    expect(heldBackLength("thy", ["end"])).toBe(0);
    expect(heldBackLength("abc", [])).toBe(0);
  });
});

describe("errors in OpenAI's shape", () => {
  const cases: [string, string, unknown, number, string | null][] = [
    ["malformed JSON", "/v1/chat/completions", "{not json", 400, null],
    ["wrong type", "/v1/chat/completions", { model: MODEL, messages: "hi" }, 400, "messages"],
    ["wrong nested type", "/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: 5 }] }, 400, "messages[0].content"],
    ["wrong type (temperature)", "/v1/completions", { model: MODEL, prompt: "x", temperature: "hot" }, 400, "temperature"],
    ["γ out of range", "/v1/completions", { model: MODEL, prompt: "x", speculative: { gamma: 17 } }, 400, "speculative.gamma"],
    ["negative γ", "/v1/completions", { model: MODEL, prompt: "x", speculative: { gamma: -1 } }, 400, "speculative.gamma"],
    ["unknown drafter", "/v1/completions", { model: MODEL, prompt: "x", speculative: { drafter: "huge" } }, 400, "speculative.drafter"],
    ["unknown extension key", "/v1/completions", { model: MODEL, prompt: "x", speculative: { gama: 2 } }, 400, "speculative.gama"],
    ["n > 1", "/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: "x" }], n: 2 }, 400, "n"],
    ["bad stop", "/v1/completions", { model: MODEL, prompt: "x", stop: 3 }, 400, "stop"],
    ["prompt too long", "/v1/completions", { model: MODEL, prompt: "x".repeat(400) }, 400, "prompt"],
    ["max_tokens beyond the context", "/v1/completions", { model: MODEL, prompt: "x", max_tokens: 1000 }, 400, "max_tokens"],
    ["empty prompt", "/v1/completions", { model: MODEL, prompt: "" }, 400, "prompt"],
    ["unsupported logprobs", "/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: "x" }], logprobs: true }, 400, "logprobs"],
    ["unknown model", "/v1/completions", { model: "gpt-9", prompt: "x" }, 404, "model"],
  ];
  for (const [name, path, body, status, param] of cases) {
    it(`${name} → ${status}`, async () => {
      const metrics = createMetrics();
      const app = createOriginApp(await deps({ metrics }));
      const res = await post(app, path, body);
      expect(res.status).toBe(status);
      const b = (await res.json()) as Json;
      expect(Object.keys(b)).toEqual(["error"]);
      expect(Object.keys(b.error).sort()).toEqual(["code", "message", "param", "type"]);
      expect(typeof b.error.message).toBe("string");
      expect(b.error.message.length).toBeGreaterThan(5);
      expect(b.error.type).toBe(status === 400 ? "invalid_request_error" : "not_found_error");
      expect(b.error.param).toBe(param);
      expect(metrics.verifierSteps).toBe(0);
    });
  }

  it("an oversized body → 413 in the same shape", async () => {
    const app = createOriginApp(await deps({ maxBodyBytes: 1000 }));
    const res = await post(app, "/v1/completions", { model: MODEL, prompt: "x".repeat(2000) });
    expect(res.status).toBe(413);
    expect(((await res.json()) as Json).error).toMatchObject({ type: "invalid_request_error", code: "body_too_large" });
  });

  it("unknown route → 404 in the same shape", async () => {
    const app = createOriginApp(await deps());
    const res = await app.request("/v1/nope");
    expect(res.status).toBe(404);
    expect(((await res.json()) as Json).error.type).toBe("not_found_error");
  });
});

describe("deadlines", () => {
  it("non-stream past the deadline → 504 timeout_error; stream → an error event, no [DONE]", async () => {
    const metrics = createMetrics();
    const app = createOriginApp(await deps({ metrics, timeoutMs: 40, engine: slowEngine(15) }));
    const res = await post(app, "/v1/completions", { model: MODEL, prompt: "abc", max_tokens: 100, seed: 1 });
    expect(res.status).toBe(504);
    const b = (await res.json()) as Json;
    expect(b.error.type).toBe("timeout_error");
    const events = await sse(await post(app, "/v1/completions", { model: MODEL, prompt: "abc", max_tokens: 100, seed: 1, stream: true }));
    expect(events).not.toContain("[DONE]");
    expect((events.at(-1) as Json).error.type).toBe("timeout_error");
    expect(metrics.requestSuccess.timeout).toBe(2);
    // The engine stopped: far fewer steps than the 100 tokens asked for, twice.
    expect(metrics.verifierSteps).toBeLessThan(100);
  });
});

describe("pure parts", () => {
  it("admission queue: bounded, FIFO, leaves on abort", async () => {
    const q = new AdmissionQueue(1, 2);
    const r1 = await q.tryAcquire()!;
    const order: number[] = [];
    const p2 = q.tryAcquire()!.then((rel) => (order.push(2), rel));
    const ac = new AbortController();
    const p3 = q.tryAcquire(ac.signal)!;
    expect(q.tryAcquire()).toBeNull(); // full: 1 running, 2 waiting
    expect([q.running, q.waiting]).toEqual([1, 2]);
    ac.abort(new Error("gone"));
    await expect(p3).rejects.toThrow("gone");
    expect(q.waiting).toBe(1);
    r1();
    r1(); // idempotent
    const r2 = await p2;
    expect(order).toEqual([2]);
    expect([q.running, q.waiting]).toEqual([1, 0]);
    r2();
    expect(q.running).toBe(0);
  });

  it("Retry-After estimate", () => {
    expect(retryAfterSeconds(1, 4, 1, 2)).toBe(10);
    expect(retryAfterSeconds(1, 1, 2, 0.3)).toBe(1);
    expect(retryAfterSeconds(1, 0, 1, NaN)).toBe(1);
    expect(retryAfterSeconds(10, 100, 1, 100)).toBe(60);
  });

  it("metrics: per-position counters and histogram buckets render as Prometheus text", () => {
    const m = createMetrics();
    recordStep(m, { drafted: 3, accepted: 2, bonus: 0, emitted: 3, acceptedAt: [true, true, false], beta: [], drafterMs: 0, verifierMs: 0, engineMs: 0 });
    recordStep(m, { drafted: 0, accepted: 0, bonus: 0, emitted: 1, acceptedAt: [], beta: [], drafterMs: 0, verifierMs: 0, engineMs: 0 });
    recordRequest(m, { reason: "stop", promptTokens: 5, generationTokens: 4, e2eS: 0.4, queueS: 0.01, ttftS: 0.05 });
    const t = renderPrometheus(m, { running: 1, waiting: 2 }, "m");
    expect(t).toContain('vllm:spec_decode_num_drafts_total{model_name="m"} 1');
    expect(t).toContain('vllm:spec_decode_num_draft_tokens_total{model_name="m"} 3');
    expect(t).toContain('vllm:spec_decode_num_accepted_tokens_total{model_name="m"} 2');
    expect(t).toContain('vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name="m",position="1"} 1');
    expect(t).toContain('vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name="m",position="2"} 0');
    expect(t).toContain('vllm:e2e_request_latency_seconds_bucket{model_name="m",le="0.3"} 0');
    expect(t).toContain('vllm:e2e_request_latency_seconds_bucket{model_name="m",le="0.5"} 1');
    expect(t).toContain('vllm:e2e_request_latency_seconds_bucket{model_name="m",le="+Inf"} 1');
    expect(t).toContain('vllm:e2e_request_latency_seconds_count{model_name="m"} 1');
    expect(t).toContain('vllm:request_success_total{model_name="m",finished_reason="stop"} 1');
    expect(t).toContain('vllm:num_requests_waiting{model_name="m"} 2');
    expect(t).toContain("# TYPE vllm:e2e_request_latency_seconds histogram");
    expect(t).toContain('fairspec:verifier_steps_total{model_name="m"} 2');
  });

  it("chat templates: the default, a model's own, a pool override", () => {
    const msgs = [{ role: "system", content: "S" }, { role: "user", content: "U" }];
    expect(new ChatTemplate().render(msgs)).toBe("<|system|>\nS\n<|user|>\nU\n<|assistant|>\n");
    expect(new ChatTemplate(DEFAULT_CHAT_TEMPLATE).render(msgs, false)).toBe("<|system|>\nS\n<|user|>\nU\n");
    const chatml = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    expect(chatTemplateFor(null, { chat_template: chatml }).render(msgs)).toBe("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n");
    expect(chatTemplateFor("[{{ messages[0].content }}]", { chat_template: chatml }).render(msgs)).toBe("[S]");
    expect(() => new ChatTemplate("{% for %}")).toThrow(/does not parse/);
  });
});
