/**
 * The edge gateway's Hono app, in process (`app.request(url, init, env, ctx)`), against a real
 * libSQL file database seeded through calibrator/store.ts and trivial origins on loopback: every
 * route, the routing decision (policy × task × nearest temperature → pool and its speculative
 * parameters), task detection, the OpenAI wire format through the gateway, telemetry, and every
 * error class with its status and OpenAI-shaped body.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Client } from "@libsql/client";
import { drizzle } from "drizzle-orm/libsql";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createEdgeApp, type EdgeApp, type EdgeDeps } from "../functions/app.ts";
import { parseEdgeConfig } from "../functions/config.ts";
import { createEdgeDb, type EdgeDb } from "../functions/db.ts";
import type { TaskClassifier } from "../functions/task.ts";
import { openStore } from "../calibrator/store.ts";
import { edgeConfigInput, ORIGIN_TEXT, seedStore, startTrivialOrigin, type Seeded, type TrivialOrigin } from "./workers/fixtures.ts";

const dir = mkdtempSync(join(tmpdir(), "fairspec-edge-app-"));
const dbPath = join(dir, "edge.db");
let seeded: Seeded;
let origins: { base: TrivialOrigin; bal: TrivialOrigin; vllm: TrivialOrigin; dflt: TrivialOrigin };
let client: Client;
let db: EdgeDb;

/** waitUntil that the test can await. */
function testCtx() {
  const pending: Promise<unknown>[] = [];
  return {
    ctx: { waitUntil: (p: Promise<unknown>) => void pending.push(p), passThroughOnException() {}, props: {} },
    settle: async () => {
      while (pending.length) await Promise.allSettled(pending.splice(0));
    },
  };
}

const ADMIN = "admin-secret-token";

function makeEdge(extra: Partial<EdgeDeps> = {}, configExtra: Record<string, unknown> = {}): EdgeApp {
  const config = parseEdgeConfig(edgeConfigInput({ defaultUrls: [origins.dflt.url], extra: configExtra }));
  return createEdgeApp({ config, db, adminToken: ADMIN, ...extra });
}

beforeAll(async () => {
  const [base, bal, vllm, dflt] = await Promise.all(["base", "bal", "vllm", "default"].map((n) => startTrivialOrigin(n)));
  origins = { base: base!, bal: bal!, vllm: vllm!, dflt: dflt! };
  seeded = await seedStore(dbPath, { base: [origins.base.url], balanced: [origins.bal.url], vllm: [origins.vllm.url] });
  client = createClient({ url: `file:${dbPath}` });
  db = createEdgeDb(drizzle(client));
});

afterAll(async () => {
  client?.close();
  await Promise.all(Object.values(origins ?? {}).map((o) => o.close()));
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  for (const o of Object.values(origins)) {
    o.requests.length = 0;
    o.setMode("ok");
  }
});

const chat = (content = "Hello there", extra: Record<string, unknown> = {}) => ({ model: "fairspec", messages: [{ role: "user", content }], ...extra });

function post(edge: EdgeApp, path: string, body: unknown, key: string | null, headers: Record<string, string> = {}, ctx?: ReturnType<typeof testCtx>["ctx"]) {
  const h: Record<string, string> = { "content-type": "application/json", ...headers };
  if (key) h.authorization = `Bearer ${key}`;
  return edge.app.request(path, { method: "POST", headers: h, body: typeof body === "string" ? body : JSON.stringify(body) }, {}, ctx ?? testCtx().ctx);
}

function get(edge: EdgeApp, path: string, token: string | null) {
  return edge.app.request(path, { headers: token ? { authorization: `Bearer ${token}` } : {} }, {}, testCtx().ctx);
}

/** The OpenAI error shape, exactly. */
async function expectError(res: Response, status: number, type: string, code?: string | null, param?: string | null) {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toContain("application/json");
  const body = (await res.json()) as { error: Record<string, unknown> };
  expect(Object.keys(body)).toEqual(["error"]);
  expect(Object.keys(body.error).sort()).toEqual(["code", "message", "param", "type"]);
  expect(typeof body.error.message).toBe("string");
  expect(body.error.type).toBe(type);
  if (code !== undefined) expect(body.error.code).toBe(code);
  if (param !== undefined) expect(body.error.param).toBe(param);
  return body.error;
}

