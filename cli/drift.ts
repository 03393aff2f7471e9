/**
 * `npx fairspec drift` — online α from the edge's telemetry against the active run's calibrated α,
 * per tenant, task and pool (calibrator/drift.ts explains the estimator). Lists the drifted tasks
 * first, then the others with their numbers. Exit code 0 whether or not a task drifted
 * (`--json` has `drifted`); `npx fairspec recalibrate` acts on it.
 */
import { DEFAULT_MIN_DRAFTED, DEFAULT_TOLERANCE, driftReport, NoActiveRunError, type DriftReport } from "../calibrator/drift.ts";
import { parse, UsageError } from "./args.ts";
import type { Command } from "./commands.ts";
import { withStore } from "./with-store.ts";


/** `--tolerance` (α units, ≥ 0) and `--min-drafted` (integer ≥ 0), defaults from calibrator/drift.ts. */
export function driftFlags(v: { tolerance?: string; "min-drafted"?: string }): { tolerance: number; minDrafted: number } {
  let tolerance = DEFAULT_TOLERANCE;
  if (v.tolerance !== undefined) {
    tolerance = Number(v.tolerance);
    if (v.tolerance.trim() === "" || !Number.isFinite(tolerance) || tolerance < 0 || tolerance > 1) throw new UsageError(`--tolerance must be an α difference in [0, 1], e.g. 0.05, got '${v.tolerance}'`);
  }
  let minDrafted = DEFAULT_MIN_DRAFTED;
  if (v["min-drafted"] !== undefined) {
    minDrafted = Number(v["min-drafted"]);
    if (v["min-drafted"].trim() === "" || !Number.isInteger(minDrafted) || minDrafted < 0) throw new UsageError(`--min-drafted must be an integer >= 0 (drafted tokens), got '${v["min-drafted"]}'`);
  }
  return { tolerance, minDrafted };
}

/** An ISO-8601 time (date or date-time) → the store's form (UTC, milliseconds, `Z`). */
export function isoFlag(v: string, flag: string): string {
  const t = Date.parse(v);
  if (!/^\d{4}-\d{2}-\d{2}/.test(v) || Number.isNaN(t)) throw new UsageError(`--${flag} must be an ISO-8601 date or time like 2025-06-01 or 2025-06-01T12:00:00Z, got '${v}'`);
  return new Date(t).toISOString();
}

const f3 = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : "-");

/** The report as text: one line per (tenant, task, pool), drifted first; then what could not be matched. */
export function formatDrift(r: DriftReport): string {
  const lines = [
    `drift of run ${r.runId} — telemetry since ${r.since}${r.until ? ` until ${r.until}` : ""}; tolerance ${r.tolerance}, at least ${r.minDrafted} drafted tokens`,
    r.tasks.length === 0 ? "no speculative telemetry in the window" : `drifted: ${r.drifted.length ? r.drifted.join(", ") : "none"}`,
  ];
  if (r.rows.length) {
    const head = ["task", "tenant", "pool", "γ", "requests", "drafted", "acc.rate", "online α [95% CI]", "calibrated α", "gap", "status"];
    const rows = r.rows.map((x) => [
      x.task,
      x.tenantId === "*" ? "(all)" : x.tenantId,
      x.poolId,
      String(x.gamma),
      String(x.requests),
      String(x.drafted),
      f3(x.online.rate.rate),
      `${f3(x.online.alpha)} [${f3(x.online.lo)}, ${f3(x.online.hi)}]`,
      x.calibrated.lo === x.calibrated.hi ? f3(x.calibrated.alpha) : `${f3(x.calibrated.lo)}–${f3(x.calibrated.hi)} (T ${x.calibrated.targetTemperatures.join(", ")})`,
      f3(x.gap),
      x.status === "drifted" ? "DRIFTED" : x.status === "insufficient" ? "too few drafted" : "ok",
    ]);
    const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
    const fmt = (row: string[]) => row.map((c, i) => c.padEnd(w[i]!)).join("  ").trimEnd();
    lines.push("", fmt(head), ...rows.map(fmt));
  }
  if (r.unmatched.length) {
    lines.push("", "not compared:");
    for (const u of r.unmatched) lines.push(`  ${u.task} / ${u.tenantId} / ${u.poolId}: ${u.requests} requests, ${u.drafted} drafted — ${u.why}`);
  }
  return lines.join("\n");
}

export const driftCmd: Command = {
  summary: "online α from the edge's telemetry vs the active run's calibrated α: tasks beyond tolerance, then the others",
  usage: "[--db URL] [--since ISO] [--tolerance 0.05] [--min-drafted 500] [--json]",
  async run(argv) {
    const usage = `npx fairspec drift ${driftCmd.usage}`;
    const { values: v, positionals } = parse(
      argv,
      { db: { type: "string" }, since: { type: "string" }, tolerance: { type: "string" }, "min-drafted": { type: "string" }, json: { type: "boolean" } },
      usage,
    );
    if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}' — usage: ${usage}`);
    const flags = driftFlags(v);
    const since = v.since === undefined ? undefined : isoFlag(v.since, "since");
    const report = await withStore(v.db, (s) => driftReport(s, { ...flags, since }));
    console.log(v.json ? JSON.stringify(report, null, 2) : formatDrift(report));
  },
};
