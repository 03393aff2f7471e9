/**
 * The Cloudflare Workers entry of the edge gateway: the same Hono app (functions/app.ts) over
 * `@libsql/client/web` (libSQL / Turso over HTTP) with the ONNX task classifier on
 * onnxruntime-web's wasm backend. One app per isolate, built on the first request.
 *
 * Bindings (wrangler.toml `[vars]`, secrets with `wrangler secret put`):
 *   FAIRSPEC_DB_URL       libSQL URL (https://…, libsql://…; http://127.0.0.1:… locally)
 *   FAIRSPEC_DB_TOKEN     secret: the database auth token (Turso)
 *   ADMIN_TOKEN           secret: bearer token of the admin API (unset: admin API disabled)
 *   ORIGIN_TOKEN          secret, optional: sent to origins as Authorization: Bearer …
 *   FAIRSPEC_EDGE_CONFIG  optional: the edge config (JSON string or object); default: the
 *                         bundled functions/edge.config.json
 *
 * onnxruntime-web in workerd: workerd forbids compiling wasm from bytes at run time, so the
 * runtime's `.wasm` is imported as a module (wrangler precompiles it at deploy) and
 * `WebAssembly.instantiate(bytes, imports)` is wrapped to instantiate that module instead; one
 * thread (`numThreads = 1`, no workers in an isolate). The model's bytes come in through a `Data`
 * rule. The session is created on the first request that needs it (~0.5 s), not at start-up.
 */
import { createClient } from "@libsql/client/web";
import { drizzle } from "drizzle-orm/libsql/web";
import type { ExecutionContext } from "hono";
import * as ort from "onnxruntime-web/wasm";
// A relative path: wrangler collects module imports by file, not through package exports.
import ortWasm from "../node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm";
import classifierModel from "../models/task-classifier/model.onnx";
import classifierMeta from "../models/task-classifier/meta.json" with { type: "json" };
import bundledConfig from "./edge.config.json" with { type: "json" };
import { createEdgeApp, type EdgeApp } from "./app.ts";
import { createTaskClassifier, type TaskClassifierMeta } from "./classifier.ts";
import { parseEdgeConfig } from "./config.ts";
import { createEdgeDb } from "./db.ts";
import { lazyClassifier } from "./task.ts";

export interface Env {
  FAIRSPEC_DB_URL: string;
  FAIRSPEC_DB_TOKEN?: string;
  ADMIN_TOKEN?: string;
  ORIGIN_TOKEN?: string;
  FAIRSPEC_EDGE_CONFIG?: string | Record<string, unknown>;
}

let wasmPatched = false;

/** Make onnxruntime-web's `WebAssembly.instantiate(bytes, imports)` use the precompiled module. */
function usePrecompiledOrtWasm(): void {
  if (wasmPatched) return;
  wasmPatched = true;
  const original = WebAssembly.instantiate.bind(WebAssembly) as (m: WebAssembly.Module, i?: WebAssembly.Imports) => Promise<WebAssembly.Instance>;
  (WebAssembly as { instantiate: unknown }).instantiate = (source: unknown, imports?: WebAssembly.Imports) =>
    source instanceof WebAssembly.Module ? original(source, imports) : original(ortWasm, imports).then((instance) => ({ module: ortWasm, instance }));
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  // Non-empty, so the runtime never tries to fetch the .wasm; the bytes are never compiled.
  ort.env.wasm.wasmBinary = new Uint8Array([0]);
}

const log = (event: string, fields: Record<string, unknown>) => console.warn(JSON.stringify({ event, ...fields }));


let built: { app: EdgeApp; key: string; env: Env } | undefined;

function edgeFor(env: Env): EdgeApp {
  // The same env object on every request of an isolate: the common case costs one comparison.
  if (built?.env === env) return built.app;
  // Bindings are fixed for an isolate's life; rebuild only if they differ (tests swap them).
  const key = `${env.FAIRSPEC_DB_URL}\u0000${env.FAIRSPEC_DB_TOKEN ?? ""}\u0000${env.ADMIN_TOKEN ?? ""}\u0000${typeof env.FAIRSPEC_EDGE_CONFIG === "string" ? env.FAIRSPEC_EDGE_CONFIG : JSON.stringify(env.FAIRSPEC_EDGE_CONFIG ?? null)}`;
  if (built?.key === key) {
    built.env = env;
    return built.app;
  }
  const config = parseEdgeConfig(env.FAIRSPEC_EDGE_CONFIG ?? bundledConfig, env.FAIRSPEC_EDGE_CONFIG ? "FAIRSPEC_EDGE_CONFIG" : "functions/edge.config.json");
  const client = createClient(env.FAIRSPEC_DB_TOKEN ? { url: env.FAIRSPEC_DB_URL, authToken: env.FAIRSPEC_DB_TOKEN } : { url: env.FAIRSPEC_DB_URL });
  const classifier = lazyClassifier(
    async () => {
      usePrecompiledOrtWasm();
      return createTaskClassifier(ort, new Uint8Array(classifierModel), classifierMeta as TaskClassifierMeta);
    },
    { onError: (e) => log("classifier_start_failed", { error: (e as Error).message }) },
  );
  const app = createEdgeApp({
    config,
    db: createEdgeDb(drizzle(client)),
    adminToken: env.ADMIN_TOKEN ?? null,
    originToken: env.ORIGIN_TOKEN ?? null,
    classifier,
    log,
  });
  built = { app, key, env };
  return app;
}

export default {
  fetch(request: Request, env: Env, ctx: ExecutionContext): Response | Promise<Response> {
    return edgeFor(env).app.fetch(request, env, ctx);
  },
};