function sseEvents(text: string): string[] {
  return text
    .split("\n\n")
    .filter((e) => e.trim())
    .map((e) => {
      expect(e.startsWith("data: ")).toBe(true);
      return e.slice(6);
    });
}

describe("routing: policy × task × temperature → pool and parameters", () => {
  let edge: EdgeApp;
  beforeAll(() => {
    edge = makeEdge();
  });

  it("answers a chat completion through the pool the tenant's policy fitted, with the gateway's headers", async () => {
    const res = await post(edge, "/v1/chat/completions", chat("Hello", { temperature: 0 }), seeded.keys.acme);
    expect(res.status).toBe(200);
    // acme: policy maxmin, default task en; at T = 0 maxmin puts en on the balanced pool.
    expect(res.headers.get("x-fairspec-task")).toBe("en");
    expect(res.headers.get("x-fairspec-task-source")).toBe("default");
    expect(res.headers.get("x-fairspec-pool")).toBe("pool-bal");
    expect(res.headers.get("x-fairspec-policy")).toBe("maxmin");
    expect(res.headers.get("x-fairspec-params-version")).toBe(seeded.runId);
    expect(Number(res.headers.get("x-fairspec-overhead-ms"))).toBeGreaterThanOrEqual(0);
    expect(res.headers.get("server-timing")).toMatch(/^edge;dur=[\d.]+;desc="gateway before dispatch", auth;dur=[\d.]+, task;dur=[\d.]+;desc="default", params;dur=[\d.]+, origin;dur=[\d.]+;desc="to headers, 1 attempt"$/);
    expect(res.headers.get("x-origin")).toBe("bal");
    const body = (await res.json()) as { object: string; choices: { message: { content: string } }[]; usage: { completion_tokens: number } };
    expect(body.object).toBe("chat.completion");
    expect(body.choices[0]!.message.content).toBe(ORIGIN_TEXT.join(""));
    // The origin got the fitted speculative parameters, and never the client's hint field.
    const sent = origins.bal.requests[0]!;
    expect(sent.body.speculative).toEqual({ drafter: "balanced", gamma: 3, proposal_temperature: 0.7 });
    expect(sent.headers.authorization).toBeUndefined();
    expect(sent.headers["x-fairspec-tenant"]).toBe("acme");
  });

  it("takes the target temperature nearest the request's (default 1)", async () => {
    const pool = async (extra: Record<string, unknown>) => (await post(edge, "/v1/chat/completions", chat("x", extra), seeded.keys.acme)).headers.get("x-fairspec-pool");
    expect(await pool({ temperature: 0.2 })).toBe("pool-bal");
    expect(await pool({ temperature: 0.5 })).toBe("pool-bal"); // a tie goes to the lower temperature
    expect(await pool({ temperature: 0.8 })).toBe("pool-base");
    expect(await pool({ temperature: 1.7 })).toBe("pool-base");
    expect(await pool({})).toBe("pool-base");
    expect(origins.base.requests[0]!.body.speculative).toEqual({ drafter: "base", gamma: 4, proposal_temperature: null });
  });

  it("routes each tenant by its own policy; a tenant without one gets the default policy", async () => {
    const globex = await post(edge, "/v1/chat/completions", chat("x"), seeded.keys.globex); // throughput, default task ja
    expect([globex.headers.get("x-fairspec-task"), globex.headers.get("x-fairspec-policy"), globex.headers.get("x-fairspec-pool")]).toEqual(["ja", "throughput", "pool-base"]);
    const acme = await post(edge, "/v1/chat/completions", chat("x"), seeded.keys.acme, { "x-fairspec-task": "ja" });
    expect([acme.headers.get("x-fairspec-policy"), acme.headers.get("x-fairspec-pool")]).toEqual(["maxmin", "pool-bal"]);
    const initech = await post(edge, "/v1/chat/completions", chat("x"), seeded.keys.initech); // no policy, default code-py
    expect([initech.headers.get("x-fairspec-task"), initech.headers.get("x-fairspec-policy"), initech.headers.get("x-fairspec-pool")]).toEqual(["code-py", "throughput", "pool-vllm"]);
  });

  it("sends vLLM pools the plain body (their parameters are fixed server-side)", async () => {
    const res = await post(edge, "/v1/chat/completions", chat("x", { speculative: { gamma: 9 } }), seeded.keys.acme, { "x-fairspec-task": "code-py" });
    expect(res.headers.get("x-fairspec-pool")).toBe("pool-vllm");
    const sent = origins.vllm.requests[0]!.body;
    expect(sent).not.toHaveProperty("speculative");
    expect(sent).not.toHaveProperty("fairspec");
    expect(sent.messages).toEqual([{ role: "user", content: "x" }]);
  });

  it("a client's own `speculative` field is replaced by the fitted parameters", async () => {
    await post(edge, "/v1/chat/completions", chat("x", { temperature: 1, speculative: { gamma: 16, drafter: "evil" } }), seeded.keys.acme);
    expect(origins.base.requests[0]!.body.speculative).toEqual({ drafter: "base", gamma: 4, proposal_temperature: null });
  });

  it("task hints: header wins over the body field, which wins over the default", async () => {
    const h = (r: Response) => [r.headers.get("x-fairspec-task"), r.headers.get("x-fairspec-task-source")];
    expect(h(await post(edge, "/v1/chat/completions", chat("x", { fairspec: { task: "code-py" } }), seeded.keys.acme))).toEqual(["code-py", "body"]);
    expect(h(await post(edge, "/v1/chat/completions", chat("x", { fairspec: { task: "code-py" } }), seeded.keys.acme, { "x-fairspec-task": "ja" }))).toEqual(["ja", "header"]);
    expect(origins.vllm.requests[0]!.body).not.toHaveProperty("fairspec");
  });

  it("a task the active run has no params for is routed as the tenant's default task", async () => {
    const res = await post(edge, "/v1/chat/completions", chat("x", { temperature: 0 }), seeded.keys.acme, { "x-fairspec-task": "klingon" });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-fairspec-task")).toBe("klingon");
    expect(res.headers.get("x-fairspec-pool")).toBe("pool-bal"); // en at T 0 under maxmin
  });

  it("completions, non-stream", async () => {
    const res = await post(edge, "/v1/completions", { model: "fairspec", prompt: "def f(x):", max_tokens: 8 }, seeded.keys.acme, { "x-fairspec-task": "code-py" });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { object: string; choices: { text: string }[] };
    expect(body.object).toBe("text_completion");
    expect(body.choices[0]!.text).toBe(ORIGIN_TEXT.join(""));
    expect(origins.vllm.requests[0]!.path).toBe("/v1/completions");
  });
});

