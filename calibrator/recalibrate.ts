/**
 * Nightly recalibration: decide whether anything changed since the active run, recalibrate if so,
 * and activate the new run through the regression guard — one process at a time (a lease in
 * libSQL), safe to kill at any point.
 *
 * What counts as a change (`decide`, pure):
 * - no run is active;
 * - the models or the config: the run hash (config + model file bytes, exactly as calibrator/run.ts
 *   computes it) differs from the one the active run recorded;
 * - the corpora: the sha256s in corpora/manifest.json of the slices the config uses (validation
 *   prompts, test prompts for validation runs, train when s-CDF runs), and the sha256 of any prompt
 *   file, differ from those the active run recorded — a run not made by `recalibrate` recorded
 *   none, which counts as changed (once);
 * - drift: a task whose online α (calibrator/drift.ts, telemetry since the activation) is beyond
 *   the tolerance.
 *
 * What it reruns. The whole calibration, every task. A drifted task's new α alone would not do:
 * the fit chooses a pool set across all tasks (≤ K pools, policies over every task), so it needs
 * every task's α anyway, and calibrate's checkpoints are per run hash, so a partial rerun could not
 * reuse the other tasks' units across runs. When the inputs did not change (drift only, or
 * `--always`) rerunning them with the same seed would reproduce the active run exactly; the run
 * then uses a seed derived from the active run's id, i.e. fresh continuations and bootstrap
 * resamples — a re-measurement. If the tasks still drift after such a re-measurement, the
 * calibration inputs no longer represent the traffic (new corpus slices or models are needed) and
 * another rerun cannot help: `drift-persists` (exit 13) instead of a nightly loop.
 *
 * The seed of a recalibration is derived from the config's seed and the corpora fingerprint (and
 * the active run's id for a re-measurement): so calibrate's run hash, its checkpoint key, covers the
 * corpora too, a crashed recalibration with the same inputs resumes from its checkpoints, and a run
 * it saved but did not activate (killed before activation, or refused by the guard) is found again
 * by its hash instead of being recomputed. The config's seed, the derived seed, the base run hash,
 * the corpora fingerprint and the reasons are recorded in the run's summary (`recalibration`).
 * A run with the same hash that was once active and has since been rolled back or replaced is not
 * recomputed (it would come out the same): that is "nothing to do" until the inputs change.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { RunSummary } from "../core/calibration.ts";
import { configHash, type CalibrationConfig } from "./config.ts";
import { driftReport, type DriftOptions, type DriftReport } from "./drift.ts";
import { acquireLease, DEFAULT_LEASE_NAME, defaultHolder, keepLease, releaseLease, renewLease } from "./lease.ts";
import { calibrate, type CalibrateOptions, type CalibrateResult } from "./run.ts";
import { RegressionError, type Store, type Tolerance } from "./store.ts";

const ROOT = resolve(fileURLToPath(new URL("..", import.meta.url)));
export const MANIFEST_PATH = join(ROOT, "corpora", "manifest.json");

/** The exit codes of `npx fairspec recalibrate` (and of `recalibrate()`'s outcome). */
export const EXIT = {
  /** A new run was calibrated (or found) and activated. */
  activated: 0,
  /** Anything unexpected, including a lease lost to another process mid-run (nothing activated). */
  failure: 1,
  /** Bad flags or config. */
  usage: 2,
  /** Models, config and corpora unchanged and no task drifted. */
  nothingToDo: 10,
  /** Another recalibration holds the lease. */
  leaseHeld: 11,
  /** The new run is stored but the regression guard refused to activate it. */
  refused: 12,
  /** Only drift, and the active run is already a re-measurement of these inputs. */
  driftPersists: 13,
} as const;

export const DEFAULT_LEASE_TTL_MS = 15 * 60_000;

// ---------------------------------------------------------------------------------------------
// Inputs: run hash and corpora fingerprint.

