/**
 * Fault scenarios with real processes, sized by the caller: test/faults.test.ts runs them small,
 * bench/soak.ts larger. Each returns plain figures; the caller asserts.
 *
 * - originKilledMidStream: the real origin (bundled models) in its own process, streams and
 *   non-stream requests in flight through the Node edge, then SIGKILL. Streams that had started
 *   must end with one OpenAI-shaped error event (no [DONE], no hang); requests without a first byte
 *   yet are retried on the fallback pool and succeed; a restarted origin on the same port serves again.
 * - libsqlKilled: libSQL over HTTP (test/support/hrana.ts) in its own process, steady traffic of
 *   known keys through the Node edge, SIGKILL mid-run, restart on the same port: no request of a
 *   known key fails; a key first seen during the outage is refused with 503 (fail closed);
 *   telemetry buffered during the outage is written after it.
 * - calibrationKilled: `fairspec calibrate` (bin/fairspec.mjs, what `npx fairspec` runs) on a tiny
 *   config in its own process group, SIGKILLed once it has written checkpoints; then run again:
 *   nothing visible or active after the kill, the rerun resumes from the checkpoints and stores and
 *   activates exactly one run, checkpoints cleared.
 */
import { spawn } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@libsql/client";
import { openStore } from "../../calibrator/store.ts";
import { parseEdgeConfig } from "../../functions/config.ts";
import { startNodeEdge } from "../../functions/node.ts";
import { edgeConfigInput, seedStore, startTrivialOrigin } from "../workers/fixtures.ts";
import { errorShapeProblem } from "./fuzz.ts";
import { startChild } from "./child.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export type StreamOutcome = "error-event" | "complete" | "hang" | "malformed" | "http-error";

async function readStream(res: Response, signal: AbortSignal): Promise<{ outcome: StreamOutcome; detail: string }> {
  let text = "";
  try {
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    const onAbort = () => void reader.cancel().catch(() => {});
    signal.addEventListener("abort", onAbort, { once: true });
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      text += dec.decode(r.value, { stream: true });
    }
    signal.removeEventListener("abort", onAbort);
  } catch (e) {
    return { outcome: signal.aborted ? "hang" : "malformed", detail: `${(e as Error).message}: ${text.slice(-200)}` };
  }
  if (signal.aborted) return { outcome: "hang", detail: text.slice(-200) };
  const events = text.split("\n\n").filter((e) => e.trim());
  if (!text.endsWith("\n\n") || events.some((e) => !e.startsWith("data: "))) return { outcome: "malformed", detail: text.slice(-300) };
  const last = events.at(-1)!.slice(6);
  if (last === "[DONE]") return { outcome: "complete", detail: "" };
  try {
    const obj = JSON.parse(last) as { error?: { code?: string } };
    if (obj.error && !errorShapeProblem(obj) && !text.includes("[DONE]")) return { outcome: "error-event", detail: obj.error.code ?? "" };
  } catch {
    /* below */
  }
  return { outcome: "malformed", detail: text.slice(-300) };
}

export interface OriginKillResult {
  streams: Record<StreamOutcome, number>;
  streamErrorCodes: string[];
  nonStream: Record<string, number>;
  /** Requests answered by the fallback pool (x-fairspec-pool). */
  servedByFallback: number;
  /** The restarted origin served a request through the edge. */
  recovered: boolean;
  /** internal_error events the edge logged. */
  internalErrors: number;
  details: string[];
}

