/**
 * The nightly recalibration against a real libSQL file: the lease (a race between connections and
 * between processes: exactly one wins; expiry takeover), the decision (pure), and the job's exit
 * codes — lease held, nothing to do, regression guard, rolled-back inputs, a lease lost mid-run,
 * and one tiny real calibration that is activated.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import type { CalibrationRun, RunSummary } from "../core/calibration.ts";
import { parseConfig } from "../calibrator/config.ts";
import { acquireLease, keepLease, readLease, releaseLease, renewLease } from "../calibrator/lease.ts";
import {
  corporaFingerprint,
  decide,
  EXIT,
  LeaseLostError,
  recalibrate,
  recalibrationSeed,
  runHashOf,
  type RecalibrateOptions,
} from "../calibrator/recalibrate.ts";
import { openStore, type Store } from "../calibrator/store.ts";
import { recalibrateCmd } from "../cli/recalibrate.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "fairspec-recal-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  vi.restoreAllMocks();
  process.exitCode = undefined;
});
let n = 0;
const fresh = async () => {
  const url = `file:${join(dir, `r-${++n}.db`)}`;
  return { url, store: await openStore(url) };
};

// The size the brief asks for: 2 tasks, 3 prompts, 16 tokens, no s-CDF, 1 validation prompt, γ ∈ {0, 1, 2}.
const tiny = {
  models: { verifier: "models/verifier", drafters: { base: "models/drafter-base" } },
  tasks: { en: { corpus: "en" }, ja: { corpus: "ja" } },
  promptsPerTask: 3,
  newTokens: 16,
  targetTemperatures: [1],
  gammas: [0, 1, 2],
  proposalTemperatures: [1],
  maxPools: 2,
  uncalibrated: { drafter: "base", gamma: 2 },
  validation: { prompts: 1, newTokens: 16 },
  scdf: { enabled: false },
  bootstrapResamples: 100,
  seed: 3,
};
const config = parseConfig(tiny);

function fakeRun(configHash: string, summary: Partial<RunSummary> = {}): CalibrationRun {
  return {
    configHash,
    hardware: {},
    startedAt: "2025-06-01T00:00:00.000Z",
    finishedAt: "2025-06-01T01:00:00.000Z",
    summary: { worstSpeedup: { throughput: 1.5, maxmin: 1.4 }, meanSpeedup: { throughput: 1.6, maxmin: 1.5 }, unfairnessU: 0.1, unfairnessUAfter: null, ...summary },
    measurements: [],
    pools: [],
    policies: [],
    params: [],
  };
}

const quiet = { quiet: true, log: () => {} };

describe("lease", () => {
  it("connections racing for a free lease: exactly one wins; the others name it", async () => {
    const { url, store } = await fresh();
    const others = await Promise.all([1, 2, 3, 4, 5].map(() => openStore(url)));
    const all = [store, ...others];
    const got = await Promise.all(all.map((s, i) => acquireLease(s, "calibration", `h${i}`, 60_000)));
    const winners = got.filter((g) => g.acquired);
    expect(winners).toHaveLength(1);
    const winner = winners[0]!.acquired ? winners[0]!.lease : null;
    for (const g of got) if (!g.acquired) expect(g.holder).toBe(winner!.holder);
    // The holder can renew and re-acquire; release frees it for the next one.
    expect(await renewLease(store, "calibration", winner!.holder, 60_000)).not.toBeNull();
    expect(await renewLease(store, "calibration", "nobody", 60_000)).toBeNull();
    expect((await acquireLease(store, "calibration", winner!.holder, 60_000)).acquired).toBe(true);
    expect(await releaseLease(store, "calibration", "nobody")).toBe(false);
    expect(await releaseLease(store, "calibration", winner!.holder)).toBe(true);
    expect(await readLease(store, "calibration")).toBeNull();
    expect((await acquireLease(store.db, "calibration", "next", 60_000)).acquired).toBe(true);
    // Another name is another lease.
    expect((await acquireLease(store.db.$client, "other", "h0", 60_000)).acquired).toBe(true);
    for (const s of all) s.close();
  });

  it("processes racing for it: exactly one wins", async () => {
    const { url, store } = await fresh();
    store.close();
    const start = Date.now() + 1500;
    const script = `
      const { acquireLease } = await import(${JSON.stringify(join(ROOT, "calibrator/lease.ts"))});
      const { createClient } = await import("@libsql/client");
      const c = createClient({ url: ${JSON.stringify(url)} });
      await c.execute("SELECT 1");
      while (Date.now() < ${start}) await new Promise((r) => setTimeout(r, 1));
      const r = await acquireLease(c, "calibration", "proc-" + process.argv[1], 60000);
      console.log(JSON.stringify(r));
      c.close();`;
    const run = promisify(execFile);
    const outs = await Promise.all([0, 1, 2].map((i) => run(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script, String(i)], { cwd: ROOT })));
    const results = outs.map((o) => JSON.parse(o.stdout.trim()));
    expect(results.filter((r) => r.acquired)).toHaveLength(1);
    const holder = results.find((r) => r.acquired).lease.holder;
    for (const r of results.filter((r) => !r.acquired)) expect(r.holder).toBe(holder);
  });

  it("an expired lease is taken over; the old holder then finds it lost", async () => {
    const { store } = await fresh();
    const t0 = new Date("2025-06-01T00:00:00.000Z");
    const at = (ms: number) => ({ now: new Date(t0.getTime() + ms) });
    expect(await acquireLease(store, "calibration", "a", 1000, at(0))).toEqual({ acquired: true, lease: { name: "calibration", holder: "a", expiresAt: "2025-06-01T00:00:01.000Z" } });
    expect(await acquireLease(store, "calibration", "b", 1000, at(500))).toEqual({ acquired: false, holder: "a", expiresAt: "2025-06-01T00:00:01.000Z" });
    expect((await acquireLease(store, "calibration", "b", 1000, at(1500))).acquired).toBe(true);
    expect(await renewLease(store, "calibration", "a", 1000, at(1600))).toBeNull();
    expect(await releaseLease(store, "calibration", "a")).toBe(false);
    // With the database's clock: a 1 ms lease has expired a moment later.
    expect((await acquireLease(store, "db-clock", "a", 1)).acquired).toBe(true);
    await new Promise((r) => setTimeout(r, 30));
    expect((await acquireLease(store, "db-clock", "b", 60_000)).acquired).toBe(true);
    // The keeper notices the takeover.
    const lost = vi.fn();
    const k = keepLease(store, { name: "db-clock", holder: "a", expiresAt: "" }, 60_000, { intervalMs: 10, onLost: lost });
    await vi.waitFor(() => expect(k.lost).toBe(true), { timeout: 10_000 });
    expect(lost).toHaveBeenCalledTimes(1);
    k.stop();
    store.close();
  });
});

describe("decide (pure)", () => {
  const corpora = { "en/test": "a", "en/validation": "b" };
  const active = (rec: object | null, configHash = "h1") => ({ id: "run_1", configHash, summary: { ...fakeRun(configHash).summary, ...(rec ? { recalibration: rec } : {}) } });
  it("names what changed", () => {
    expect(decide({ baseRunHash: "h1", corpora, active: null, drifted: [] })).toMatchObject({ action: "recalibrate", reasons: [{ kind: "no-active-run" }], remeasure: false });
    expect(decide({ baseRunHash: "h1", corpora, active: active({ baseRunHash: "h1", corpora }), drifted: [] })).toMatchObject({ action: "nothing-to-do", reasons: [] });
    expect(decide({ baseRunHash: "h2", corpora, active: active({ baseRunHash: "h1", corpora }), drifted: [] }).reasons).toEqual([{ kind: "config-or-models", active: "h1", now: "h2" }]);
    expect(decide({ baseRunHash: "h1", corpora: { ...corpora, "en/test": "c" }, active: active({ baseRunHash: "h1", corpora }), drifted: [] }).reasons).toEqual([{ kind: "corpora", changed: ["en/test"] }]);
    // A run made by `calibrate` recorded no corpora: that counts as changed; its config hash is the base.
    expect(decide({ baseRunHash: "h1", corpora, active: active(null, "h1"), drifted: [] }).reasons).toEqual([{ kind: "corpora", changed: ["(not recorded by the active run)"] }]);
  });
  it("drift alone re-measures once, then reports that it persists", () => {
    const d = decide({ baseRunHash: "h1", corpora, active: active({ baseRunHash: "h1", corpora }), drifted: ["ja"] });
    expect(d).toEqual({ action: "recalibrate", reasons: [{ kind: "drift", tasks: ["ja"] }], remeasure: true });
    expect(decide({ baseRunHash: "h1", corpora, active: active({ baseRunHash: "h1", corpora, remeasure: true }), drifted: ["ja"] }).action).toBe("drift-persists");
    expect(decide({ baseRunHash: "h1", corpora, active: active({ baseRunHash: "h1", corpora, remeasure: true }), drifted: ["ja"], always: true }).action).toBe("recalibrate");
    expect(decide({ baseRunHash: "h1", corpora, active: active({ baseRunHash: "h1", corpora }), drifted: [], always: true })).toMatchObject({ action: "recalibrate", remeasure: true });
    // Drift with changed inputs: a new measurement anyway, no fresh seed needed.
    expect(decide({ baseRunHash: "h2", corpora, active: active({ baseRunHash: "h1", corpora, remeasure: true }), drifted: ["ja"] })).toMatchObject({ action: "recalibrate", remeasure: false });
  });
});

describe("recalibrate", () => {
  const base = (store: Store, extra: Partial<RecalibrateOptions> = {}): RecalibrateOptions => ({ config, baseDir: ROOT, store, outDir: join(dir, `out-${++n}`), ...quiet, ...extra });
  const fingerprint = corporaFingerprint(config, ROOT);
  const baseHash = runHashOf(config, ROOT);
  const plannedHash = runHashOf({ ...config, seed: recalibrationSeed(config.seed, fingerprint, "") }, ROOT);

  it("the corpora fingerprint covers the slices the config reads", () => {
    expect(Object.keys(fingerprint)).toEqual(["en/test", "en/validation", "ja/test", "ja/validation"]);
    const withTrain = corporaFingerprint(parseConfig({ ...tiny, scdf: { enabled: true } }), ROOT);
    expect(Object.keys(withTrain)).toContain("ja/train");
    const file = join(dir, "prompts.jsonl");
    writeFileSync(file, '{"prompt": "hello"}\n');
    expect(corporaFingerprint(parseConfig({ ...tiny, tasks: { en: { corpus: "en" }, mine: { prompts: file } } }), ROOT)[`prompts:${file}`]).toMatch(/^[0-9a-f]{64}$/);
  });

  it("another holder → exit 11, naming the holder and the expiry; the CLI sets the exit code", async () => {
    const { url, store } = await fresh();
    const held = await acquireLease(store, "calibration", "nightly-host:4242:abc", 60_000);
    expect(held.acquired).toBe(true);
    const out = await recalibrate(base(store));
    expect(out.status).toBe("lease-held");
    expect(out.exitCode).toBe(EXIT.leaseHeld);
    expect(out.message).toContain("nightly-host:4242:abc");
    expect(out.message).toContain(held.acquired ? held.lease.expiresAt : "");
    expect(out.message).not.toMatch(/\n/);
    const cfgFile = join(dir, "tiny.json");
    writeFileSync(cfgFile, JSON.stringify(tiny));
    const err = vi.spyOn(console, "error").mockImplementation(() => {});
    await recalibrateCmd.run(["--config", cfgFile, "--db", url, "--quiet"]);
    expect(process.exitCode).toBe(11);
    expect(err.mock.calls[0]![0]).toMatch(/holds the lease 'calibration': nightly-host:4242:abc, until /);
    expect((await readLease(store, "calibration"))!.holder).toBe("nightly-host:4242:abc"); // untouched
    await expect(recalibrateCmd.run(["--db", url])).rejects.toThrow(/--config FILE is required/);
    await expect(recalibrateCmd.run(["--config", cfgFile, "--lease-ttl", "0"])).rejects.toThrow(/--lease-ttl/);
    store.close();
  });

  it("nothing changed → exit 10, and the lease is released", async () => {
    const { store } = await fresh();
    const id = await store.saveRun(fakeRun("whatever", { recalibration: { baseRunHash: baseHash, corpora: fingerprint } }));
    await store.activate(id);
    const out = await recalibrate(base(store));
    expect(out).toMatchObject({ status: "nothing-to-do", exitCode: EXIT.nothingToDo, reasons: [] });
    expect(out.message).toMatch(/^nothing to do/);
    expect(await readLease(store, "calibration")).toBeNull();
    store.close();
  });

  it("a stored run the guard refuses → exit 12; --force activates it; inputs of a rolled-back run → exit 10", async () => {
    const { store } = await fresh();
    const a = await store.saveRun(fakeRun("old", { worstSpeedup: { throughput: 2, maxmin: 2 }, recalibration: { baseRunHash: "old", corpora: fingerprint } }));
    await store.activate(a);
    // An earlier attempt with today's inputs saved its run, then died before activation.
    const b = await store.saveRun(fakeRun(plannedHash, { worstSpeedup: { throughput: 1, maxmin: 1 } }));
    const out = await recalibrate(base(store));
    expect(out).toMatchObject({ status: "refused", exitCode: EXIT.refused, runId: b, reused: true, reasons: [{ kind: "config-or-models" }] });
    expect(out.message).toMatch(/regresses against the active run/);
    expect((await store.activeRun())!.id).toBe(a);
    expect(await readLease(store, "calibration")).toBeNull();

    const forced = await recalibrate(base(store, { force: true }));
    expect(forced).toMatchObject({ status: "activated", exitCode: 0, runId: b, previousRunId: a, reused: true });
    expect((await store.activeRun())!.forced).toBe(true);

    await store.rollback();
    const again = await recalibrate(base(store));
    expect(again).toMatchObject({ status: "nothing-to-do", exitCode: EXIT.nothingToDo, runId: b });
    expect(again.message).toMatch(/rolled back or replaced/);
    store.close();
  });

  it("a lease lost while calibrating → nothing is activated; the run records what it was calibrated from", async () => {
    const { store } = await fresh();
    const out = recalibrate(
      base(store, {
        lease: { holder: "me" },
        calibrate: async (o) => {
          const runId = await o.store.saveRun(fakeRun(runHashOf(o.config, ROOT)));
          await store.db.$client.execute("UPDATE calibration_lease SET holder = 'thief'");
          return { runId, runHash: runHashOf(o.config, ROOT) };
        },
      }),
    );
    await expect(out).rejects.toThrow(LeaseLostError);
    await expect(out).rejects.toThrow(/lost the lease 'calibration'.*not activated/);
    expect(await store.activeRun()).toBeNull();
    const [run] = await store.listRuns();
    expect(run!.summary!.recalibration).toMatchObject({
      baseRunHash: baseHash,
      corpora: fingerprint,
      configSeed: 3,
      seed: recalibrationSeed(3, fingerprint, ""),
      remeasure: false,
      reasons: [{ kind: "no-active-run" }],
      holder: "me",
    });
    expect((await readLease(store, "calibration"))!.holder).toBe("thief");
    store.close();
  });

  it("changed config → calibrates (tiny, real models) and activates; the next night has nothing to do", async () => {
    const { store } = await fresh();
    const old = await store.saveRun(fakeRun("old-config", { worstSpeedup: { throughput: 0.01, maxmin: 0.01 }, unfairnessU: 1e9 }));
    await store.activate(old);
    const out = await recalibrate(base(store));
    expect(out).toMatchObject({ status: "activated", exitCode: EXIT.activated, previousRunId: old, reused: false, runHash: plannedHash });
    expect(out.reasons.map((r) => r.kind)).toEqual(["config-or-models", "corpora"]);
    const active = (await store.activeRun())!;
    expect(active.id).toBe(out.runId);
    expect(active.configHash).toBe(plannedHash); // calibrate hashed exactly as planned
    expect(active.summary!.recalibration).toMatchObject({ baseRunHash: baseHash, corpora: fingerprint, previousRunId: old });
    expect(await store.taskParams(active.id)).not.toHaveLength(0);

    const next = await recalibrate(base(store));
    expect(next).toMatchObject({ status: "nothing-to-do", exitCode: EXIT.nothingToDo });
    store.close();
  });
});
