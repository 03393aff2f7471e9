/**
 * The edge's pure parts, without a server: the SWR cache, the telemetry buffer, the body relay
 * (SSE split anywhere, usage read or stripped), params lookup, origin ordering, the token bucket,
 * key helpers and config validation. Time is a fake clock; no timing assertions.
 */
import { describe, expect, it } from "vitest";
import { bearerToken, constantTimeEqual, sha256Hex } from "../functions/auth.ts";
import { CacheMissError, SwrCache } from "../functions/cache.ts";
import { EdgeConfigError, parseEdgeConfig } from "../functions/config.ts";
import type { RunParams, TelemetryRow } from "../functions/db.ts";
import { choosePolicy, indexSnapshot, nearest } from "../functions/params.ts";
import { RateLimiter } from "../functions/ratelimit.ts";
import { planAttempts, weightedOrder, type RoutePool } from "../functions/routing.ts";
import { countsOf, relayBody, type RelayOutcome, type SpecCounts } from "../functions/stream.ts";
import { latestUserText, lazyClassifier } from "../functions/task.ts";
import { TelemetryBuffer } from "../functions/telemetry.ts";
import { createHash } from "node:crypto";

const tick = () => new Promise((r) => setTimeout(r, 0));

describe("SwrCache", () => {
  const setup = (ttl = 100) => {
    let t = 0;
    const bg: Promise<unknown>[] = [];
    const cache = new SwrCache<string, number>(() => t, { ttlMs: ttl, timeoutMs: 50, retryMs: 30, maxEntries: 3 });
    return { cache, bg, background: (p: Promise<unknown>) => void bg.push(p), advance: (ms: number) => void (t += ms) };
  };

  it("miss → loaded; fresh → no load; stale → old value at once and one refresh", async () => {
    const { cache, background, bg, advance } = setup();
    let loads = 0;
    const load = async () => ++loads;
    expect(await cache.get("k", load, background)).toMatchObject({ value: 1, state: "loaded" });
    expect(await cache.get("k", load, background)).toMatchObject({ value: 1, state: "fresh" });
    advance(101);
    const [a, b] = await Promise.all([cache.get("k", load, background), cache.get("k", load, background)]);
    expect([a.value, a.state, b.value, b.state]).toEqual([1, "stale", 1, "stale"]);
    await Promise.all(bg);
    expect(loads).toBe(2);
    expect(await cache.get("k", load, background)).toMatchObject({ value: 2, state: "fresh" });
  });

  it("a failed refresh keeps the last-known-good value and waits retryMs before trying again", async () => {
    const { cache, background, bg, advance } = setup();
    let fail = false;
    let loads = 0;
    const load = async () => {
      loads++;
      if (fail) throw new Error("db down");
      return 7;
    };
    await cache.get("k", load, background);
    fail = true;
    advance(101);
    expect((await cache.get("k", load, background)).value).toBe(7);
    await Promise.all(bg);
    expect(cache.lastError("k")).toBe("db down");
    expect((await cache.get("k", load, background)).value).toBe(7);
    expect(loads).toBe(2); // within retryMs: no new try
    advance(31);
    await cache.get("k", load, background);
    await Promise.all(bg);
    expect(loads).toBe(3);
  });

  it("a miss waits at most timeoutMs; the late load still fills the cache; failed misses fail fast for retryMs", async () => {
    const { cache, background, bg, advance } = setup();
    let release!: (v: number) => void;
    const slow = () => new Promise<number>((r) => (release = r));
    await expect(cache.get("k", slow, background)).rejects.toBeInstanceOf(CacheMissError);
    release(5);
    await Promise.all(bg);
    expect(cache.peek("k")).toMatchObject({ value: 5, fresh: true });
    const broken = async (): Promise<number> => {
      throw new Error("nope");
    };
    await expect(cache.get("x", broken, background)).rejects.toThrow(/loading failed: nope/);
    let called = false;
    await expect(
      cache.get("x", async () => ((called = true), 1), background),
    ).rejects.toThrow(/last load failed/);
    expect(called).toBe(false);
    advance(31);
    expect((await cache.get("x", async () => 9, background)).value).toBe(9);
  });

  it("concurrent misses share one load; LRU eviction beyond maxEntries; evict and invalidate", async () => {
    const { cache, background } = setup();
    let loads = 0;
    const load = async () => {
      loads++;
      await tick();
      return loads;
    };
    const rs = await Promise.all([1, 2, 3].map(() => cache.get("a", load, background)));
    expect(rs.map((r) => r.value)).toEqual([1, 1, 1]);
    for (const k of ["b", "c", "d"]) await cache.get(k, async () => 0, background);
    expect(cache.size).toBe(3);
    expect(cache.peek("a")).toBeUndefined();
    expect(cache.invalidate((k) => k === "b")).toBe(1);
    expect(cache.peek("b")!.fresh).toBe(false);
    expect(cache.evict()).toBe(3);
    expect(cache.size).toBe(0);
  });
});