describe("task classifier", () => {
  const calls: string[] = [];
  const classifier: TaskClassifier = {
    async classify(text) {
      calls.push(text);
      if (text.includes("boom")) throw new Error("classifier crashed");
      if (/[\u3040-\u30ff]/.test(text)) return { task: "ja", confidence: 0.93, scores: { ja: 0.93, en: 0.07 } };
      if (text.includes("def ")) return { task: "code-py", confidence: 0.4 };
      return { task: "en", confidence: 0.99 };
    },
  };
  let edge: EdgeApp;
  beforeAll(() => {
    edge = makeEdge({ classifier });
  });

  it("classifies the latest user message when there is no hint", async () => {
    const body = { model: "fairspec", messages: [{ role: "user", content: "hello" }, { role: "assistant", content: "hi" }, { role: "user", content: [{ type: "text", text: "こんにちは、元気ですか" }] }] };
    const res = await post(edge, "/v1/chat/completions", body, seeded.keys.acme);
    expect([res.headers.get("x-fairspec-task"), res.headers.get("x-fairspec-task-source"), res.headers.get("x-fairspec-pool")]).toEqual(["ja", "classifier", "pool-bal"]);
    expect(calls.at(-1)).toBe("こんにちは、元気ですか");
  });

  it("a hint skips the classifier; low confidence or a failure falls back to the tenant's default task", async () => {
    const n = calls.length;
    const hinted = await post(edge, "/v1/chat/completions", chat("こんにちは"), seeded.keys.acme, { "x-fairspec-task": "en" });
    expect(hinted.headers.get("x-fairspec-task-source")).toBe("header");
    expect(calls.length).toBe(n);
    const low = await post(edge, "/v1/chat/completions", chat("def f(): pass"), seeded.keys.globex);
    expect([low.headers.get("x-fairspec-task"), low.headers.get("x-fairspec-task-source")]).toEqual(["ja", "default"]);
    const crashed = await post(edge, "/v1/chat/completions", chat("boom"), seeded.keys.globex);
    expect(crashed.status).toBe(200);
    expect([crashed.headers.get("x-fairspec-task"), crashed.headers.get("x-fairspec-task-source")]).toEqual(["ja", "default"]);
  });

  it("completions classify the prompt", async () => {
    const res = await post(edge, "/v1/completions", { model: "fairspec", prompt: "日本語のテキスト" }, seeded.keys.globex);
    expect(res.headers.get("x-fairspec-task-source")).toBe("classifier");
    expect(res.headers.get("x-fairspec-task")).toBe("ja");
  });
});

