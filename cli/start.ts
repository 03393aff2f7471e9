/**
 * `npm start`: the whole system on this machine — a local libSQL file, a demo tenant, an active
 * calibration (a quick one the first time), the origin server and the edge gateway on localhost.
 * Production maps as: libSQL file → Turso; origin → GPU pools (vLLM / SGLang / fairspec origin);
 * edge (Node entry here) → the same app on Cloudflare Workers.
 */
import { randomBytes } from "node:crypto";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadConfig } from "../calibrator/config.ts";
import { calibrate } from "../calibrator/run.ts";
import { openStore } from "../calibrator/store.ts";
import { loadEdgeConfig, startNodeEdge } from "../functions/node.ts";
import { startOrigin } from "../origin/server.ts";
import { parse, UsageError } from "./args.ts";
import { DEFAULT_DB } from "./calibrate.ts";
import type { Command } from "./commands.ts";

const QUICK_CONFIG = fileURLToPath(new URL("../calibrator/calibrate.quick.json", import.meta.url));

const port = (v: string | undefined, flag: string, dflt: number) => {
  if (v === undefined) return dflt;
  const x = Number(v);
  if (!Number.isInteger(x) || x < 0 || x > 65535) throw new UsageError(`--${flag} must be a port number, got '${v}'`);
  return x;
};

export const startCmd: Command = {
  summary: "run everything locally: libSQL file, demo tenant, calibration (first time), origin and edge",
  usage: "[--db URL] [--origin-port 8100] [--edge-port 8787] [--config FILE]",
  async run(argv) {
    const { values: v } = parse(
      argv,
      { db: { type: "string" }, "origin-port": { type: "string" }, "edge-port": { type: "string" }, config: { type: "string" } },
      `npm start -- ${startCmd.usage}`,
    );
    const t0 = Date.now();
    const dbUrl = v.db ?? process.env.FAIRSPEC_DB_URL ?? DEFAULT_DB;
    const originPort = port(v["origin-port"], "origin-port", 8100);
    const edgePort = port(v["edge-port"], "edge-port", 8787);
    const configPath = v.config ?? QUICK_CONFIG;
    const config = loadConfig(configPath);
    const say = (s: string) => console.log(s);

    const store = await openStore(dbUrl);
    say(`database      ${dbUrl} (migrated)`);
    for (const t of config.tenants) await store.ensureTenant({ id: t.id, name: t.name, defaultTask: t.defaultTask }, config.policies.find((p) => p.id === t.policy));
    const tenant = config.tenants[0]?.id ?? "demo";
    if (!config.tenants.length) await store.ensureTenant({ id: tenant, name: "Demo tenant", defaultTask: "en" }, { kind: "throughput" });
    let demoKey: string | null = null;
    let keyNote = "";
    if (process.env.FAIRSPEC_DEMO_KEY) {
      demoKey = (
        await store.createApiKey(tenant, process.env.FAIRSPEC_DEMO_KEY).catch((e: Error) => {
          throw new UsageError(`FAIRSPEC_DEMO_KEY: ${e.message}`);
        })
      ).key;
      keyNote = "(from FAIRSPEC_DEMO_KEY)";
    } else if (!(await store.listApiKeys(tenant)).some((k) => !k.revokedAt)) {
      demoKey = (await store.createApiKey(tenant)).key;
      keyNote = "(generated now and shown only this once: only its hash is stored)";
    }

    let active = await store.activeRun();
    if (!active) {
      say(`calibration   none active yet: running a quick one (${configPath}); later starts reuse it`);
      const r = await calibrate({ config, baseDir: dirname(resolve(configPath)), store, outDir: resolve("out/calibration"), quiet: false });
      await store.activate(r.runId, { force: true });
      active = await store.activeRun();
      say(`calibration   ${r.runId} stored and activated; report in out/calibration/report.html`);
    } else say(`calibration   ${active.id} active (reused)`);

    const origin = await startOrigin({ port: originPort });
    const originUrl = origin.url;
    // Every pool of the active run is served by this one fairspec origin (parameters travel per request).
    const base = loadEdgeConfig();
    const runPools = active ? await store.pools(active.id) : [];
    const edgeConfig = {
      ...base,
      pools: [
        ...base.pools.map((p) => ({ ...p, urls: [originUrl] })),
        ...runPools.filter((p) => !base.pools.some((b) => b.id === p.id)).map((p) => ({ id: p.id, kind: "fairspec" as const, urls: [originUrl], drafter: p.drafter, gamma: p.gamma, proposal_temperature: p.proposalTemperature, model: base.model })),
      ],
    };
    const adminToken = process.env.ADMIN_TOKEN || randomBytes(18).toString("base64url");
    const edge = await startNodeEdge({ config: edgeConfig, dbUrl, port: edgePort, adminToken });
    store.close();

    const key = demoKey ?? "<the demo key printed at the first start, or set FAIRSPEC_DEMO_KEY>";
    say(`origin        ${originUrl}   (speculative inference: verifier + drafters in models/)`);
    say(`edge          ${edge.url}   (OpenAI-compatible gateway: auth, task detection, fitted params, routing)`);
    say(`tenant        ${tenant}   key ${demoKey ?? "(exists; not shown again)"} ${keyNote}`);
    say(`admin token   ${process.env.ADMIN_TOKEN ? "(from ADMIN_TOKEN)" : adminToken}`);
    say(`ready in ${((Date.now() - t0) / 1000).toFixed(1)} s. Try:\n`);
    say(
      `  curl -s ${edge.url}/v1/chat/completions -H 'authorization: Bearer ${key}' -H 'content-type: application/json' \\\n` +
        `    -d '{"model":"fairspec","messages":[{"role":"user","content":"Bonjour, comment"}],"max_tokens":48}' -D - \n`,
    );
    say("Ctrl-C stops everything.");
    await new Promise<void>((done) => {
      const stop = async () => {
        say("\nstopping…");
        await edge.close();
        await origin.close();
        done();
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
  },
};
