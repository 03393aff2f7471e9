/**
 * The edge's fast paths hold to the slow ones they stand in for (no timing assertions):
 * the request check without zod accepts only what zod accepts; the 3-decimal formatting equals
 * the float one; the per-key hash cache hashes a valid key once, never keeps an unknown or revoked
 * one, and stays bounded; node-fetch's light response and its whole-body read keep Response's
 * behaviour and readWhole's bounds and errors; the telemetry INSERT (one JSON parameter) writes the
 * same rows and stays idempotent, with time-ordered request ids; the Node entry serves from
 * several processes with --workers.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient, type Client } from "@libsql/client";
import { drizzle } from "drizzle-orm/libsql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEdgeApp, ms3, plainlyValid, requestSchemas, uuidv7, type EdgeApp, type Kind } from "../functions/app.ts";
import { parseEdgeConfig } from "../functions/config.ts";
import { createEdgeDb, type EdgeDb, type TelemetryRow } from "../functions/db.ts";
import { createNodeFetch } from "../functions/node-fetch.ts";
import { edgeWorkerCount } from "../functions/node.ts";
import { nativeBodyOf } from "../functions/stream.ts";
import { openStore } from "../calibrator/store.ts";
import { edgeConfigInput, seedStore, startTrivialOrigin, type Seeded, type TrivialOrigin } from "./workers/fixtures.ts";

const dir = mkdtempSync(join(tmpdir(), "fairspec-edge-fast-"));
const dbPath = join(dir, "edge.db");
let seeded: Seeded;
let origin: TrivialOrigin;
let client: Client;
let db: EdgeDb;

beforeAll(async () => {
  origin = await startTrivialOrigin("fast");
  seeded = await seedStore(dbPath, { base: [origin.url], balanced: [origin.url], vllm: [origin.url] });
  client = createClient({ url: `file:${dbPath}` });
  db = createEdgeDb(drizzle(client));
});
afterAll(async () => {
  client?.close();
  await origin?.close();
  rmSync(dir, { recursive: true, force: true });
});

const ctx = { waitUntil: (p: Promise<unknown>) => void p.catch(() => {}), passThroughOnException() {}, props: {} };

// ---------------------------------------------------------------------------------------------

/** A small seeded generator (mulberry32). */
function rng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ODD_VALUES: unknown[] = [null, true, false, 0, -1, 1.5, 2, 2.0001, -0, 2 ** 53, 2 ** 53 - 1, "", "x", "en", "EN", "code-py", " en", [], [1], ["a"], [[1, 2]], {}, { task: "en" }, { task: "x y" }, { task: "en", extra: 1 }, { include_usage: true }, { include_usage: "yes" }, { include_usage: null }];

function mutate(r: () => number, body: Record<string, unknown>, kind: Kind): Record<string, unknown> {
  const out = structuredClone(body);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const fields = ["model", "stream", "stream_options", "temperature", "fairspec", kind === "chat" ? "messages" : "prompt", "max_tokens", "speculative"];
  const n = 1 + Math.floor(r() * 3);
  for (let i = 0; i < n; i++) {
    const f = pick(fields);
    const what = r();
    if (what < 0.2) delete out[f];
    else if (f === "messages" && what < 0.7) {
      const m = [{ role: pick(["user", "system", 1, null]), content: pick(["hi", null, [{ type: "text", text: "a" }], [{ type: "image_url" }], [{ type: 1 }], [{ type: "text", text: 2 }], [null], 3, { text: "x" }]) }];
      out.messages = r() < 0.2 ? [] : r() < 0.2 ? [null] : r() < 0.2 ? [[]] : m;
    } else if (f === "prompt" && what < 0.7) out.prompt = pick(["p", ["a", "b"], [1, 2], [[1], [2, 3]], [], [[]], [1, "a"], [-1], [1.5], [2 ** 53], [[2 ** 60]], [["a"]], 7, null]);
    else out[f] = pick(ODD_VALUES);
  }
  return out;
}