describe("streaming through the gateway (OpenAI wire format)", () => {
  let edge: EdgeApp;
  beforeAll(() => {
    edge = makeEdge();
  });

  it("with stream_options.include_usage: every chunk has usage null, one usage chunk, then [DONE] — the origin's bytes", async () => {
    const t = testCtx();
    const res = await post(edge, "/v1/chat/completions", chat("x", { stream: true, stream_options: { include_usage: true }, temperature: 1 }), seeded.keys.acme, {}, t.ctx);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    expect(res.headers.get("x-fairspec-pool")).toBe("pool-base");
    const text = await res.text();
    const events = sseEvents(text);
    expect(events.at(-1)).toBe("[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as Record<string, unknown>);
    const usageChunk = chunks.at(-1)!;
    expect(usageChunk.choices).toEqual([]);
    expect(usageChunk.usage).toMatchObject({ prompt_tokens: 7, completion_tokens: 4, total_tokens: 11 });
    for (const c of chunks.slice(0, -1)) {
      expect(c.object).toBe("chat.completion.chunk");
      expect(c.usage).toBeNull();
    }
    const content = chunks.map((c) => ((c.choices as { delta?: { content?: string } }[])[0]?.delta?.content ?? "")).join("");
    expect(content).toBe(ORIGIN_TEXT.join(""));
    // The client asked for usage: the origin got the request as sent.
    expect(origins.base.requests[0]!.body.stream_options).toEqual({ include_usage: true });
    await t.settle();
  });

  it("without include_usage: no usage field and no usage chunk reach the client, though telemetry read them", async () => {
    const t = testCtx();
    const res = await post(edge, "/v1/chat/completions", chat("x", { stream: true, temperature: 1 }), seeded.keys.globex, {}, t.ctx);
    const text = await res.text();
    expect(text).not.toContain("usage");
    const events = sseEvents(text);
    expect(events.at(-1)).toBe("[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as Record<string, unknown>);
    expect(chunks).toHaveLength(ORIGIN_TEXT.length + 2);
    expect(Object.keys(chunks[0]!)).toEqual(["id", "object", "created", "model", "system_fingerprint", "choices"]);
    expect(chunks.at(-1)!.choices).toEqual([{ index: 0, delta: {}, logprobs: null, finish_reason: "stop" }]);
    // The gateway asked the origin for the usage chunk, for telemetry.
    expect(origins.base.requests[0]!.body.stream_options).toEqual({ include_usage: true });
    await t.settle();
    const rows = await client.execute("select tenant_id, task, pool_id, drafted, accepted, completion_tokens, latency_ms from telemetry where tenant_id = 'globex' order by id desc limit 1");
    expect(rows.rows[0]).toMatchObject({ tenant_id: "globex", task: "ja", pool_id: "pool-base", drafted: 16, accepted: 9, completion_tokens: 4 });
    expect(Number(rows.rows[0]!.latency_ms)).toBeGreaterThan(0);
  });

  it("completions stream", async () => {
    const res = await post(edge, "/v1/completions", { model: "fairspec", prompt: "x", stream: true }, seeded.keys.acme);
    const events = sseEvents(await res.text());
    expect(events.at(-1)).toBe("[DONE]");
    const first = JSON.parse(events[0]!) as { object: string; choices: { text: string }[] };
    expect(first.object).toBe("text_completion");
    expect(first.choices[0]!.text).toBe(ORIGIN_TEXT[0]);
  });
});

describe("telemetry", () => {
  it("is written after the response, in batches, with the origin's speculative counts per tenant, task and pool", async () => {
    const edge = makeEdge();
    const t = testCtx();
    // Rows of earlier tests may still be flushed (their windows close later): count only this test's.
    const since = new Date().toISOString();
    const responses = await Promise.all([
      post(edge, "/v1/chat/completions", chat("x", { temperature: 0 }), seeded.keys.acme, {}, t.ctx), // pool-bal γ 3
      post(edge, "/v1/chat/completions", chat("x"), seeded.keys.acme, { "x-fairspec-task": "code-py" }, t.ctx), // vllm (server γ 5)
      post(edge, "/v1/completions", { model: "fairspec", prompt: "x", stream: true, stream_options: { include_usage: true } }, seeded.keys.globex, {}, t.ctx), // pool-base γ 4
    ]);
    // Nothing is written before the bodies are consumed: telemetry never sits on the response path.
    expect((await client.execute({ sql: "select count(*) as n from telemetry where created_at >= ?", args: [since] })).rows[0]!.n).toBe(0);
    await Promise.all(responses.map((r) => r.text()));
    await t.settle();
    const rows = (
      await client.execute({ sql: "select tenant_id, task, pool_id, drafted, accepted, completion_tokens from telemetry where created_at >= ? order by pool_id", args: [since] })
    ).rows.map((r) => ({ ...r }));
    expect(rows).toEqual([
      { tenant_id: "acme", task: "en", pool_id: "pool-bal", drafted: 12, accepted: 7, completion_tokens: 4 },
      { tenant_id: "globex", task: "ja", pool_id: "pool-base", drafted: 16, accepted: 9, completion_tokens: 4 },
      { tenant_id: "acme", task: "code-py", pool_id: "pool-vllm", drafted: 20, accepted: 12, completion_tokens: 4 },
    ]);
    // One window (flushDelayMs, default 1 s): one INSERT for the three rows.
    expect(edge.state.telemetry.stats).toMatchObject({ writes: 1, written: 3, failedWrites: 0 });
  });
});

describe("models, health and policies", () => {
  let edge: EdgeApp;
  beforeAll(() => {
    edge = makeEdge();
  });

  it("GET /healthz needs no key", async () => {
    const res = await get(edge, "/healthz", null);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: "ok" });
  });

  it("GET /v1/models lists the gateway's model", async () => {
    const res = await get(edge, "/v1/models", seeded.keys.initech);
    expect(await res.json()).toEqual({ object: "list", data: [{ id: "fairspec", object: "model", created: 0, owned_by: "fairspec" }] });
    await expectError(await get(edge, "/v1/models", null), 401, "authentication_error", "missing_api_key");
  });

  it("a tenant reads its own policy and the run policy it maps to", async () => {
    const res = await get(edge, "/v1/fairspec/policy", seeded.keys.acme);
    expect(await res.json()).toEqual({
      object: "fairspec.policy",
      tenant_id: "acme",
      policy: { kind: "maxmin" },
      default_policy: { kind: "throughput" },
      effective_policy_id: "maxmin",
      effective_policy_source: "tenant",
      params_version: seeded.runId,
    });
    const own = await get(edge, "/v1/fairspec/tenants/initech/policy", seeded.keys.initech);
    expect(await own.json()).toMatchObject({ tenant_id: "initech", policy: null, effective_policy_id: "throughput", effective_policy_source: "default" });
  });

  it("a tenant key can never read or change another tenant's policy (403), nor change its own", async () => {
    await expectError(await get(edge, "/v1/fairspec/tenants/acme/policy", seeded.keys.globex), 403, "permission_error", "other_tenant");
    const put = (path: string, key: string) => edge.app.request(path, { method: "PUT", headers: { authorization: `Bearer ${key}` }, body: JSON.stringify({ kind: "throughput" }) }, {}, testCtx().ctx);
    await expectError(await put("/v1/fairspec/tenants/acme/policy", seeded.keys.globex), 403, "permission_error");
    await expectError(await put("/v1/fairspec/policy", seeded.keys.globex), 403, "permission_error");
    await expectError(await put("/admin/tenants/acme/policy", seeded.keys.globex), 403, "permission_error", "admin_only");
    await expectError(await get(edge, "/admin/tenants/acme/policy", seeded.keys.globex), 403, "permission_error", "admin_only");
    await expectError(await get(edge, "/admin/runs", seeded.keys.acme), 403, "permission_error", "admin_only");
    // Nothing changed.
    expect(await db.getTenantPolicy("acme")).toMatchObject({ policy: { kind: "maxmin" } });
  });
});

