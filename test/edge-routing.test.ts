/**
 * Routing faults, in process against trivial origins on loopback: retries happen only before the
 * first byte (connect error, 5xx, 429) — to the pool's next origin, then the fallback pool —
 * weights steer the choice, and an origin failing after the first byte gives the client a clean
 * stream error (never a hang, never a retry). Client disconnects cancel the origin request.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Client } from "@libsql/client";
import { drizzle } from "drizzle-orm/libsql";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createEdgeApp, type EdgeApp } from "../functions/app.ts";
import { parseEdgeConfig } from "../functions/config.ts";
import { createEdgeDb, type EdgeDb } from "../functions/db.ts";
import { createNodeFetch } from "../functions/node-fetch.ts";
import { deadUrl, edgeConfigInput, seedStore, startTrivialOrigin, type Seeded, type TrivialOrigin } from "./workers/fixtures.ts";

const dir = mkdtempSync(join(tmpdir(), "fairspec-edge-routing-"));
let seeded: Seeded;
let a: TrivialOrigin, b: TrivialOrigin, fb: TrivialOrigin, dflt: TrivialOrigin;
let dead: string;
let client: Client;
let db: EdgeDb;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean) {
  while (!cond()) await sleep(10);
}

beforeAll(async () => {
  [a, b, fb, dflt] = (await Promise.all(["a", "b", "fb", "default"].map((n) => startTrivialOrigin(n)))) as [TrivialOrigin, TrivialOrigin, TrivialOrigin, TrivialOrigin];
  dead = await deadUrl();
  const path = join(dir, "edge.db");
  seeded = await seedStore(path, { base: [a.url], balanced: [a.url], vllm: [a.url] });
  client = createClient({ url: `file:${path}` });
  db = createEdgeDb(drizzle(client));
});
afterAll(async () => {
  client?.close();
  await Promise.all([a, b, fb, dflt].map((o) => o?.close()));
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  for (const o of [a, b, fb, dflt]) {
    o.requests.length = 0;
    o.setMode("ok");
  }
});

// Both fetch implementations: the runtime's (undici on Node, workerd's own in the Worker) and the
// Node entry's node:http one (functions/node-fetch.ts).
const nodeFetch = createNodeFetch({ connectTimeoutMs: 1000 });
afterAll(() => nodeFetch.close());
const FETCHES = [
  ["global fetch", undefined],
  ["node-fetch (node:http)", nodeFetch],
] as const;
let currentFetch: typeof fetch | undefined;

/** An edge whose `pool-base` (globex's pool for every task at T 1) is served by `baseUrls`. */
function edgeWith(baseUrls: string[], o: { weights?: number[]; fallback?: boolean; extra?: Record<string, unknown>; random?: () => number } = {}): EdgeApp {
  const input = edgeConfigInput({ defaultUrls: [dflt.url], fallbackUrls: o.fallback === false ? undefined : [fb.url], extra: o.extra });
  input.pools.push({ id: "pool-base", kind: "fairspec", urls: baseUrls, drafter: "base", gamma: 4, proposal_temperature: null } as (typeof input.pools)[number]);
  if (o.weights) (input as Record<string, unknown>).weights = { "pool-base": o.weights };
  // A constant draw keeps equal-weight URLs in config order: deterministic attempt order.
  return createEdgeApp({ config: parseEdgeConfig(input), db, random: o.random ?? (() => 0.5), fetch: currentFetch });
}

const ctx = { waitUntil: (p: Promise<unknown>) => void p.catch(() => {}), passThroughOnException() {}, props: {} };

