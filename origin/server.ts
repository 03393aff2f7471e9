/**
 * The Node adapter of the origin: loads the models, builds the Hono app (origin/app.ts) and
 * serves it with @hono/node-server. Everything runtime-specific lives here; the app itself is
 * runtime-neutral.
 *
 *   npx tsx origin/server.ts [--port 8100] [--host 127.0.0.1] [--pool ID] [--config FILE] …
 *   npx fairspec serve-origin …            (the same, through the CLI)
 *
 * Flags win over environment variables (PORT, HOST, FAIRSPEC_POOL, FAIRSPEC_POOLS), which win
 * over the pool's settings in the config, which win over the built-in defaults.
 */
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath, pathToFileURL } from "node:url";
import { serve } from "@hono/node-server";
import type { Hono } from "hono";
import { parse, UsageError } from "../cli/args.ts";
import type { Command } from "../cli/commands.ts";
import type { CausalLM } from "../engine/causal-lm.ts";
import { loadOnnxCausalLM } from "../engine/onnx-lm.ts";
import type { OrtBackend } from "../engine/ort.ts";
import { createOriginApp, type OriginDeps, type SpeculativeDefaults } from "./app.ts";
import { createMetrics, type OriginMetrics } from "./metrics.ts";
import { MAX_GAMMA } from "./openai.ts";
import { findPool, loadPoolsConfig, PoolsConfigError } from "./pools.ts";

export const MODELS_DIR = fileURLToPath(new URL("../models/", import.meta.url));
export const EXAMPLE_POOLS = fileURLToPath(new URL("./pools.example.json", import.meta.url));
export const DEFAULT_PORT = 8100;

export interface OriginModels {
  verifier: CausalLM;
  drafters: Record<string, CausalLM>;
}

/** models/verifier plus every drafter named (models/drafter-<name>). */
export async function loadOriginModels(modelsDir = MODELS_DIR, drafterNames: readonly string[] = ["base", "balanced"], backend: OrtBackend = "node"): Promise<OriginModels> {
  const dir = modelsDir.endsWith("/") ? modelsDir : `${modelsDir}/`;
  const [verifier, ...ds] = await Promise.all([
    loadOnnxCausalLM(`${dir}verifier`, { backend }),
    ...drafterNames.map((n) => loadOnnxCausalLM(`${dir}drafter-${n}`, { backend })),
  ]);
  return { verifier: verifier!, drafters: Object.fromEntries(drafterNames.map((n, i) => [n, ds[i]!])) };
}

export interface RunningServer {
  url: string;
  server: Server;
  /** Stop listening and drop open connections (in-flight generations see their client go). */
  close(): Promise<void>;
}

/** Serve any Hono app on Node; port 0 picks a free port. */
export function listen(app: Hono, port: number, hostname = "127.0.0.1"): Promise<RunningServer> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, port, hostname }, (info: AddressInfo) => {
      const host = info.family === "IPv6" ? `[${info.address}]` : info.address;
      resolve({
        url: `http://${host}:${info.port}`,
        server,
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections();
            server.close(() => done());
          }),
      });
    }) as Server;
    server.once("error", reject);
  });
}

export interface OriginOptions extends Partial<Omit<OriginDeps, "verifier" | "drafters">> {
  port?: number;
  hostname?: string;
  /** Already loaded models (tests, benches); otherwise they are loaded from `modelsDir`. */
  models?: OriginModels;
  modelsDir?: string;
}

export interface RunningOrigin extends RunningServer {
  app: Hono;
  metrics: OriginMetrics;
  models: OriginModels;
}

export async function startOrigin(o: OriginOptions = {}): Promise<RunningOrigin> {
  const { port, hostname, models: preloaded, modelsDir, ...deps } = o;
  const models = preloaded ?? (await loadOriginModels(modelsDir));
  const metrics = deps.metrics ?? createMetrics();
  const hasBase = "base" in models.drafters;
  const app = createOriginApp({
    ...deps,
    modelName: deps.modelName ?? "fairspec",
    defaults: deps.defaults ?? { drafter: hasBase ? "base" : null, gamma: hasBase ? 4 : 0, proposal_temperature: null },
    verifier: models.verifier,
    drafters: models.drafters,
    metrics,
  });
  const running = await listen(app, port ?? DEFAULT_PORT, hostname ?? "127.0.0.1");
  return { ...running, app, metrics, models };
}

function intFlag(v: string | undefined, flag: string, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  const x = Number(v);
  if (v.trim() === "" || !Number.isInteger(x) || x < min || x > max) throw new UsageError(`--${flag} must be an integer from ${min} to ${max}, got '${v}'`);
  return x;
}