describe("admin API", () => {
  let edge: EdgeApp;
  beforeAll(() => {
    edge = makeEdge();
  });
  const admin = (path: string, init: RequestInit = {}, token = ADMIN) =>
    edge.app.request(path, { ...init, headers: { authorization: `Bearer ${token}`, ...(init.headers as Record<string, string>) } }, {}, testCtx().ctx);

  it("needs the admin token", async () => {
    await expectError(await edge.app.request("/admin/runs", {}, {}, testCtx().ctx), 401, "authentication_error", "invalid_admin_token");
    await expectError(await admin("/admin/runs", {}, "wrong-token"), 401, "authentication_error", "invalid_admin_token");
    const disabled = createEdgeApp({ config: parseEdgeConfig(edgeConfigInput({ defaultUrls: [origins.dflt.url] })), db, adminToken: null });
    await expectError(await disabled.app.request("/admin/runs", { headers: { authorization: "Bearer anything" } }, {}, testCtx().ctx), 401, "authentication_error");
  });

  it("lists calibration runs and the active one", async () => {
    const runs = (await (await admin("/admin/runs")).json()) as { object: string; data: { id: string; active: boolean; status: string }[] };
    expect(runs.object).toBe("list");
    expect(runs.data).toEqual([expect.objectContaining({ id: seeded.runId, active: true, status: "complete" })]);
    const active = (await (await admin("/admin/runs/active")).json()) as { id: string; pools: { id: string; urls: string[] }[]; policies: { id: string }[] };
    expect(active.id).toBe(seeded.runId);
    expect(active.pools.map((p) => p.id).sort()).toEqual(["pool-bal", "pool-base", "pool-vllm"]);
    expect(active.policies.map((p) => p.id)).toEqual(["maxmin", "throughput"]);
  });

  it("reads and sets a tenant's policy; the change routes this isolate's next request at once", async () => {
    const before = await admin("/admin/tenants/globex/policy");
    expect(await before.json()).toMatchObject({ tenant_id: "globex", policy: { kind: "throughput" } });
    // Warm the key cache with the old policy.
    const warm = await post(edge, "/v1/chat/completions", chat("x"), seeded.keys.globex);
    expect(warm.headers.get("x-fairspec-pool")).toBe("pool-base");
    await warm.text();
    const put = await admin("/admin/tenants/globex/policy", { method: "PUT", body: JSON.stringify({ kind: "maxmin" }) });
    expect(put.status).toBe(200);
    expect(await put.json()).toMatchObject({ tenant_id: "globex", policy: { kind: "maxmin" } });
    expect(await db.getTenantPolicy("globex")).toMatchObject({ policy: { kind: "maxmin" } });
    const after = await post(edge, "/v1/chat/completions", chat("x"), seeded.keys.globex);
    expect([after.headers.get("x-fairspec-policy"), after.headers.get("x-fairspec-pool")]).toEqual(["maxmin", "pool-bal"]);
    // Also accepted as {"policy": {...}}; put it back.
    const back = await admin("/admin/tenants/globex/policy", { method: "PUT", body: JSON.stringify({ policy: { kind: "throughput" } }) });
    expect(back.status).toBe(200);
  });

  it("refuses invalid policies (400) and unknown tenants (404)", async () => {
    await expectError(await admin("/admin/tenants/acme/policy", { method: "PUT", body: JSON.stringify({ kind: "floor", ratio: 3 }) }), 400, "invalid_request_error", "invalid_value", "policy.ratio");
    await expectError(await admin("/admin/tenants/acme/policy", { method: "PUT", body: JSON.stringify({ kind: "fastest" }) }), 400, "invalid_request_error");
    await expectError(await admin("/admin/tenants/acme/policy", { method: "PUT", body: "{nope" }), 400, "invalid_request_error", "invalid_json");
    await expectError(await admin("/admin/tenants/nobody/policy", { method: "PUT", body: JSON.stringify({ kind: "maxmin" }) }), 404, "not_found_error", "tenant_not_found");
    await expectError(await admin("/admin/tenants/nobody/policy"), 404, "not_found_error", "tenant_not_found");
  });
});