function chat(edge: EdgeApp, extra: Record<string, unknown> = {}, init: RequestInit = {}) {
  return edge.app.request(
    "/v1/chat/completions",
    {
      method: "POST",
      headers: { authorization: `Bearer ${seeded.keys.globex}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "fairspec", messages: [{ role: "user", content: "x" }], temperature: 1, ...extra }),
      ...init,
    },
    {},
    ctx,
  );
}

const attempts = (r: Response) => Number(/(\d+) attempts?"/.exec(r.headers.get("server-timing") ?? "")?.[1]);

describe.each(FETCHES)("with %s", (_name, fetchImpl) => {
  beforeAll(() => {
    currentFetch = fetchImpl;
  });

  describe("before the first byte: retry elsewhere", () => {
    it("one origin of the pool down: served by the other, every time", async () => {
      const edge = edgeWith([dead, a.url]);
      const r = await chat(edge);
      expect(r.status).toBe(200);
      expect(r.headers.get("x-origin")).toBe("a");
      expect(r.headers.get("x-fairspec-pool")).toBe("pool-base");
      expect(attempts(r)).toBe(2);
      await r.text();
      // With a real random draw the dead origin is tried first about half the time; no request fails.
      const random = edgeWith([dead, a.url], { random: Math.random });
      const results = await Promise.all(
        Array.from({ length: 20 }, async () => {
          const res = await chat(random);
          await res.text();
          return res.status;
        }),
      );
      expect(results.filter((s) => s !== 200)).toEqual([]);
    });

    it("weights steer traffic; weight 0 drains an origin", async () => {
      const edge = edgeWith([dead, a.url], { weights: [0, 1] });
      for (let i = 0; i < 5; i++) {
        const r = await chat(edge);
        expect(attempts(r)).toBe(1);
        await r.text();
      }
      a.requests.length = 0;
      const heavy = edgeWith([a.url, b.url], { weights: [1, 9], random: Math.random });
      for (let i = 0; i < 40; i++) await (await chat(heavy)).text();
      expect(b.requests.length).toBeGreaterThan(a.requests.length);
      expect(a.requests.length + b.requests.length).toBe(40);
    });

    it("a 5xx or a 429 moves on to the next origin", async () => {
      a.setMode("fail500");
      const r = await chat(edgeWith([a.url, b.url]));
      expect([r.status, r.headers.get("x-origin"), attempts(r)]).toEqual([200, "b", 2]);
      a.setMode("busy429");
      const r2 = await chat(edgeWith([a.url, b.url]));
      expect([r2.status, r2.headers.get("x-origin")]).toEqual([200, "b"]);
      expect(b.requests.at(-1)!.body.speculative).toEqual({ drafter: "base", gamma: 4, proposal_temperature: null });
    });

    it("every origin of the pool down: the fallback pool serves (with its own parameters)", async () => {
      a.setMode("fail500");
      const r = await chat(edgeWith([dead, a.url]));
      expect(r.status).toBe(200);
      expect(r.headers.get("x-fairspec-pool")).toBe("fallback");
      expect(r.headers.get("x-origin")).toBe("fb");
      expect(attempts(r)).toBe(3);
      expect(fb.requests[0]!.body.speculative).toEqual({ drafter: null, gamma: 0, proposal_temperature: null });
    });

    it("at most maxAttempts origins; then 502, or 429 with the origin's Retry-After when they were all busy", async () => {
      a.setMode("fail500");
      b.setMode("fail500");
      fb.setMode("fail500");
      const r = await chat(edgeWith([a.url, b.url], { extra: { maxAttempts: 2 } }));
      expect(r.status).toBe(502);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe("origin_unavailable");
      expect(a.requests.length + b.requests.length + fb.requests.length).toBe(2);
      for (const o of [a, b, fb]) o.setMode("busy429");
      const busy = await chat(edgeWith([a.url, b.url]));
      expect(busy.status).toBe(429);
      expect(busy.headers.get("retry-after")).toBe("3");
      expect(((await busy.json()) as { error: { type: string; code: string } }).error).toMatchObject({ type: "rate_limit_error", code: "origin_busy" });
    });

    it("no fallback configured and the pool down: 502", async () => {
      const r = await chat(edgeWith([dead], { fallback: false }));
      expect(r.status).toBe(502);
    });

    it("an origin that sends no headers in time counts as failed (504 when none answered)", async () => {
      a.setMode("hang");
      const quick = { timeouts: { firstByteMs: 150, nonStreamMs: 150 } };
      const r = await chat(edgeWith([a.url, b.url], { extra: quick }));
      expect([r.status, r.headers.get("x-origin")]).toEqual([200, "b"]);
      fb.setMode("hang");
      const r2 = await chat(edgeWith([a.url], { extra: quick }));
      expect(r2.status).toBe(504);
      expect(((await r2.json()) as { error: { type: string; code: string } }).error).toMatchObject({ type: "timeout_error", code: "origin_timeout" });
    });
  });

  describe("after the first byte: never retried, never a hang", () => {
    it("stream: the origin dies mid-stream → one error event, no [DONE], the stream ends; no other origin is asked", async () => {
      a.setMode("die-mid-stream");
      const r = await chat(edgeWith([a.url, b.url]), { stream: true });
      expect(r.status).toBe(200);
      const text = await r.text();
      const events = text.split("\n\n").filter(Boolean).map((e) => e.slice(6));
      expect(events).toHaveLength(4); // role, "Hello", " from", error
      expect(JSON.parse(events[1]!)).toMatchObject({ choices: [{ delta: { content: "Hello" } }] });
      expect(JSON.parse(events.at(-1)!)).toEqual({
        error: { message: expect.stringContaining("the origin failed mid-stream"), type: "server_error", param: null, code: "origin_stream_error" },
      });
      expect(text).not.toContain("[DONE]");
      expect(b.requests).toHaveLength(0);
      expect(fb.requests).toHaveLength(0);
    });

    it("non-stream: the origin dies mid-body → a clean 502 (the JSON is read whole before it is forwarded), no retry", async () => {
      a.setMode("die-mid-stream");
      const r = await chat(edgeWith([a.url, b.url]));
      expect(r.status).toBe(502);
      expect(((await r.json()) as { error: { type: string; code: string } }).error).toMatchObject({ type: "server_error", code: "origin_body_error" });
      expect(b.requests).toHaveLength(0);
      expect(fb.requests).toHaveLength(0);
    });

    it("the origin goes silent mid-stream → after idleMs an error event ends it, and the origin request is cancelled", async () => {
      a.setMode("stall-mid-stream");
      const aborted = a.aborted;
      const r = await chat(edgeWith([a.url], { extra: { timeouts: { idleMs: 300 } } }), { stream: true });
      const text = await r.text();
      const last = JSON.parse(text.split("\n\n").filter(Boolean).at(-1)!.slice(6)) as { error: { code: string } };
      expect(last.error.code).toBe("origin_idle_timeout");
      await until(() => a.aborted > aborted);
    });
  });

  describe("client disconnects", () => {
    it("a client that goes away mid-stream cancels the origin request", async () => {
      a.setMode("stall-mid-stream");
      const aborted = a.aborted;
      const r = await chat(edgeWith([a.url]), { stream: true });
      const reader = r.body!.getReader();
      const first = await reader.read();
      expect(new TextDecoder().decode(first.value)).toContain("chat.completion.chunk");
      await reader.cancel();
      await until(() => a.aborted > aborted);
    });

    it("a client that goes away before the headers aborts the origin request", async () => {
      a.setMode("hang");
      const aborted = a.aborted;
      const ac = new AbortController();
      const pending = chat(edgeWith([a.url]), {}, { signal: ac.signal });
      await until(() => a.requests.length > 0);
      ac.abort();
      const r = await pending;
      expect(r.status).toBe(499);
      await until(() => a.aborted > aborted);
      expect(b.requests).toHaveLength(0);
    });
  });
});
