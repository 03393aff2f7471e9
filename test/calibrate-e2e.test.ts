/**
 * A whole calibration on the real models and corpora, kept small: measurement, s-CDF and the
 * data-balancing baseline through the real trainer, fit per policy, timed validation, one
 * transaction into a real libSQL file, report — and a run killed midway that resumes.
 */
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../calibrator/config.ts";
import { calibrate } from "../calibrator/run.ts";
import { openStore, type Store } from "../calibrator/store.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const config = parseConfig({
  models: { verifier: "models/verifier", drafters: { base: "models/drafter-base", balanced: "models/drafter-balanced" } },
  tasks: { en: { corpus: "en" }, ja: { corpus: "ja" }, "code-py": { corpus: "code-py" } },
  promptsPerTask: 4,
  newTokens: 16,
  targetTemperatures: [0, 1],
  gammas: [0, 1, 3],
  proposalTemperatures: [0, 1],
  maxPools: 2,
  policies: [
    { id: "throughput", kind: "throughput" },
    { id: "maxmin", kind: "maxmin" },
    { id: "floor-0.5", kind: "floor", ratio: 0.5 },
  ],
  tenants: [{ id: "acme", name: "Acme", policy: "maxmin", defaultTask: "en" }],
  validation: { prompts: 2, newTokens: 16 },
  scdf: { enabled: true, drafter: "base", steps: 20, windows: 16 },
  bootstrapResamples: 200,
  seed: 7,
});

/** A store that fails on the n-th checkpoint write, like a process killed mid-run. */
function failingStore(store: Store, n: number): Store {
  let writes = 0;
  return new Proxy(store, {
    get(target, prop, recv) {
      if (prop === "putCheckpoint")
        return async (...args: Parameters<Store["putCheckpoint"]>) => {
          if (++writes >= n) throw new Error("simulated crash");
          return target.putCheckpoint(...args);
        };
      const v = Reflect.get(target, prop, recv);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

describe("calibrate end to end", () => {
  it("a killed run leaves nothing visible, resumes, then stores one complete run and a report", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fairspec-cal-"));
    const store = await openStore(`file:${join(dir, "cal.db")}`);
    const logs: string[] = [];
    const opts = { config, baseDir: ROOT, outDir: join(dir, "out"), quiet: true, log: (l: string) => logs.push(l) };

    await expect(calibrate({ ...opts, store: failingStore(store, 5) })).rejects.toThrow(/simulated crash/);
    expect(await store.listRuns()).toHaveLength(0);
    expect(await store.activeRun()).toBeNull();

    const r = await calibrate({ ...opts, store });
    expect(logs.some((l) => /resuming: [1-9]\d* finished units/.test(l))).toBe(true);
    const runs = await store.listRuns();
    expect(runs).toHaveLength(1);
    expect(runs[0]!.id).toBe(r.runId);

    // Parameters for every (policy, task, target temperature), each backed by a timed validation.
    const params = await store.taskParams(r.runId);
    expect(params).toHaveLength(3 * 3 * 2);
    for (const p of params) {
      expect(p.predictedSpeedup.lo).toBeLessThanOrEqual(p.predictedSpeedup.estimate + 1e-12);
      expect(p.measuredSpeedup).not.toBeNull();
      expect([0, 1, 3]).toContain(p.gamma);
    }
    // The floor policy's fit keeps every task within half of the best one (predicted).
    const floor = params.filter((p) => p.policyId === "floor-0.5" && p.targetTemperature === 1).map((p) => p.predictedSpeedup.estimate);
    expect(Math.min(...floor) / Math.max(...floor)).toBeGreaterThanOrEqual(0.5 - 1e-9);
    const pools = new Set(params.filter((p) => p.targetTemperature === 1 && p.policyId === "throughput").map((p) => p.poolId));
    expect(pools.size).toBeLessThanOrEqual(2);

    // s-CDF and the data-balancing baseline ran through the trainer and were re-measured.
    const names = r.report.mitigations.map((m) => m.name);
    expect(names).toEqual(["none", "temperature-tuning", "data-balancing", "s-cdf"]);
    expect(existsSync(join(dir, "out", "finetune", "s-cdf", "drafter-s-cdf", "model.onnx"))).toBe(true);
    const plan = JSON.parse(readFileSync(join(dir, "out", "finetune", "s-cdf", "plan.json"), "utf8"));
    const minTask = Object.entries(plan.divergences as Record<string, number>).sort((a, b) => a[1] - b[1])[0]![0];
    expect(plan.weights[minTask]).toBe(0); // shift-by-minimum: the best-fitted task gets no weight
    expect((await store.measurements(r.runId)).some((m) => m.mitigation === "s-cdf")).toBe(true);

    // Report files, and the tenant from the config.
    for (const f of ["report.html", "report.md", "summary.json"]) expect(existsSync(join(dir, "out", f))).toBe(true);
    expect(await store.getTenantPolicy("acme")).toEqual({ kind: "maxmin" });
    // Checkpoints are cleared once the run is stored.
    expect(await store.listCheckpoints(r.runHash)).toHaveLength(0);
    await store.close();
  }, 600_000);
});
