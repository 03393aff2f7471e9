/**
 * npm run bench:edge -- --out FILE.json [--n 2000] [--miss 300] [--seconds 5] [--concurrency 32]
 *                       [--workers auto]  (edge processes of the second throughput run: node:cluster,
 *                                          as functions/node.ts --workers; auto = one per core; 1 = none)
 *                       [--profile DIR]   (a V8 CPU profile of the edge process)
 *
 * The edge gateway's own cost, measured in one run against one trivial origin (fixed JSON, no
 * model), so the origin's time is the same on both paths:
 *
 * - added latency: the same non-stream chat request straight to the origin and through the edge
 *   (Node entry: @hono/node-server, @libsql/client on a local file database seeded through
 *   calibrator/store.ts), sequential, direct and edge interleaved so drift hits both alike;
 *   p50 / p99 of each path and of their difference, plus the edge's own `x-fairspec-overhead-ms`
 *   (time from arrival to dispatch);
 *   - warm cache: the key and the params are cached (the steady state); once with no task hint
 *     (the ONNX classifier runs on every request) and once with `x-fairspec-task` (it does not);
 *   - cache miss: both caches are emptied before every request (key lookup + params read from
 *     libSQL on the request path);
 * - routed requests per second: `--concurrency` requests in flight for `--seconds`, through the
 *   edge (warm; one process, the Node entry's default), through the edge run with `--workers`
 *   processes (node:cluster, a second edge started for this run only), and, for reference,
 *   straight to the origin. The CPU time of every process on the path (edge, origin, load
 *   generator) is reported per request: the cores are shared, so their sum bounds requests/s.
 *   Where Debian's `wrk` is installed, both edge runs again with wrk as the load generator: on
 *   this 2-core machine a node:http client costs ~4× wrk's CPU per request (0.087 vs 0.022 ms,
 *   measured), CPU that a real deployment's clients do not take from the gateway's cores.
 *
 * For scale, the same figures for a bare Node proxy (node:http in, node:http out, piped, no logic
 * at all): the floor any Node gateway pays on this machine.
 *
 * Processes: the origin, the edge and the bare proxy each run in their own child process; the load generator
 * (node:http with keep-alive) in this one. All three share this machine's cores (and whatever
 * else runs on it): figures are what this machine gave in this run, nothing more. Rate limiting
 * is set out of the way (burst 10⁹) so it is not what is measured.
 */
import { fork, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const SELF = fileURLToPath(import.meta.url);

const { values: a } = parseArgs({
  options: {
    out: { type: "string" },
    n: { type: "string", default: "2000" },
    miss: { type: "string", default: "300" },
    seconds: { type: "string", default: "5" },
    concurrency: { type: "string", default: "32" },
    /** Edge processes of the cluster throughput run (functions/node.ts --workers): a count, or auto (one per core); 1: no such run. */
    workers: { type: "string", default: "auto" },
    /** Write a V8 CPU profile of the edge process into this directory. */
    profile: { type: "string" },
    // internal: child roles
    role: { type: "string" },
    origin: { type: "string" },
    db: { type: "string" },
  },
});

// ---------------------------------------------------------------------------------------------
// Child roles.

/**
 * The trivial origin: one fixed chat completion (the test fixture's answer for γ = 5, usage and
 * speculative counts included) for every request, written by a minimal HTTP/1.1 responder on
 * node:net. Its CPU shares the cores with the edge, so it is kept to the least a keep-alive
 * request costs (Content-Length bodies; anything else is answered 501 and the socket closed).
 */
async function runOrigin() {
  const { createServer: createTcpServer } = await import("node:net");
  const { ORIGIN_TEXT, fakeCounts } = await import("../test/workers/fixtures.ts");
  const { chatCompletion, usage } = await import("../origin/openai.ts");
  const effective = { drafter: "server-fixed", gamma: 5, proposal_temperature: null };
  const u = usage(7, ORIGIN_TEXT.length, fakeCounts(5));
  const json = JSON.stringify(
    chatCompletion({ id: "chatcmpl-bench", created: 1_700_000_000, model: "fairspec" }, ORIGIN_TEXT.join(""), "stop", u, { speculative_decoding: u.speculative_decoding, timing: { queue_ms: 0, time_to_first_token_ms: 1, e2e_ms: 2 } }, effective),
  );
  const answer = Buffer.from(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(json)}\r\nx-origin: bench\r\n\r\n${json}`);
  const refuse = Buffer.from("HTTP/1.1 501 Not Implemented\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
  const server = createTcpServer((socket) => {
    socket.setNoDelay(true);
    let buf: Buffer = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      for (;;) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buf.toString("latin1", 0, end);
        if (/\r\ntransfer-encoding:/i.test(head)) {
          socket.end(refuse);
          return;
        }
        const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        buf = buf.subarray(end + 4 + length);
        socket.write(answer);
      }
    });
    socket.on("error", () => socket.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  process.on("message", (m: { cmd: string }) => {
    if (m.cmd === "cpu") process.send!({ cpu: process.cpuUsage() });
  });
  process.send!({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}` });
}

