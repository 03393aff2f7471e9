/**
 * `npx fairspec pools [--config FILE] [--json] [--timeout MS]`: the configured origin pools,
 * their speculative settings and the health of every origin URL.
 */
import { fileURLToPath } from "node:url";
import { checkPoolHealth, loadPoolsConfig, PoolsConfigError, type UrlHealth } from "../origin/pools.ts";
import { parse, UsageError } from "./args.ts";
import type { Command } from "./commands.ts";

const EXAMPLE = fileURLToPath(new URL("../origin/pools.example.json", import.meta.url));

export const poolsCmd: Command = {
  summary: "list origin pools (fairspec, vLLM, SGLang), their speculative settings and health",
  usage: "[--config FILE] [--timeout MS] [--json]",
  async run(argv) {
    const { values: v } = parse(argv, { config: { type: "string" }, timeout: { type: "string" }, json: { type: "boolean" } }, `npx fairspec pools ${poolsCmd.usage}`);
    const path = v.config ?? process.env.FAIRSPEC_POOLS ?? EXAMPLE;
    const timeoutMs = v.timeout === undefined ? 2000 : Number(v.timeout);
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 60_000) throw new UsageError(`--timeout must be an integer from 1 to 60000 (ms), got '${v.timeout}'`);
    let config;
    try {
      config = await loadPoolsConfig(path);
    } catch (e) {
      if (e instanceof PoolsConfigError) throw new UsageError(`${e.message} — fix the file or pass --config FILE`);
      throw e;
    }
    const health = await Promise.all(config.pools.map((p) => checkPoolHealth(p, { timeoutMs })));
    if (v.json) {
      console.log(JSON.stringify({ config: path, pools: config.pools.map((p, i) => ({ ...p, health: health[i] })) }, null, 2));
      return;
    }
    console.log(`pools from ${path}\n`);
    const rows = config.pools.flatMap((p, i) =>
      health[i]!.map((h: UrlHealth, j) => [
        j === 0 ? p.id : "",
        j === 0 ? p.kind : "",
        j === 0 ? (p.drafter ?? "-") : "",
        j === 0 ? String(p.gamma) : "",
        j === 0 ? (p.proposal_temperature === null ? "-" : String(p.proposal_temperature)) : "",
        h.url,
        h.ok ? `up (${h.ms.toFixed(0)} ms)` : `down: ${h.error}`,
      ]),
    );
    const head = ["pool", "kind", "drafter", "γ", "τ", "origin", "health"];
    const widths = head.map((hd, c) => Math.max(hd.length, ...rows.map((r) => r[c]!.length)));
    const line = (r: string[]) => r.map((x, c) => (c === r.length - 1 ? x : x.padEnd(widths[c]!))).join("  ");
    console.log(line(head));
    for (const r of rows) console.log(line(r));
    const down = health.flat().filter((h) => !h.ok).length;
    console.log(`\n${health.flat().length - down} of ${health.flat().length} origins up${down ? " — start one with: npx fairspec serve-origin --pool ID" : ""}`);
  },
};