export const serveOriginCmd: Command = {
  summary: "serve the OpenAI-compatible speculative origin (Hono on Node) for one pool",
  usage:
    "[--port N] [--host H] [--pool ID] [--config FILE] [--model-name NAME] [--drafter base|balanced|none] [--gamma G] [--proposal-temperature TAU] [--concurrency N] [--max-waiting N] [--timeout-ms MS] [--models DIR]",
  async run(argv) {
    const { values: v } = parse(
      argv,
      {
        port: { type: "string" },
        host: { type: "string" },
        pool: { type: "string" },
        config: { type: "string" },
        "model-name": { type: "string" },
        drafter: { type: "string" },
        gamma: { type: "string" },
        "proposal-temperature": { type: "string" },
        concurrency: { type: "string" },
        "max-waiting": { type: "string" },
        "timeout-ms": { type: "string" },
        models: { type: "string" },
      },
      `npx fairspec serve-origin ${serveOriginCmd.usage}`,
    );
    const port = intFlag(v.port ?? process.env.PORT, "port", DEFAULT_PORT, 0, 65535);
    const hostname = v.host ?? process.env.HOST ?? "127.0.0.1";
    const poolId = v.pool ?? process.env.FAIRSPEC_POOL;
    const configPath = v.config ?? process.env.FAIRSPEC_POOLS ?? EXAMPLE_POOLS;

    let defaults: SpeculativeDefaults = { drafter: "base", gamma: 4, proposal_temperature: null };
    let modelName = "fairspec";
    let chatTemplate: string | null = null;
    if (poolId !== undefined) {
      try {
        const pool = findPool(await loadPoolsConfig(configPath), poolId);
        if (pool.kind !== "fairspec") throw new UsageError(`pool '${poolId}' is a ${pool.kind} pool — serve-origin serves fairspec pools; start ${pool.kind} itself for it`);
        defaults = { drafter: pool.drafter, gamma: pool.gamma, proposal_temperature: pool.proposal_temperature };
        modelName = pool.model ?? modelName;
        chatTemplate = pool.chat_template ?? null;
      } catch (e) {
        if (e instanceof PoolsConfigError) throw new UsageError(`${e.message} — fix the file or pass --config FILE`);
        throw e;
      }
    }
    if (v.drafter !== undefined) defaults.drafter = v.drafter === "none" ? null : v.drafter;
    defaults.gamma = intFlag(v.gamma, "gamma", defaults.gamma, 0, MAX_GAMMA);
    if (v.drafter === "none" && v.gamma === undefined) defaults.gamma = 0;
    if (v["proposal-temperature"] !== undefined) {
      const tau = Number(v["proposal-temperature"]);
      if (!(tau >= 0 && tau <= 10)) throw new UsageError(`--proposal-temperature must be a number from 0 to 10, got '${v["proposal-temperature"]}'`);
      defaults.proposal_temperature = tau;
    }
    const drafterNames = ["base", "balanced"];
    if (defaults.drafter !== null && !drafterNames.includes(defaults.drafter)) throw new UsageError(`unknown drafter '${defaults.drafter}' — use one of: ${drafterNames.join(", ")}, or none`);
    if (defaults.gamma > 0 && defaults.drafter === null) throw new UsageError(`--gamma ${defaults.gamma} needs a drafter — pass --drafter base|balanced, or --gamma 0`);

    const models = await loadOriginModels(v.models ?? MODELS_DIR, drafterNames);
    const origin = await startOrigin({
      port,
      hostname,
      models,
      modelName: v["model-name"] ?? modelName,
      poolId,
      defaults,
      chatTemplate,
      concurrency: intFlag(v.concurrency, "concurrency", 1, 1, 64),
      maxWaiting: intFlag(v["max-waiting"], "max-waiting", 8, 0, 10_000),
      timeoutMs: intFlag(v["timeout-ms"], "timeout-ms", 120_000, 1, 86_400_000),
    }).catch((e: NodeJS.ErrnoException) => {
      if (e.code === "EADDRINUSE") throw new UsageError(`port ${port} is in use — pass --port N (or --port 0 for any free port)`);
      throw e;
    });
    const spec = defaults.gamma > 0 ? `drafter ${defaults.drafter}, γ=${defaults.gamma}` : "plain decoding (γ=0)";
    console.log(`fairspec origin on ${origin.url}  (model '${v["model-name"] ?? modelName}', pool ${poolId ?? "-"}, default ${spec}; Ctrl-C stops)`);
    // Serve until a signal; then stop taking requests and free the models.
    await new Promise<void>((resolve) => {
      const stop = () => {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
        resolve();
      };
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
    });
    await origin.close();
    await Promise.all([models.verifier, ...Object.values(models.drafters)].map((m) => m.dispose()));
  },
};

// Run directly: npx tsx origin/server.ts …
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  serveOriginCmd.run(process.argv.slice(2)).catch((e: Error) => {
    console.error(`fairspec origin: ${e.message}`);
    process.exit(e instanceof UsageError || e instanceof RangeError ? 2 : 1);
  });
}