/** The floor: the cheapest Node proxy there is (node:http in, node:http out, piped; no logic). */
async function runProxy() {
  const { createServer, request: req, Agent: A } = await import("node:http");
  const target = new URL(a.origin!);
  const agent = new A({ keepAlive: true, maxSockets: 256 });
  const server = createServer((inc, out) => {
    const up = req({ host: target.hostname, port: target.port, path: inc.url, method: inc.method, headers: { ...inc.headers, host: target.host }, agent }, (r) => {
      out.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(out);
    });
    up.on("error", () => out.destroy());
    inc.pipe(up);
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as { port: number }).port;
  process.send!({ url: `http://127.0.0.1:${port}` });
}

async function runEdge() {
  process.once("SIGINT", () => process.exit(0));
  const { default: cluster } = await import("node:cluster");
  const { startNodeEdge, forkEdgeWorkers, serveClusterWorker } = await import("../functions/node.ts");
  const workers = Number(a.workers);
  if (workers > 1 && cluster.isPrimary) {
    // node:cluster: this process forks the edge workers (this script again) and answers for them.
    const edges = await forkEdgeWorkers(workers);
    process.on("message", (m: { cmd: string }) => {
      void edges.call<NodeJS.CpuUsage | true>(m).then((answers) => {
        if (m.cmd === "evict") process.send!({ ok: true });
        else if (m.cmd === "cpu") {
          const cpu = process.cpuUsage();
          for (const c of answers as NodeJS.CpuUsage[]) {
            cpu.user += c.user;
            cpu.system += c.system;
          }
          process.send!({ cpu });
        }
      });
    });
    process.send!({ url: edges.url });
    return;
  }
  const { parseEdgeConfig } = await import("../functions/config.ts");
  const { edgeConfigInput } = await import("../test/workers/fixtures.ts");
  const config = parseEdgeConfig(edgeConfigInput({ defaultUrls: [a.origin!], extra: { rateLimit: { burst: 1_000_000_000, perSecond: 1_000_000_000 } } }));
  const edge = await startNodeEdge({ config, dbUrl: `file:${a.db}`, adminToken: null, port: 0 });
  const command = (m: { cmd: string }): NodeJS.CpuUsage | true | null => {
    if (m.cmd === "evict") {
      edge.edge.state.params.evict();
      edge.edge.state.keys.evict();
      return true;
    }
    return m.cmd === "cpu" ? process.cpuUsage() : null;
  };
  if (cluster.isWorker) return serveClusterWorker(edge, (m) => command(m as { cmd: string }));
  process.on("message", (m: { cmd: string }) => {
    const r = command(m);
    if (m.cmd === "evict") process.send!({ ok: r });
    else if (m.cmd === "cpu") process.send!({ cpu: r });
  });
  process.send!({ url: edge.url });
}

// ---------------------------------------------------------------------------------------------

function start(args: string[], execArgv: string[] = []): Promise<{ child: ChildProcess; url: string }> {
  return new Promise((resolve, reject) => {
    const child = fork(SELF, args, { stdio: ["ignore", "inherit", "inherit", "ipc"], execArgv: [...process.execArgv, ...execArgv] });
    child.once("message", (m: { url: string }) => resolve({ child, url: m.url }));
    child.once("exit", (code) => reject(new Error(`child ${args.join(" ")} exited with ${code}`)));
  });
}

function ask<T = unknown>(child: ChildProcess, msg: unknown): Promise<T> {
  return new Promise((resolve) => {
    child.once("message", (m) => resolve(m as T));
    child.send(msg as object);
  });
}

const cpuOf = async (child: ChildProcess) => {
  const { cpu } = await ask<{ cpu: NodeJS.CpuUsage }>(child, { cmd: "cpu" });
  return (cpu.user + cpu.system) / 1000;
};

const agent = new Agent({ keepAlive: true, maxSockets: 256 });

/** One POST; resolves when the whole body is in. Returns [ms, status, overhead header]. */
function post(url: string, path: string, body: string, key: string | null, extra: Record<string, string> = {}): Promise<[number, number, number]> {
  return new Promise((resolve, reject) => {
    const u = new URL(path, url);
    const t0 = performance.now();
    const headers: Record<string, string | number> = { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...extra };
    if (key) headers.authorization = `Bearer ${key}`;
    const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: "POST", agent, headers }, (res) => {
      res.on("data", () => {});
      res.on("end", () => resolve([performance.now() - t0, res.statusCode ?? 0, Number(res.headers["x-fairspec-overhead-ms"] ?? NaN)]));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
};
const r3 = (x: number) => Math.round(x * 1000) / 1000;
const summary = (xs: number[]) => ({ n: xs.length, p50: r3(pct(xs, 50)), p90: r3(pct(xs, 90)), p99: r3(pct(xs, 99)), mean: r3(xs.reduce((s, x) => s + x, 0) / xs.length) });

async function latency(originUrl: string, proxyUrl: string, edgeUrl: string, key: string, n: number, beforeEdge?: () => Promise<void>, edgeHeaders: Record<string, string> = {}) {
  const body = JSON.stringify({ model: "fairspec", messages: [{ role: "user", content: "Hello there" }], temperature: 1 });
  const direct: number[] = [];
  const proxy: number[] = [];
  const edge: number[] = [];
  const overhead: number[] = [];
  const diff: number[] = [];
  const runEdge = async () => {
    await beforeEdge?.();
    const e = await post(edgeUrl, "/v1/chat/completions", body, key, edgeHeaders);
    if (e[1] !== 200) throw new Error(`edge answered ${e[1]}`);
    return e;
  };
  for (let i = 0; i < n; i++) {
    // Rotate which path goes first, so drift and warm sockets favour none.
    const order = [0, 1, 2].map((k) => (k + i) % 3);
    let d = 0;
    let e: [number, number, number] = [0, 0, 0];
    for (const k of order) {
      if (k === 0) [d] = await post(originUrl, "/v1/chat/completions", body, null);
      else if (k === 1) proxy.push((await post(proxyUrl, "/v1/chat/completions", body, null))[0]);
      else e = await runEdge();
    }
    direct.push(d);
    edge.push(e[0]);
    overhead.push(e[2]);
    diff.push(e[0] - d);
  }
  return {
    direct_ms: summary(direct),
    bare_proxy_ms: summary(proxy),
    edge_ms: summary(edge),
    added_ms: {
      p50: r3(pct(edge, 50) - pct(direct, 50)),
      p99: r3(pct(edge, 99) - pct(direct, 99)),
      paired_p50: r3(pct(diff, 50)),
      paired_p99: r3(pct(diff, 99)),
    },
    bare_proxy_added_ms: { p50: r3(pct(proxy, 50) - pct(direct, 50)), p99: r3(pct(proxy, 99) - pct(direct, 99)) },
    edge_overhead_header_ms: summary(overhead),
  };
}

async function throughput(url: string, key: string | null, seconds: number, concurrency: number) {
  const body = JSON.stringify({ model: "fairspec", messages: [{ role: "user", content: "Hello there" }], temperature: 1 });
  const until = performance.now() + seconds * 1000;
  let ok = 0;
  let failed = 0;
  const lat: number[] = [];
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        const [ms, status] = await post(url, "/v1/chat/completions", body, key).catch(() => [0, 0, 0] as [number, number, number]);
        if (status === 200) {
          ok++;
          lat.push(ms);
        } else failed++;
      }
    }),
  );
  return { requests_per_s: Math.round(ok / seconds), ok, failed, latency_ms: summary(lat) };
}

