/**
 * npm run test:soak -- --out FILE.json [--fuzz 100000] [--origin-fuzz 5000] [--raw-garbage 1000]
 *                      [--seconds 60] [--rate 20] [--concurrency 16] [--max-tokens 8]
 *                      [--skip fuzz,load,faults]
 *
 * The long runs of the reliability suite (test/fuzz.test.ts, test/security.test.ts and
 * test/faults.test.ts run the fast parts in `npm test`):
 *
 * 1. Fuzz at full size: the seeded hostile requests of test/reliability/hostile.ts against the edge
 *    app in process (real ONNX task classifier, libSQL file, working trivial origins), the origin
 *    app on the bundled models (max_tokens ≤ 3), and raw HTTP/1.1 bytes plus seeded garbage
 *    against the Node edge over a socket. Counts by category and status; 0 violations expected
 *    (known bugs, test/reliability/known-bugs.ts, counted apart).
 * 2. Load: `--seconds` of steady open-loop traffic at `--rate` requests/s (at most `--concurrency`
 *    in flight; a request due while that many are in flight is counted as shed) from this process
 *    through the Node edge (its own child process, libSQL file store seeded through
 *    calibrator/store.ts, no fallback pool so nothing masks an origin error) to the real origin
 *    (its own child process, bundled models, concurrency 1). Mixed chat / completions, stream /
 *    non-stream, three tenants (three policies), task hints, temperature 0 and 1, `--max-tokens`.
 *    Every answer must be a 200 with a complete body: 0 errors expected. RSS of the edge and the
 *    origin (`process.memoryUsage().rss`, reported by each child over IPC) at the start and end of
 *    the load and its maximum over 1 s samples; request counts; end-to-end latency p50 / p90 / p99
 *    (to the last byte) and the stream's time to first byte.
 * 3. Faults (test/reliability/faults.ts, larger than in `npm test`): the origin SIGKILLed with
 *    streams and non-stream requests in flight; libSQL SIGKILLed under traffic and restarted; a
 *    calibration SIGKILLed mid-run and resumed.
 *
 * The edge child runs the committed ONNX task classifier (as `npm start` does).
 *
 * Writes every figure to `--out` and prints a summary table. Exit code 1 if any check failed.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startNodeEdge } from "../functions/node.ts";
import { loadTaskClassifier } from "../functions/classifier-node.ts";
import { startChild, type Child } from "../test/reliability/child.ts";
import { calibrationKilled, libsqlKilled, originKilledMidStream } from "../test/reliability/faults.ts";
import { startEdgeFixture, originTarget, ORIGIN_MODEL } from "../test/reliability/fixtures.ts";
import { runFuzz, statusTable, type FuzzStats } from "../test/reliability/fuzz.ts";
import { generateCases } from "../test/reliability/hostile.ts";
import { knownAbortedBodyLog } from "../test/reliability/known-bugs.ts";
import { garbageCases, rawCases, runRawCases } from "../test/reliability/raw-http.ts";
import { edgeConfigInput, seedStore } from "../test/workers/fixtures.ts";

const { values: a } = parseArgs({
  options: {
    out: { type: "string" },
    fuzz: { type: "string", default: "100000" },
    "origin-fuzz": { type: "string", default: "5000" },
    "raw-garbage": { type: "string", default: "1000" },
    seconds: { type: "string", default: "60" },
    rate: { type: "string", default: "20" },
    concurrency: { type: "string", default: "16" },
    "max-tokens": { type: "string", default: "8" },
    seed: { type: "string", default: "20261204" },
    skip: { type: "string", default: "" },
  },
});
const skip = new Set(a.skip!.split(",").filter(Boolean));
const SEED = Number(a.seed);

const checks: { name: string; ok: boolean; detail: string }[] = [];
const check = (name: string, ok: boolean, detail = "") => {
  checks.push({ name, ok, detail });
  if (!ok) console.error(`FAILED: ${name}${detail ? ` — ${detail}` : ""}`);
};
const mb = (bytes: number) => Math.round((bytes / (1 << 20)) * 10) / 10;
const pct = (xs: number[], p: number) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
};
const r1 = (x: number) => Math.round(x * 10) / 10;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const say = (s: string) => console.log(`[soak ${new Date().toISOString().slice(11, 19)}] ${s}`);

// ---------------------------------------------------------------------------------------------
// 1. Fuzz.

async function fuzzPhase() {
  say(`fuzz: ${a.fuzz} edge cases, ${a["origin-fuzz"]} origin cases, raw HTTP + ${a["raw-garbage"]} garbage`);
  const out: { edge?: FuzzStats; origin?: FuzzStats; raw?: unknown; edgeInternalErrors?: number } = {};
  const f = await startEdgeFixture({ classifier: await loadTaskClassifier() });
  try {
    const cases = generateCases(Number(a.fuzz), SEED, { target: "edge", model: "fairspec" });
    out.edge = await runFuzz(cases, f.target(), { seed: SEED, concurrency: 8 });
    await f.settle();
    out.edgeInternalErrors = f.logs.filter((l) => l.event === "internal_error").length;
    console.log(statusTable(out.edge));
    check("fuzz/edge: no violations (no 5xx from input, OpenAI error shape, valid requests served)", out.edge.violations.length === 0, JSON.stringify(out.edge.violations.slice(0, 5)));
    check("fuzz/edge: no internal_error logged", out.edgeInternalErrors === 0);

    // Raw bytes against the Node entry over the same store.
    const logs: { event: string; fields: Record<string, unknown> }[] = [];
    const node = await startNodeEdge({ config: f.config, dbUrl: `file:${f.dbPath}`, adminToken: f.adminToken, classifier: null, port: 0, log: (event, fields) => logs.push({ event, fields }) });
    try {
      const body = JSON.stringify({ model: "fairspec", messages: [{ role: "user", content: "Hello there" }] });
      const rc = [...rawCases(f.keys.own, body), ...garbageCases(Number(a["raw-garbage"]), SEED, f.keys.own, body)];
      const raw = await runRawCases(Number(new URL(node.url).port), rc, 8);
      const aborted = logs.filter(knownAbortedBodyLog).length;
      const internal = logs.filter((l) => l.event === "internal_error" && !knownAbortedBodyLog(l)).length;
      out.raw = { ...raw, problems: raw.problems.slice(0, 20), knownBugAbortedBodyLogs: aborted, internalErrors: internal };
      console.log(`raw HTTP: ${raw.cases} cases, replies ${JSON.stringify(raw.replies)}; known bug: ${aborted} internal_error "aborted" logs`);
      check("fuzz/raw HTTP: no 5xx, expected statuses, error shape", raw.problems.length === 0, raw.problems.slice(0, 3).join(" | "));
      check("fuzz/raw HTTP: no internal_error beyond the known one", internal === 0);
    } finally {
      await node.close();
    }
  } finally {
    await f.close();
  }
  const ot = await originTarget();
  out.origin = await runFuzz(generateCases(Number(a["origin-fuzz"]), SEED + 1, { target: "origin", model: ORIGIN_MODEL }), ot, { seed: SEED + 1, concurrency: 2 });
  console.log(statusTable(out.origin));
  check("fuzz/origin: no violations", out.origin.violations.length === 0, JSON.stringify(out.origin.violations.slice(0, 5)));
  check("fuzz: Object.prototype not polluted", ({} as Record<string, unknown>).polluted === undefined);
  return out;
}

// ---------------------------------------------------------------------------------------------
// 2. Load: edge → origin, real models.

const PROMPTS = ["Hello there, how are you?", "The weather today is", "こんにちは、元気ですか", "def fibonacci(n):", "Привет, как дела?", "The capital of France is", "int main(void) {", "2 + 2 ="];
const TASKS = ["en", "ja", "code-py", "ru", "math"];

async function loadPhase() {
  const seconds = Number(a.seconds);
  const rate = Number(a.rate);
  const maxInflight = Number(a.concurrency);
  const maxTokens = Number(a["max-tokens"]);
  const dir = mkdtempSync(join(tmpdir(), "fairspec-soak-"));
  let origin: Child | undefined;
  let edge: Child | undefined;
  try {
    origin = await startChild("origin", { "max-waiting": 256 });
    const seeded = await seedStore(join(dir, "edge.db"), { base: [origin.url], balanced: [origin.url], vllm: [origin.url] });
    const config = edgeConfigInput({ defaultUrls: [origin.url], extra: { rateLimit: { burst: 100_000, perSecond: 100_000 }, timeouts: { firstByteMs: 60_000, nonStreamMs: 60_000, idleMs: 30_000 } } });
    edge = await startChild("edge", { "config-json": JSON.stringify(config), db: `file:${join(dir, "edge.db")}`, "admin-token": "soak-admin", classifier: "on" });
    const keys = [seeded.keys.acme, seeded.keys.globex, seeded.keys.initech];
    say(`load: origin ${origin.url} (pid ${origin.pid}), edge ${edge.url} (pid ${edge.pid}); ${rate} req/s for ${seconds} s, ≤ ${maxInflight} in flight, max_tokens ${maxTokens}`);

    const one = async (i: number) => {
      const chat = i % 4 !== 3;
      const stream = i % 3 === 0;
      const body: Record<string, unknown> = { model: "fairspec", stream, max_tokens: maxTokens, temperature: i % 2 ? 1 : 0, seed: i };
      const prompt = PROMPTS[i % PROMPTS.length]!;
      if (chat) body.messages = [{ role: "user", content: prompt }];
      else body.prompt = prompt;
      if (stream && i % 2) body.stream_options = { include_usage: true };
      const headers: Record<string, string> = { authorization: `Bearer ${keys[i % keys.length]}`, "content-type": "application/json" };
      if (i % 5 === 0) headers["x-fairspec-task"] = TASKS[i % TASKS.length]!;
      const t0 = performance.now();
      let ttfb = NaN;
      try {
        const res = await fetch(`${edge!.url}${chat ? "/v1/chat/completions" : "/v1/completions"}`, { method: "POST", headers, body: JSON.stringify(body), signal: AbortSignal.timeout(60_000) });
        ttfb = performance.now() - t0;
        const text = await res.text();
        const ms = performance.now() - t0;
        let problem: string | null = null;
        if (res.status !== 200) problem = `${res.status} ${text.slice(0, 200)}`;
        else if (stream && (!text.trimEnd().endsWith("data: [DONE]") || text.includes('"error"'))) problem = `incomplete stream: ${text.slice(-200)}`;
        else if (!stream && !(JSON.parse(text) as { choices?: unknown[] }).choices?.length) problem = `no choices: ${text.slice(0, 200)}`;
        return { ms, ttfb: stream ? ttfb : NaN, status: res.status, problem, stream, pool: res.headers.get("x-fairspec-pool") ?? "?" };
      } catch (e) {
        return { ms: performance.now() - t0, ttfb, status: -1, problem: (e as Error).message, stream, pool: "?" };
      }
    };

    // Warm-up (not counted): models and caches hot, then the starting RSS.
    for (let i = 0; i < 12; i++) await one(1_000_000 + i);
    const rssStart = { edge: await edge.rss(), origin: await origin.rss() };
    const rssMax = { ...rssStart };
    const sampler = setInterval(() => {
      void edge!.rss().then((x) => (rssMax.edge = Math.max(rssMax.edge, x))).catch(() => {});
      void origin!.rss().then((x) => (rssMax.origin = Math.max(rssMax.origin, x))).catch(() => {});
    }, 1_000);

    const lat: number[] = [];
    const ttfbs: number[] = [];
    const statuses: Record<string, number> = {};
    const pools: Record<string, number> = {};
    const errors: string[] = [];
    let sent = 0;
    let shed = 0;
    let done = 0;
    let stream = 0;
    const inflight = new Set<Promise<void>>();
    const t0 = performance.now();
    const total = Math.round(seconds * rate);
    for (let i = 0; i < total; i++) {
      const due = t0 + (i * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      if (inflight.size >= maxInflight) {
        shed++;
        continue;
      }
      sent++;
      const p = one(i).then((r) => {
        done++;
        lat.push(r.ms);
        if (r.stream) {
          stream++;
          if (Number.isFinite(r.ttfb)) ttfbs.push(r.ttfb);
        }
        statuses[String(r.status)] = (statuses[String(r.status)] ?? 0) + 1;
        pools[r.pool] = (pools[r.pool] ?? 0) + 1;
        if (r.problem && errors.length < 20) errors.push(r.problem);
        if (r.problem) statuses.problem = (statuses.problem ?? 0) + 1;
      });
      const q: Promise<void> = p.finally(() => inflight.delete(q));
      inflight.add(q);
    }
    await Promise.all(inflight);
    const wallS = (performance.now() - t0) / 1000;
    clearInterval(sampler);
    const rssEnd = { edge: await edge.rss(), origin: await origin.rss() };
    const failed = (statuses.problem ?? 0) + Object.entries(statuses).filter(([k]) => k !== "200" && k !== "problem").reduce((s, [, n]) => s + n, 0);
    const load = {
      seconds,
      wallSeconds: r1(wallS),
      rateTarget: rate,
      rateAchieved: r1(done / wallS),
      maxInflight,
      maxTokens,
      scheduled: total,
      sent,
      shed,
      completed: done,
      streams: stream,
      failed,
      statuses,
      pools,
      errors,
      latencyMs: { p50: r1(pct(lat, 50)), p90: r1(pct(lat, 90)), p99: r1(pct(lat, 99)), max: r1(Math.max(...lat)) },
      streamTtfbMs: { p50: r1(pct(ttfbs, 50)), p99: r1(pct(ttfbs, 99)) },
      rssMeasuredAs: "process.memoryUsage().rss inside each child process (edge: functions/node.ts entry; origin: origin/server.ts startOrigin), reported over IPC",
      rssMB: {
        edge: { start: mb(rssStart.edge), end: mb(rssEnd.edge), max: mb(Math.max(rssMax.edge, rssEnd.edge)) },
        origin: { start: mb(rssStart.origin), end: mb(rssEnd.origin), max: mb(Math.max(rssMax.origin, rssEnd.origin)) },
      },
    };
    say(`load: ${done} requests in ${load.wallSeconds} s (${load.rateAchieved}/s), ${failed} failed, ${shed} shed; p50 ${load.latencyMs.p50} ms, p99 ${load.latencyMs.p99} ms`);
    check("load: 0 failed requests", failed === 0, errors.slice(0, 3).join(" | "));
    check("load: the target rate was sustained (nothing shed)", shed === 0, `${shed} shed at ${maxInflight} in flight`);
    return load;
  } finally {
    await edge?.stop().catch(() => {});
    await origin?.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// 3. Faults.

async function faultPhase() {
  say("faults: origin SIGKILLed mid-stream (8 streams, 8 non-stream in flight)");
  const origin = await originKilledMidStream({ streams: 8, nonStream: 8 });
  const originOk =
    origin.details.length === 0 &&
    origin.streams["error-event"] >= 1 &&
    origin.streams.hang + origin.streams.malformed + origin.streams["http-error"] === 0 &&
    origin.nonStream["200"] === 8 &&
    origin.recovered &&
    origin.internalErrors === 0;
  check("faults: origin killed mid-stream — clean stream errors, fallback for the rest, recovery", originOk, JSON.stringify(origin));

  say("faults: libSQL SIGKILLed for a third of 15 s of traffic at 50 req/s, then restarted");
  const libsql = await libsqlKilled({ durationMs: 15_000, rate: 50 });
  const libsqlOk = libsql.failed === 0 && libsql.coldKeyStatus === 503 && libsql.telemetryRows === libsql.telemetryExpected;
  check("faults: libSQL killed — 0 failed requests of known keys, cold keys 503, telemetry caught up", libsqlOk, JSON.stringify({ ...libsql, failures: libsql.failures.slice(0, 3) }));

  say("faults: calibration SIGKILLed mid-run, then rerun");
  const cal = await calibrationKilled();
  const calOk = cal.killedBySignal === "SIGKILL" && cal.runsAfterKill === 0 && cal.activeAfterKill === null && cal.rerunExitCode === 0 && cal.resumedUnits >= cal.checkpointsAtKill && cal.checkpointsAtKill > 0 && cal.runs.length === 1 && cal.activeRunId === cal.runs[0] && cal.checkpointsLeft === 0;
  check("faults: calibration killed — nothing visible, resumed, exactly one run stored and active", calOk, JSON.stringify({ ...cal, rerunStderr: undefined, firstStderr: undefined }));
  return { originKilledMidStream: origin, libsqlKilled: libsql, calibrationKilled: { ...cal, rerunStderr: undefined, firstStderr: undefined } };
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const started = new Date().toISOString();
  const t0 = performance.now();
  const result: Record<string, unknown> = {
    started,
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model ?? "?", loadavgAtStart: loadavg().map(r1), node: process.version },
    seed: SEED,
  };
  if (!skip.has("fuzz")) result.fuzz = await fuzzPhase();
  if (!skip.has("load")) result.load = await loadPhase();
  if (!skip.has("faults")) result.faults = await faultPhase();
  result.checks = checks;
  result.passed = checks.every((c) => c.ok);
  result.durationS = r1((performance.now() - t0) / 1000);
  result.loadavgAtEnd = loadavg().map(r1);
  if (a.out) writeFileSync(a.out, `${JSON.stringify(result, null, 2)}\n`);

  // Summary.
  const rows: [string, string][] = [];
  const fz = result.fuzz as { edge?: FuzzStats; origin?: FuzzStats; raw?: { cases: number; replies: Record<string, number> } } | undefined;
  if (fz?.edge) rows.push(["fuzz edge", `${fz.edge.cases} cases (${fz.edge.refusedByRuntime} refused by the runtime), statuses ${JSON.stringify(fz.edge.byStatus)}, violations ${fz.edge.violations.length}, known bugs ${JSON.stringify(Object.values(fz.edge.knownBugs))}`]);
  if (fz?.origin) rows.push(["fuzz origin", `${fz.origin.cases} cases, statuses ${JSON.stringify(fz.origin.byStatus)}, violations ${fz.origin.violations.length}`]);
  if (fz?.raw) rows.push(["fuzz raw HTTP", `${fz.raw.cases} cases, replies ${JSON.stringify(fz.raw.replies)}`]);
  const ld = result.load as Awaited<ReturnType<typeof loadPhase>> | undefined;
  if (ld) {
    rows.push(["load", `${ld.completed} requests in ${ld.wallSeconds} s at ${ld.rateAchieved}/s (target ${ld.rateTarget}/s, ≤ ${ld.maxInflight} in flight), ${ld.failed} failed, ${ld.shed} shed`]);
    rows.push(["latency", `p50 ${ld.latencyMs.p50} ms, p90 ${ld.latencyMs.p90} ms, p99 ${ld.latencyMs.p99} ms; stream TTFB p50 ${ld.streamTtfbMs.p50} ms, p99 ${ld.streamTtfbMs.p99} ms`]);
    rows.push(["RSS edge", `${ld.rssMB.edge.start} → ${ld.rssMB.edge.end} MB (max ${ld.rssMB.edge.max})`]);
    rows.push(["RSS origin", `${ld.rssMB.origin.start} → ${ld.rssMB.origin.end} MB (max ${ld.rssMB.origin.max})`]);
  }
  const ft = result.faults as Awaited<ReturnType<typeof faultPhase>> | undefined;
  if (ft) {
    rows.push(["origin killed", `streams ${JSON.stringify(ft.originKilledMidStream.streams)}, non-stream ${JSON.stringify(ft.originKilledMidStream.nonStream)}, recovered ${ft.originKilledMidStream.recovered}`]);
    rows.push(["libSQL killed", `${ft.libsqlKilled.requests} requests (${ft.libsqlKilled.duringOutage} during a ${ft.libsqlKilled.outageMs} ms outage), ${ft.libsqlKilled.failed} failed, cold key → ${ft.libsqlKilled.coldKeyStatus}, telemetry ${ft.libsqlKilled.telemetryRows}/${ft.libsqlKilled.telemetryExpected}`]);
    rows.push(["calibration killed", `killed at ${ft.calibrationKilled.checkpointsAtKill} checkpoints, resumed ${ft.calibrationKilled.resumedUnits}, runs ${ft.calibrationKilled.runs.length}, active ${ft.calibrationKilled.activeRunId !== null}`]);
  }
  rows.push(["checks", `${checks.filter((c) => c.ok).length}/${checks.length} passed${checks.some((c) => !c.ok) ? `; FAILED: ${checks.filter((c) => !c.ok).map((c) => c.name).join("; ")}` : ""}`]);
  const w = Math.max(...rows.map(([k]) => k.length));
  console.log(`\nsoak summary (${result.durationS} s${a.out ? `, written to ${a.out}` : ""})`);
  for (const [k, v] of rows) console.log(`  ${k.padEnd(w)}  ${v}`);
  process.exitCode = result.passed ? 0 : 1;
  // Keep-alive sockets and the like must not hold the process open.
  setTimeout(() => process.exit(), 1_000);
}

main().catch((e: unknown) => {
  console.error((e as Error).stack ?? e);
  process.exit(1);
});
