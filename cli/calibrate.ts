import { dirname, resolve } from "node:path";
import { ConfigError, loadConfig } from "../calibrator/config.ts";
import { calibrate } from "../calibrator/run.ts";
import { openStore, RegressionError } from "../calibrator/store.ts";
import { parse, UsageError } from "./args.ts";
import type { Command } from "./commands.ts";

export const DEFAULT_DB = "file:fairspec.db";

export const calibrateCmd: Command = {
  summary: "measure per-task speculative decoding, fit per-task parameters per policy, store the run, write a report",
  usage: "--config FILE [--db URL] [--out DIR] [--activate [--force]] [--quiet]",
  async run(argv) {
    const { values: v } = parse(
      argv,
      { config: { type: "string" }, db: { type: "string" }, out: { type: "string" }, activate: { type: "boolean" }, force: { type: "boolean" }, quiet: { type: "boolean" } },
      `npx fairspec calibrate ${calibrateCmd.usage}`,
    );
    if (!v.config) throw new UsageError(`--config FILE is required (start from calibrator/calibrate.example.json)`);
    let config;
    try {
      config = loadConfig(v.config);
    } catch (e) {
      if (e instanceof ConfigError) throw new UsageError(e.message);
      throw e;
    }
    const store = await openStore(v.db ?? process.env.FAIRSPEC_DB_URL ?? DEFAULT_DB);
    try {
      const outDir = resolve(v.out ?? "out/calibration");
      const r = await calibrate({ config, baseDir: dirname(resolve(v.config)), store, outDir, quiet: v.quiet });
      const s = r.report.mitigations;
      console.log(`calibration run ${r.runId} stored; report: ${r.files.join(", ")}`);
      for (const m of s) console.log(`  ${m.name.padEnd(19)} U=${m.unfairnessU.toFixed(4)}  S min/mean/max ${m.speedup.min.toFixed(2)}/${m.speedup.mean.toFixed(2)}/${m.speedup.max.toFixed(2)}×  Jain ${m.speedup.jain.toFixed(3)}`);
      if (v.activate) {
        try {
          await store.activate(r.runId, { force: v.force });
          console.log(`activated ${r.runId}`);
        } catch (e) {
          if (e instanceof RegressionError) {
            console.error(`not activated: ${e.message}`);
            process.exitCode = 3;
          } else throw e;
        }
      } else console.log(`activate it with: npx fairspec activate ${r.runId}`);
    } finally {
      await store.close();
    }
  },
};
