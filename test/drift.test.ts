/**
 * Drift: the acceptance-rate → α conversion, the ratio estimator's interval, and the whole check
 * on synthetic telemetry with a known α in a real libSQL file (and through the CLI command).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { CalibrationRun, TaskMeasurement, TaskParams } from "../core/calibration.ts";
import { Xoshiro128, type Rng } from "../core/rng.ts";
import { telemetry, type NewTelemetryRow } from "../core/schema.ts";
import {
  acceptanceRateInterval,
  acceptanceRateOf,
  alphaFromAcceptanceRate,
  computeDrift,
  driftReport,
  onlineAlphaFromTotals,
  type RatioSums,
} from "../calibrator/drift.ts";
import { openStore, telemetryGroups, type Store } from "../calibrator/store.ts";
import { driftCmd } from "../cli/drift.ts";

const dir = mkdtempSync(join(tmpdir(), "fairspec-drift-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** One request under the i.i.d. model: `steps` verifier steps of γ drafts, each accepted w.p. α until the first rejection. */
function request(rng: Rng, alpha: number, gamma: number, steps: number): { drafted: number; accepted: number } {
  let accepted = 0;
  for (let s = 0; s < steps; s++) for (let k = 0; k < gamma && rng.uniform() < alpha; k++) accepted++;
  return { drafted: steps * gamma, accepted };
}

function sumsOf(reqs: { drafted: number; accepted: number }[]): RatioSums {
  const s = { requests: 0, drafted: 0, accepted: 0, draftedSq: 0, acceptedSq: 0, acceptedDrafted: 0 };
  for (const r of reqs) {
    s.requests++;
    s.drafted += r.drafted;
    s.accepted += r.accepted;
    s.draftedSq += r.drafted * r.drafted;
    s.acceptedSq += r.accepted * r.accepted;
    s.acceptedDrafted += r.accepted * r.drafted;
  }
  return s;
}