export async function originKilledMidStream(o: { streams: number; nonStream: number; maxTokens?: number; timeoutMs?: number }): Promise<OriginKillResult> {
  const dir = mkdtempSync(join(tmpdir(), "fairspec-fault-origin-"));
  const fallback = await startTrivialOrigin("fallback", { record: false });
  // 20 ms more per verifier step: the first stream is still generating when the kill lands, on any hardware.
  let origin = await startChild("origin", { "max-waiting": 64, "step-delay-ms": 20 });
  const port = Number(new URL(origin.url).port);
  const seeded = await seedStore(join(dir, "edge.db"), { base: [origin.url], balanced: [origin.url], vllm: [origin.url] });
  const logs: string[] = [];
  const config = parseEdgeConfig(
    edgeConfigInput({ defaultUrls: [origin.url], fallbackUrls: [fallback.url], extra: { rateLimit: { burst: 1e9, perSecond: 1e9 }, timeouts: { idleMs: 20_000, firstByteMs: 60_000, nonStreamMs: 60_000 } } }),
  );
  const edge = await startNodeEdge({ config, dbUrl: `file:${join(dir, "edge.db")}`, classifier: null, port: 0, log: (e) => logs.push(e) });
  const result: OriginKillResult = {
    streams: { "error-event": 0, complete: 0, hang: 0, malformed: 0, "http-error": 0 },
    streamErrorCodes: [],
    nonStream: {},
    servedByFallback: 0,
    recovered: false,
    internalErrors: 0,
    details: [],
  };
  const deadline = AbortSignal.timeout(o.timeoutMs ?? 60_000);
  // Long generations (the prompt is ~60 tokens of the 256-token context), so the kill lands mid-stream.
  const body = (stream: boolean, i: number, maxTokens: number) =>
    JSON.stringify({ model: "fairspec", messages: [{ role: "user", content: `Tell me a long story, number ${i}.` }], stream, max_tokens: maxTokens, temperature: 1, seed: i });
  const post = (stream: boolean, i: number, maxTokens = o.maxTokens ?? 160) =>
    fetch(`${edge.url}/v1/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${seeded.keys.acme}` }, body: body(stream, i, maxTokens), signal: deadline });
  try {
    // The first stream starts alone so it is generating (past its first byte) when the origin dies.
    const first = await post(true, 0);
    const reader = first.body!.getReader();
    // The role chunk, then the first content: the origin admitted it and is generating.
    const seen: Uint8Array[] = [];
    for (let text = ""; !/"content":"[^"]/.test(text); ) {
      const r = await reader.read();
      if (r.done) break;
      seen.push(r.value);
      text += new TextDecoder().decode(r.value);
    }
    const rest = new ReadableStream<Uint8Array>({
      start(c) {
        for (const v of seen) c.enqueue(v);
      },
      async pull(c) {
        const r = await reader.read();
        if (r.done) c.close();
        else c.enqueue(r.value);
      },
      cancel: (why) => reader.cancel(why),
    });
    const firstRes = new Response(rest, { status: first.status, headers: first.headers });
    // The others queue behind it at the origin (concurrency 1): no first byte yet.
    const streams = [Promise.resolve(firstRes), ...Array.from({ length: o.streams - 1 }, (_, i) => post(true, i + 1))];
    const plain = Array.from({ length: o.nonStream }, (_, i) => post(false, 100 + i));
    await sleep(100);
    await origin.kill();

    for (const p of streams) {
      try {
        const r = await p;
        if (r.status !== 200) {
          result.streams["http-error"]++;
          result.details.push(`stream → ${r.status} ${await r.text()}`);
          continue;
        }
        if (r.headers.get("x-fairspec-pool") === "fallback") result.servedByFallback++;
        const s = await readStream(r, deadline);
        result.streams[s.outcome]++;
        if (s.outcome === "error-event") result.streamErrorCodes.push(s.detail);
        else if (s.outcome !== "complete") result.details.push(`stream ${s.outcome}: ${s.detail}`);
      } catch (e) {
        result.streams[deadline.aborted ? "hang" : "malformed"]++;
        result.details.push(`stream: ${(e as Error).message}`);
      }
    }
    for (const p of plain) {
      try {
        const r = await p;
        const text = await r.text();
        result.nonStream[String(r.status)] = (result.nonStream[String(r.status)] ?? 0) + 1;
        if (r.headers.get("x-fairspec-pool") === "fallback") result.servedByFallback++;
        if (r.status !== 200) result.details.push(`non-stream → ${r.status} ${text.slice(0, 200)}`);
      } catch (e) {
        result.nonStream.failed = (result.nonStream.failed ?? 0) + 1;
        result.details.push(`non-stream: ${(e as Error).message}`);
      }
    }

    // A new origin process on the same port serves again.
    origin = await startChild("origin", { port, "max-waiting": 64 });
    for (let i = 0; i < 20 && !result.recovered; i++) {
      const r = await post(false, 1000 + i, 8);
      const text = await r.text();
      if (r.status === 200 && r.headers.get("x-fairspec-pool") !== "fallback" && JSON.parse(text).choices) result.recovered = true;
      else await sleep(250);
    }
  } finally {
    result.internalErrors = logs.filter((e) => e === "internal_error").length;
    await origin.stop().catch(() => {});
    await edge.close();
    await fallback.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return result;
}