describe("TelemetryBuffer", () => {
  const row = (i: number): TelemetryRow => ({ requestId: `r${i}`, tenantId: "t", task: "en", poolId: "p", drafted: i, accepted: 0, completionTokens: 0, latencyMs: 1, createdAt: "x" });

  it("coalesces concurrent flushes, writes at most batchRows per INSERT, and keeps rows when a write fails", async () => {
    const writes: number[][] = [];
    let fail = false;
    const buf = new TelemetryBuffer(
      async (rows) => {
        await tick();
        if (fail) throw new Error("down");
        writes.push(rows.map((r) => r.drafted));
      },
      5,
      2,
    );
    for (let i = 0; i < 3; i++) buf.add(row(i));
    const a = buf.flush();
    buf.add(row(3));
    await Promise.all([a, buf.flush()]);
    expect(writes).toEqual([[0, 1], [2, 3]]);
    fail = true;
    for (let i = 4; i < 10; i++) buf.add(row(i)); // 6 rows, max 5: the oldest is dropped
    expect(buf.stats.dropped).toBe(1);
    await buf.flush();
    expect(buf.buffered).toBe(5);
    expect(buf.stats.failedWrites).toBe(1);
    fail = false;
    await buf.flush();
    expect(writes.slice(2)).toEqual([[5, 6], [7, 8], [9]]);
    expect(buf.stats).toMatchObject({ writes: 5, written: 9, failedWrites: 1, dropped: 1 });
  });

  it("schedule(ms) joins a window: one write for every row added before it closes", async () => {
    const writes: number[] = [];
    const buf = new TelemetryBuffer(async (rows) => void writes.push(rows.length), 100, 50);
    buf.add(row(1));
    const p = buf.schedule(20);
    buf.add(row(2));
    const q = buf.schedule(20);
    expect(p).toBe(q);
    await p;
    expect(writes).toEqual([2]);
  });
});

/** Feed `parts` as an upstream body and collect what the relay forwards. */
async function relay(parts: (string | Error)[], o: { mode: "sse" | "json" | "raw"; stripUsage?: boolean; idleMs?: number }) {
  const enc = new TextEncoder();
  const upstream = new ReadableStream<Uint8Array>({
    async pull(c) {
      const p = parts.shift();
      await tick();
      if (p === undefined) c.close();
      else if (p instanceof Error) c.error(p);
      else c.enqueue(enc.encode(p));
    },
  });
  let end: { outcome: RelayOutcome; counts: SpecCounts | null } | undefined;
  const aborts: unknown[] = [];
  const out = relayBody(upstream, { mode: o.mode, stripUsage: o.stripUsage ?? false, idleMs: o.idleMs ?? 1000, abort: (r) => void aborts.push(r), onEnd: (outcome, counts) => (end = { outcome, counts }) });
  const chunks: string[] = [];
  const reader = out.getReader();
  let error: unknown;
  try {
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      chunks.push(new TextDecoder().decode(r.value));
    }
  } catch (e) {
    error = e;
  }
  return { chunks, text: chunks.join(""), end, aborts, error };
}

