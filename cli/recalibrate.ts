/**
 * `npx fairspec recalibrate` — the nightly job (cron, a systemd timer, CI): recalibrate when the
 * models, the config, the corpora or the online α changed, and activate the new run through the
 * regression guard. One at a time (a lease in the store). Exit codes: calibrator/recalibrate.ts
 * `EXIT`, listed in `--help` and docs/recalibration.md.
 */
import { dirname, resolve } from "node:path";
import { ConfigError, loadConfig } from "../calibrator/config.ts";
import { DEFAULT_LEASE_TTL_MS, describeReason, EXIT, recalibrate } from "../calibrator/recalibrate.ts";
import { parse, UsageError } from "./args.ts";
import type { Command } from "./commands.ts";
import { driftFlags } from "./drift.ts";
import { withStore } from "./with-store.ts";

const FLAGS = "--config FILE [--db URL] [--out DIR] [--force] [--always] [--tolerance 0.05] [--min-drafted 500] [--lease-ttl SECONDS] [--quiet] [--json]";

export const EXIT_CODES_HELP = [
  "exit codes:",
  `  ${EXIT.activated}   a new run was calibrated (or found from an earlier attempt) and activated`,
  `  ${EXIT.nothingToDo}  nothing to do: models, config and corpora unchanged, no task drifted`,
  `  ${EXIT.leaseHeld}  another recalibration holds the lease (the message names it and its expiry)`,
  `  ${EXIT.refused}  the regression guard refused activation (the run is stored; --force overrides)`,
  `  ${EXIT.driftPersists}  drift persists after a re-measurement of the same inputs (new corpora or models needed; --always re-measures)`,
  `  ${EXIT.usage}   usage or config error`,
  `  ${EXIT.failure}   failure, including a lease lost mid-run (nothing activated)`,
].join("\n  ");

export const recalibrateCmd: Command = {
  summary: "nightly: recalibrate if models, config, corpora or online α changed, then activate through the regression guard",
  usage: `${FLAGS}\n\n  --force      activate over the regression guard\n  --always     recalibrate even when nothing changed (a re-measurement with a fresh seed)\n  --tolerance, --min-drafted   the drift check (as \`npx fairspec drift\`)\n  --lease-ttl  seconds the lease lasts without renewal (default ${DEFAULT_LEASE_TTL_MS / 1000}; renewed every third)\n\n  ${EXIT_CODES_HELP}`,
  async run(argv) {
    const usage = `npx fairspec recalibrate ${FLAGS}`;
    const { values: v, positionals } = parse(
      argv,
      {
        config: { type: "string" },
        db: { type: "string" },
        out: { type: "string" },
        force: { type: "boolean" },
        always: { type: "boolean" },
        tolerance: { type: "string" },
        "min-drafted": { type: "string" },
        "lease-ttl": { type: "string" },
        quiet: { type: "boolean" },
        json: { type: "boolean" },
      },
      usage,
    );
    if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}' — usage: ${usage}`);
    if (!v.config) throw new UsageError(`--config FILE is required (start from calibrator/calibrate.example.json) — usage: ${usage}`);
    const drift = driftFlags(v);
    let ttlMs = DEFAULT_LEASE_TTL_MS;
    if (v["lease-ttl"] !== undefined) {
      const s = Number(v["lease-ttl"]);
      if (v["lease-ttl"].trim() === "" || !Number.isFinite(s) || s < 1) throw new UsageError(`--lease-ttl must be a number of seconds >= 1, got '${v["lease-ttl"]}'`);
      ttlMs = s * 1000;
    }
    let config;
    try {
      config = loadConfig(v.config);
    } catch (e) {
      if (e instanceof ConfigError) throw new UsageError(e.message);
      throw e;
    }
    const outcome = await withStore(
      v.db,
      (store) =>
        recalibrate({
          config,
          baseDir: dirname(resolve(v.config!)),
          store,
          outDir: resolve(v.out ?? "out/calibration"),
          force: v.force,
          always: v.always,
          drift,
          lease: { ttlMs },
          quiet: v.quiet,
        }),
      false,
    );
    if (v.json) {
      const { drift: report, ...rest } = outcome;
      console.log(JSON.stringify({ ...rest, reasons: outcome.reasons.map((r) => ({ ...r, text: describeReason(r) })), drift: report && { since: report.since, drifted: report.drifted, tasks: report.tasks } }, null, 2));
    } else if (outcome.exitCode === EXIT.activated || outcome.exitCode === EXIT.nothingToDo) console.log(outcome.message);
    else console.error(`fairspec recalibrate: ${outcome.message}`);
    if (outcome.exitCode !== 0) process.exitCode = outcome.exitCode;
  },
};
