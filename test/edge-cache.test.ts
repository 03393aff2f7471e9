/**
 * The parameter and key caches against libSQL over HTTP (`@libsql/client/web` → the Hrana
 * endpoint of test/support/hrana.ts, backed by the real libSQL engine), with a controllable clock:
 * fresh entries cost no round trip, stale ones are served while one background refresh runs,
 * changes (activation, policy, revocation) arrive within a TTL, and a libSQL outage — refused
 * connections or a hanging server — fails no request of a key the isolate knows.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Client } from "@libsql/client/web";
import { createClient as createFileClient } from "@libsql/client";
import { drizzle } from "drizzle-orm/libsql/web";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createEdgeApp, type Clock, type EdgeApp } from "../functions/app.ts";
import { parseEdgeConfig } from "../functions/config.ts";
import { createEdgeDb } from "../functions/db.ts";
import { openStore } from "../calibrator/store.ts";
import { startHrana, type HranaServer } from "./support/hrana.ts";
import { edgeConfigInput, seededRun, seedStore, startTrivialOrigin, type Seeded, type TrivialOrigin } from "./workers/fixtures.ts";

const dir = mkdtempSync(join(tmpdir(), "fairspec-edge-cache-"));
const dbPath = join(dir, "edge.db");
const TOKEN = "hrana-test-token";
let seeded: Seeded;
let origin: TrivialOrigin;
let other: TrivialOrigin;
let dflt: TrivialOrigin;
let hrana: HranaServer;
const clients: Client[] = [];

const TTL = { paramsTtlMs: 1_000, keyTtlMs: 1_000, negativeKeyTtlMs: 500, dbTimeoutMs: 300, retryMs: 100 };

/** A clock the test moves; durations inside a request stay 0. */
function fakeClock() {
  let t = 1_000_000;
  const clock: Clock & { advance(ms: number): void } = { now: () => t, iso: () => new Date().toISOString(), advance: (ms) => void (t += ms) };
  return clock;
}

function pendingCtx() {
  const pending: Promise<unknown>[] = [];
  return {
    ctx: { waitUntil: (p: Promise<unknown>) => void pending.push(p), passThroughOnException() {}, props: {} },
    settle: async () => {
      while (pending.length) await Promise.allSettled(pending.splice(0));
    },
  };
}

function makeEdge(clock: Clock) {
  const c = createClient({ url: hrana.url, authToken: TOKEN });
  clients.push(c);
  const config = parseEdgeConfig(edgeConfigInput({ defaultUrls: [dflt.url], extra: { cache: TTL, telemetry: { flushDelayMs: 0 } } }));
  return createEdgeApp({ config, db: createEdgeDb(drizzle(c)), clock });
}

function chat(edge: EdgeApp, key: string, ctx: ReturnType<typeof pendingCtx>["ctx"], extra: Record<string, unknown> = {}) {
  return edge.app.request(
    "/v1/chat/completions",
    { method: "POST", headers: { authorization: `Bearer ${key}` }, body: JSON.stringify({ model: "fairspec", messages: [{ role: "user", content: "x" }], temperature: 1, ...extra }) },
    {},
    ctx,
  );
}

beforeAll(async () => {
  [origin, other, dflt] = (await Promise.all(["origin", "other", "default"].map((n) => startTrivialOrigin(n)))) as [TrivialOrigin, TrivialOrigin, TrivialOrigin];
  seeded = await seedStore(dbPath, { base: [origin.url], balanced: [origin.url], vllm: [origin.url] });
  hrana = await startHrana({ path: dbPath, authToken: TOKEN });
});
afterAll(async () => {
  for (const c of clients) c.close();
  await hrana?.close();
  await Promise.all([origin, other, dflt].map((o) => o?.close()));
  rmSync(dir, { recursive: true, force: true });
});
afterEach(async () => {
  await hrana.setMode("up");
});