/** A model or prompt path as calibrate resolves it: absolute, else under `baseDir` if it exists there, else under the repository. */
export function resolveInputPath(baseDir: string, p: string): string {
  return isAbsolute(p) ? p : existsSync(resolve(baseDir, p)) ? resolve(baseDir, p) : resolve(ROOT, p);
}

/**
 * The run hash calibrate gives this config (config hash + each model's `model.onnx` bytes,
 * verifier first, then the drafters in config order) — the same computation as calibrator/run.ts,
 * which stores it as the run's `config_hash`.
 */
export function runHashOf(config: CalibrationConfig, baseDir: string): string {
  const dirs: [string, string][] = [["verifier", resolveInputPath(baseDir, config.models.verifier)]];
  for (const [name, dir] of Object.entries(config.models.drafters)) dirs.push([name, resolveInputPath(baseDir, dir)]);
  const h = createHash("sha256").update(configHash(config));
  for (const [name, dir] of dirs) {
    const f = join(dir, "model.onnx");
    if (!existsSync(f)) throw new Error(`model '${name}' not found: ${f} is missing — fix models in the config`);
    h.update(name).update(readFileSync(f));
  }
  return h.digest("hex").slice(0, 20);
}

/**
 * sha256 per input slice the config's calibration reads: `corpus/split` from corpora/manifest.json
 * (validation and test; train too when s-CDF runs) and `prompts:PATH` for prompt files (hashed
 * here). Keys sorted.
 */
