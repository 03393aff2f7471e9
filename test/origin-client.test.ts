/**
 * The origin over real HTTP (127.0.0.1, ephemeral port): the official `openai` client, unchanged,
 * against it; client disconnects stopping generation; overload answered with 429 + Retry-After.
 *
 * No timing assertions: "stopped" is shown by the step counter not moving once the origin has
 * recorded the abort, and "quickly" by the 429s arriving while the admitted requests are still
 * held inside the engine.
 */
import OpenAI from "openai";
import type { ChatCompletionCreateParamsNonStreaming, ChatCompletionCreateParamsStreaming, CompletionCreateParamsNonStreaming } from "openai/resources";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { speculativeSteps, type GenerateOptions } from "../engine/speculative.ts";
import { createMetrics, type OriginMetrics } from "../origin/metrics.ts";
import { startOrigin, type RunningOrigin } from "../origin/server.ts";
import { model } from "./support/models.ts";

const MODEL = "fairspec-test";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function models() {
  return { verifier: await model("verifier"), drafters: { base: await model("drafter-base"), balanced: await model("drafter-balanced") } };
}

/** Wait until `cond` holds (the test's own timeout bounds it). */
async function until(cond: () => boolean) {
  while (!cond()) await sleep(10);
}

type SpecUsage = { num_verifier_steps: number; num_drafts: number; num_draft_tokens: number; num_accepted_draft_tokens: number; mean_acceptance_length: number };

function expectConsistent(usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | undefined | null) {
  expect(usage).toBeTruthy();
  const u = usage as NonNullable<typeof usage> & { speculative_decoding: SpecUsage };
  const s = u.speculative_decoding;
  expect(u.total_tokens).toBe(u.prompt_tokens + u.completion_tokens);
  expect(s.num_accepted_draft_tokens).toBeLessThanOrEqual(s.num_draft_tokens);
  expect(u.completion_tokens).toBeLessThanOrEqual(s.num_accepted_draft_tokens + s.num_verifier_steps);
  expect(s.mean_acceptance_length).toBeCloseTo(1 + s.num_accepted_draft_tokens / s.num_verifier_steps, 12);
  return s;
}

