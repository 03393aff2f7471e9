/**
 * Fuzz: generated malformed and hostile requests (test/reliability/hostile.ts, seeded, so every
 * run sends the same cases) against
 *
 * - the edge app in process (`app.request`): 10,000 cases, the real ONNX task classifier, a real
 *   libSQL file store, every origin a working trivial origin — so a valid request must be
 *   answered 200 and any 5xx is the input's doing;
 * - the origin app in process on the bundled models: 1,000 cases, a few tokens each;
 * - the edge's Node entry over a real socket: raw HTTP/1.1 bytes no `Request` can carry
 *   (test/reliability/raw-http.ts) and seeded garbage.
 *
 * Proves: no input produces a 5xx, every error is OpenAI's shape, valid requests in the mix are
 * served, the process neither crashes nor logs an internal error nor leaves an unhandled
 * rejection, and nothing pollutes Object.prototype. Counts per category and status are printed;
 * bench/soak.ts runs the same at full size. Two bugs found outside this suite's files are counted
 * apart and pinned with `it.fails` (test/reliability/known-bugs.ts): deep nesting in a
 * passed-through field → 502, and a client leaving mid-body logged as an internal error.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadTaskClassifier } from "../functions/classifier-node.ts";
import { startNodeEdge, type RunningEdge } from "../functions/node.ts";
import { runFuzz, statusTable, type FuzzStats } from "./reliability/fuzz.ts";
import { startEdgeFixture, originTarget, ORIGIN_MODEL, type EdgeFixture } from "./reliability/fixtures.ts";
import { CATEGORIES, generateCases } from "./reliability/hostile.ts";
import { garbageCases, rawCases, runRawCases, sendRaw } from "./reliability/raw-http.ts";

const EDGE_SEED = 20_261_204;
const ORIGIN_SEED = 4_242;

/** Unhandled rejections and uncaught exceptions while a block runs. */
function trapProcessErrors() {
  const seen: string[] = [];
  const onRejection = (e: unknown) => void seen.push(`unhandledRejection: ${(e as Error)?.message ?? String(e)}`);
  const onException = (e: Error) => void seen.push(`uncaughtException: ${e.message}`);
  process.on("unhandledRejection", onRejection);
  process.on("uncaughtException", onException);
  return {
    seen,
    stop() {
      process.off("unhandledRejection", onRejection);
      process.off("uncaughtException", onException);
    },
  };
}

function expectNoViolations(s: FuzzStats) {
  expect(s.violations, JSON.stringify(s.violations.slice(0, 10), null, 1)).toEqual([]);
}

const PROTO_KEYS = Object.getOwnPropertyNames(Object.prototype).sort();
function expectPrototypeClean() {
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(PROTO_KEYS);
}

describe("edge: 10,000 hostile requests through app.request", () => {
  let f: EdgeFixture;
  beforeAll(async () => {
    f = await startEdgeFixture({ classifier: await loadTaskClassifier() });
  });
  afterAll(async () => {
    await f?.close();
  });

  it("no 5xx from input, every error in OpenAI's shape, valid requests served, no crash, no internal error", async () => {
    const cases = generateCases(10_000, EDGE_SEED, { target: "edge", model: "fairspec" });
    const trap = trapProcessErrors();
    let s: FuzzStats;
    try {
      s = await runFuzz(cases, f.target(), { seed: EDGE_SEED, concurrency: 8 });
      await f.settle();
    } finally {
      trap.stop();
    }
    console.log(`${statusTable(s)}\nknown bugs: ${JSON.stringify(s.knownBugs)}`);
    expectNoViolations(s);
    expect(trap.seen).toEqual([]);
    expect(f.logs.filter((l) => l.event === "internal_error")).toEqual([]);
    expectPrototypeClean();
    // Every category ran, and the control group was large and all served.
    for (const c of CATEGORIES) expect(Object.values(s.byCategory[c]!).reduce((a, b) => a + b, 0), c).toBeGreaterThan(0);
    expect(s.byCategory.valid!["200"]).toBeGreaterThan(500);
    expect(Object.keys(s.byCategory.valid!)).toEqual(["200"]);
    expect(s.sent).toBeGreaterThan(9_000);
    // Still healthy afterwards: health, a normal request, telemetry written.
    const h = await f.edge.app.request("/healthz", {}, {}, f.ctx);
    expect(h.status).toBe(200);
    const r = await f.edge.app.request(
      "/v1/chat/completions",
      { method: "POST", headers: { authorization: `Bearer ${f.keys.own}` }, body: JSON.stringify({ model: "fairspec", messages: [{ role: "user", content: "still there?" }] }) },
      {},
      f.ctx,
    );
    expect(r.status).toBe(200);
    await r.text();
    await f.settle();
    await f.edge.state.telemetry.flush();
    expect(f.edge.state.telemetry.stats.failedWrites).toBe(0);
  });

  // Regression: a value nested deeper than JSON.stringify's stack once became a 502 (the forwarded
  // body was serialised inside dispatch, so the overflow looked like a connect error).
  it("a 5,000-deep value in a passed-through field is answered with a 4xx or 200, not a 5xx", async () => {
    const nested = "[".repeat(5_000) + "]".repeat(5_000);
    const r = await f.edge.app.request(
      "/v1/chat/completions",
      { method: "POST", headers: { authorization: `Bearer ${f.keys.own}` }, body: `{"model":"fairspec","messages":[{"role":"user","content":"hi"}],"metadata":${nested}}` },
      {},
      f.ctx,
    );
    await r.text();
    expect(r.status).toBeLessThan(500);
  });
});