const sd = { num_verifier_steps: 3, num_drafts: 3, num_draft_tokens: 9, num_accepted_draft_tokens: 5 };
const usageEvent = `data: ${JSON.stringify({ id: "x", object: "chat.completion.chunk", choices: [], usage: { prompt_tokens: 1, completion_tokens: 6, total_tokens: 7, speculative_decoding: sd }, metrics: { speculative_decoding: sd } })}\n\n`;
const chunkEvent = (s: string, withUsage: boolean) => `data: ${JSON.stringify({ id: "x", object: "chat.completion.chunk", choices: [{ index: 0, delta: { content: s } }], ...(withUsage ? { usage: null } : {}) })}\n\n`;

describe("relayBody", () => {
  it("SSE: forwards whole events however the bytes are split (CRLF too), and reads the usage chunk", async () => {
    const full = chunkEvent("a", true) + chunkEvent("b", true).replace(/\n\n$/, "\r\n\r\n") + usageEvent + "data: [DONE]\n\n";
    const parts = [full.slice(0, 7), full.slice(7, 100), full.slice(100, 101), full.slice(101)];
    const r = await relay(parts, { mode: "sse" });
    expect(r.text).toBe(full.replace("\r\n\r\n", "\n\n"));
    expect(r.chunks.every((c) => c.endsWith("\n\n"))).toBe(true);
    expect(r.end).toEqual({ outcome: "done", counts: { drafted: 9, accepted: 5, completionTokens: 6 } });
  });

  it("SSE with stripUsage: no usage chunk and no usage field reach the client; counts are still read", async () => {
    const full = chunkEvent("a", true) + chunkEvent("b", true) + usageEvent + "data: [DONE]\n\n";
    const r = await relay([full.slice(0, 50), full.slice(50)], { mode: "sse", stripUsage: true });
    expect(r.text).toBe(chunkEvent("a", false) + chunkEvent("b", false) + "data: [DONE]\n\n");
    expect(r.end!.counts).toEqual({ drafted: 9, accepted: 5, completionTokens: 6 });
  });

  it("SSE: an upstream error or silence becomes one error event and a clean end", async () => {
    const broken = await relay([chunkEvent("a", false), chunkEvent("b", false).slice(0, 10), new Error("socket hang up")], { mode: "sse" });
    expect(broken.error).toBeUndefined();
    expect(broken.text.startsWith(chunkEvent("a", false))).toBe(true);
    const last = JSON.parse(broken.text.split("\n\n").filter(Boolean).at(-1)!.slice(6)) as { error: { code: string; message: string } };
    expect(last.error.code).toBe("origin_stream_error");
    expect(last.error.message).toContain("socket hang up");
    expect(broken.end!.outcome).toBe("origin_error");
    expect(broken.aborts).toHaveLength(1);

    const enc = new TextEncoder();
    let aborted = false;
    const silent = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(enc.encode(chunkEvent("a", false)));
      },
      cancel() {
        aborted = true;
      },
    });
    let outcome: RelayOutcome | undefined;
    const out = relayBody(silent, { mode: "sse", stripUsage: false, idleMs: 30, abort: () => {}, onEnd: (o) => (outcome = o) });
    const text = await new Response(out).text();
    expect(text).toContain("origin_idle_timeout");
    expect(outcome).toBe("idle_timeout");
    expect(aborted).toBe(true);
  });

  it("JSON: bytes untouched, counts parsed at the end; an error errors the client's stream", async () => {
    const body = JSON.stringify({ id: "x", usage: { completion_tokens: 3, speculative_decoding: sd } });
    const r = await relay([body.slice(0, 10), body.slice(10)], { mode: "json" });
    expect(r.text).toBe(body);
    expect(r.end!.counts).toEqual({ drafted: 9, accepted: 5, completionTokens: 3 });
    const bad = await relay([body.slice(0, 10), new Error("reset")], { mode: "json" });
    expect(bad.error).toBeInstanceOf(Error);
    expect(bad.end!.outcome).toBe("origin_error");
  });

  it("client cancel aborts the upstream", async () => {
    let cancelled = false;
    const upstream = new ReadableStream<Uint8Array>({
      pull(c) {
        c.enqueue(new TextEncoder().encode(chunkEvent("a", false)));
      },
      cancel() {
        cancelled = true;
      },
    });
    const aborts: unknown[] = [];
    let outcome: RelayOutcome | undefined;
    const out = relayBody(upstream, { mode: "sse", stripUsage: false, idleMs: 1000, abort: (r) => void aborts.push(r), onEnd: (o) => (outcome = o) });
    const reader = out.getReader();
    await reader.read();
    await reader.cancel("client gone");
    expect([cancelled, aborts.length, outcome]).toEqual([true, 1, "cancelled"]);
  });

  it("countsOf reads fairspec's and vLLM's names, and tolerates their absence", () => {
    expect(countsOf({ usage: { completion_tokens: 2 } })).toEqual({ drafted: 0, accepted: 0, completionTokens: 2 });
    expect(countsOf({ choices: [] })).toBeNull();
    expect(countsOf(null)).toBeNull();
  });
});