describe("the request check without zod", () => {
  const valid = {
    chat: [
      { model: "fairspec", messages: [{ role: "user", content: "Hello there" }], temperature: 1 },
      { model: "fairspec", messages: [{ role: "system", content: null }, { role: "user", content: [{ type: "text", text: "a" }, { type: "image_url", image_url: { url: "x" } }] }], stream: true, stream_options: { include_usage: true }, fairspec: { task: "en" }, max_tokens: 3 },
      { model: "m", messages: [{ role: "user" }], temperature: null, stream: null, stream_options: null, fairspec: null },
    ],
    completion: [
      { model: "fairspec", prompt: "Hello" },
      { model: "fairspec", prompt: ["a", "b"], temperature: 0 },
      { model: "fairspec", prompt: [1, 2, 3], stream: false },
      { model: "fairspec", prompt: [[1], [2, 3]], fairspec: {} },
      { model: "fairspec", prompt: [] },
    ],
  } as const;

  it("takes the common valid bodies (the bench's among them) without zod", () => {
    for (const kind of ["chat", "completion"] as const) for (const b of valid[kind]) expect(plainlyValid(kind, structuredClone(b) as Record<string, unknown>), JSON.stringify(b)).toBe(true);
  });

  it("never accepts what zod refuses, and what it accepts zod reads the same (generated bodies)", () => {
    const r = rng(42);
    let fast = 0;
    let slow = 0;
    for (const kind of ["chat", "completion"] as const) {
      for (let i = 0; i < 4000; i++) {
        const body = mutate(r, structuredClone(valid[kind][i % valid[kind].length]) as Record<string, unknown>, kind);
        const z = requestSchemas[kind].safeParse(body);
        if (plainlyValid(kind, body)) {
          fast++;
          expect(z.success, JSON.stringify(body)).toBe(true);
          const d = z.data as Record<string, unknown>;
          for (const k of ["model", "stream", "stream_options", "temperature", "fairspec"]) expect(d[k], k).toEqual(body[k]);
        } else slow++;
      }
    }
    // Both branches were exercised.
    expect(fast).toBeGreaterThan(500);
    expect(slow).toBeGreaterThan(500);
  });
});

describe("ms3", () => {
  it("equals (Math.round(x * 1000) / 1000).toString()", () => {
    const r = rng(7);
    const xs = [0, -0, 0.0004, 0.0005, 0.001, 0.1, 0.12, 1, 1.5, 10.05, 123456.789, 1e15, 1e20, -1.5, NaN, Infinity];
    for (let i = 0; i < 20000; i++) xs.push(i / 1000, r() * 10 ** (r() * 8 - 3));
    for (const x of xs) expect(ms3(x), String(x)).toBe((Math.round(x * 1000) / 1000).toString());
  });
});

// ---------------------------------------------------------------------------------------------

describe("the per-key hash cache", () => {
  function edgeCounting(maxKeys = 10_000) {
    const hashed: string[] = [];
    const config = parseEdgeConfig(edgeConfigInput({ defaultUrls: [origin.url], extra: { cache: { maxKeys } } }));
    const edge = createEdgeApp({
      config,
      db,
      classifier: null,
      sha256: (s) => {
        hashed.push(s);
        return createHash("sha256").update(s, "utf8").digest("hex");
      },
    });
    return { edge, hashed };
  }
  const call = async (edge: EdgeApp, key: string) => {
    const res = await edge.app.request("/v1/models", { headers: { authorization: `Bearer ${key}` } }, {}, ctx);
    await res.text();
    return res.status;
  };
  const count = (xs: string[], k: string) => xs.filter((x) => x === k).length;

  it("hashes a valid key once; an unknown or revoked key every time; the stored hash is still compared", async () => {
    const { edge, hashed } = edgeCounting();
    for (let i = 0; i < 5; i++) expect(await call(edge, seeded.keys.acme)).toBe(200);
    expect(count(hashed, seeded.keys.acme)).toBe(1);
    const unknown = `fs_${"u".repeat(32)}`;
    for (let i = 0; i < 3; i++) expect(await call(edge, unknown)).toBe(401);
    expect(count(hashed, unknown)).toBe(3);
    for (let i = 0; i < 2; i++) expect(await call(edge, seeded.keys.revoked)).toBe(401);
    expect(count(hashed, seeded.keys.revoked)).toBe(2);
  });

  it("a key revoked after it was cached stops at the next reload and is hashed again from then on", async () => {
    const store = await openStore(`file:${dbPath}`);
    try {
      const created = await store.createApiKey("globex");
      const { edge, hashed } = edgeCounting();
      expect(await call(edge, created.key)).toBe(200);
      expect(await call(edge, created.key)).toBe(200);
      expect(count(hashed, created.key)).toBe(1);
      await store.revokeApiKey(created.id);
      edge.state.keys.evict(); // as after keyTtlMs
      // The reload finds it revoked (the cached hash found the record): 401, and the hash is dropped.
      expect(await call(edge, created.key)).toBe(401);
      expect(await call(edge, created.key)).toBe(401);
      expect(count(hashed, created.key)).toBe(2);
    } finally {
      store.close();
    }
  });

  it("is bounded by cache.maxKeys (least recently used out)", async () => {
    const { edge, hashed } = edgeCounting(2);
    const { acme, globex, initech } = seeded.keys;
    for (const k of [acme, globex, acme, initech, acme, globex]) expect(await call(edge, k)).toBe(200);
    // acme stays (recently used); globex was pushed out by initech and hashed again.
    expect([count(hashed, acme), count(hashed, globex), count(hashed, initech)]).toEqual([1, 2, 1]);
  });
});

