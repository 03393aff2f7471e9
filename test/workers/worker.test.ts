/**
 * The real Worker (functions/worker.ts bundled per wrangler.toml) inside workerd, through
 * @cloudflare/vitest-pool-workers: libSQL over HTTP (Hrana, test/support/hrana.ts, with an auth
 * token) for auth, params and telemetry; the real ONNX task classifier on onnxruntime-web's wasm;
 * trivial origins on loopback. Faults: the database going away mid-run, an origin down, an origin
 * failing mid-stream.
 *
 * Run with `npm run test:workers` (vitest.workers.config.ts); the Node suite's config excludes
 * this folder. The first test fails loudly if the file is ever run outside workerd.
 */
import { createClient } from "@libsql/client/web";
import { describe, expect, inject, it } from "vitest";

const inWorkerd = typeof navigator !== "undefined" && navigator.userAgent === "Cloudflare-Workers";

type Fetcher = { fetch(input: Request | string, init?: RequestInit): Promise<Response> };

async function worker(): Promise<Fetcher> {
  const mod = "cloudflare:workers";
  const { exports } = (await import(/* @vite-ignore */ mod)) as { exports: { default: Fetcher } };
  return exports.default;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("the Worker in workerd", () => {
  it("runs inside workerd", () => expect(inWorkerd).toBe(true));

  const keys = inject("keys");
  const origins = inject("origins");
  const runId = inject("runId");
  const db = () => createClient({ url: inject("hranaUrl"), authToken: inject("dbToken") });

  const call = async (path: string, init: RequestInit & { key?: string | null } = {}) => {
    const headers = new Headers(init.headers);
    if (init.key) headers.set("authorization", `Bearer ${init.key}`);
    if (init.body) headers.set("content-type", "application/json");
    return (await worker()).fetch(`https://edge.test${path}`, { ...init, headers });
  };
  const chat = (body: Record<string, unknown>, key = keys.acme, headers: Record<string, string> = {}) =>
    call("/v1/chat/completions", { method: "POST", key, headers, body: JSON.stringify({ model: "fairspec", ...body }) });
  const originRequests = async (url: string) => ((await (await fetch(`${url}/__requests`)).json()) as { requests: { body: Record<string, unknown> }[] }).requests;
  const setOrigin = (url: string, mode: string) => fetch(`${url}/__mode`, { method: "POST", body: JSON.stringify({ mode }) });
  const setDb = (mode: string) => fetch(`${inject("hranaControl")}/mode`, { method: "POST", body: JSON.stringify({ mode }) });

  it("serves health and models; auth reads libSQL over HTTP", async () => {
    const h = await call("/healthz");
    expect(h.status).toBe(200);
    const m = await call("/v1/models", { key: keys.initech });
    expect(await m.json()).toMatchObject({ object: "list", data: [{ id: "fairspec" }] });
    const bad = await call("/v1/models", { key: `fs_${"B".repeat(32)}` });
    expect(bad.status).toBe(401);
    expect(await bad.json()).toMatchObject({ error: { type: "authentication_error", code: "invalid_api_key" } });
  });

  it("routes a chat completion by policy × task × temperature, with the gateway's headers", async () => {
    const res = await chat({ messages: [{ role: "user", content: "Hello" }], temperature: 0 }, keys.acme, { "x-fairspec-task": "en" });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-fairspec-pool")).toBe("pool-bal");
    expect(res.headers.get("x-fairspec-params-version")).toBe(runId);
    expect(res.headers.get("x-fairspec-policy")).toBe("maxmin");
    expect(res.headers.get("server-timing")).toContain("edge;dur=");
    expect(Number(res.headers.get("x-fairspec-overhead-ms"))).toBeGreaterThanOrEqual(0);
    const body = (await res.json()) as { choices: { message: { content: string } }[] };
    expect(body.choices[0]!.message.content).toBe("Hello from the origin.");
    const sent = (await originRequests(origins.bal)).at(-1)!;
    expect(sent.body.speculative).toEqual({ drafter: "balanced", gamma: 3, proposal_temperature: 0.7 });
  });

  it("detects the task with the ONNX classifier (onnxruntime-web wasm in workerd)", async () => {
    const ja = await chat({ messages: [{ role: "user", content: "今日はとても良い天気ですね。散歩に行きましょうか。" }] }, keys.acme);
    expect([ja.headers.get("x-fairspec-task"), ja.headers.get("x-fairspec-task-source")]).toEqual(["ja", "classifier"]);
    expect(ja.headers.get("x-fairspec-pool")).toBe("pool-bal");
    await ja.text();
    const py = await chat({ messages: [{ role: "user", content: "import os\n\ndef main():\n    for name in os.listdir('.'):\n        print(name)\n" }] }, keys.acme);
    expect([py.headers.get("x-fairspec-task"), py.headers.get("x-fairspec-task-source")]).toEqual(["code-py", "classifier"]);
    // code-py → the vLLM pool (one of its two origins is down: retried before the first byte).
    expect(py.status).toBe(200);
    expect(py.headers.get("x-fairspec-pool")).toBe("pool-vllm");
    await py.text();
  });

  it("concurrent requests in one isolate each get their own text's task, from a run of their own", async () => {
    type Health = { classifier: { texts: number; runs: number } | null };
    const before = ((await (await call("/healthz")).json()) as Health).classifier!;
    const texts: [string, string][] = [
      ["今日はとても良い天気ですね。散歩に行きましょうか。", "ja"],
      ["import os\n\ndef main():\n    for name in os.listdir('.'):\n        print(name)\n", "code-py"],
      ["Привет! Как у тебя дела сегодня? Надеюсь, всё хорошо.", "ru"],
      ["Wie geht es dir heute? Ich hoffe, es geht dir gut und du hast einen schönen Tag.", "de"],
    ];
    const all = [...texts, ...texts];
    const res = await Promise.all(all.map(([content]) => chat({ messages: [{ role: "user", content }] }, keys.acme)));
    for (const [i, r] of res.entries()) {
      expect([r.headers.get("x-fairspec-task"), r.headers.get("x-fairspec-task-source")]).toEqual([all[i]![1], "classifier"]);
      await r.text();
    }
    // No batching across requests here: workerd does not let one request's timer settle another
    // request's promise (the Node entry batches; see functions/classifier.ts).
    const after = ((await (await call("/healthz")).json()) as Health).classifier!;
    expect(after.texts - before.texts).toBe(all.length);
    expect(after.runs - before.runs).toBe(all.length);
  });

  it("streams the OpenAI wire format; telemetry reaches libSQL after the response", async () => {
    const t0 = new Date().toISOString();
    const res = await chat({ messages: [{ role: "user", content: "x" }], stream: true, temperature: 1 }, keys.globex);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const text = await res.text();
    expect(text).not.toContain("usage");
    expect(text.trimEnd().endsWith("data: [DONE]")).toBe(true);
    const withUsage = await chat({ messages: [{ role: "user", content: "x" }], stream: true, stream_options: { include_usage: true } }, keys.globex);
    const events = (await withUsage.text()).split("\n\n").filter(Boolean);
    const usage = JSON.parse(events.at(-2)!.slice(6)) as { choices: unknown[]; usage: { completion_tokens: number } };
    expect(usage.choices).toEqual([]);
    expect(usage.usage.completion_tokens).toBe(4);
    const c = db();
    let rows: unknown[] = [];
    for (let i = 0; i < 100 && rows.length < 2; i++) {
      rows = (await c.execute({ sql: "select drafted, accepted, pool_id from telemetry where tenant_id = 'globex' and created_at >= ?", args: [t0] })).rows;
      if (rows.length < 2) await sleep(50);
    }
    c.close();
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatchObject({ drafted: 16, accepted: 9, pool_id: "pool-base" });
  });

  it("admin: reads runs and sets a policy; a tenant key gets 403", async () => {
    const admin = inject("adminToken");
    const runs = (await (await call("/admin/runs", { headers: { authorization: `Bearer ${admin}` } })).json()) as { data: { id: string; active: boolean }[] };
    expect(runs.data).toEqual([expect.objectContaining({ id: runId, active: true })]);
    const put = await call("/admin/tenants/initech/policy", { method: "PUT", headers: { authorization: `Bearer ${admin}` }, body: JSON.stringify({ kind: "maxmin" }) });
    expect(put.status).toBe(200);
    const own = await call("/v1/fairspec/policy", { key: keys.initech });
    expect(await own.json()).toMatchObject({ tenant_id: "initech", policy: { kind: "maxmin" }, effective_policy_id: "maxmin" });
    const denied = await call("/v1/fairspec/tenants/initech/policy", { key: keys.acme });
    expect(denied.status).toBe(403);
    const denied2 = await call("/admin/runs", { key: keys.acme });
    expect(denied2.status).toBe(403);
  });

  it("libSQL unreachable mid-run: 0 failed requests (last-known-good params and keys)", async () => {
    // Warm: every key used below is known to this isolate.
    for (const key of [keys.acme, keys.globex]) expect((await chat({ messages: [{ role: "user", content: "x" }] }, key, { "x-fairspec-task": "en" })).status).toBe(200);
    await setDb("refuse");
    try {
      const statuses: number[] = [];
      const versions = new Set<string | null>();
      // Long enough for every cache entry to go stale (TTL 500 ms) and for refreshes to fail.
      for (let i = 0; i < 30; i++) {
        const r = await chat({ messages: [{ role: "user", content: "x" }], stream: i % 2 === 0 }, i % 3 === 0 ? keys.globex : keys.acme, { "x-fairspec-task": "en" });
        statuses.push(r.status);
        versions.add(r.headers.get("x-fairspec-params-version"));
        await r.text();
        await sleep(40);
      }
      expect(statuses.filter((s) => s !== 200)).toEqual([]);
      expect([...versions]).toEqual([runId]);
      const health = (await (await call("/healthz")).json()) as { params_fresh: boolean; params_error: string | null };
      expect(health.params_fresh).toBe(false);
    } finally {
      await setDb("up");
    }
  });

  it("one pool's origins down: the fallback pool serves, before the first byte", async () => {
    await setOrigin(origins.base, "fail500");
    try {
      for (let i = 0; i < 5; i++) {
        const r = await chat({ messages: [{ role: "user", content: "x" }], temperature: 1 }, keys.globex);
        expect(r.status).toBe(200);
        expect(r.headers.get("x-fairspec-pool")).toBe("fallback");
        expect(r.headers.get("server-timing")).toContain("2 attempts");
        await r.text();
      }
      const sent = (await originRequests(origins.fallback)).at(-1)!;
      expect(sent.body.speculative).toEqual({ drafter: null, gamma: 0, proposal_temperature: null });
    } finally {
      await setOrigin(origins.base, "ok");
    }
  });

  it("an origin failing after the first byte: a clean stream error, no retry, no hang", async () => {
    await setOrigin(origins.base, "die-mid-stream");
    try {
      const r = await chat({ messages: [{ role: "user", content: "x" }], stream: true, temperature: 1 }, keys.globex);
      expect(r.status).toBe(200);
      const text = await r.text();
      const events = text.split("\n\n").filter(Boolean);
      const last = JSON.parse(events.at(-1)!.slice(6)) as { error: { type: string; code: string } };
      expect(last.error).toMatchObject({ type: "server_error", code: "origin_stream_error" });
      expect(text).not.toContain("[DONE]");
      expect(JSON.parse(events[1]!.slice(6))).toMatchObject({ choices: [{ delta: { content: "Hello" } }] });
    } finally {
      await setOrigin(origins.base, "ok");
    }
  });
});
