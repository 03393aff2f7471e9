import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import type { CalibrationRun, TaskMeasurement, TaskParams } from "../core/calibration.ts";
import { findRegressions, openStore, RegressionError, StoreInputError, type Store } from "../calibrator/store.ts";

const dir = mkdtempSync(join(tmpdir(), "fairspec-store-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
const freshUrl = () => `file:${join(dir, `store-${++n}.db`)}`;

const TASKS = ["en", "ja", "code-py"] as const;

function measurement(task: string, drafter: string, alpha: number): TaskMeasurement {
  return {
    task,
    drafter,
    mitigation: "none",
    targetTemperature: 1,
    proposalTemperature: 1,
    alpha: { estimate: alpha, lo: alpha - 0.03, hi: alpha + 0.03 },
    crossEntropy: { estimate: 1.2345678901234567, lo: 1.1, hi: 1.4 },
    kl: { estimate: 0.3, lo: 0.25, hi: 0.35 },
    meanTv: 0.21,
    pinskerBound: 1 - Math.sqrt(0.3 / 2),
    boundHolds: alpha >= 1 - Math.sqrt(0.3 / 2),
    prompts: 24,
    positions: 2300,
  };
}

/** A run whose worst-task speed-up under each policy is `worst`, and whose U is `u`. */
function makeRun(o: { worst?: number; u?: number; uAfter?: number | null; configHash?: string } = {}): CalibrationRun {
  const worst = o.worst ?? 1.5;
  const speed: Record<string, number> = { en: worst + 0.8, ja: worst, "code-py": worst + 0.4 };
  const params: TaskParams[] = [];
  for (const policyId of ["throughput", "maxmin"]) {
    for (const task of TASKS) {
      const s = speed[task]!;
      params.push({
        policyId,
        task,
        targetTemperature: 1,
        poolId: task === "ja" ? "bal-g3" : "base-g5",
        drafter: task === "ja" ? "balanced" : "base",
        gamma: task === "ja" ? 3 : 5,
        proposalTemperature: task === "ja" ? 0.7 : null,
        predictedSpeedup: { estimate: s, lo: s - 0.1, hi: s + 0.1 },
        measuredSpeedup: task === "en" ? { estimate: s - 0.05, lo: s - 0.2, hi: s + 0.1 } : null,
        msPerChar: task === "en" ? 0.42 : null,
      });
    }
  }
  return {
    configHash: o.configHash ?? "cfg-abc123",
    hardware: { cpu: "test", cores: 2, ort: { backend: "node" } },
    startedAt: "2025-06-01T10:00:00.000Z",
    finishedAt: "2025-06-01T11:30:00.000Z",
    summary: {
      worstSpeedup: { throughput: worst, maxmin: worst },
      meanSpeedup: { throughput: worst + 0.4, maxmin: worst + 0.4 },
      unfairnessU: o.u ?? 0.02,
      unfairnessUAfter: o.uAfter === undefined ? null : o.uAfter,
      referenceTemperature: 1,
    },
    measurements: TASKS.flatMap((t, i) => [measurement(t, "base", 0.8 - 0.1 * i), measurement(t, "balanced", 0.75)]),
    pools: [
      { id: "base-g5", kind: "fairspec", drafter: "base", gamma: 5, proposalTemperature: null, urls: ["http://127.0.0.1:8101"] },
      { id: "bal-g3", kind: "vllm", drafter: "balanced", gamma: 3, proposalTemperature: 0.7, urls: ["http://127.0.0.1:8102", "http://127.0.0.1:8103"] },
    ],
    policies: [
      { id: "throughput", policy: { kind: "throughput" }, maxPools: 2 },
      { id: "maxmin", policy: { kind: "maxmin" }, maxPools: 2 },
    ],
    params,
  };
}

/** Row counts of every table that holds a run's data, for one run id (or all runs). */
async function rowsOf(store: Store, runId?: string) {
  const count = async (table: string) => {
    const where = runId === undefined ? "" : ` WHERE ${table === "calibration_runs" ? "id" : "run_id"} = '${runId}'`;
    const r = await store.db.$client.execute(`SELECT count(*) AS n FROM ${table}${where}`);
    return Number(r.rows[0]!.n);
  };
  const tables = ["calibration_runs", "task_measurements", "pools", "run_policies", "task_params"];
  return Object.fromEntries(await Promise.all(tables.map(async (t) => [t, await count(t)] as const)));
}

describe("calibration store", () => {
  let store: Store;
  let url: string;
  beforeEach(async () => {
    url = freshUrl();
    store = await openStore(url);
  });
  afterEach(() => store.close());

  it("saves a run and reads every part of it back", async () => {
    const run = makeRun();
    const id = await store.saveRun(run);
    expect(id).toMatch(/^run_\d{8}T\d{6}Z_[a-z2-7]{8}$/);

    const got = await store.getRun(id);
    expect(got).toMatchObject({ id, configHash: run.configHash, hardware: run.hardware, status: "complete", startedAt: run.startedAt, finishedAt: run.finishedAt });
    expect(got!.summary).toEqual(run.summary);
    expect(await store.getRun("run_nope")).toBeNull();

    expect(await store.measurements(id)).toEqual(run.measurements);
    expect(await store.pools(id)).toEqual([...run.pools].sort((a, b) => a.id.localeCompare(b.id)));
    expect(await store.policies(id)).toEqual([...run.policies].sort((a, b) => a.id.localeCompare(b.id)));

    const key = (p: TaskParams) => `${p.policyId}|${p.task}`;
    const sorted = (ps: TaskParams[]) => [...ps].sort((a, b) => key(a).localeCompare(key(b)));
    expect(sorted(await store.taskParams(id))).toEqual(sorted(run.params));
    const maxmin = await store.taskParams(id, "maxmin");
    expect(maxmin).toHaveLength(TASKS.length);
    expect(sorted(maxmin)).toEqual(sorted(run.params.filter((p) => p.policyId === "maxmin")));

    const list = await store.listRuns();
    expect(list.map((r) => [r.id, r.active])).toEqual([[id, false]]);
    expect(await store.activeRun()).toBeNull();
  });

  it("says clearly what is wrong with bad input", async () => {
    await expect(store.taskParams("run_x")).rejects.toThrow(/unknown run 'run_x' — list runs with `npx fairspec runs`/);
    await expect(store.measurements("run_x")).rejects.toBeInstanceOf(StoreInputError);
    const id = await store.saveRun(makeRun());
    await expect(store.taskParams(id, "floor:0.7")).rejects.toThrow(/has no policy 'floor:0.7' — it has: maxmin, throughput/);
    const bad = makeRun();
    bad.params[2]!.predictedSpeedup.lo = Number.NaN;
    await expect(store.saveRun(bad)).rejects.toThrow(/invalid calibration run: params\[2\]\.predictedSpeedup\.lo/);
    expect((await rowsOf(store)).calibration_runs).toBe(1);
  });

  it("writes a run atomically: a failure midway leaves no row of it", async () => {
    const good = await store.saveRun(makeRun());
    const before = await rowsOf(store);

    // The last param names a pool the run does not define: the composite foreign key fails after
    // the run row, measurements, pools, policies and the other params were sent.
    const dangling = makeRun({ configHash: "cfg-dangling" });
    dangling.params[dangling.params.length - 1]!.poolId = "no-such-pool";
    await expect(store.saveRun(dangling)).rejects.toThrow(/nothing was written: .*names pool 'no-such-pool'/);

    // The last param duplicates another (same run, policy, task, temperature): UNIQUE fails.
    const dup = makeRun({ configHash: "cfg-dup" });
    dup.params.push({ ...dup.params[0]! });
    await expect(store.saveRun(dup)).rejects.toThrow(/nothing was written/);

    expect(await rowsOf(store)).toEqual(before);
    const runs = await store.listRuns();
    expect(runs.map((r) => r.id)).toEqual([good]);
    const orphans = await store.db.$client.execute(
      "SELECT (SELECT count(*) FROM task_measurements WHERE run_id != ?1) + (SELECT count(*) FROM pools WHERE run_id != ?1) + (SELECT count(*) FROM task_params WHERE run_id != ?1) AS n",
      [good],
    );
    expect(Number(orphans.rows[0]!.n)).toBe(0);
  });

  it("activates runs behind the regression guard; force overrides; rollback re-activates the previous run", async () => {
    const a = await store.saveRun(makeRun({ worst: 1.5, u: 0.02 }));
    const first = await store.activate(a, { tolerance: { worstSpeedup: undefined, unfairness: undefined } });
    expect(first).toMatchObject({ runId: a, previousRunId: null, changed: true, forced: false });
    expect((await store.activeRun())?.id).toBe(a);
    expect((await store.activate(a)).changed).toBe(false);

    // Within tolerance: 1.5 → 1.44 is −4% (< 5%), U 0.02 → 0.0215 is +7.5% (< 10%).
    const b = await store.saveRun(makeRun({ worst: 1.44, u: 0.0215 }));
    expect(await store.activate(b)).toMatchObject({ runId: b, previousRunId: a, forced: false });

    // Worse: worst-task speed-up 1.44 → 1.2 (−16.7%).
    const c = await store.saveRun(makeRun({ worst: 1.2, u: 0.0215 }));
    const refused = await store.activate(c, { tolerance: { worstSpeedup: undefined } }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(RegressionError);
    const msg = (refused as Error).message;
    expect(msg).not.toContain("\n");
    expect(msg).toMatch(/worst-task speed-up under 'throughput' 1\.440× → 1\.200× \(−16\.7%/);
    expect(msg).toMatch(/use --force to override$/);
    expect((await store.activeRun())?.id).toBe(b);

    // U after s-CDF counts when present: 0.0215 → 0.03 (+39.5%) is refused, a looser tolerance lets it through.
    const d = await store.saveRun(makeRun({ worst: 1.44, u: 0.001, uAfter: 0.03 }));
    await expect(store.activate(d)).rejects.toThrow(/U 0\.02150 → 0\.03000 \(\+39\.5%, tolerance \+10\.0%\)/);
    expect((await store.activate(d, { tolerance: { unfairness: 0.5 } })).runId).toBe(d);

    // Force overrides, and the activation says so.
    const forced = await store.activate(c, { force: true });
    expect(forced).toMatchObject({ runId: c, previousRunId: d, forced: true });
    expect(forced.overridden.map((r) => r.kind)).toEqual(["worst-speedup", "worst-speedup"]);
    const active = await store.activeRun();
    expect(active).toMatchObject({ id: c, forced: true });
    expect(active!.reason).toMatch(/^activate --force over: /);
    expect((await store.listRuns()).filter((r) => r.active).map((r) => r.id)).toEqual([c]);

    // Rollback appends a row re-activating the run before; history is kept.
    expect(await store.rollback()).toEqual({ runId: d, previousRunId: c });
    expect((await store.activeRun())?.id).toBe(d);
    expect(await store.rollback()).toEqual({ runId: c, previousRunId: d });
    const history = await store.db.$client.execute("SELECT run_id FROM activations ORDER BY id");
    expect(history.rows.map((r) => r.run_id)).toEqual([a, b, d, c, d, c]);
  });

  it("refuses unknown and non-complete runs, and a rollback with nothing before", async () => {
    await expect(store.rollback()).rejects.toThrow(/no run is active/);
    await expect(store.activate("run_missing")).rejects.toThrow("unknown run 'run_missing' — list runs with `npx fairspec runs`");
    const a = await store.saveRun(makeRun());
    await store.db.$client.execute({ sql: "UPDATE calibration_runs SET status = 'failed' WHERE id = ?", args: [a] });
    await expect(store.activate(a)).rejects.toThrow(/is failed, not complete/);
    await store.db.$client.execute({ sql: "UPDATE calibration_runs SET status = 'complete' WHERE id = ?", args: [a] });
    await store.activate(a);
    await expect(store.rollback()).rejects.toThrow(/no earlier run to roll back to/);
    await expect(store.activate(a, { tolerance: { worstSpeedup: -1 } })).rejects.toThrow(/tolerance\.worstSpeedup must be a number >= 0/);
  });

  it("stores API keys only as hashes; finds the tenant by key; revoked and wrong keys fail", async () => {
    const t = await store.createTenant({ id: "acme", name: "Acme", defaultTask: "ja" });
    expect(t).toMatchObject({ id: "acme", name: "Acme", defaultTask: "ja" });
    await expect(store.createTenant({ id: "acme", name: "Again", defaultTask: "en" })).rejects.toThrow("tenant 'acme' already exists");
    await expect(store.createApiKey("nobody")).rejects.toThrow(/unknown tenant 'nobody'/);

    const { id, key, prefix } = await store.createApiKey("acme");
    expect(key).toMatch(/^fs_[A-Za-z0-9_-]{32}$/);
    expect(prefix).toBe(key.slice(0, 8));
    const other = await store.createApiKey("acme");
    expect(other.key).not.toBe(key);

    expect(await store.findTenantByKey(key)).toMatchObject({ id: "acme", name: "Acme", defaultTask: "ja", keyId: id });
    const wrong = key.slice(0, -1) + (key.endsWith("A") ? "B" : "A");
    expect(await store.findTenantByKey(wrong)).toBeNull();
    expect(await store.findTenantByKey("")).toBeNull();
    expect(await store.findTenantByKey("not a key")).toBeNull();

    await store.revokeApiKey(id);
    await store.revokeApiKey(id); // idempotent
    expect(await store.findTenantByKey(key)).toBeNull();
    expect((await store.findTenantByKey(other.key))?.keyId).toBe(other.id);
    await expect(store.revokeApiKey("key_nope")).rejects.toThrow("unknown API key 'key_nope'");
    const listed = await store.listApiKeys("acme");
    expect(listed.map((k) => `${k.id}:${k.revokedAt !== null}`).sort()).toEqual([`${id}:true`, `${other.id}:false`].sort());
    expect(listed.every((k) => k.tenantId === "acme" && k.prefix.length === 8)).toBe(true);

    // The raw keys appear nowhere in the database files; their hashes do.
    store.close();
    const path = url.slice("file:".length);
    const files = readdirSync(dir).filter((f) => join(dir, f).startsWith(path));
    const bytes = Buffer.concat(files.map((f) => readFileSync(join(dir, f))));
    expect(bytes.length).toBeGreaterThan(0);
    for (const raw of [key, other.key]) {
      expect(bytes.includes(Buffer.from(raw))).toBe(false);
      expect(bytes.includes(Buffer.from(raw.slice(8)))).toBe(false);
    }
    const { createHash } = await import("node:crypto");
    expect(bytes.includes(Buffer.from(createHash("sha256").update(key).digest("hex")))).toBe(true);
    store = await openStore(url);
  });

  it("keeps one policy per tenant", async () => {
    await store.createTenant({ id: "beta", name: "Beta", defaultTask: "en" });
    expect(await store.getTenantPolicy("beta")).toBeNull();
    await store.setTenantPolicy("beta", { kind: "floor", ratio: 0.7 });
    expect(await store.getTenantPolicy("beta")).toEqual({ kind: "floor", ratio: 0.7 });
    await store.setTenantPolicy("beta", { kind: "maxmin" });
    expect(await store.getTenantPolicy("beta")).toEqual({ kind: "maxmin" });
    await expect(store.setTenantPolicy("beta", { kind: "floor", ratio: 2 })).rejects.toThrow(/floor needs r in \[0, 1\]/);
    await expect(store.setTenantPolicy("ghost", { kind: "maxmin" })).rejects.toThrow(/unknown tenant 'ghost'/);

    // ensureTenant: create-or-update, policy included.
    await store.ensureTenant({ id: "beta", name: "Beta Corp", defaultTask: "ja" }, { kind: "alpha-fair", alpha: 2 });
    expect(await store.getTenant("beta")).toMatchObject({ name: "Beta Corp", defaultTask: "ja" });
    expect(await store.getTenantPolicy("beta")).toEqual({ kind: "alpha-fair", alpha: 2 });
    await store.ensureTenant({ id: "gamma", name: "Gamma", defaultTask: "code-py" });
    expect(await store.getTenantPolicy("gamma")).toBeNull();
  });

  it("round-trips checkpoints per config hash", async () => {
    expect(await store.getCheckpoint("h1", "costs")).toBeUndefined();
    await store.putCheckpoint("h1", "costs", { verifierStepMs: 3.25, drafters: [{ id: "base", c: 0.05 }] });
    await store.putCheckpoint("h1", "task:ja", [1, 2, 3]);
    await store.putCheckpoint("h2", "costs", "other");
    expect(await store.getCheckpoint("h1", "costs")).toEqual({ verifierStepMs: 3.25, drafters: [{ id: "base", c: 0.05 }] });
    await store.putCheckpoint("h1", "task:ja", [4]); // overwrite
    expect(await store.getCheckpoint("h1", "task:ja")).toEqual([4]);
    expect((await store.listCheckpoints("h1")).map((c) => c.key).sort()).toEqual(["costs", "task:ja"]);
    await expect(store.putCheckpoint("h1", "x", undefined)).rejects.toThrow(/needs a value/);

    // Checkpoints are never runs.
    expect(await store.listRuns()).toEqual([]);
    expect(await store.activeRun()).toBeNull();

    expect(await store.clearCheckpoints("h1")).toBe(2);
    expect(await store.listCheckpoints("h1")).toEqual([]);
    expect(await store.getCheckpoint("h2", "costs")).toBe("other");
  });

  it("keeps everything when the same file is reopened (migrations are idempotent)", async () => {
    const a = await store.saveRun(makeRun({ worst: 1.5 }));
    const b = await store.saveRun(makeRun({ worst: 1.6 }));
    await store.activate(a);
    await store.activate(b);
    await store.createTenant({ id: "acme", name: "Acme", defaultTask: "en" });
    const { key } = await store.createApiKey("acme");
    await store.putCheckpoint("h", "k", { done: true });
    store.close();

    for (let i = 0; i < 2; i++) {
      store = await openStore(url);
      const migrations = await store.db.$client.execute("SELECT count(*) AS n FROM __drizzle_migrations");
      expect(Number(migrations.rows[0]!.n)).toBe(readdirSync(new URL("../migrations/", import.meta.url)).filter((f) => f.endsWith(".sql")).length);
      expect((await store.listRuns()).map((r) => r.id).sort()).toEqual([a, b].sort());
      expect((await store.activeRun())?.id).toBe(b);
      expect(await store.taskParams(a)).toHaveLength(6);
      expect((await store.findTenantByKey(key))?.id).toBe("acme");
      expect(await store.getCheckpoint("h", "k")).toEqual({ done: true });
      store.close();
    }
    store = await openStore(url);
    expect((await store.rollback()).runId).toBe(a);
  });

  it("rejects a database URL that is not libSQL", async () => {
    await expect(openStore("postgres://x")).rejects.toThrow(/must be a libSQL URL/);
  });
});

describe("findRegressions", () => {
  const summary = (worst: Record<string, number>, u: number, uAfter: number | null = null) => ({ worstSpeedup: worst, meanSpeedup: worst, unfairnessU: u, unfairnessUAfter: uAfter });

  it("allows drops and rises within tolerance, boundaries included", () => {
    expect(findRegressions(summary({ p: 2 }, 0.1), summary({ p: 1.9 }, 0.11))).toEqual([]);
    expect(findRegressions(summary({ p: 2 }, 0.1), summary({ p: 3, q: 1 }, 0.01))).toEqual([]);
  });

  it("names each regression", () => {
    const r = findRegressions(summary({ p: 2, q: 1.5 }, 0.1, 0.05), summary({ p: 1.8 }, 0.01, 0.08), { worstSpeedup: 0.05, unfairness: 0.1 });
    expect(r).toEqual([
      { kind: "worst-speedup", policyId: "p", before: 2, after: 1.8, tolerance: 0.05 },
      { kind: "missing-policy", policyId: "q", before: 1.5 },
      { kind: "unfairness", before: 0.05, after: 0.08, tolerance: 0.1 },
    ]);
  });
});