// ---------------------------------------------------------------------------------------------

describe("node-fetch's response", () => {
  let server: Server;
  let base: string;
  const nodeFetch = createNodeFetch({ connectTimeoutMs: 1000 });
  beforeAll(async () => {
    server = createServer((req, res) => {
      const path = req.url ?? "/";
      if (path === "/json") res.writeHead(200, { "content-type": "application/json", "x-two": "2" }).end('{"a":1}');
      else if (path === "/chunks") {
        res.writeHead(200, { "content-type": "application/json" });
        res.write('{"a":');
        setTimeout(() => res.end("[1,2]}"), 20);
      } else if (path === "/big") res.writeHead(200, { "content-type": "application/json" }).end("x".repeat(5000));
      else if (path === "/stall") {
        res.writeHead(200, { "content-type": "application/json" });
        res.write("{");
      } else if (path === "/cut") {
        res.writeHead(200, { "content-type": "application/json", "content-length": "100" });
        res.write('{"a":');
        setTimeout(() => res.socket?.destroy(), 20);
      } else if (path === "/204") res.writeHead(204).end();
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    nodeFetch.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it("is a Response: status, headers, text / json / arrayBuffer / body / clone", async () => {
    const r = await nodeFetch(`${base}/json`);
    expect(r).toBeInstanceOf(Response);
    expect([r.status, r.ok, r.headers.get("x-two"), r.url, r.bodyUsed]).toEqual([200, true, "2", `${base}/json`, false]);
    expect(await r.json()).toEqual({ a: 1 });
    expect(r.bodyUsed).toBe(true);
    await expect(r.text()).rejects.toThrow(/already been read/);
    expect(new TextDecoder().decode(await (await nodeFetch(`${base}/chunks`)).arrayBuffer())).toBe('{"a":[1,2]}');
    const viaStream = await nodeFetch(`${base}/chunks`);
    expect(nativeBodyOf(viaStream)).toBeDefined();
    expect(await new Response(viaStream.body).text()).toBe('{"a":[1,2]}');
    expect(nativeBodyOf(viaStream)).toBeUndefined(); // once `body` was read, only the stream
    const cloned = (await nodeFetch(`${base}/json`)).clone();
    expect(await cloned.json()).toEqual({ a: 1 });
    const none = await nodeFetch(`${base}/204`);
    expect([none.status, none.body, nativeBodyOf(none)?.hasBody]).toEqual([204, null, false]);
  });

  it("its whole-body read keeps readWhole's bounds and errors", async () => {
    const whole = async (path: string, max: number, idleMs: number) => {
      const r = await nodeFetch(`${base}${path}`);
      return nativeBodyOf(r)!.readWhole(max, idleMs);
    };
    expect(new TextDecoder().decode(await whole("/chunks", 1000, 1000))).toBe('{"a":[1,2]}');
    await expect(whole("/big", 4096, 1000)).rejects.toThrow("the response body exceeds 4096 bytes");
    await expect(whole("/stall", 1000, 100)).rejects.toThrow("the origin's response body took over 100 ms");
    await expect(whole("/cut", 1000, 1000)).rejects.toThrow();
    const r = await nodeFetch(`${base}/json`);
    await nativeBodyOf(r)!.readWhole(100, 100);
    expect(nativeBodyOf(r)).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------

describe("the telemetry INSERT", () => {
  it("writes the rows as given (types too), and a retried batch adds nothing", async () => {
    const rows: TelemetryRow[] = [
      { requestId: "fast-1", tenantId: "acme", task: "en", poolId: "pool-base", drafted: 40, accepted: 31, completionTokens: 12, latencyMs: 1.25, createdAt: "2026-01-01T00:00:00.000Z" },
      { requestId: "fast-2", tenantId: "globex", task: "ja", poolId: "pool-bal", drafted: 0, accepted: 0, completionTokens: 0, latencyMs: 3, createdAt: "2026-01-01T00:00:01.000Z" },
      { requestId: null, tenantId: "acme", task: "code-py", poolId: "p", drafted: 1, accepted: 1, completionTokens: 1, latencyMs: 0.001, createdAt: "2026-01-01T00:00:02.000Z" },
    ];
    await db.insertTelemetry(rows);
    await db.insertTelemetry(rows.slice(0, 2));
    const got = await client.execute(
      "select request_id, tenant_id, task, pool_id, drafted, accepted, completion_tokens, latency_ms, created_at, typeof(drafted) td, typeof(latency_ms) tl from telemetry where created_at like '2026-01-01%' order by created_at",
    );
    // The row without a request id has no unique key to collide on: the retry above skipped it.
    expect(got.rows.map((r) => [r.request_id, r.tenant_id, r.task, r.pool_id, r.drafted, r.accepted, r.completion_tokens, r.latency_ms, r.created_at, r.td, r.tl])).toEqual([
      ["fast-1", "acme", "en", "pool-base", 40, 31, 12, 1.25, "2026-01-01T00:00:00.000Z", "integer", "real"],
      ["fast-2", "globex", "ja", "pool-bal", 0, 0, 0, 3, "2026-01-01T00:00:01.000Z", "integer", "real"],
      [null, "acme", "code-py", "p", 1, 1, 1, 0.001, "2026-01-01T00:00:02.000Z", "integer", "real"],
    ]);
  });
});

describe("request ids", () => {
  it("are UUIDv7: unique, and ordered by their millisecond", () => {
    const re = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    const ids = Array.from({ length: 5000 }, (_, i) => uuidv7(1_700_000_000_000 + Math.floor(i / 10)));
    for (const id of ids.slice(0, 50)) expect(id).toMatch(re);
    expect(new Set(ids).size).toBe(ids.length);
    for (let i = 10; i < ids.length; i += 10) expect(ids[i - 10]! < ids[i]!).toBe(true);
    expect(uuidv7(0).startsWith("00000000-0000-7")).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------

describe("the Node entry with --workers", () => {
  it("parses the worker count", () => {
    expect([edgeWorkerCount(undefined), edgeWorkerCount(""), edgeWorkerCount("3")]).toEqual([1, 1, 3]);
    expect(edgeWorkerCount("auto")).toBeGreaterThanOrEqual(1);
    expect(() => edgeWorkerCount("0")).toThrow(/--workers/);
    expect(() => edgeWorkerCount("two")).toThrow(/--workers/);
  });

  it("serves from several processes on one port, and on SIGTERM each worker finishes and flushes its telemetry", async () => {
    const cfg = join(dir, "cluster.config.json");
    writeFileSync(cfg, JSON.stringify(edgeConfigInput({ defaultUrls: [origin.url] })));
    const entry = fileURLToPath(new URL("../functions/node.ts", import.meta.url));
    const child = spawn(process.execPath, ["--import", "tsx", entry, "--port", "0", "--workers", "2"], {
      env: { ...process.env, FAIRSPEC_DB_URL: `file:${dbPath}`, FAIRSPEC_EDGE_CONFIG: cfg },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on("data", (d: Buffer) => {
          out += d.toString();
          const m = /listening on (\S+) \(2 worker processes\)/.exec(out);
          if (m) resolve(m[1]!);
        });
        child.once("exit", (code) => reject(new Error(`exited ${code}: ${err}`)));
      });
      const before = Number((await client.execute("select count(*) n from telemetry")).rows[0]!.n);
      const n = 24;
      const statuses = await Promise.all(
        Array.from({ length: n }, async () => {
          const res = await fetch(`${url}/v1/chat/completions`, {
            method: "POST",
            headers: { authorization: `Bearer ${seeded.keys.acme}`, "content-type": "application/json", connection: "close" },
            body: JSON.stringify({ model: "fairspec", messages: [{ role: "user", content: "Hello there" }] }),
          });
          await res.text();
          return res.status;
        }),
      );
      expect(statuses.filter((s) => s !== 200)).toEqual([]);
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
      // Every worker closed cleanly: its telemetry window was written before it exited.
      const after = Number((await client.execute("select count(*) n from telemetry")).rows[0]!.n);
      expect(after - before).toBe(n);
    } finally {
      child.kill("SIGKILL");
    }
  }, 60_000);
});