describe("stale-while-revalidate", () => {
  it("fresh entries cost no round trip; stale ones are served at once while one refresh runs", async () => {
    const clock = fakeClock();
    const edge = makeEdge(clock);
    const t = pendingCtx();
    const first = await chat(edge, seeded.keys.globex, t.ctx);
    expect(first.status).toBe(200);
    await first.text();
    await t.settle();
    const afterWarm = hrana.pipelines;
    for (let i = 0; i < 10; i++) await (await chat(edge, seeded.keys.globex, t.ctx)).text();
    await t.settle();
    expect(hrana.pipelines - afterWarm).toBe(10); // telemetry writes only: no reads while fresh
    expect(edge.state.params.stats).toMatchObject({ misses: 1, stale: 0 });
    clock.advance(TTL.paramsTtlMs + 1);
    const before = hrana.pipelines;
    const stale = await Promise.all([1, 2, 3].map(() => chat(edge, seeded.keys.globex, t.ctx)));
    expect(stale.map((r) => r.status)).toEqual([200, 200, 200]);
    await Promise.all(stale.map((r) => r.text()));
    await t.settle();
    // One refresh per entry (params, key) for three concurrent stale requests, plus telemetry.
    expect(edge.state.params.stats.stale).toBe(3);
    expect(hrana.pipelines - before).toBeLessThanOrEqual(2 + 3);
    expect(edge.state.params.peek("active")!.fresh).toBe(true);
  });

  it("a new activation, a policy change and a revocation arrive within one TTL", async () => {
    const clock = fakeClock();
    const edge = makeEdge(clock);
    const t = pendingCtx();
    const store = await openStore(`file:${dbPath}`);
    try {
      const key = await store.createApiKey("globex");
      const r1 = await chat(edge, key.key, t.ctx);
      expect([r1.headers.get("x-fairspec-params-version"), r1.headers.get("x-fairspec-pool")]).toEqual([seeded.runId, "pool-base"]);
      await r1.text();
      // Changes in the store: a new run (pool-base now on another origin), globex → maxmin, the key revoked.
      const run2 = await store.saveRun(seededRun({ base: [other.url], balanced: [other.url], vllm: [other.url] }));
      await store.activate(run2, { force: true });
      await store.setTenantPolicy("globex", { kind: "maxmin" });
      // Within the TTL nothing changes.
      const r2 = await chat(edge, key.key, t.ctx);
      expect(r2.headers.get("x-fairspec-params-version")).toBe(seeded.runId);
      await r2.text();
      await store.revokeApiKey(key.id);
      clock.advance(TTL.keyTtlMs + 1);
      // Past it: the stale entries are served once more while they refresh...
      const r3 = await chat(edge, key.key, t.ctx);
      expect(r3.status).toBe(200);
      await r3.text();
      await t.settle();
      // ...and the next request sees the new run and the revocation.
      const r4 = await chat(edge, seeded.keys.globex, t.ctx);
      expect([r4.headers.get("x-fairspec-params-version"), r4.headers.get("x-fairspec-policy"), r4.headers.get("x-fairspec-pool"), r4.headers.get("x-origin")]).toEqual([run2, "maxmin", "pool-bal", "other"]);
      await r4.text();
      const r5 = await chat(edge, key.key, t.ctx);
      expect(r5.status).toBe(401);
      // Restore: the seeded run active again, globex on throughput.
      await store.activate(seeded.runId, { force: true });
      await store.setTenantPolicy("globex", { kind: "throughput" });
    } finally {
      store.close();
    }
  });

  it("an unknown key is remembered as unknown for the negative TTL (no round trip per attempt)", async () => {
    const clock = fakeClock();
    const edge = makeEdge(clock);
    const t = pendingCtx();
    const bogus = `fs_${"Z".repeat(32)}`;
    expect((await chat(edge, bogus, t.ctx)).status).toBe(401);
    const n = hrana.pipelines;
    for (let i = 0; i < 5; i++) expect((await chat(edge, bogus, t.ctx)).status).toBe(401);
    expect(hrana.pipelines).toBe(n);
  });
});