/**
 * The same load from wrk (C, epoll; Debian's `wrk`), where installed: on 2 shared cores the load
 * generator's own CPU is taken from the edge, and node:http costs ~0.08 ms per request against
 * wrk's ~0.01. wrk's CPU comes from the shell's `times` (its children's user + system time).
 * null when wrk is not installed.
 */
async function wrkThroughput(url: string, key: string | null, seconds: number, concurrency: number, dir: string) {
  if (spawnSync("wrk", ["--version"]).error) return null;
  const body = JSON.stringify({ model: "fairspec", messages: [{ role: "user", content: "Hello there" }], temperature: 1 });
  const script = join(dir, "post.lua");
  const lua = (x: string) => JSON.stringify(x); // a JSON string is a valid Lua string literal here (ASCII, no control characters)
  writeFileSync(
    script,
    [
      `wrk.method = "POST"`,
      `wrk.body = ${lua(body)}`,
      `wrk.headers["Content-Type"] = "application/json"`,
      ...(key ? [`wrk.headers["Authorization"] = ${lua(`Bearer ${key}`)}`] : []),
    ].join("\n"),
  );
  const target = new URL("/v1/chat/completions", url).href;
  const out = await new Promise<string>((resolve, reject) => {
    const p = spawn("sh", ["-c", `wrk -t1 -c${concurrency} -d${seconds}s --latency -s "$0" "$1" && times`, script, target], { stdio: ["ignore", "pipe", "inherit"] });
    let text = "";
    p.stdout.on("data", (b: Buffer) => (text += b.toString()));
    p.on("error", reject);
    p.on("close", (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited with ${code}: ${text.slice(-400)}`))));
  });
  const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
  const ms = (label: string) => {
    const m = new RegExp(`^\\s*${label}%\\s+([\\d.]+)(us|ms|s)\\s*$`, "m").exec(out);
    return m ? r3(Number(m[1]) * (m[2] === "us" ? 1e-3 : m[2] === "s" ? 1e3 : 1)) : NaN;
  };
  const total = num(/(\d+) requests in/);
  const non2xx = num(/Non-2xx or 3xx responses: (\d+)/) || 0;
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)?.slice(1).reduce((a, x) => a + Number(x), 0) ?? 0;
  // `times`: the shell's own line, then its children's (wrk): user and system, as 0m1.234s.
  const lines = out.trim().split("\n");
  const secs = (t: string) => {
    const m = /(\d+)m([\d.]+)s/.exec(t);
    return m ? Number(m[1]) * 60 + Number(m[2]) : NaN;
  };
  const [cu, cs] = (lines.at(-1) ?? "").trim().split(/\s+/);
  const ok = total - non2xx;
  return {
    requests_per_s: Math.round(ok / seconds),
    ok,
    failed: non2xx + socketErrors,
    latency_ms: { p50: ms("50"), p90: ms("90"), p99: ms("99") },
    client_cpu_ms: (secs(cu ?? "") + secs(cs ?? "")) * 1000,
  };
}

async function main() {
  const n = Number(a.n);
  const nMiss = Number(a.miss);
  const seconds = Number(a.seconds);
  const concurrency = Number(a.concurrency);
  const { seedStore } = await import("../test/workers/fixtures.ts");
  const dir = mkdtempSync(join(tmpdir(), "fairspec-bench-edge-"));
  const children: ChildProcess[] = [];
  try {
    const origin = await start(["--role", "origin"]);
    children.push(origin.child);
    const db = join(dir, "edge.db");
    const seeded = await seedStore(db, { base: [origin.url], balanced: [origin.url], vllm: [origin.url] });
    const edge = await start(["--role", "edge", "--origin", origin.url, "--db", db, "--workers", "1"], a.profile ? ["--cpu-prof", `--cpu-prof-dir=${a.profile}`] : []);
    children.push(edge.child);
    const proxy = await start(["--role", "proxy", "--origin", origin.url]);
    children.push(proxy.child);
    const key = seeded.keys.acme;
    console.log(`origin ${origin.url}, edge ${edge.url}; load ${loadavg().map((x) => x.toFixed(2)).join(" ")} on ${cpus().length} cores`);

    // Warm-up (JIT, keep-alive sockets, caches).
    await latency(origin.url, proxy.url, edge.url, key, 300);
    const warm = await latency(origin.url, proxy.url, edge.url, key, n);
    const line = (what: string, l: typeof warm) =>
      console.log(
        `${what}: direct p50 ${l.direct_ms.p50} ms, edge p50 ${l.edge_ms.p50} ms → added p50 ${l.added_ms.p50} ms, p99 ${l.added_ms.p99} ms (a bare Node proxy adds p50 ${l.bare_proxy_added_ms.p50}, p99 ${l.bare_proxy_added_ms.p99})`,
      );
    line("warm cache", warm);
    // The same with the client's task hint: the classifier (onnxruntime-web, ~0.08 ms) is skipped.
    const warmHinted = await latency(origin.url, proxy.url, edge.url, key, n, undefined, { "x-fairspec-task": "en" });
    line("warm cache, task hinted", warmHinted);
    const miss = await latency(origin.url, proxy.url, edge.url, key, nMiss, () => ask<void>(edge.child, { cmd: "evict" }).then(() => undefined));
    line("cache miss", miss);
    // CPU of every process on the path (the machine's cores are shared by all three): where the
    // requests/s ceiling comes from, and whether the load generator is the limit.
    const ownCpu = () => {
      const c = process.cpuUsage();
      return (c.user + c.system) / 1000;
    };
    // The classifier's counters (GET /healthz): texts per run is its mean batch under this load.
    // One process only: behind node:cluster each request may reach another worker's counters.
    const classifierStats = async (url: string): Promise<{ texts: number; runs: number } | null> =>
      ((await (await fetch(`${url}/healthz`)).json()) as { classifier: { texts: number; runs: number } | null }).classifier;
    const routed = async (edgeChild: ChildProcess, url: string, generator: "node" | "wrk" = "node", oneProcess = false) => {
      const stats0 = oneProcess ? await classifierStats(url) : null;
      const [cpu0, originCpu0, clientCpu0] = [await cpuOf(edgeChild), await cpuOf(origin.child), ownCpu()];
      let t: Awaited<ReturnType<typeof throughput>>;
      let clientCpu: number;
      if (generator === "wrk") {
        const w = await wrkThroughput(url, key, seconds, concurrency, dir);
        if (!w) throw new Error("wrk is not installed");
        const { client_cpu_ms, latency_ms, ...rest } = w;
        t = { ...rest, latency_ms: { n: w.ok, mean: NaN, ...latency_ms } };
        clientCpu = client_cpu_ms;
      } else {
        t = await throughput(url, key, seconds, concurrency);
        clientCpu = ownCpu() - clientCpu0;
      }
      const perRequest = (ms: number) => r3(ms / Math.max(1, t.ok));
      const edgeMs = perRequest((await cpuOf(edgeChild)) - cpu0);
      const originMs = perRequest((await cpuOf(origin.child)) - originCpu0);
      const clientMs = perRequest(clientCpu);
      const stats1 = stats0 ? await classifierStats(url) : null;
      return {
        generator,
        ...t,
        ...(stats0 && stats1 && { classifier_texts_per_run: r3((stats1.texts - stats0.texts) / Math.max(1, stats1.runs - stats0.runs)) }),
        edge_process_cpu_ms_per_request: edgeMs,
        single_core_ceiling_requests_per_s: Math.round(1000 / edgeMs),
        origin_process_cpu_ms_per_request: originMs,
        client_process_cpu_ms_per_request: clientMs,
        /** Every core busy with this path and nothing else: client + origin + edge CPU per request. */
        all_cores_ceiling_requests_per_s: Math.round((cpus().length * 1000) / (edgeMs + originMs + clientMs)),
      };
    };
    type Routed = Awaited<ReturnType<typeof routed>>;
    const cpuLine = (t: Pick<Routed, "edge_process_cpu_ms_per_request" | "origin_process_cpu_ms_per_request" | "client_process_cpu_ms_per_request" | "all_cores_ceiling_requests_per_s">) =>
      `edge process CPU ${t.edge_process_cpu_ms_per_request} ms per request (origin ${t.origin_process_cpu_ms_per_request}, client ${t.client_process_cpu_ms_per_request}: ${cpus().length} cores at 100% would give ${t.all_cores_ceiling_requests_per_s} req/s)`;
    const batchLine = (t: { classifier_texts_per_run?: number }) => (t.classifier_texts_per_run ? `; classifier ${t.classifier_texts_per_run} texts per run` : "");
    const viaEdge = await routed(edge.child, edge.url, "node", true);
    console.log(`through the edge: ${viaEdge.requests_per_s} req/s (${viaEdge.failed} failed) at concurrency ${concurrency}; ${cpuLine(viaEdge)}${batchLine(viaEdge)}`);
    // The same edge in `workers` processes (node:cluster), started for each run only.
    const workers = a.workers === "auto" ? cpus().length : Number(a.workers);
    type WorkersRun = Omit<Routed, "single_core_ceiling_requests_per_s"> & { workers: number };
    const throughWorkers = async (generator: "node" | "wrk"): Promise<WorkersRun | null> => {
      if (workers <= 1) return null;
      const cluster = await start(["--role", "edge", "--origin", origin.url, "--db", db, "--workers", String(workers)]);
      children.push(cluster.child);
      try {
        await throughput(cluster.url, key, 1, concurrency); // warm-up
        const { single_core_ceiling_requests_per_s: _one, ...t } = await routed(cluster.child, cluster.url, generator);
        console.log(`through the edge, ${workers} worker processes${generator === "wrk" ? ", driven by wrk" : ""}: ${t.requests_per_s} req/s (${t.failed} failed); ${cpuLine(t)}`);
        return { workers, ...t };
      } finally {
        cluster.child.kill("SIGINT");
      }
    };
    const viaWorkers = await throughWorkers("node");
    // The same two runs with wrk as the load generator (when installed): the figures against the goal.
    let viaEdgeWrk: Routed | null = null;
    let viaWorkersWrk: WorkersRun | null = null;
    if (spawnSync("wrk", ["--version"]).error) console.log("wrk not installed (sudo apt-get install -y wrk): no wrk-driven runs");
    else {
      viaEdgeWrk = await routed(edge.child, edge.url, "wrk", true);
      console.log(`through the edge, driven by wrk: ${viaEdgeWrk.requests_per_s} req/s (${viaEdgeWrk.failed} failed); ${cpuLine(viaEdgeWrk)}${batchLine(viaEdgeWrk)}`);
      viaWorkersWrk = await throughWorkers("wrk");
    }
    const bare = await throughput(proxy.url, null, seconds, concurrency);
    console.log(`through a bare Node proxy: ${bare.requests_per_s} req/s`);
    const direct = await throughput(origin.url, null, seconds, concurrency);
    console.log(`straight to the origin: ${direct.requests_per_s} req/s`);

    const report = {
      bench: "edge",
      when: new Date().toISOString(),
      machine: { cpus: cpus().length, model: cpus()[0]?.model ?? null, loadavg_at_start: loadavg(), node: process.version },
      setup: {
        origin: "trivial: one fixed chat completion (the test fixture's γ = 5 answer) from a minimal HTTP/1.1 responder on node:net, own process",
        edge: "functions/node.ts (@hono/node-server, @libsql/client file: database), own process; for edge_workers, the same with --workers N (node:cluster)",
        bare_proxy: "node:http server piping to node:http client (no logic), own process",
        client: "node:http keep-alive, this process; for *_wrk, wrk -t1 (Debian's wrk 4.1, C/epoll), its CPU from the shell's `times`",
        request: "POST /v1/chat/completions, non-stream, one user message",
      },
      warm_cache: warm,
      warm_cache_task_hinted: warmHinted,
      cache_miss: { ...miss, note: "key and params caches emptied before each edge request: key lookup + params read from the local libSQL file on the request path" },
      throughput: {
        concurrency,
        seconds,
        edge: viaEdge,
        edge_workers: viaWorkers,
        edge_wrk: viaEdgeWrk,
        edge_workers_wrk: viaWorkersWrk,
        bare_proxy: bare,
        direct,
      },
      goals: { added_p50_ms_max: 0.5, added_p99_ms_max: 2, requests_per_s_min: 5000 },
    };
    if (a.out) {
      writeFileSync(a.out, JSON.stringify(report, null, 2));
      console.log(`wrote ${a.out}`);
    } else console.log(JSON.stringify(report, null, 2));
  } finally {
    // SIGINT lets a profiled child write its profile on the way out.
    for (const c of children) c.kill("SIGINT");
    agent.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (a.role === "origin") await runOrigin();
else if (a.role === "proxy") await runProxy();
else if (a.role === "edge") await runEdge();
else await main();