describe("params", () => {
  const p = (t: number, poolId: string): RunParams => ({ policyId: "x", task: "en", targetTemperature: t, poolId, drafter: null, gamma: 0, proposalTemperature: null });

  it("nearest target temperature, ties to the lower", () => {
    const list = [p(0, "a"), p(0.7, "b"), p(1, "c")];
    expect([0, 0.3, 0.35, 0.36, 0.85, 0.9, 2].map((t) => nearest(list, t)!.poolId)).toEqual(["a", "a", "a", "b", "b", "c", "c"]);
    expect(nearest([], 1)).toBeUndefined();
  });

  it("the tenant's policy if the run has it, else the default, else the first", () => {
    const index = indexSnapshot({
      runId: "r",
      activatedAt: "t",
      pools: [],
      policies: [
        { id: "maxmin", policy: { kind: "maxmin" } },
        { id: "floor-0.7", policy: { kind: "floor", ratio: 0.7 } },
      ],
      params: [],
    });
    expect(choosePolicy(index, { kind: "floor", ratio: 0.7 }, { kind: "throughput" })).toEqual({ id: "floor-0.7", source: "tenant" });
    expect(choosePolicy(index, { kind: "floor", ratio: 0.8 }, { kind: "maxmin" })).toEqual({ id: "maxmin", source: "default" });
    expect(choosePolicy(index, null, { kind: "throughput" })).toEqual({ id: "floor-0.7", source: "first" });
  });
});

describe("origin order", () => {
  const pool = (id: string, urls: string[], weights = urls.map(() => 1)): RoutePool => ({ id, kind: "fairspec", urls, weights, drafter: null, gamma: 0, proposal_temperature: null });

  it("weights: heavier first more often; weight 0 never", () => {
    let seed = 1;
    const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    const first = { a: 0, b: 0 };
    for (let i = 0; i < 2000; i++) first[weightedOrder(["a", "b", "c"], [1, 3, 0], random)[0] as "a" | "b"]++;
    expect(first.b / 2000).toBeGreaterThan(0.65);
    expect(first.b / 2000).toBeLessThan(0.85);
    expect(weightedOrder(["a", "b", "c"], [1, 3, 0], random)).not.toContain("c");
  });

  it("plans the pool's origins, then the fallback's, within maxAttempts (keeping a slot for the fallback)", () => {
    const random = () => 0.5;
    const main = pool("main", ["m1", "m2", "m3"]);
    const fb = pool("fb", ["f1"]);
    expect(planAttempts(main, { gamma: 3 }, fb, 3, random).map((a) => [a.pool.id, a.url, a.wanted])).toEqual([
      ["main", "m1", { gamma: 3 }],
      ["main", "m2", { gamma: 3 }],
      ["fb", "f1", {}],
    ]);
    expect(planAttempts(main, {}, null, 2, random).map((a) => a.url)).toEqual(["m1", "m2"]);
    expect(planAttempts(main, {}, main, 5, random).map((a) => a.url)).toEqual(["m1", "m2", "m3"]);
  });
});

