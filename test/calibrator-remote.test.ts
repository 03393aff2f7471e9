/**
 * The calibrator's remote backend against the real origin server on loopback: prompts fan out
 * over several origin URLs with bounded concurrency, acceptance is read from the responses, and a
 * whole calibration validates its fitted parameters through the pools.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../calibrator/config.ts";
import { measurePrompt, sampleContinuations, summarizePrompts } from "../calibrator/measure.ts";
import { measurePoolRemote, onlineAlpha, runOnPool } from "../calibrator/remote.ts";
import { calibrate } from "../calibrator/run.ts";
import { openStore } from "../calibrator/store.ts";
import { Xoshiro128 } from "../core/rng.ts";
import { taskPrompts } from "../corpora/index.ts";
import type { Pool } from "../origin/pools.ts";
import { startOrigin, type RunningOrigin } from "../origin/server.ts";
import { model } from "./support/models.ts";

let a: RunningOrigin;
let b: RunningOrigin;
let pool: Pool;

beforeAll(async () => {
  const models = { verifier: await model("verifier"), drafters: { base: await model("drafter-base"), balanced: await model("drafter-balanced") } };
  // Two origin hosts on loopback, each admitting one generation at a time and queueing a few.
  a = await startOrigin({ port: 0, models, maxWaiting: 2 });
  b = await startOrigin({ port: 0, models, maxWaiting: 2 });
  pool = { id: "fleet", kind: "fairspec", urls: [a.url, b.url], drafter: "base", gamma: 4, proposal_temperature: null };
});
afterAll(async () => {
  await a?.close();
  await b?.close();
});

describe("remote backend", () => {
  it("spreads prompts over the pool's hosts with bounded concurrency and reads acceptance counts", async () => {
    const prompts = taskPrompts("en", 8, 64, "validation");
    const samples = await runOnPool(pool, prompts, { temperature: 1, maxTokens: 24, seed: 5, concurrencyPerUrl: 2 });
    expect(samples).toHaveLength(8);
    for (const s of samples) {
      expect(s.completionTokens).toBeGreaterThan(0);
      expect(s.accepted).toBeLessThanOrEqual(s.draftTokens);
      expect(s.acceptedPerPos.reduce((x, y) => x + y, 0)).toBe(s.accepted);
    }
    // Both hosts served requests (the step counters moved on each).
    const steps = async (o: RunningOrigin) => Number(/fairspec:verifier_steps_total(?:\{[^}]*\})? (\d+)/.exec(await (await fetch(`${o.url}/metrics`)).text())?.[1] ?? 0);
    expect(await steps(a)).toBeGreaterThan(0);
    expect(await steps(b)).toBeGreaterThan(0);
  });

  it("online α from per-position counts agrees with teacher-forced α", async () => {
    const texts = taskPrompts("de", 10, 64, "validation");
    const samples = await runOnPool(pool, texts, { temperature: 1, maxTokens: 48, seed: 9, concurrencyPerUrl: 1, wanted: { gamma: 2 } });
    const online = onlineAlpha(samples, new Xoshiro128(1), 500);
    const verifier = await model("verifier");
    const drafter = await model("drafter-base");
    const conts = await sampleContinuations(verifier, texts.map((t) => verifier.tokenizer.encode(t)), { newTokens: 48, temperature: 1, rng: new Xoshiro128(2) });
    const units = [];
    for (const c of conts) units.push(await measurePrompt(drafter, c, { temperature: 1 }, [1]));
    const tf = summarizePrompts(units, [1], new Xoshiro128(3), 500).alpha[0]!;
    expect(Math.abs(online.estimate - tf.estimate)).toBeLessThan(0.1);
  });

  it("measures a pool's speed-up against γ = 0 on the same host, with an interval", async () => {
    const m = await measurePoolRemote(pool, taskPrompts("code-py", 4, 64, "validation"), { temperature: 0, maxTokens: 24, seed: 3, rng: new Xoshiro128(4), resamples: 200 });
    expect(m.speedup.lo).toBeLessThanOrEqual(m.speedup.estimate);
    expect(m.speedup.hi).toBeGreaterThanOrEqual(m.speedup.estimate);
    expect(m.alpha).not.toBeNull();
    expect(m.meanAcceptanceLength).toBeGreaterThanOrEqual(1);
  });

  it("a vLLM-style pool with a fixed γ needs a γ = 0 pool to compare with", async () => {
    const fixed: Pool = { id: "vllm-g4", kind: "vllm", urls: [a.url], drafter: "base", gamma: 4, proposal_temperature: null };
    await expect(measurePoolRemote(fixed, ["hello"], { temperature: 1, maxTokens: 4, seed: 1, rng: new Xoshiro128(1) })).rejects.toThrow(/γ = 0 pool/);
  });

  it("a calibration validates its fitted parameters through the pools", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fairspec-remote-"));
    writeFileSync(join(dir, "pools.json"), JSON.stringify({ pools: [pool] }));
    const config = parseConfig({
      models: { verifier: "models/verifier", drafters: { base: "models/drafter-base" } },
      tasks: { en: { corpus: "en" }, zh: { corpus: "zh" } },
      promptsPerTask: 3,
      newTokens: 16,
      targetTemperatures: [1],
      gammas: [0, 2],
      proposalTemperatures: [1],
      policies: [{ id: "maxmin", kind: "maxmin" }],
      validation: { prompts: 2, newTokens: 16 },
      scdf: { enabled: false },
      remote: { pools: join(dir, "pools.json"), concurrencyPerUrl: 1 },
      bootstrapResamples: 100,
    });
    const store = await openStore(`file:${join(dir, "r.db")}`);
    const r = await calibrate({ config, baseDir: new URL("..", import.meta.url).pathname, store, outDir: join(dir, "out"), quiet: true });
    const params = await store.taskParams(r.runId);
    expect(params.length).toBe(2);
    for (const p of params) expect(p.measuredSpeedup).not.toBeNull();
    const validation = (await store.getRun(r.runId))!.summary!.validation as { via: string; onlineAlpha: number | null; pool: string }[];
    expect(validation.length).toBeGreaterThan(0);
    for (const v of validation) {
      expect(v.via).toBe("fleet");
      if (v.pool !== "off") expect(v.onlineAlpha).toBeGreaterThan(0);
    }
    await store.close();
  }, 300_000);
});