export interface LibsqlKillResult {
  requests: number;
  /** Requests of known keys that did not get a 200. */
  failed: number;
  statuses: Record<string, number>;
  /** Requests sent while libSQL was down. */
  duringOutage: number;
  /** The status a key never seen before got during the outage (fail closed: 503). */
  coldKeyStatus: number;
  /** Telemetry rows in the store after recovery vs. 200 responses of known keys. */
  telemetryRows: number;
  telemetryExpected: number;
  outageMs: number;
  failures: string[];
  /** Requests sent before the outage until each key had been answered once (2 when nothing was slow). */
  warmupAttempts: number;
}

export async function libsqlKilled(o: { durationMs: number; rate: number; concurrency?: number }): Promise<LibsqlKillResult> {
  const dir = mkdtempSync(join(tmpdir(), "fairspec-fault-libsql-"));
  const dbPath = join(dir, "edge.db");
  const TOKEN = "fault-libsql-token";
  const origin = await startTrivialOrigin("libsql-fault", { record: false });
  const seeded = await seedStore(dbPath, { base: [origin.url], balanced: [origin.url], vllm: [origin.url] });
  let hrana = await startChild("hrana", { db: dbPath, "db-token": TOKEN });
  const port = Number(new URL(hrana.url).port);
  const config = parseEdgeConfig(
    edgeConfigInput({
      defaultUrls: [origin.url],
      extra: {
        rateLimit: { burst: 1e9, perSecond: 1e9 },
        // Short TTLs: entries go stale often, so refreshes are tried (and fail) throughout the outage.
        cache: { paramsTtlMs: 300, keyTtlMs: 300, negativeKeyTtlMs: 200, dbTimeoutMs: 300, retryMs: 200 },
        telemetry: { flushDelayMs: 100 },
      },
    }),
  );
  const edge = await startNodeEdge({ config, dbUrl: hrana.url, dbToken: TOKEN, classifier: null, port: 0 });
  const r: LibsqlKillResult = { requests: 0, failed: 0, statuses: {}, duringOutage: 0, coldKeyStatus: 0, telemetryRows: 0, telemetryExpected: 0, outageMs: 0, failures: [], warmupAttempts: 0 };
  const keys = [seeded.keys.acme, seeded.keys.globex];
  const send = async (key: string, stream: boolean): Promise<number> => {
    try {
      const res = await fetch(`${edge.url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}` },
        body: JSON.stringify({ model: "fairspec", messages: [{ role: "user", content: "hi" }], stream }),
        signal: AbortSignal.timeout(10_000),
      });
      const text = await res.text();
      if (res.status !== 200 || (stream && !text.includes("[DONE]"))) r.failures.push(`${res.status} ${text.slice(0, 200)}`);
      if (res.status === 200) r.telemetryExpected++; // one telemetry row per answered request
      return res.status;
    } catch (e) {
      r.failures.push((e as Error).message);
      return -1;
    }
  };
  try {
    // The scenario's premise: every key is known (cached) before the outage. A first lookup may
    // exceed dbTimeoutMs on a busy machine (503 auth_unavailable), so warm up until each key got a 200.
    for (const k of keys) {
      for (let attempt = 0; attempt < 50; attempt++) {
        r.warmupAttempts++;
        if ((await send(k, false)) === 200) break;
        await sleep(100);
      }
    }
    r.failures.length = 0;
    let down = false;
    let downAt = 0;
    const t0 = performance.now();
    const interval = 1000 / o.rate;
    const inflight = new Set<Promise<void>>();
    let i = 0;
    let phase = 0;
    while (performance.now() - t0 < o.durationMs) {
      const elapsed = performance.now() - t0;
      if (phase === 0 && elapsed > o.durationMs / 3) {
        phase = 1;
        await hrana.kill();
        down = true;
        downAt = performance.now();
        r.coldKeyStatus = await (async () => {
          const res = await fetch(`${edge.url}/v1/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${seeded.keys.initech}` }, body: JSON.stringify({ model: "fairspec", messages: [{ role: "user", content: "hi" }] }) });
          await res.text();
          return res.status;
        })();
      } else if (phase === 1 && elapsed > (2 * o.durationMs) / 3) {
        phase = 2;
        hrana = await startChild("hrana", { db: dbPath, "db-token": TOKEN, port });
        down = false;
        r.outageMs = Math.round(performance.now() - downAt);
      }
      if (inflight.size < (o.concurrency ?? 16)) {
        const n = i++;
        const wasDown = down;
        const p = send(keys[n % 2]!, n % 3 === 0).then((s) => {
          r.requests++;
          if (wasDown) r.duringOutage++;
          r.statuses[String(s)] = (r.statuses[String(s)] ?? 0) + 1;
          if (s !== 200) r.failed++;
        });
        const q = p.finally(() => inflight.delete(q));
        inflight.add(q);
      }
      const next = t0 + i * interval;
      await sleep(Math.max(0, next - performance.now()));
    }
    await Promise.all(inflight);
    if (phase === 1) {
      hrana = await startChild("hrana", { db: dbPath, "db-token": TOKEN, port });
      r.outageMs = Math.round(performance.now() - downAt);
    }
    // The buffered telemetry is written once libSQL answers again (the next flush window).
    for (let k = 0; k < 50 && edge.edge.state.telemetry.buffered > 0; k++) {
      await send(keys[0]!, false);
      await sleep(200);
    }
    await edge.edge.state.telemetry.flush().catch(() => {});
    const c = createClient({ url: `file:${dbPath}` });
    try {
      r.telemetryRows = Number((await c.execute("SELECT count(*) AS n FROM telemetry")).rows[0]!.n);
    } finally {
      c.close();
    }
  } finally {
    await edge.close();
    await hrana.stop().catch(() => {});
    await origin.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return r;
}