describe("libSQL outages", () => {
  async function warm(edge: EdgeApp, t: ReturnType<typeof pendingCtx>) {
    for (const key of [seeded.keys.acme, seeded.keys.globex]) {
      const r = await chat(edge, key, t.ctx);
      expect(r.status).toBe(200);
      await r.text();
    }
    await t.settle();
  }

  it("unreachable mid-run (connection refused): 0 failed requests, last-known-good params, telemetry kept and written after", async () => {
    const clock = fakeClock();
    const edge = makeEdge(clock);
    const t = pendingCtx();
    await warm(edge, t);
    const written = edge.state.telemetry.stats.written;
    await hrana.setMode("refuse");
    const statuses: number[] = [];
    const versions = new Set<string | null>();
    for (let i = 0; i < 40; i++) {
      // Every few requests the entries go stale, so refreshes are tried (and fail) throughout.
      if (i % 5 === 0) clock.advance(TTL.keyTtlMs + TTL.retryMs + 1);
      const r = await chat(edge, i % 2 ? seeded.keys.acme : seeded.keys.globex, t.ctx, { stream: i % 3 === 0 });
      statuses.push(r.status);
      versions.add(r.headers.get("x-fairspec-params-version"));
      await r.text();
      await t.settle();
    }
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect([...versions]).toEqual([seeded.runId]);
    expect(edge.state.params.stats.loadErrors).toBeGreaterThan(0);
    expect(edge.state.telemetry.stats.failedWrites).toBeGreaterThan(0);
    expect(edge.state.telemetry.buffered).toBe(40);
    const health = (await (await edge.app.request("/healthz")).json()) as { params_version: string; params_fresh: boolean; params_error: string | null };
    expect(health).toMatchObject({ params_version: seeded.runId, params_fresh: false });
    expect(health.params_error).toBeTruthy();
    // Back up: the next flush writes everything that was kept.
    await hrana.setMode("up");
    clock.advance(TTL.retryMs + 1);
    await (await chat(edge, seeded.keys.acme, t.ctx)).text();
    await t.settle();
    expect(edge.state.telemetry.buffered).toBe(0);
    expect(edge.state.telemetry.stats.written - written).toBe(41);
  });

  it("a telemetry write whose reply is lost after the commit is retried without duplicating rows", async () => {
    const clock = fakeClock();
    const edge = makeEdge(clock);
    const t = pendingCtx();
    await warm(edge, t);
    // Straight to the file: the endpoint is about to drop replies.
    const file = createFileClient({ url: `file:${dbPath}` });
    const count = async () => Number((await file.execute("SELECT count(*) AS n FROM telemetry")).rows[0]!.n);
    const before = await count();
    await hrana.setMode("lose-reply");
    await (await chat(edge, seeded.keys.acme, t.ctx)).text();
    await t.settle();
    // The INSERT committed, but the edge never heard so: it keeps the row for the next flush.
    expect(edge.state.telemetry.stats.failedWrites).toBeGreaterThan(0);
    expect(edge.state.telemetry.buffered).toBe(1);
    expect(await count()).toBe(before + 1);
    await hrana.setMode("up");
    clock.advance(TTL.retryMs + 1);
    await (await chat(edge, seeded.keys.acme, t.ctx)).text();
    await t.settle();
    expect(edge.state.telemetry.buffered).toBe(0);
    expect(await count()).toBe(before + 2);
    file.close();
  });

  it("slow (hanging) mid-run: requests never wait for it", async () => {
    const clock = fakeClock();
    const edge = makeEdge(clock);
    const t = pendingCtx();
    await warm(edge, t);
    await hrana.setMode("hang");
    clock.advance(TTL.keyTtlMs + 1);
    const rs = await Promise.all(Array.from({ length: 10 }, (_, i) => chat(edge, i % 2 ? seeded.keys.acme : seeded.keys.globex, t.ctx)));
    expect(rs.map((r) => r.status)).toEqual(Array(10).fill(200));
    await Promise.all(rs.map((r) => r.text()));
    // The refreshes are still hanging: the responses above did not wait for them.
    expect(edge.state.params.peek("active")!.fresh).toBe(false);
    await hrana.setMode("up"); // drops the hanging requests
    await t.settle();
  });

  it("a cold isolate during an outage: unseen keys get 503 + Retry-After (fail closed); health still answers", async () => {
    await hrana.setMode("refuse");
    const edge = makeEdge(fakeClock());
    const t = pendingCtx();
    const r = await chat(edge, seeded.keys.acme, t.ctx);
    expect(r.status).toBe(503);
    expect(r.headers.get("retry-after")).toBe("1");
    expect(await r.json()).toMatchObject({ error: { type: "service_unavailable_error", code: "auth_unavailable", param: null } });
    // Within retryMs a second attempt fails at once, without another wait on the database.
    expect((await chat(edge, seeded.keys.acme, t.ctx)).status).toBe(503);
    const h = await edge.app.request("/healthz");
    expect(h.status).toBe(200);
    expect(await h.json()).toMatchObject({ params_version: null });
    await t.settle();
  });

  it("nothing ever loaded (keys known, params never read) and the database down: the configured default pool serves", async () => {
    const clock = fakeClock();
    const edge = makeEdge(clock);
    const t = pendingCtx();
    // /v1/models authenticates (warming the key) but does not read params.
    expect((await edge.app.request("/v1/models", { headers: { authorization: `Bearer ${seeded.keys.acme}` } }, {}, t.ctx)).status).toBe(200);
    await hrana.setMode("refuse");
    const r = await chat(edge, seeded.keys.acme, t.ctx);
    expect(r.status).toBe(200);
    expect([r.headers.get("x-fairspec-pool"), r.headers.get("x-fairspec-params-version"), r.headers.get("x-origin")]).toEqual(["default", "default", "default"]);
    expect(r.headers.get("x-fairspec-policy")).toBeNull();
    await r.text();
    expect(dflt.requests.at(-1)!.body.speculative).toEqual({ drafter: "base", gamma: 2, proposal_temperature: null });
    await hrana.setMode("up");
    clock.advance(TTL.retryMs + 1);
    const again = await chat(edge, seeded.keys.acme, t.ctx);
    expect(again.headers.get("x-fairspec-params-version")).toBe(seeded.runId);
    await again.text();
    await t.settle();
  });
});