describe("small helpers", () => {
  it("token bucket per key", () => {
    let t = 0;
    const rl = new RateLimiter(() => t, 2, 1);
    expect([rl.take("k"), rl.take("k"), rl.take("k")]).toEqual([0, 0, 1]);
    expect(rl.take("other")).toBe(0);
    t += 1000;
    expect(rl.take("k")).toBe(0);
    expect(rl.take("k")).toBe(1);
  });

  it("sha256 (WebCrypto) equals node:crypto's, as the store hashes keys; constant-time compare; bearer", async () => {
    expect(await sha256Hex("fs_abc")).toBe(createHash("sha256").update("fs_abc").digest("hex"));
    expect([constantTimeEqual("abc", "abc"), constantTimeEqual("abc", "abd"), constantTimeEqual("abc", "ab")]).toEqual([true, false, false]);
    expect([bearerToken("Bearer x"), bearerToken("bearer  y "), bearerToken("Basic z"), bearerToken(undefined)]).toEqual(["x", "y", null, null]);
  });

  it("latest user text: chat parts joined, completions prompt", () => {
    expect(latestUserText({ messages: [{ role: "user", content: "a" }, { role: "user", content: [{ type: "text", text: "b" }, { type: "text", text: "c" }] }, { role: "assistant", content: "z" }] })).toBe("b\nc");
    expect(latestUserText({ prompt: ["p"] })).toBe("p");
    expect(latestUserText({ prompt: [1, 2] })).toBe("");
  });

  it("lazyClassifier starts once, and after a failed start waits before trying again", async () => {
    let t = 0;
    let starts = 0;
    let fail = true;
    const c = lazyClassifier(
      async () => {
        starts++;
        if (fail) throw new Error("no wasm");
        return { classify: async () => ({ task: "en", confidence: 1 }) };
      },
      { retryMs: 100, now: () => t },
    );
    await expect(c.classify("x")).rejects.toThrow("no wasm");
    await expect(c.classify("x")).rejects.toThrow(/failed to start recently/);
    fail = false;
    t = 101;
    await Promise.all([c.classify("x"), c.classify("y")]);
    expect(starts).toBe(2);
  });

  it("config errors name the field", () => {
    const base = { pools: [{ id: "p", kind: "fairspec", urls: ["http://127.0.0.1:1"], drafter: null, gamma: 0, proposal_temperature: null }], defaultPool: "p" };
    expect(parseEdgeConfig(base).timeouts.firstByteMs).toBe(30_000);
    expect(() => parseEdgeConfig({ ...base, defaultPool: "q" })).toThrow(/defaultPool: no pool 'q'/);
    expect(() => parseEdgeConfig({ ...base, weights: { p: [1, 2] } })).toThrow(/weights.p: pool 'p' has 1 urls, got 2 weights/);
    expect(() => parseEdgeConfig({ ...base, pools: [{ ...base.pools[0], gamma: 2 }] })).toThrow(EdgeConfigError);
    expect(() => parseEdgeConfig({ ...base, cache: { ttl: 1 } })).toThrow(/cache/);
    expect(() => parseEdgeConfig("{")).toThrow(/not valid JSON/);
  });
});