export interface CalibrationKillResult {
  checkpointsAtKill: number;
  killedBySignal: string | null;
  runsAfterKill: number;
  activeAfterKill: string | null;
  /** The first run's stderr up to the kill. */
  firstStderr: string;
  /** "resuming: N finished units" of the rerun. */
  resumedUnits: number;
  rerunExitCode: number | null;
  runs: string[];
  activeRunId: string | null;
  checkpointsLeft: number;
  firstRunMs: number;
  rerunMs: number;
  rerunStderr: string;
}

/** The smallest calibration that still writes several checkpoints (costs, continuations, measurements, validations). */
export function tinyCalibrationConfig(modelsDir: string) {
  return {
    models: { verifier: join(modelsDir, "verifier"), drafters: { base: join(modelsDir, "drafter-base") } },
    tasks: { en: { corpus: "en" }, ja: { corpus: "ja" }, "code-py": { corpus: "code-py" } },
    promptsPerTask: 2,
    promptBytes: 32,
    newTokens: 8,
    targetTemperatures: [1],
    gammas: [0, 1, 2],
    proposalTemperatures: [1],
    maxPools: 2,
    uncalibrated: { drafter: "base", gamma: 2 },
    policies: [{ id: "throughput", kind: "throughput" }],
    validation: { prompts: 1, newTokens: 8 },
    scdf: { enabled: false },
    bootstrapResamples: 100,
    seed: 11,
  };
}

