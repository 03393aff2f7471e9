/**
 * The official `openai` client, unchanged, against the Node entry of the edge (functions/node.ts:
 * @hono/node-server, @libsql/client on a file database seeded through calibrator/store.ts) in front
 * of the real origin (origin/server.ts on the bundled ONNX models): chat and completions, stream
 * and not, usage and the speculative counts, and the client's error classes.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseEdgeConfig } from "../functions/config.ts";
import { startNodeEdge, type RunningEdge } from "../functions/node.ts";
import { startOrigin, type RunningOrigin } from "../origin/server.ts";
import { model } from "./support/models.ts";
import { edgeConfigInput, seedStore, type Seeded } from "./workers/fixtures.ts";

const dir = mkdtempSync(join(tmpdir(), "fairspec-edge-openai-"));
let origin: RunningOrigin;
let edge: RunningEdge;
let seeded: Seeded;
let client: OpenAI;

type SpecUsage = { num_draft_tokens: number; num_accepted_draft_tokens: number; num_verifier_steps: number };

beforeAll(async () => {
  const models = { verifier: await model("verifier"), drafters: { base: await model("drafter-base"), balanced: await model("drafter-balanced") } };
  origin = await startOrigin({ port: 0, models, modelName: "fairspec", concurrency: 1, maxWaiting: 16 });
  const path = join(dir, "edge.db");
  seeded = await seedStore(path, { base: [origin.url], balanced: [origin.url], vllm: [origin.url] });
  edge = await startNodeEdge({ config: parseEdgeConfig(edgeConfigInput({ defaultUrls: [origin.url] })), dbUrl: `file:${path}`, adminToken: null, port: 0 });
  client = new OpenAI({ baseURL: `${edge.url}/v1`, apiKey: seeded.keys.acme, maxRetries: 0 });
});
afterAll(async () => {
  await edge?.close();
  await origin?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("the openai client through the edge (Node entry) to the real origin", () => {
  it("lists the model", async () => {
    const list = await client.models.list();
    expect(list.data.map((m) => m.id)).toEqual(["fairspec"]);
  });

  it("chat, non-stream: the fitted parameters ran, usage and counts come back; greedy text equals the origin's own", async () => {
    const params = { model: "fairspec", messages: [{ role: "user" as const, content: "Write a short sentence." }], max_tokens: 16, temperature: 0, seed: 1 };
    const { data, response } = await client.chat.completions.create(params).withResponse();
    expect(response.headers.get("x-fairspec-pool")).toBe("pool-bal"); // acme: maxmin, en, T 0
    expect(response.headers.get("x-fairspec-params-version")).toBe(seeded.runId);
    expect(data.object).toBe("chat.completion");
    expect(data.usage!.completion_tokens).toBeGreaterThan(0);
    expect(data.usage!.total_tokens).toBe(data.usage!.prompt_tokens + data.usage!.completion_tokens);
    const ext = data as unknown as { speculative: unknown; metrics: { speculative_decoding: SpecUsage } };
    expect(ext.speculative).toEqual({ drafter: "balanced", gamma: 3, proposal_temperature: 0.7 });
    expect(ext.metrics.speculative_decoding.num_draft_tokens).toBeGreaterThan(0);
    // Straight to the origin with plain decoding: greedy speculative output is the verifier's.
    const direct = new OpenAI({ baseURL: `${origin.url}/v1`, apiKey: "unused", maxRetries: 0 });
    const plain = await direct.chat.completions.create({ ...params, speculative: { gamma: 0 } } as typeof params);
    expect(data.choices[0]!.message.content).toBe(plain.choices[0]!.message.content);
  });

  it("chat, stream with include_usage: deltas, one usage chunk, then the end", async () => {
    const stream = await client.chat.completions.create({
      model: "fairspec",
      messages: [{ role: "user", content: "Count to five." }],
      max_tokens: 16,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage: OpenAI.CompletionUsage | null | undefined;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      if (chunk.choices.length === 0) usage = chunk.usage;
      else {
        expect(chunk.usage).toBeNull();
        text += chunk.choices[0]!.delta.content ?? "";
      }
    }
    expect(chunks).toBeGreaterThan(2);
    expect(text.length).toBeGreaterThan(0);
    expect(usage!.completion_tokens).toBeGreaterThan(0);
    expect((usage as unknown as { speculative_decoding: SpecUsage }).speculative_decoding.num_verifier_steps).toBeGreaterThan(0);
  });

  it("chat, stream without include_usage: no usage anywhere (the gateway strips what it asked for)", async () => {
    const stream = await client.chat.completions.create({ model: "fairspec", messages: [{ role: "user", content: "Hi" }], max_tokens: 8, stream: true, seed: 3 });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.length).toBeGreaterThan(1);
    for (const c of chunks) {
      expect(c).not.toHaveProperty("usage");
      expect(c.choices).toHaveLength(1);
    }
    expect(chunks.at(-1)!.choices[0]!.finish_reason).not.toBeNull();
  });

  it("completions, stream and not, with a task hint (vLLM-kind pool: plain body, the origin's defaults)", async () => {
    const code = new OpenAI({ baseURL: `${edge.url}/v1`, apiKey: seeded.keys.acme, maxRetries: 0, defaultHeaders: { "x-fairspec-task": "code-py" } });
    const { data, response } = await code.completions.create({ model: "fairspec", prompt: "def add(a, b):", max_tokens: 12, temperature: 0 }).withResponse();
    expect(response.headers.get("x-fairspec-pool")).toBe("pool-vllm");
    expect(data.object).toBe("text_completion");
    expect(data.choices[0]!.text.length).toBeGreaterThan(0);
    expect((data as unknown as { speculative: { gamma: number } }).speculative.gamma).toBe(4); // the origin's own default
    const stream = await code.completions.create({ model: "fairspec", prompt: "def add(a, b):", max_tokens: 12, temperature: 0, stream: true });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
    expect(text).toBe(data.choices[0]!.text);
  });

  it("errors arrive as the client's error classes", async () => {
    const bad = new OpenAI({ baseURL: `${edge.url}/v1`, apiKey: `fs_${"Q".repeat(32)}`, maxRetries: 0 });
    await expect(bad.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    await expect(client.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "x" }] })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    const err = await client.chat.completions.create({ model: "fairspec", messages: "nope" as never }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("messages");
    // An origin-side 400 (max_tokens beyond the context) passes through as the origin sent it.
    const big = await client.chat.completions.create({ model: "fairspec", messages: [{ role: "user", content: "x" }], max_tokens: 100_000 }).catch((e: unknown) => e);
    expect(big).toBeInstanceOf(OpenAI.BadRequestError);
    expect((big as InstanceType<typeof OpenAI.BadRequestError>).code).toBe("context_length_exceeded");
  });
});