describe("the openai client against the origin", () => {
  let origin: RunningOrigin;
  let client: OpenAI;
  beforeAll(async () => {
    origin = await startOrigin({ port: 0, models: await models(), modelName: MODEL, defaults: { drafter: "base", gamma: 4, proposal_temperature: null } });
    client = new OpenAI({ baseURL: `${origin.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  afterAll(() => origin?.close());

  it("lists the model", async () => {
    const list = await client.models.list();
    expect(list.data.map((m) => m.id)).toEqual([MODEL]);
  });

  it("chat, non-stream, with the speculative extension", async () => {
    const params: ChatCompletionCreateParamsNonStreaming & { speculative: object } = {
      model: MODEL,
      messages: [{ role: "user", content: "Say something." }],
      max_tokens: 24,
      seed: 7,
      speculative: { drafter: "balanced", gamma: 3 },
    };
    const r = await client.chat.completions.create(params);
    expect(r.object).toBe("chat.completion");
    expect(r.model).toBe(MODEL);
    expect(r.choices[0]!.message.role).toBe("assistant");
    expect(typeof r.choices[0]!.message.content).toBe("string");
    expect(r.usage!.completion_tokens).toBeLessThanOrEqual(24);
    const s = expectConsistent(r.usage);
    expect(s.num_drafts).toBeGreaterThan(0);
    expect((r as unknown as { speculative: unknown }).speculative).toEqual({ drafter: "balanced", gamma: 3, proposal_temperature: null });
  });

  it("chat, stream with include_usage: deltas concatenate to the non-stream text", async () => {
    const base: ChatCompletionCreateParamsNonStreaming = { model: MODEL, messages: [{ role: "user", content: "Count." }], max_tokens: 24, seed: 21 };
    const streamParams: ChatCompletionCreateParamsStreaming = { ...base, stream: true, stream_options: { include_usage: true } };
    const stream = await client.chat.completions.create(streamParams);
    let text = "";
    let finish: string | null = null;
    let usage = null;
    let first = true;
    for await (const chunk of stream) {
      if (first) expect(chunk.choices[0]!.delta.role).toBe("assistant");
      first = false;
      if (chunk.choices.length) {
        text += chunk.choices[0]!.delta.content ?? "";
        finish = chunk.choices[0]!.finish_reason ?? finish;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect(["stop", "length"]).toContain(finish);
    expectConsistent(usage);
    const plain = await client.chat.completions.create(base);
    expect(text).toBe(plain.choices[0]!.message.content);
  });

  it("completions, non-stream and stream, γ = 0 counts no drafts", async () => {
    const params: CompletionCreateParamsNonStreaming & { speculative: object } = { model: MODEL, prompt: "In the beginning", max_tokens: 16, seed: 3, speculative: { gamma: 0 } };
    const r = await client.completions.create(params);
    expect(r.object).toBe("text_completion");
    const s = expectConsistent(r.usage);
    expect(s.num_drafts).toBe(0);
    expect(s.num_draft_tokens).toBe(0);
    expect(s.mean_acceptance_length).toBe(1);

    const stream = await client.completions.create({ model: MODEL, prompt: "In the beginning", max_tokens: 16, seed: 3, stream: true, stream_options: { include_usage: true } });
    let text = "";
    let usage = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? "";
      if (chunk.usage) usage = chunk.usage;
    }
    expectConsistent(usage);
    const again = await client.completions.create({ model: MODEL, prompt: "In the beginning", max_tokens: 16, seed: 3 });
    expect(text).toBe(again.choices[0]!.text);
  });

  it("4xx surface as the client's typed errors", async () => {
    const bad: CompletionCreateParamsNonStreaming & { speculative: object } = { model: MODEL, prompt: "x", speculative: { gamma: 99 } };
    const e = await client.completions.create(bad).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(OpenAI.BadRequestError);
    expect((e as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("speculative.gamma");
    const e2 = await client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "x" }], n: 3 }).catch((x: unknown) => x);
    expect(e2).toBeInstanceOf(OpenAI.BadRequestError);
    expect((e2 as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("n");
  });
});

/** The real engine, a few ms slower per step, so a generation reliably outlives the test's abort. */
function slowed(ms: number) {
  return async function* (o: GenerateOptions) {
    for await (const ev of speculativeSteps(o)) {
      await sleep(ms);
      yield ev;
    }
  };
}

describe("client disconnect stops generation", () => {
  let origin: RunningOrigin;
  let metrics: OriginMetrics;
  const MAX = 200;
  beforeAll(async () => {
    metrics = createMetrics();
    origin = await startOrigin({ port: 0, models: await models(), modelName: MODEL, metrics, engine: slowed(5), defaults: { drafter: null, gamma: 0, proposal_temperature: null } });
  });
  afterAll(() => origin?.close());

  const body = (stream: boolean) => JSON.stringify({ model: MODEL, prompt: "abc", max_tokens: MAX, seed: 1, stream });

  it("streaming: abort after the first chunk", async () => {
    const before = { steps: metrics.verifierSteps, aborts: metrics.requestSuccess.abort };
    const ac = new AbortController();
    const res = await fetch(`${origin.url}/v1/completions`, { method: "POST", body: body(true), headers: { "content-type": "application/json" }, signal: ac.signal });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const { value } = await reader.read();
    expect(new TextDecoder().decode(value)).toMatch(/^data: /);
    ac.abort();
    await until(() => metrics.requestSuccess.abort === before.aborts + 1);
    const stoppedAt = metrics.verifierSteps;
    await sleep(100);
    expect(metrics.verifierSteps).toBe(stoppedAt); // nothing runs any more
    expect(stoppedAt - before.steps).toBeLessThan(MAX); // and it stopped well before max_tokens
    expect(metrics.requestSuccess.length + metrics.requestSuccess.stop).toBe(0);
  });

  it("non-stream: abort while generating", async () => {
    const before = { steps: metrics.verifierSteps, aborts: metrics.requestSuccess.abort };
    const ac = new AbortController();
    const req = fetch(`${origin.url}/v1/completions`, { method: "POST", body: body(false), headers: { "content-type": "application/json" }, signal: ac.signal }).catch((e: Error) => e);
    await until(() => metrics.verifierSteps > before.steps + 2);
    ac.abort();
    expect(await req).toBeInstanceOf(Error);
    await until(() => metrics.requestSuccess.abort === before.aborts + 1);
    const stoppedAt = metrics.verifierSteps;
    await sleep(100);
    expect(metrics.verifierSteps).toBe(stoppedAt);
    expect(stoppedAt - before.steps).toBeLessThan(MAX);
  });
});

describe("overload", () => {
  it("beyond 1 running + 1 waiting: 429 with Retry-After at once; the admitted ones complete", async () => {
    // The engine holds every admitted generation at a gate until the test has seen the 429s:
    // proof that the refusals did not wait for any generation to finish.
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const gated = async function* (o: GenerateOptions) {
      await gate;
      yield* speculativeSteps(o);
    };
    const metrics = createMetrics();
    const origin = await startOrigin({ port: 0, models: await models(), modelName: MODEL, metrics, engine: gated, concurrency: 1, maxWaiting: 1 });
    try {
      const send = () =>
        fetch(`${origin.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: MODEL, prompt: "hello", max_tokens: 8, seed: 2 }) });
      const responses = [send(), send(), send(), send(), send()];
      const settled: Response[] = [];
      responses.forEach((p) => p.then((r) => settled.push(r)));
      await until(() => settled.filter((r) => r.status === 429).length === 3);
      expect(settled.filter((r) => r.status === 200)).toHaveLength(0); // nothing has finished yet
      for (const r of settled) {
        expect(Number(r.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
        const b = (await r.json()) as { error: { type: string; code: string } };
        expect(b.error).toMatchObject({ type: "rate_limit_error", code: "queue_full" });
      }
      const health = (await (await fetch(`${origin.url}/healthz`)).json()) as { running: number; waiting: number };
      expect(health).toMatchObject({ running: 1, waiting: 1 });
      open();
      const all = await Promise.all(responses);
      const ok = all.filter((r) => r.status === 200);
      expect(ok).toHaveLength(2);
      for (const r of ok) expect(((await r.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBeGreaterThan(0);
      expect(metrics.requestsRejected).toBe(3);
      const prom = await (await fetch(`${origin.url}/metrics`)).text();
      expect(prom).toContain(`fairspec:requests_rejected_total{model_name="${MODEL}"} 3`);
    } finally {
      open();
      await origin.close();
    }
  });
});