describe("acceptance rate ↔ α (i.i.d. model)", () => {
  it("matches the closed form and inverts it", () => {
    for (const gamma of [1, 2, 3, 5, 8]) {
      for (const alpha of [0, 0.1, 0.37, 0.5, 0.8, 0.99, 1]) {
        const closed = alpha === 1 ? 1 : (alpha - alpha ** (gamma + 1)) / (gamma * (1 - alpha));
        expect(acceptanceRateOf(alpha, gamma)).toBeCloseTo(closed, 12);
        expect(alphaFromAcceptanceRate(acceptanceRateOf(alpha, gamma), gamma)).toBeCloseTo(alpha, 9);
      }
    }
    // accepted / drafted understates α for γ > 1: positions after a rejection count as drafted.
    expect(acceptanceRateOf(0.8, 4)).toBeLessThan(0.8);
    expect(alphaFromAcceptanceRate(1.2, 3)).toBe(1);
    expect(alphaFromAcceptanceRate(-0.1, 3)).toBe(0);
    expect(() => acceptanceRateOf(0.5, 0)).toThrow(RangeError);
  });

  it("the interval from request totals covers the true α about 95% of the time", () => {
    const rng = new Xoshiro128(11);
    const alpha = 0.62;
    const gamma = 4;
    let covered = 0;
    const reps = 200;
    for (let rep = 0; rep < reps; rep++) {
      const reqs = Array.from({ length: 60 }, () => request(rng, alpha, gamma, 3 + Math.floor(rng.uniform() * 20)));
      const est = onlineAlphaFromTotals(sumsOf(reqs), gamma);
      expect(est.lo).toBeLessThanOrEqual(est.alpha);
      expect(est.hi).toBeGreaterThanOrEqual(est.alpha);
      if (est.lo <= alpha && alpha <= est.hi) covered++;
    }
    expect(covered / reps).toBeGreaterThan(0.9);
    expect(covered / reps).toBeLessThan(0.995);
  });

  it("is uninformative with fewer than two requests or nothing drafted", () => {
    expect(acceptanceRateInterval({ requests: 1, drafted: 30, accepted: 20, draftedSq: 900, acceptedSq: 400, acceptedDrafted: 600 })).toMatchObject({ lo: 0, hi: 1 });
    expect(Number.isNaN(onlineAlphaFromTotals({ requests: 0, drafted: 0, accepted: 0, draftedSq: 0, acceptedSq: 0, acceptedDrafted: 0 }, 3).alpha)).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------

const measurement = (task: string, drafter: string, T: number, tau: number, alpha: number): TaskMeasurement => ({
  task,
  drafter,
  mitigation: "none",
  targetTemperature: T,
  proposalTemperature: tau,
  alpha: { estimate: alpha, lo: alpha - 0.02, hi: alpha + 0.02 },
  crossEntropy: { estimate: 1.2, lo: 1.1, hi: 1.3 },
  kl: { estimate: 0.3, lo: 0.25, hi: 0.35 },
  meanTv: 0.2,
  pinskerBound: 0.6,
  boundHolds: true,
  prompts: 8,
  positions: 500,
});

/** Calibrated α = 0.7 for every task (base drafter, τ = 1), en/ja/zh on pool base-g3-t1, code-py on base-g2-t1 at T 0 and 1. */
function fakeRun(): CalibrationRun {
  const tasks = ["en", "ja", "zh", "code-py"];
  const params: TaskParams[] = [];
  for (const task of tasks)
    for (const T of task === "code-py" ? [0, 1] : [1]) {
      const pool = task === "code-py" ? { id: "base-g2-t1", gamma: 2 } : { id: "base-g3-t1", gamma: 3 };
      params.push({ policyId: "throughput", task, targetTemperature: T, poolId: pool.id, drafter: "base", gamma: pool.gamma, proposalTemperature: 1, predictedSpeedup: { estimate: 1.5, lo: 1.4, hi: 1.6 }, measuredSpeedup: null, msPerChar: null });
    }
  return {
    configHash: "drift-test",
    hardware: {},
    startedAt: "2025-06-01T00:00:00.000Z",
    finishedAt: "2025-06-01T01:00:00.000Z",
    summary: { referenceTemperature: 1, worstSpeedup: { throughput: 1.5 }, meanSpeedup: { throughput: 1.5 }, unfairnessU: 0.1, unfairnessUAfter: null },
    measurements: [
      ...tasks.map((t) => measurement(t, "base", 1, 1, 0.7)),
      measurement("code-py", "base", 0, 1, 0.6),
      ...tasks.map((t) => measurement(t, "base", 1, 0, 0.3)), // another τ: must not be picked
    ],
    pools: [
      { id: "base-g3-t1", kind: "fairspec", drafter: "base", gamma: 3, proposalTemperature: 1, urls: [] },
      { id: "base-g2-t1", kind: "fairspec", drafter: "base", gamma: 2, proposalTemperature: 1, urls: [] },
    ],
    policies: [{ id: "throughput", policy: { kind: "throughput" }, maxPools: 2 }],
    params,
  };
}

describe("drift on synthetic telemetry in libSQL", () => {
  let store: Store;
  let url: string;
  const truth = { en: 0.7, ja: 0.45, zh: 0.2, "code-py": 0.66 } as const;

  beforeAll(async () => {
    url = `file:${join(dir, "drift.db")}`;
    store = await openStore(url);
    const runId = await store.saveRun(fakeRun());
    await store.activate(runId);
    const after = new Date(Date.now() + 1000).toISOString(); // after the activation
    const rng = new Xoshiro128(5);
    const rows: NewTelemetryRow[] = [];
    const add = (tenantId: string, task: keyof typeof truth, poolId: string, gamma: number, n: number, createdAt = after) => {
      for (let i = 0; i < n; i++) {
        const r = request(rng, truth[task], gamma, 4 + Math.floor(rng.uniform() * 12));
        rows.push({ tenantId, task, poolId, drafted: r.drafted, accepted: r.accepted, completionTokens: 64, latencyMs: 50, createdAt });
      }
    };
    add("acme", "en", "base-g3-t1", 3, 150); // on calibration: ok
    add("beta", "en", "base-g3-t1", 3, 120); // two tenants → an all-tenants row too
    add("acme", "ja", "base-g3-t1", 3, 200); // far below calibration: drifted
    add("acme", "zh", "base-g3-t1", 3, 3); // far below, but too few drafted tokens
    add("acme", "code-py", "base-g2-t1", 2, 150); // between T 0 (0.6) and T 1 (0.7): ok
    add("acme", "en", "fallback", 3, 5); // not a pool of the run
    add("acme", "ja", "base-g3-t1", 3, 50, "2020-01-01T00:00:00.000Z"); // before the activation: outside the window
    rows.push({ tenantId: "acme", task: "en", poolId: "off", drafted: 0, accepted: 0, completionTokens: 10, latencyMs: 5, createdAt: after }); // γ = 0: ignored
    for (let i = 0; i < rows.length; i += 100) await store.db.insert(telemetry).values(rows.slice(i, i + 100));
  });
  afterAll(() => store.close());
  afterEach(() => vi.restoreAllMocks());

  it("estimates α per tenant, task and pool; flags the drifted task, not the small sample", async () => {
    const r = await driftReport(store);
    expect(r.drifted).toEqual(["ja"]);
    const row = (task: string, tenant = "acme") => r.rows.find((x) => x.task === task && x.tenantId === tenant)!;
    for (const [task, tenant] of [["en", "acme"], ["en", "beta"], ["en", "*"], ["ja", "acme"], ["code-py", "acme"]] as const) {
      const x = row(task, tenant);
      expect(x.online.lo).toBeLessThanOrEqual(truth[task]);
      expect(x.online.hi).toBeGreaterThanOrEqual(truth[task]);
    }
    expect(row("en").status).toBe("ok");
    expect(row("en", "*").requests).toBe(270);
    expect(row("ja").status).toBe("drifted");
    expect(row("ja").calibrated.alpha).toBe(0.7);
    expect(row("ja").gap).toBeGreaterThan(0.05);
    expect(row("ja").requests).toBe(200); // the old rows are outside the window
    expect(row("zh").drafted).toBeLessThan(500);
    expect(row("zh").status).toBe("insufficient");
    expect(row("code-py").calibrated).toMatchObject({ lo: 0.6, hi: 0.7, targetTemperatures: [0, 1] });
    expect(row("code-py").status).toBe("ok");
    expect(r.tasks.map((t) => [t.task, t.status])).toEqual([
      ["ja", "drifted"],
      ["code-py", "ok"],
      ["en", "ok"],
      ["zh", "insufficient"],
    ]);
    expect(r.unmatched).toEqual([expect.objectContaining({ poolId: "fallback", why: expect.stringMatching(/not in the active run/) })]);
  });

  it("tolerance and minimum drafted tokens move the verdict", async () => {
    expect((await driftReport(store, { tolerance: 0.5 })).drifted).toEqual([]);
    expect((await driftReport(store, { minDrafted: 1 })).drifted.sort()).toEqual(["ja", "zh"]);
  });

  it("a window that starts earlier includes older telemetry", async () => {
    const all = await telemetryGroups(store, { since: "2000-01-01T00:00:00.000Z" });
    expect(all.find((g) => g.task === "ja")!.requests).toBe(250);
  });

  it("the same numbers, pure, from the groups", async () => {
    const groups = await telemetryGroups(store, { since: "2000-01-01" });
    const run = fakeRun();
    const r = computeDrift(groups, { runId: "x", referenceTemperature: 1, pools: run.pools, params: run.params, measurements: run.measurements }, { since: "2000-01-01" });
    expect(r.drifted).toContain("ja");
    expect(() => computeDrift(groups, { runId: "x", pools: [], params: [], measurements: [] }, { since: "" }, { tolerance: -1 })).toThrow(RangeError);
  });

  it("npx fairspec drift: text and --json", async () => {
    const out: string[] = [];
    vi.spyOn(console, "log").mockImplementation((s: string) => void out.push(s));
    await driftCmd.run(["--db", url]);
    expect(out[0]).toMatch(/drifted: ja/);
    expect(out[0]).toMatch(/ja\s+acme\s+base-g3-t1\s+3\s+200\s.*DRIFTED/);
    expect(out[0]).toMatch(/too few drafted/);
    expect(out[0]).toMatch(/not compared:\n {2}en \/ acme \/ fallback/);
    await driftCmd.run(["--db", url, "--json", "--since", "2099-01-01", "--tolerance", "0.1", "--min-drafted", "100"]);
    const j = JSON.parse(out[1]!);
    expect(j).toMatchObject({ drifted: [], rows: [], tolerance: 0.1, minDrafted: 100, since: "2099-01-01T00:00:00.000Z" });
    await expect(driftCmd.run(["--db", url, "--since", "yesterday"])).rejects.toThrow(/ISO-8601/);
    await expect(driftCmd.run(["--db", url, "--tolerance", "x"])).rejects.toThrow(/--tolerance/);
    await expect(driftCmd.run(["--db", `file:${join(dir, "missing.db")}`])).rejects.toThrow(/no calibration store/);
    const empty = `file:${join(dir, "empty.db")}`;
    (await openStore(empty)).close();
    await expect(driftCmd.run(["--db", empty])).rejects.toThrow(/no run is active/);
  });
});