describe("origin: 1,000 hostile requests through app.request (bundled models, max_tokens ≤ 3)", () => {
  it("no 5xx, every error in OpenAI's shape, valid requests answered, no crash", async () => {
    const t = await originTarget();
    const cases = generateCases(1_000, ORIGIN_SEED, { target: "origin", model: ORIGIN_MODEL });
    const trap = trapProcessErrors();
    let s: FuzzStats;
    try {
      s = await runFuzz(cases, t, { seed: ORIGIN_SEED, concurrency: 2 });
    } finally {
      trap.stop();
    }
    console.log(statusTable(s));
    expectNoViolations(s);
    expect(trap.seen).toEqual([]);
    expectPrototypeClean();
    expect(s.byCategory.valid!["200"]).toBeGreaterThan(50);
    expect(Object.keys(s.byCategory.valid!)).toEqual(["200"]);
  });
});

describe("edge Node entry: raw HTTP/1.1 bytes over a socket", () => {
  let f: EdgeFixture;
  let node: RunningEdge;
  const logs: { event: string; fields: Record<string, unknown> }[] = [];
  beforeAll(async () => {
    f = await startEdgeFixture();
    node = await startNodeEdge({ config: f.config, dbUrl: `file:${f.dbPath}`, adminToken: f.adminToken, classifier: null, port: 0, log: (event, fields) => logs.push({ event, fields }) });
  });
  afterAll(async () => {
    await node?.close();
    await f?.close();
  });

  it("framing attacks, injected header lines, oversized blocks, truncated clients and garbage: no 5xx, no crash, errors in shape", async () => {
    const port = Number(new URL(node.url).port);
    const body = JSON.stringify({ model: "fairspec", messages: [{ role: "user", content: "Hello there" }] });
    const cases = [...rawCases(f.keys.own, body), ...garbageCases(60, EDGE_SEED, f.keys.own, body)];
    const trap = trapProcessErrors();
    let raw: Awaited<ReturnType<typeof runRawCases>>;
    try {
      raw = await runRawCases(port, cases);
      // Still serving.
      const ok = await fetch(`${node.url}/v1/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${f.keys.own}` }, body });
      expect(ok.status).toBe(200);
      await ok.text();
      expect((await fetch(`${node.url}/healthz`)).status).toBe(200);
    } finally {
      trap.stop();
    }
    console.log(`raw HTTP: ${cases.length} cases; replies ${JSON.stringify(raw.replies)}`);
    expect(raw.problems).toEqual([]);
    expect(trap.seen).toEqual([]);
    expect(logs.filter((l) => l.event === "internal_error")).toEqual([]);
  });

  // Regression: a client leaving mid-body used to reach onError as an internal error.
  it("a client that leaves mid-body is not logged as an internal error", async () => {
    const port = Number(new URL(node.url).port);
    const before = logs.length;
    await sendRaw(port, {
      label: "short body, reset",
      data: (h) => Buffer.from(`POST /v1/chat/completions HTTP/1.1\r\nHost: ${h}\r\nAuthorization: Bearer ${f.keys.own}\r\nContent-Length: 1000\r\n\r\n{"model":`),
      then: { pauseMs: 100, destroy: true },
      expect: "none",
    });
    await new Promise((r) => setTimeout(r, 200));
    expect(logs.slice(before).filter((l) => l.event === "internal_error")).toEqual([]);
  });
});