export function corporaFingerprint(config: CalibrationConfig, baseDir: string, manifestPath = MANIFEST_PATH): Record<string, string> {
  const out: Record<string, string> = {};
  let manifest: { tasks?: Record<string, { outputs?: Record<string, { sha256?: string }> }> } | null = null;
  const splits = ["validation", "test", ...(config.scdf.enabled ? ["train"] : [])];
  for (const spec of Object.values(config.tasks)) {
    if ("corpus" in spec) {
      if (!manifest) {
        try {
          manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
        } catch (e) {
          throw new Error(`cannot read the corpora manifest ${manifestPath}: ${(e as Error).message.split("\n")[0]}`);
        }
      }
      for (const split of splits) {
        const sha = manifest!.tasks?.[spec.corpus]?.outputs?.[split]?.sha256;
        if (typeof sha !== "string") throw new Error(`${manifestPath} has no sha256 for corpus '${spec.corpus}' split '${split}' — rebuild the corpora (npm run corpora)`);
        out[`${spec.corpus}/${split}`] = sha;
      }
    } else {
      const file = resolveInputPath(baseDir, spec.prompts);
      let bytes: Buffer;
      try {
        bytes = readFileSync(file);
      } catch (e) {
        throw new Error(`cannot read prompt file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      out[`prompts:${spec.prompts}`] = createHash("sha256").update(bytes).digest("hex");
    }
  }
  return Object.fromEntries(Object.keys(out).sort().map((k) => [k, out[k]!]));
}

/** The seed a recalibration calibrates with (see the file comment). */
export function recalibrationSeed(configSeed: number, corpora: Record<string, string>, salt: string): number {
  return createHash("sha256").update(`recalibrate|${configSeed}|${JSON.stringify(corpora)}|${salt}`).digest().readUInt32LE(0);
}

// ---------------------------------------------------------------------------------------------
// The decision (pure).

export type Reason =
  | { kind: "no-active-run" }
  | { kind: "config-or-models"; active: string; now: string }
  | { kind: "corpora"; changed: string[] }
  | { kind: "drift"; tasks: string[] }
  | { kind: "always" };

/** What a recalibration records in its run's summary, under `recalibration`. */
export interface RecalibrationRecord {
  baseRunHash: string;
  corpora: Record<string, string>;
  configSeed: number;
  seed: number;
  /** true: same inputs as the run it replaced, fresh seed (drift or --always). */
  remeasure: boolean;
  reasons: Reason[];
  previousRunId: string | null;
  holder: string;
}

/** The `recalibration` record of a run summary, if it has a well-formed one. */
export function recordOf(summary: RunSummary | null | undefined): Partial<RecalibrationRecord> | null {
  const r = summary?.recalibration;
  if (!r || typeof r !== "object") return null;
  const rec = r as Record<string, unknown>;
  return {
    baseRunHash: typeof rec.baseRunHash === "string" ? rec.baseRunHash : undefined,
    corpora: rec.corpora && typeof rec.corpora === "object" ? (rec.corpora as Record<string, string>) : undefined,
    remeasure: rec.remeasure === true,
  };
}

export interface DecisionInput {
  baseRunHash: string;
  corpora: Record<string, string>;
  active: { id: string; configHash: string; summary: RunSummary | null } | null;
  /** Tasks the drift check flagged (empty when none, or no active run). */
  drifted: readonly string[];
  always?: boolean;
}

export interface Decision {
  action: "recalibrate" | "nothing-to-do" | "drift-persists";
  reasons: Reason[];
  /** Same inputs as the active run: the rerun needs a fresh seed to be a new measurement. */
  remeasure: boolean;
}

export function decide(i: DecisionInput): Decision {
  const reasons: Reason[] = [];
  const a = i.active;
  const rec = a ? recordOf(a.summary) : null;
  if (!a) reasons.push({ kind: "no-active-run" });
  else {
    const activeBase = rec?.baseRunHash ?? a.configHash;
    if (activeBase !== i.baseRunHash) reasons.push({ kind: "config-or-models", active: activeBase, now: i.baseRunHash });
    if (!rec?.corpora) reasons.push({ kind: "corpora", changed: ["(not recorded by the active run)"] });
    else {
      const keys = [...new Set([...Object.keys(rec.corpora), ...Object.keys(i.corpora)])].sort();
      const changed = keys.filter((k) => rec.corpora![k] !== i.corpora[k]);
      if (changed.length) reasons.push({ kind: "corpora", changed });
    }
  }
  const inputsChanged = reasons.length > 0;
  if (i.drifted.length) reasons.push({ kind: "drift", tasks: [...i.drifted] });
  if (inputsChanged) return { action: "recalibrate", reasons, remeasure: false };
  if (i.always) return { action: "recalibrate", reasons: [...reasons, { kind: "always" }], remeasure: true };
  if (i.drifted.length === 0) return { action: "nothing-to-do", reasons, remeasure: false };
  // Drift only. A re-measurement of the same inputs already ran and they still drift.
  if (rec?.remeasure) return { action: "drift-persists", reasons, remeasure: true };
  return { action: "recalibrate", reasons, remeasure: true };
}

export function describeReason(r: Reason): string {
  switch (r.kind) {
    case "no-active-run":
      return "no run is active";
    case "config-or-models":
      return `models or config changed (run hash ${r.active} → ${r.now})`;
    case "corpora":
      return `corpora changed (${r.changed.join(", ")})`;
    case "drift":
      return `online α drifted for ${r.tasks.join(", ")}`;
    case "always":
      return "--always";
  }
}

// ---------------------------------------------------------------------------------------------
// The job.

export class LeaseLostError extends Error {
  override name = "LeaseLostError";
}

export interface RecalibrateOptions {
  config: CalibrationConfig;
  /** Relative model and prompt paths resolve against this directory (the config's), then the repository. */
  baseDir: string;
  store: Store;
  outDir: string;
  /** Activate over the regression guard. */
  force?: boolean;
  /** Recalibrate (re-measure) even when nothing changed. */
  always?: boolean;
  /** Drift: tolerance and minimum drafted tokens (calibrator/drift.ts defaults). */
  drift?: DriftOptions;
  /** The regression guard's tolerance (store defaults). */
  activationTolerance?: Tolerance;
  lease?: { name?: string; holder?: string; ttlMs?: number; renewMs?: number };
  manifestPath?: string;
  quiet?: boolean;
  log?: (line: string) => void;
  /** The calibration (tests may pass a stand-in); default calibrator/run.ts `calibrate`. */
  calibrate?: (o: CalibrateOptions) => Promise<Pick<CalibrateResult, "runId" | "runHash">>;
}

export interface RecalibrateOutcome {
  status: "activated" | "nothing-to-do" | "lease-held" | "refused" | "drift-persists";
  exitCode: number;
  /** One line. */
  message: string;
  reasons: Reason[];
  runId?: string;
  previousRunId?: string | null;
  /** calibrate's run hash of the new run. */
  runHash?: string;
  /** The run was found from an earlier attempt (saved, never activated) instead of recomputed. */
  reused?: boolean;
  drift?: DriftReport | null;
  lease: { name: string; holder: string; expiresAt: string };
}

export async function recalibrate(o: RecalibrateOptions): Promise<RecalibrateOutcome> {
  const log = o.log ?? ((l: string) => !o.quiet && process.stderr.write(`${l}\n`));
  const { store, config: cfg } = o;
  const name = o.lease?.name ?? DEFAULT_LEASE_NAME;
  const holder = o.lease?.holder ?? defaultHolder();
  const ttlMs = o.lease?.ttlMs ?? DEFAULT_LEASE_TTL_MS;

  const got = await acquireLease(store, name, holder, ttlMs);
  if (!got.acquired) {
    return {
      status: "lease-held",
      exitCode: EXIT.leaseHeld,
      message: `another recalibration holds the lease '${name}': ${got.holder}, until ${got.expiresAt} — it ends by itself, or the lease expires then`,
      reasons: [],
      lease: { name, holder: got.holder, expiresAt: got.expiresAt },
    };
  }
  let lease = got.lease;
  const keeper = keepLease(store, lease, ttlMs, {
    intervalMs: o.lease?.renewMs,
    onLost: () => log(`lease '${name}' was taken over by another process: this run will not activate anything`),
  });
  try {
    // ---- what changed ----
    const baseRunHash = runHashOf(cfg, o.baseDir);
    const corpora = corporaFingerprint(cfg, o.baseDir, o.manifestPath);
    const active = await store.activeRun();
    const drift = active ? await driftReport(store, o.drift ?? {}) : null;
    if (drift) {
      const enough = drift.tasks.filter((t) => t.status !== "insufficient").length;
      log(`drift since ${drift.since}: ${drift.drifted.length ? `drifted ${drift.drifted.join(", ")}` : "no task drifted"} (${enough} of ${drift.tasks.length} tasks with telemetry have ≥ ${drift.minDrafted} drafted tokens)`);
    }
    const d = decide({ baseRunHash, corpora, active, drifted: drift?.drifted ?? [], always: o.always });
    const outcome = (x: Omit<RecalibrateOutcome, "lease" | "reasons" | "drift">): RecalibrateOutcome => ({ ...x, reasons: d.reasons, drift, lease: keeper.lease });
    if (d.action === "nothing-to-do") {
      return outcome({
        status: "nothing-to-do",
        exitCode: EXIT.nothingToDo,
        message: `nothing to do: models, config and corpora are those of the active run ${active!.id}, and no task drifted`,
      });
    }
    if (d.action === "drift-persists") {
      return outcome({
        status: "drift-persists",
        exitCode: EXIT.driftPersists,
        message: `drift persists for ${drift!.drifted.join(", ")} after re-measuring the same inputs (active run ${active!.id}): the corpora no longer represent the traffic — add corpus slices or retrain the drafters, or pass --always to re-measure again`,
      });
    }
    log(`recalibrating: ${d.reasons.map(describeReason).join("; ")}`);

    // ---- the run: found from an earlier attempt, or calibrated (resuming its checkpoints) ----
    const salt = d.remeasure || o.always ? (active?.id ?? "") : "";
    const seed = recalibrationSeed(cfg.seed, corpora, salt);
    const config: CalibrationConfig = { ...cfg, seed };
    const runHash = runHashOf(config, o.baseDir);
    const sameHash = (await store.listRuns()).filter((r) => r.configHash === runHash && r.status === "complete");
    const everActive = new Set(
      sameHash.length
        ? (await store.db.$client.execute({ sql: `SELECT DISTINCT run_id FROM activations WHERE run_id IN (${sameHash.map(() => "?").join(",")})`, args: sameHash.map((r) => r.id) })).rows.map((r) => String(r.run_id))
        : [],
    );
    if (active && sameHash.some((r) => r.id === active.id)) {
      return outcome({ status: "nothing-to-do", exitCode: EXIT.nothingToDo, message: `nothing to do: the active run ${active.id} has exactly these inputs`, runId: active.id, runHash });
    }
    const before = sameHash.find((r) => everActive.has(r.id));
    if (before) {
      return outcome({
        status: "nothing-to-do",
        exitCode: EXIT.nothingToDo,
        message: `nothing to do: these inputs are those of run ${before.id}, which was active before and has been rolled back or replaced — recalibrating would reproduce it; change the config or models, or pass --always to re-measure`,
        runId: before.id,
        runHash,
      });
    }
    let runId: string;
    let reused = false;
    const earlier = sameHash[0]; // newest first
    if (earlier) {
      runId = earlier.id;
      reused = true;
      log(`run ${runId} from an earlier attempt with the same inputs is stored but was never activated: activating it`);
    } else {
      const record: RecalibrationRecord = { baseRunHash, corpora, configSeed: cfg.seed, seed, remeasure: d.remeasure, reasons: d.reasons, previousRunId: active?.id ?? null, holder };
      // The record goes into the run's summary in calibrate's own transaction.
      const recording: Store = { ...store, saveRun: (run) => store.saveRun({ ...run, summary: { ...run.summary, recalibration: record } }) };
      const r = await (o.calibrate ?? calibrate)({ config, baseDir: o.baseDir, store: recording, outDir: o.outDir, quiet: o.quiet, log });
      if (r.runHash !== runHash) log(`warning: calibrate's run hash ${r.runHash} differs from the planned ${runHash} (calibrator/run.ts changed how it hashes?): a crashed recalibration will not find this run again`);
      runId = r.runId;
    }

    // ---- activation, only while we still hold the lease ----
    const renewed = keeper.lost ? null : await renewLease(store, name, holder, ttlMs);
    if (!renewed) throw new LeaseLostError(`lost the lease '${name}' to another process while calibrating: run ${runId} is stored but was not activated — activate it with \`npx fairspec activate ${runId}\` if it is wanted`);
    lease = renewed;
    try {
      const a = await store.activate(runId, { force: o.force, tolerance: o.activationTolerance });
      return {
        ...outcome({
          status: "activated",
          exitCode: EXIT.activated,
          message: `activated ${runId}${a.previousRunId ? ` (replaces ${a.previousRunId})` : ""}${a.forced ? " over the regression guard (--force)" : ""}: ${d.reasons.map(describeReason).join("; ")}`,
          runId,
          previousRunId: a.previousRunId,
          runHash,
          reused,
        }),
        lease,
      };
    } catch (e) {
      if (!(e instanceof RegressionError)) throw e;
      return outcome({
        status: "refused",
        exitCode: EXIT.refused,
        message: `run ${runId} is stored but not activated: ${e.message}`,
        runId,
        previousRunId: active?.id ?? null,
        runHash,
        reused,
      });
    }
  } finally {
    keeper.stop();
    await releaseLease(store, name, holder).catch((e: Error) => log(`could not release lease '${name}': ${e.message.split("\n")[0]}`));
  }
}
