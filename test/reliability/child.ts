/**
 * Processes the fault scenarios and the soak kill, restart and measure: each role runs in its own
 * Node process (forked with tsx), reports `{url, pid}` over IPC once listening, answers
 * `{cmd: "rss"}` with its `process.memoryUsage().rss`, and exits on `{cmd: "exit"}` (or dies by
 * SIGKILL, which is the point).
 *
 *   origin   the real origin (origin/server.ts startOrigin, bundled models)   --port --max-waiting --concurrency
 *            --step-delay-ms N (each verifier step takes N ms longer: a stream that is surely
 *            still generating when a fault scenario kills the process, on any hardware)
 *   trivial  a trivial OpenAI-compatible origin (test/workers/fixtures.ts)     --port
 *   edge     the Node edge entry (functions/node.ts) with a JSON config        --config-json --db --db-token --admin-token --port
 *            --classifier on (the committed ONNX task classifier; default off)
 *   hrana    libSQL over HTTP (test/support/hrana.ts) on a database file       --db --db-token --port
 */
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

export const CHILD_SCRIPT = fileURLToPath(import.meta.url);

export interface Child {
  role: string;
  url: string;
  pid: number;
  proc: ChildProcess;
  /** Resident set size of the child, bytes. */
  rss(): Promise<number>;
  /** SIGKILL, and wait for the exit. */
  kill(): Promise<void>;
  /** Ask it to exit cleanly (SIGKILL after 5 s). */
  stop(): Promise<void>;
}

export function startChild(role: "origin" | "trivial" | "edge" | "hrana", args: Record<string, string | number> = {}, o: { timeoutMs?: number; stdio?: "inherit" | "ignore" } = {}): Promise<Child> {
  const argv = ["--role", role, ...Object.entries(args).flatMap(([k, v]) => [`--${k}`, String(v)])];
  return new Promise((resolve, reject) => {
    const proc = fork(CHILD_SCRIPT, argv, { execArgv: ["--import", "tsx"], stdio: ["ignore", o.stdio ?? "ignore", o.stdio ?? "inherit", "ipc"] });
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`child ${role} did not start within ${o.timeoutMs ?? 60_000} ms`));
    }, o.timeoutMs ?? 60_000);
    const exited = new Promise<void>((r) => proc.once("exit", () => r()));
    proc.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`child ${role} exited before it was ready (${code ?? signal})`));
    });
    proc.once("message", (m: { url: string; pid: number }) => {
      clearTimeout(timer);
      const ask = <T>(msg: object) =>
        new Promise<T>((res, rej) => {
          const onMsg = (x: unknown) => {
            proc.off("exit", onExit);
            res(x as T);
          };
          const onExit = () => {
            proc.off("message", onMsg);
            rej(new Error(`child ${role} exited`));
          };
          proc.once("message", onMsg);
          proc.once("exit", onExit);
          proc.send(msg);
        });
      resolve({
        role,
        url: m.url,
        pid: m.pid,
        proc,
        rss: async () => (await ask<{ rss: number }>({ cmd: "rss" })).rss,
        async kill() {
          if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
          await exited;
        },
        async stop() {
          if (proc.exitCode !== null || proc.signalCode !== null) return;
          proc.send({ cmd: "exit" });
          const t = setTimeout(() => proc.kill("SIGKILL"), 5_000);
          await exited;
          clearTimeout(t);
        },
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The child side.

async function main() {
  const { values: a } = parseArgs({
    options: {
      role: { type: "string" },
      port: { type: "string", default: "0" },
      "max-waiting": { type: "string", default: "8" },
      concurrency: { type: "string", default: "1" },
      "config-json": { type: "string" },
      db: { type: "string" },
      "db-token": { type: "string" },
      "admin-token": { type: "string" },
      classifier: { type: "string", default: "off" },
      "step-delay-ms": { type: "string", default: "0" },
    },
  });
  const port = Number(a.port);
  let url: string;
  let close: () => Promise<void>;
  if (a.role === "origin") {
    const { startOrigin } = await import("../../origin/server.ts");
    const { speculativeSteps } = await import("../../engine/speculative.ts");
    const delay = Number(a["step-delay-ms"]);
    const engine = delay > 0 ? async function* (g: Parameters<typeof speculativeSteps>[0]) {
      for await (const ev of speculativeSteps(g)) {
        await new Promise((r) => setTimeout(r, delay));
        yield ev;
      }
    } : undefined;
    const o = await startOrigin({ port, maxWaiting: Number(a["max-waiting"]), concurrency: Number(a.concurrency), ...(engine ? { engine } : {}) });
    url = o.url;
    close = o.close;
  } else if (a.role === "trivial") {
    const { startTrivialOrigin } = await import("../workers/fixtures.ts");
    const o = await startTrivialOrigin("child", { port, record: false });
    url = o.url;
    close = o.close;
  } else if (a.role === "edge") {
    const { startNodeEdge } = await import("../../functions/node.ts");
    const { parseEdgeConfig } = await import("../../functions/config.ts");
    const e = await startNodeEdge({
      config: parseEdgeConfig(a["config-json"]!),
      dbUrl: a.db!,
      dbToken: a["db-token"],
      adminToken: a["admin-token"] ?? null,
      ...(a.classifier === "on" ? {} : { classifier: null }),
      port,
      // Structured events go to stderr as JSON lines (what functions/node.ts's main does).
      log: (event, fields) => process.stderr.write(`${JSON.stringify({ event, ...fields })}\n`),
    });
    url = e.url;
    close = e.close;
  } else if (a.role === "hrana") {
    const { startHrana } = await import("../support/hrana.ts");
    const h = await startHrana({ path: a.db!, authToken: a["db-token"], port });
    url = h.url;
    close = h.close;
  } else throw new Error(`unknown role ${a.role}`);
  process.on("message", (m: { cmd: string }) => {
    if (m.cmd === "rss") process.send!({ rss: process.memoryUsage().rss });
    else if (m.cmd === "exit") void close().finally(() => process.exit(0));
  });
  process.on("disconnect", () => void close().finally(() => process.exit(0)));
  process.send!({ url, pid: process.pid });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main().catch((e: unknown) => {
    console.error((e as Error).stack ?? e);
    process.exit(1);
  });
}