describe("errors: status and OpenAI body for every class", () => {
  let edge: EdgeApp;
  beforeAll(() => {
    edge = makeEdge({}, { maxBodyBytes: 4096 });
  });

  it("400: malformed JSON, not an object, wrong types, bad task hint", async () => {
    await expectError(await post(edge, "/v1/chat/completions", "{", seeded.keys.acme), 400, "invalid_request_error", "invalid_json", null);
    await expectError(await post(edge, "/v1/chat/completions", "[1,2]", seeded.keys.acme), 400, "invalid_request_error", "invalid_json");
    await expectError(await post(edge, "/v1/chat/completions", { model: "fairspec", messages: "hi" }, seeded.keys.acme), 400, "invalid_request_error", "invalid_value", "messages");
    await expectError(await post(edge, "/v1/chat/completions", chat("x", { temperature: "hot" }), seeded.keys.acme), 400, "invalid_request_error", "invalid_value", "temperature");
    await expectError(await post(edge, "/v1/chat/completions", chat("x", { stream: "yes" }), seeded.keys.acme), 400, "invalid_request_error", "invalid_value", "stream");
    await expectError(await post(edge, "/v1/chat/completions", { model: 7, messages: [] }, seeded.keys.acme), 400, "invalid_request_error", "invalid_value", "model");
    await expectError(await post(edge, "/v1/completions", { model: "fairspec" }, seeded.keys.acme), 400, "invalid_request_error", "invalid_value", "prompt");
    await expectError(await post(edge, "/v1/chat/completions", chat("x", { fairspec: { task: "Not A Task!" } }), seeded.keys.acme), 400, "invalid_request_error", "invalid_value", "fairspec.task");
    await expectError(await post(edge, "/v1/chat/completions", chat("x", { fairspec: { tsak: "en" } }), seeded.keys.acme), 400, "invalid_request_error", "invalid_value", "fairspec.tsak");
    await expectError(await post(edge, "/v1/chat/completions", chat("x"), seeded.keys.acme, { "x-fairspec-task": "../etc" }), 400, "invalid_request_error", "invalid_value", "x-fairspec-task");
    // Nothing reached an origin.
    expect(Object.values(origins).every((o) => o.requests.length === 0)).toBe(true);
  });

  it("401: missing, malformed, unknown and revoked keys", async () => {
    await expectError(await post(edge, "/v1/chat/completions", chat(), null), 401, "authentication_error", "missing_api_key");
    await expectError(await post(edge, "/v1/chat/completions", chat(), "sk-not-ours"), 401, "authentication_error", "invalid_api_key");
    await expectError(await post(edge, "/v1/chat/completions", chat(), `fs_${"A".repeat(32)}`), 401, "authentication_error", "invalid_api_key");
    await expectError(await post(edge, "/v1/chat/completions", chat(), seeded.keys.revoked), 401, "authentication_error", "invalid_api_key");
    const res = await post(edge, "/v1/completions", { model: "fairspec", prompt: "x" }, null, { authorization: "Basic Zm9vOmJhcg==" });
    await expectError(res, 401, "authentication_error", "missing_api_key");
  });

  it("403: another tenant's resource", async () => {
    await expectError(await get(edge, "/v1/fairspec/tenants/globex/policy", seeded.keys.acme), 403, "permission_error", "other_tenant");
  });

  it("404: unknown model and unknown route", async () => {
    await expectError(await post(edge, "/v1/chat/completions", { ...chat(), model: "gpt-9" }, seeded.keys.acme), 404, "not_found_error", "model_not_found", "model");
    await expectError(await get(edge, "/v1/nothing", seeded.keys.acme), 404, "not_found_error", "not_found");
  });

  it("413: body over the limit, by Content-Length or by what actually arrives", async () => {
    const big = chat("x".repeat(5000));
    await expectError(await post(edge, "/v1/chat/completions", big, seeded.keys.acme), 413, "invalid_request_error", "body_too_large");
    // A chunked body without Content-Length is counted as it streams.
    const enc = new TextEncoder().encode(JSON.stringify(big));
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < enc.length; i += 1000) c.enqueue(enc.slice(i, i + 1000));
        c.close();
      },
    });
    const res = await edge.app.request(
      "/v1/chat/completions",
      { method: "POST", headers: { authorization: `Bearer ${seeded.keys.acme}` }, body, duplex: "half" } as RequestInit,
      {},
      testCtx().ctx,
    );
    await expectError(res, 413, "invalid_request_error", "body_too_large");
  });

  it("429: the per-key token bucket, with Retry-After", async () => {
    const limited = makeEdge({}, { rateLimit: { burst: 2, perSecond: 0.5 } });
    for (let i = 0; i < 2; i++) expect((await post(limited, "/v1/chat/completions", chat(), seeded.keys.acme)).status).toBe(200);
    const res = await post(limited, "/v1/chat/completions", chat(), seeded.keys.acme);
    expect(res.headers.get("retry-after")).toBe("2");
    await expectError(res, 429, "rate_limit_error", "rate_limit_exceeded");
    // Per key: another tenant's key is not limited.
    expect((await post(limited, "/v1/chat/completions", chat(), seeded.keys.globex)).status).toBe(200);
  });

  it("502: the origin fails; 504: it does not answer in time; 4xx from the origin pass through", async () => {
    origins.base.setMode("fail500");
    origins.dflt.setMode("fail500");
    const e502 = await expectError(await post(edge, "/v1/chat/completions", chat(), seeded.keys.globex), 502, "server_error", "origin_unavailable");
    expect(e502.message).toContain("500");
    origins.base.setMode("bad400");
    const res400 = await post(edge, "/v1/chat/completions", chat(), seeded.keys.globex);
    expect(res400.headers.get("x-fairspec-pool")).toBe("pool-base");
    await expectError(res400, 400, "invalid_request_error", "invalid_value", "max_tokens");
    expect(origins.base.requests).toHaveLength(2); // the 400 was not retried
    const quick = makeEdge({}, { timeouts: { firstByteMs: 200, nonStreamMs: 200 } });
    origins.base.setMode("hang");
    await expectError(await post(quick, "/v1/chat/completions", chat(), seeded.keys.globex), 504, "timeout_error", "origin_timeout");
  });
});

describe("the store's own key hashing matches the edge's WebCrypto hashing", () => {
  it("a key created after start authenticates (first lookup) and a revoked one stops after the negative/positive TTLs", async () => {
    const store = await openStore(`file:${dbPath}`);
    try {
      const created = await store.createApiKey("initech");
      const edge = makeEdge();
      const res = await post(edge, "/v1/chat/completions", chat(), created.key);
      expect(res.status).toBe(200);
      expect(res.headers.get("x-fairspec-task")).toBe("code-py");
    } finally {
      store.close();
    }
  });
});
