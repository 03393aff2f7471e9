/**
 * `npx fairspec runs | activate RUN | rollback` — the calibration runs in the store and which one
 * the edge serves. The store is FAIRSPEC_DB_URL (default file:./fairspec.db) or `--db URL`.
 */
import type { RunListEntry } from "../calibrator/store.ts";
import { parse, UsageError } from "./args.ts";
import type { Command } from "./commands.ts";
import { withStore } from "./with-store.ts";


function tolerance(v: string | undefined, flag: string, example: string): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === "" || !Number.isFinite(x) || x < 0) throw new UsageError(`--${flag} must be a number >= 0 (relative, e.g. ${example}), got '${v}'`);
  return x;
}

function oneRun(positionals: string[], usage: string): string {
  if (positionals.length !== 1) throw new UsageError(`give exactly one run id — usage: ${usage} (list runs with \`npx fairspec runs\`)`);
  return positionals[0]!;
}

const fmtU = (r: RunListEntry) => {
  if (!r.summary) return "-";
  const u = r.summary.unfairnessUAfter ?? r.summary.unfairnessU;
  return `${u.toPrecision(3)}${r.summary.unfairnessUAfter !== null ? " (s-CDF)" : ""}`;
};

const fmtWorst = (r: RunListEntry) =>
  r.summary
    ? Object.entries(r.summary.worstSpeedup)
        .map(([p, s]) => `${p} ${s.toFixed(2)}×`)
        .join(", ")
    : "-";

export const runsCmd: Command = {
  summary: "list calibration runs (newest first), marking the one the edge serves",
  usage: "[--json] [--db URL]",
  async run(argv) {
    const usage = `npx fairspec runs ${runsCmd.usage}`;
    const { values: v, positionals } = parse(argv, { json: { type: "boolean" }, db: { type: "string" } }, usage);
    if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}' — usage: ${usage}`);
    const runs = await withStore(v.db, (s) => s.listRuns());
    if (v.json) {
      console.log(JSON.stringify(runs, null, 2));
      return;
    }
    if (runs.length === 0) {
      console.log("no calibration runs yet — run a calibration to create one");
      return;
    }
    const rows = runs.map((r) => [r.active ? "*" : " ", r.id, r.status, r.createdAt.slice(0, 19).replace("T", " "), r.configHash.slice(0, 12), fmtU(r), fmtWorst(r)]);
    const head = [" ", "run", "status", "created (UTC)", "config", "U", "worst-task speed-up per policy"];
    const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(width[i]!))).join("  ");
    console.log(line(head));
    for (const r of rows) console.log(line(r));
    console.log(runs.some((r) => r.active) ? "\n* = active (served by the edge)" : "\nno run is active — activate one with `npx fairspec activate RUN`");
  },
};

export const activateCmd: Command = {
  summary: "make a complete run the one the edge serves (refused if it regresses, unless --force)",
  usage: "RUN [--force] [--tolerance-worst 0.05] [--tolerance-u 0.10] [--db URL]",
  async run(argv) {
    const usage = `npx fairspec activate ${activateCmd.usage}`;
    const { values: v, positionals } = parse(
      argv,
      { force: { type: "boolean" }, "tolerance-worst": { type: "string" }, "tolerance-u": { type: "string" }, db: { type: "string" } },
      usage,
    );
    const runId = oneRun(positionals, usage);
    const worstSpeedup = tolerance(v["tolerance-worst"], "tolerance-worst", "0.05 for a 5% drop");
    const unfairness = tolerance(v["tolerance-u"], "tolerance-u", "0.10 for a 10% rise");
    // A RegressionError is a refusal, not a mistake in the call: its one-line message ends with
    // "use --force to override", and the CLI exits 1.
    const r = await withStore(v.db, (s) => s.activate(runId, { force: v.force ?? false, tolerance: { worstSpeedup, unfairness } }));
    if (!r.changed) console.log(`${r.runId} is already active`);
    else {
      console.log(`activated ${r.runId}${r.previousRunId ? ` (was ${r.previousRunId})` : ""}`);
      if (r.forced) console.log(`forced over: ${r.overridden.length} regression(s) — undo with \`npx fairspec rollback\``);
    }
  },
};

export const rollbackCmd: Command = {
  summary: "re-activate the run that was active before the current one",
  usage: "[--db URL]",
  async run(argv) {
    const usage = `npx fairspec rollback ${rollbackCmd.usage}`;
    const { values: v, positionals } = parse(argv, { db: { type: "string" } }, usage);
    if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}' — usage: ${usage}`);
    const r = await withStore(v.db, (s) => s.rollback());
    console.log(`rolled back: ${r.runId} is active again (was ${r.previousRunId})`);
  },
};
