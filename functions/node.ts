/**
 * The Node entry of the edge gateway: the same Hono app (functions/app.ts) served with
 * @hono/node-server, over `@libsql/client` (a `file:` database or a libSQL server over HTTP).
 *
 *   npx tsx functions/node.ts [--port 8787] [--host 127.0.0.1] [--config functions/edge.config.json]
 *                             [--workers 1|N|auto]
 *
 * Environment: FAIRSPEC_DB_URL (file:PATH, http(s)://, libsql://; default file:./fairspec.db),
 * FAIRSPEC_DB_TOKEN (remote auth token), ADMIN_TOKEN (admin API; unset = disabled),
 * ORIGIN_TOKEN (sent to origins), FAIRSPEC_EDGE_CONFIG (config file path), PORT, HOST,
 * FAIRSPEC_EDGE_WORKERS (as --workers).
 *
 * Workers: one process by default. `--workers N` (or `auto`: one per core) runs N processes with
 * node:cluster, sharing the port; each has its own app state (caches, rate-limit buckets,
 * telemetry buffer, classifier), as Workers isolates do. The primary only forks and supervises.
 */
import cluster, { type Worker } from "node:cluster";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
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
  // Node has no ExecutionContext: waitUntil work runs on, and close() waits for it. The same
  // promise is handed over by many requests (a telemetry window's flush): tracked once.
  const pending = new Set<Promise<unknown>>();
  const ctx = {
    waitUntil(p: Promise<unknown>) {
      if (pending.has(p)) return;
      pending.add(p);
      p.then(
        () => void pending.delete(p),
        () => void pending.delete(p),
      );
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

// ---- node:cluster ----

/** `--workers` / FAIRSPEC_EDGE_WORKERS: a positive integer, or `auto` (one per core); unset: 1. */
export function edgeWorkerCount(value: string | undefined): number {
  if (value === undefined || value === "") return 1;
  if (value === "auto") return availableParallelism();
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--workers: expected a positive integer or 'auto', got '${value}'`);
  return n;
}

/** Messages between the primary and its edge workers (IPC), on top of the caller's own. */
type ClusterMessage = { fairspecEdge: "listening"; url: string } | { fairspecEdge: "close" } | { fairspecEdge: "call"; id: number; msg: unknown } | { fairspecEdge: "reply"; id: number; value: unknown };

export interface EdgeCluster {
  /** The shared address (every worker listens on it). */
  url: string;
  workers(): Worker[];
  /** Sends `msg` to every worker's `onCall` handler (serveClusterWorker) and collects the answers. */
  call<T = unknown>(msg: unknown): Promise<T[]>;
  /** Stops the workers (each finishes its requests and flushes its telemetry). */
  close(): Promise<void>;
}

/**
 * Primary side: forks `n` workers running this process's script (same argv and execArgv; the
 * script starts the edge and calls serveClusterWorker), resolves once all listen. A worker that
 * exits unexpectedly is replaced.
 */
export function forkEdgeWorkers(n: number, o: { env?: Record<string, string>; log?: EdgeDeps["log"] } = {}): Promise<EdgeCluster> {
  if (!cluster.isPrimary) throw new Error("forkEdgeWorkers: only the primary forks");
  const log = o.log ?? (() => {});
  let closing = false;
  let nextId = 0;
  const replies = new Map<number, { left: number; values: unknown[]; resolve: (v: unknown[]) => void }>();
  return new Promise((resolve, reject) => {
    let url: string | null = null;
    let listening = 0;
    const spawn = () => {
      const w = cluster.fork(o.env);
      w.on("message", (m: ClusterMessage) => {
        if (m?.fairspecEdge === "listening") {
          url ??= m.url;
          if (++listening === n) resolve(handle);
        } else if (m?.fairspecEdge === "reply") {
          const r = replies.get(m.id);
          if (!r) return;
          r.values.push(m.value);
          if (--r.left === 0) {
            replies.delete(m.id);
            r.resolve(r.values);
          }
        }
      });
      w.once("exit", (code, signal) => {
        if (closing) return;
        if (listening < n && url === null) return reject(new Error(`edge worker ${w.id} exited (${signal ?? code}) before listening`));
        log("edge_worker_exit", { worker: w.id, code, signal });
        spawn();
      });
    };
    const handle: EdgeCluster = {
      get url() {
        return url!;
      },
      workers: () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w && w.isConnected()),
      call<T>(msg: unknown) {
        const ws = handle.workers();
        const id = nextId++;
        return new Promise<T[]>((res) => {
          if (ws.length === 0) return res([]);
          replies.set(id, { left: ws.length, values: [], resolve: res as (v: unknown[]) => void });
          for (const w of ws) w.send({ fairspecEdge: "call", id, msg } satisfies ClusterMessage);
        });
      },
      async close() {
        closing = true;
        await Promise.all(
          handle.workers().map(
            (w) =>
              new Promise<void>((res) => {
                w.once("exit", () => res());
                w.send({ fairspecEdge: "close" } satisfies ClusterMessage);
              }),
          ),
        );
      },
    };
    for (let i = 0; i < n; i++) spawn();
  });
}

/** Worker side: tells the primary where it listens, answers its calls with `onCall`, closes on request. */
export function serveClusterWorker(running: RunningEdge, onCall: (msg: unknown) => unknown = () => null): void {
  if (!cluster.isWorker) return;
  process.on("message", (m: ClusterMessage) => {
    if (m?.fairspecEdge === "call") {
      void Promise.resolve()
        .then(() => onCall(m.msg))
        .then(
          (value) => process.send!({ fairspecEdge: "reply", id: m.id, value } satisfies ClusterMessage),
          (e: unknown) => process.send!({ fairspecEdge: "reply", id: m.id, value: { error: (e as Error).message } } satisfies ClusterMessage),
        );
    } else if (m?.fairspecEdge === "close") {
      void running.close().then(() => process.exit(0));
    }
  });
  process.send!({ fairspecEdge: "listening", url: running.url } satisfies ClusterMessage);
}

async function main() {
  const { values } = parseArgs({
    options: { port: { type: "string" }, host: { type: "string" }, config: { type: "string" }, workers: { type: "string" } },
  });
  const port = Number(values.port ?? process.env.PORT ?? 8787);
  const log: EdgeDeps["log"] = (event, fields) => console.error(JSON.stringify({ event, ...fields }));
  const workers = edgeWorkerCount(values.workers ?? process.env.FAIRSPEC_EDGE_WORKERS);
  if (workers > 1 && cluster.isPrimary) {
    const edges = await forkEdgeWorkers(workers, { log });
    console.log(`fairspec edge listening on ${edges.url} (${workers} worker processes)`);
    const stop = () => void edges.close().then(() => process.exit(0));
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    return;
  }
  const running = await startNodeEdge({
    config: loadEdgeConfig(values.config ?? (process.env.FAIRSPEC_EDGE_CONFIG || DEFAULT_CONFIG)),
    port,
    hostname: values.host ?? process.env.HOST ?? "127.0.0.1",
    log,
  });
  if (cluster.isWorker) {
    // The primary handles the signals and asks each worker to close.
    process.on("SIGINT", () => {});
    process.on("SIGTERM", () => {});
    serveClusterWorker(running);
    return;
  }
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