function runCli(args: string[], o: { detached: boolean; env?: NodeJS.ProcessEnv }) {
  const child = spawn(process.execPath, [join(ROOT, "bin/fairspec.mjs"), ...args], { cwd: ROOT, detached: o.detached, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...o.env } });
  let stderr = "";
  let stdout = "";
  child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) => child.once("exit", (code, signal) => r({ code, signal })));
  return { child, exited, out: () => ({ stderr, stdout }) };
}

export async function calibrationKilled(o: { killAt?: RegExp; timeoutMs?: number } = {}): Promise<CalibrationKillResult> {
  const dir = mkdtempSync(join(tmpdir(), "fairspec-fault-cal-"));
  try {
    // Private copies of the models: the run hash covers their bytes, and nothing else may change them between the two runs.
    const models = join(dir, "models");
    mkdirSync(models);
    for (const m of ["verifier", "drafter-base"]) cpSync(join(ROOT, "models", m), join(models, m), { recursive: true });
    const cfgPath = join(dir, "tiny.json");
    writeFileSync(cfgPath, JSON.stringify(tinyCalibrationConfig(models), null, 2));
    const dbUrl = `file:${join(dir, "cal.db")}`;
    (await openStore(dbUrl)).close(); // migrated, so checkpoints can be counted from the start
    const args = ["calibrate", "--config", cfgPath, "--db", dbUrl, "--out", join(dir, "out"), "--activate"];
    // Checkpoints are counted only while no calibration runs: the store sets no busy timeout, so a
    // concurrent reader would make the run's own writes fail with SQLITE_BUSY (see test/faults.test.ts).
    const countCheckpoints = async () => {
      const db = createClient({ url: dbUrl });
      try {
        return Number((await db.execute("SELECT count(*) AS n FROM calibration_checkpoints")).rows[0]!.n);
      } finally {
        db.close();
      }
    };
    const limit = o.timeoutMs ?? 300_000;
    // Mid-run = once the timed validation reports its first finished unit (continuations, the
    // measurements, the cost model and a validation are checkpointed by then; more validations follow).
    const killAt = o.killAt ?? /validation runs[^\n]*: \d+% \([1-9]\d*\//;

    // 1. Run, and SIGKILL its whole process group at that point.
    const t1 = performance.now();
    const first = runCli(args, { detached: true });
    let finishedEarly = false;
    void first.exited.then(() => (finishedEarly = true));
    while (performance.now() - t1 < limit && !finishedEarly && !killAt.test(first.out().stderr)) await sleep(10);
    if (!finishedEarly) process.kill(-first.child.pid!, "SIGKILL");
    const killed = await first.exited;
    const firstRunMs = Math.round(performance.now() - t1);
    const checkpointsAtKill = await countCheckpoints();

    const store = await openStore(dbUrl);
    let runsAfterKill: number;
    let activeAfterKill: string | null;
    try {
      runsAfterKill = (await store.listRuns()).length;
      activeAfterKill = (await store.activeRun())?.id ?? null;
    } finally {
      store.close();
    }

    // 2. Run again: it resumes, stores one run and activates it.
    const t2 = performance.now();
    const second = runCli(args, { detached: false });
    const timer = setTimeout(() => second.child.kill("SIGKILL"), limit);
    const done = await second.exited;
    clearTimeout(timer);
    const rerunMs = Math.round(performance.now() - t2);
    const { stderr } = second.out();
    const resumed = Number(/resuming: (\d+) finished units/.exec(stderr)?.[1] ?? 0);

    const after = await openStore(dbUrl);
    try {
      const runs = (await after.listRuns()).map((r) => r.id);
      const active = (await after.activeRun())?.id ?? null;
      const left = await countCheckpoints();
      return {
        checkpointsAtKill,
        killedBySignal: killed.signal,
        firstStderr: first.out().stderr.slice(-2000),
        runsAfterKill,
        activeAfterKill,
        resumedUnits: resumed,
        rerunExitCode: done.code,
        runs,
        activeRunId: active,
        checkpointsLeft: left,
        firstRunMs,
        rerunMs,
        rerunStderr: `${stderr.slice(-3000)}${second.out().stdout.slice(0, 1000)}`,
      };
    } finally {
      after.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
