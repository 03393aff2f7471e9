/**
 * The Node entry of the edge gateway: the same Hono app (functions/app.ts) served with
 * @hono/node-server, over `@libsql/client` (a `file:` database or a libSQL server over HTTP).
 *
 *   npx tsx functions/node.ts [--port 8787] [--host 127.0.0.1] [--config functions/edge.config.json]
 *
 * Environment: FAIRSPEC_DB_URL (file:PATH, http(s)://, libsql://; default file:./fairspec.db),
 * FAIRSPEC_DB_TOKEN (remote auth token), ADMIN_TOKEN (admin API; unset = disabled),
 * ORIGIN_TOKEN (sent to origins), FAIRSPEC_EDGE_CONFIG (config file path), PORT, HOST.
 */
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { serve } from "@hono/node-server";
import { createClient, type Client } from "@libsql/client";
import { drizzle } from "drizzle-orm/libsql";
import { createEdgeApp, type EdgeApp, type EdgeDeps } from "./app.ts";
import { parseEdgeConfig, type EdgeConfig } from "./config.ts";
import { createEdgeDb } from "./db.ts";
import { createNodeFetch } from "./node-fetch.ts";
import { loadTaskClassifier } from "./classifier-node.ts";

export const DEFAULT_CONFIG = fileURLToPath(new URL("./edge.config.json", import.meta.url));

export function loadEdgeConfig(path: string = DEFAULT_CONFIG): EdgeConfig {
  return parseEdgeConfig(readFileSync(path, "utf8"), path);
}

export interface NodeEdgeOptions extends Partial<Omit<EdgeDeps, "db" | "config">> {
  config?: EdgeConfig;
  dbUrl?: string;
  dbToken?: string;
  port?: number;
  hostname?: string;
}

export interface RunningEdge {
  url: string;
  server: Server;
  edge: EdgeApp;
  client: Client;
  /** Waits for background work (telemetry writes) then stops. */
  close(): Promise<void>;
}

export async function startNodeEdge(o: NodeEdgeOptions = {}): Promise<RunningEdge> {
  const config = o.config ?? loadEdgeConfig(process.env.FAIRSPEC_EDGE_CONFIG || DEFAULT_CONFIG);
  const url = o.dbUrl ?? (process.env.FAIRSPEC_DB_URL || "file:./fairspec.db");
  const authToken = o.dbToken ?? (process.env.FAIRSPEC_DB_TOKEN || undefined);
  // A file is shared with the calibrator: wait for its locks (busy timeout) rather than fail.
  const client = createClient(authToken ? { url, authToken } : { url, timeout: 5000 });
  const nodeFetch = o.fetch ? null : createNodeFetch({ connectTimeoutMs: config.timeouts.connectMs });
  // The committed ONNX task classifier, unless the caller injects one (or null for none).
  const classifier = o.classifier !== undefined ? o.classifier : await loadTaskClassifier();
  const edge = createEdgeApp({
    ...o,
    classifier,
    config,
    db: createEdgeDb(drizzle(client)),
    adminToken: o.adminToken !== undefined ? o.adminToken : process.env.ADMIN_TOKEN || null,
    originToken: o.originToken !== undefined ? o.originToken : process.env.ORIGIN_TOKEN || null,
    fetch: o.fetch ?? nodeFetch!,
    // Synchronous sha256 (node:crypto): no thread-pool hop per request, unlike WebCrypto here.
    sha256: o.sha256 ?? ((s) => createHash("sha256").update(s, "utf8").digest("hex")),
  });
  // Node has no ExecutionContext: waitUntil work runs on, and close() waits for it.
  const pending = new Set<Promise<unknown>>();
  const ctx = {
    waitUntil(p: Promise<unknown>) {
      const q = p.catch(() => {}).finally(() => pending.delete(q));
      pending.add(q);
    },
    passThroughOnException() {},
    props: {},
  };
  const server = await new Promise<Server>((resolve, reject) => {
    const s = serve({ fetch: (req) => edge.app.fetch(req, {}, ctx), port: o.port ?? 8787, hostname: o.hostname ?? "127.0.0.1" }, () => resolve(s as Server)) as Server;
    s.once("error", reject);
  });
  const addr = server.address() as AddressInfo;
  return {
    url: `http://${addr.family === "IPv6" ? `[${addr.address}]` : addr.address}:${addr.port}`,
    server,
    edge,
    client,
    async close() {
      await new Promise<void>((r) => {
        server.closeIdleConnections();
        server.close(() => r());
        setTimeout(() => server.closeAllConnections(), 2000).unref();
      });
      await Promise.allSettled([...pending]);
      await edge.state.telemetry.flush();
      nodeFetch?.close();
      client.close();
    },
  };
}

async function main() {
  const { values } = parseArgs({
    options: { port: { type: "string" }, host: { type: "string" }, config: { type: "string" } },
  });
  const port = Number(values.port ?? process.env.PORT ?? 8787);
  const running = await startNodeEdge({
    config: loadEdgeConfig(values.config ?? (process.env.FAIRSPEC_EDGE_CONFIG || DEFAULT_CONFIG)),
    port,
    hostname: values.host ?? process.env.HOST ?? "127.0.0.1",
    log: (event, fields) => console.error(JSON.stringify({ event, ...fields })),
  });
  console.log(`fairspec edge listening on ${running.url}`);
  const stop = () => void running.close().then(() => process.exit(0));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main().catch((e: unknown) => {
    console.error((e as Error).message);
    process.exit(1);
  });
}
