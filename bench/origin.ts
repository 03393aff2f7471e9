/**
 * npm run bench:origin -- --out FILE.json [--prompts 3] [--new-tokens 48] [--tasks en,ja,...]
 *                         [--pool ID [--config FILE]] [--drafter base] [--gamma 4]
 *                         [--temperature 0] [--seed 1]
 *
 * The origin measured through HTTP, against the engine called in-process:
 *
 * - per task, tokens/s with γ = 0 and with the pool's γ, both through HTTP (the speed-up a client
 *   of the origin sees) and in-process (what the engine alone gives);
 * - the server's own overhead per request: HTTP wall time minus in-process wall time for the same
 *   prompt, parameters and seed (so the same tokens), in ms and as a ratio.
 *
 * The origin runs in this process on 127.0.0.1 (an ephemeral port), so "HTTP" includes the
 * client's fetch and JSON parsing as well as Hono, validation and the socket round trip. Every
 * prompt runs all four configurations back to back so drift on this shared machine hits them
 * alike; results are ratios from one run, never absolute targets.
 */
import { writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import { Xoshiro128 } from "../core/rng.ts";
import { isTaskId, TASKS, type TaskId } from "../core/tasks.ts";
import { taskPrompts } from "../corpora/index.ts";
import { generate } from "../engine/speculative.ts";
import type { SpeculativeDefaults } from "../origin/app.ts";
import { findPool, loadPoolsConfig } from "../origin/pools.ts";
import { EXAMPLE_POOLS, loadOriginModels, startOrigin } from "../origin/server.ts";

const { values: a } = parseArgs({
  options: {
    out: { type: "string" },
    prompts: { type: "string", default: "3" },
    "new-tokens": { type: "string", default: "48" },
    tasks: { type: "string", default: TASKS.join(",") },
    pool: { type: "string" },
    config: { type: "string", default: EXAMPLE_POOLS },
    drafter: { type: "string" },
    gamma: { type: "string" },
    temperature: { type: "string", default: "0" },
    seed: { type: "string", default: "1" },
  },
});

function die(msg: string): never {
  console.error(`bench:origin: ${msg}`);
  process.exit(2);
}
const nPrompts = Number(a.prompts);
const newTokens = Number(a["new-tokens"]);
const temperature = Number(a.temperature);
const seed = Number(a.seed);
if (!Number.isInteger(nPrompts) || nPrompts < 1) die(`--prompts must be an integer >= 1, got '${a.prompts}'`);
if (!Number.isInteger(newTokens) || newTokens < 1 || newTokens > 200) die(`--new-tokens must be an integer from 1 to 200, got '${a["new-tokens"]}'`);
if (!(temperature >= 0 && temperature <= 2)) die(`--temperature must be in [0, 2], got '${a.temperature}'`);
if (!Number.isInteger(seed)) die(`--seed must be an integer, got '${a.seed}'`);
const tasks = a.tasks!.split(",").filter(Boolean);
for (const t of tasks) if (!isTaskId(t)) die(`unknown task '${t}' — use: ${TASKS.join(",")}`);

// The pool's speculative settings: from the config if --pool, then flags.
const spec: SpeculativeDefaults = { drafter: "base", gamma: 4, proposal_temperature: null };
if (a.pool) {
  const p = findPool(await loadPoolsConfig(a.config!), a.pool);
  Object.assign(spec, { drafter: p.drafter, gamma: p.gamma, proposal_temperature: p.proposal_temperature });
}
if (a.drafter) spec.drafter = a.drafter;
if (a.gamma) spec.gamma = Number(a.gamma);
if (!Number.isInteger(spec.gamma) || spec.gamma < 1 || spec.gamma > 16 || !spec.drafter) die("the pool needs a drafter and γ from 1 to 16 to compare against γ = 0 (--drafter base --gamma 4)");

const models = await loadOriginModels();
const drafter = models.drafters[spec.drafter!] ?? die(`unknown drafter '${spec.drafter}' — use: ${Object.keys(models.drafters).join(", ")}`);
const origin = await startOrigin({ port: 0, models, modelName: "fairspec", defaults: spec, maxWaiting: 0 });
const { verifier } = models;

interface Run {
  tokens: number;
  ms: number;
  text: string;
}

async function viaHttp(prompt: string, gamma: number, s: number): Promise<Run> {
  const body = {
    model: "fairspec",
    prompt,
    max_tokens: newTokens,
    seed: s,
    temperature,
    speculative: gamma === 0 ? { gamma: 0 } : { drafter: spec.drafter, gamma, proposal_temperature: spec.proposal_temperature },
  };
  const t0 = performance.now();
  const res = await fetch(`${origin.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const j = (await res.json()) as { choices: { text: string }[]; usage: { completion_tokens: number }; error?: { message: string } };
  const ms = performance.now() - t0;
  if (!res.ok) throw new Error(`origin answered ${res.status}: ${j.error?.message}`);
  return { tokens: j.usage.completion_tokens, ms, text: j.choices[0]!.text };
}

async function inProcess(prompt: string, gamma: number, s: number): Promise<Run> {
  const t0 = performance.now();
  // What the origin does besides HTTP: tokenize, generate, decode.
  const g = await generate({
    verifier,
    drafter: gamma > 0 ? drafter : undefined,
    gamma,
    proposalTemperature: gamma > 0 ? (spec.proposal_temperature ?? undefined) : undefined,
    temperature,
    prompt: verifier.tokenizer.encode(prompt),
    maxNewTokens: newTokens,
    rng: new Xoshiro128(s),
  });
  const text = verifier.tokenizer.decode(g.tokens);
  return { tokens: g.tokens.length, ms: performance.now() - t0, text };
}

interface Acc {
  tokens: number;
  ms: number;
}
const acc = (): Acc => ({ tokens: 0, ms: 0 });
const add = (x: Acc, r: Run) => {
  x.tokens += r.tokens;
  x.ms += r.ms;
};
const tps = (x: Acc) => (x.tokens / x.ms) * 1000;

console.error(`origin on ${origin.url}; warming up…`);
for (const g of [0, spec.gamma]) {
  await viaHttp("warm up", g, 0);
  await inProcess("warm up", g, 0);
}

const rows = [];
let mismatches = 0;
let requests = 0;
const overheadsMs: number[] = [];
for (const task of tasks as TaskId[]) {
  const prompts = taskPrompts(task, nPrompts);
  const http0 = acc();
  const httpG = acc();
  const proc0 = acc();
  const procG = acc();
  for (const [i, prompt] of prompts.entries()) {
    const s = seed + i;
    for (const [gamma, h, p] of [
      [0, http0, proc0],
      [spec.gamma, httpG, procG],
    ] as const) {
      // Alternate which goes first, so neither always runs on a warmer cache.
      let hr: Run;
      let pr: Run;
      if (i % 2 === 0) {
        hr = await viaHttp(prompt, gamma, s);
        pr = await inProcess(prompt, gamma, s);
      } else {
        pr = await inProcess(prompt, gamma, s);
        hr = await viaHttp(prompt, gamma, s);
      }
      add(h, hr);
      add(p, pr);
      overheadsMs.push(hr.ms - pr.ms);
      requests++;
      // Same seed, same parameters: the same text, or the comparison is meaningless.
      if (hr.text !== pr.text) mismatches++;
    }
  }
  const httpMs = http0.ms + httpG.ms;
  const procMs = proc0.ms + procG.ms;
  rows.push({
    task,
    prompts: prompts.length,
    http: { gamma0_tokens_per_s: tps(http0), spec_tokens_per_s: tps(httpG), speedup: tps(httpG) / tps(http0) },
    in_process: { gamma0_tokens_per_s: tps(proc0), spec_tokens_per_s: tps(procG), speedup: tps(procG) / tps(proc0) },
    overhead: { ms_per_request: (httpMs - procMs) / (prompts.length * 2), http_over_in_process: httpMs / procMs },
  });
  console.error(`${task}: done`);
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? NaN;
const f = (x: number, d = 2) => x.toFixed(d);
console.log(`\nγ=0 vs γ=${spec.gamma} (drafter ${spec.drafter}), ${newTokens} new tokens, T=${temperature}, ${nPrompts} prompts per task\n`);
const head = ["task", "HTTP γ=0 tok/s", `HTTP γ=${spec.gamma} tok/s`, "HTTP speed-up", "engine speed-up", "overhead ms/req", "HTTP/engine"];
console.log(head.map((h, i) => (i ? h.padStart(16) : h.padEnd(8))).join(""));
for (const r of rows) {
  console.log(
    [
      r.task.padEnd(8),
      f(r.http.gamma0_tokens_per_s, 0).padStart(16),
      f(r.http.spec_tokens_per_s, 0).padStart(16),
      `${f(r.http.speedup)}×`.padStart(16),
      `${f(r.in_process.speedup)}×`.padStart(16),
      f(r.overhead.ms_per_request).padStart(16),
      `${f(r.overhead.http_over_in_process, 3)}×`.padStart(16),
    ].join(""),
  );
}
const totalHttp = rows.reduce((s, r) => s + r.overhead.http_over_in_process, 0) / rows.length;
const summary = {
  requests,
  overhead_ms_per_request_median: median(overheadsMs),
  overhead_ms_per_request_mean: overheadsMs.reduce((s, x) => s + x, 0) / overheadsMs.length,
  http_over_in_process_mean_of_tasks: totalHttp,
  http_speedup_mean_of_tasks: rows.reduce((s, r) => s + r.http.speedup, 0) / rows.length,
  engine_speedup_mean_of_tasks: rows.reduce((s, r) => s + r.in_process.speedup, 0) / rows.length,
  text_mismatches_http_vs_engine: mismatches,
};
console.log(
  `\nserver overhead: median ${f(summary.overhead_ms_per_request_median)} ms/request, HTTP/engine time ${f(totalHttp, 3)}× · ` +
    `speed-up through HTTP ${f(summary.http_speedup_mean_of_tasks)}× vs in-process ${f(summary.engine_speedup_mean_of_tasks)}× (mean of tasks) · ` +
    `${mismatches} of ${requests} texts differ between HTTP and in-process${mismatches ? " (should be 0!)" : ""}`,
);
const report = {
  bench: "origin",
  date: new Date().toISOString(),
  host: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
  settings: { prompts: nPrompts, new_tokens: newTokens, tasks, temperature, seed, pool: a.pool ?? null, speculative: spec, transport: "HTTP/1.1 on 127.0.0.1, client and origin in one process" },
  conventions: {
    tokens_per_s: "completion tokens / client-side wall time of the request (HTTP) or of tokenize + generate + decode (in-process)",
    overhead_ms_per_request: "HTTP wall time − in-process wall time, same prompt, parameters and seed",
    http_over_in_process: "HTTP wall time / in-process wall time over the task's requests",
  },
  summary,
  tasks: rows,
};
if (a.out) {
  writeFileSync(a.out, JSON.stringify(report, null, 2));
  console.log(`wrote ${a.out}`);
}
await origin.close();
await Promise.all([verifier, ...Object.values(models.drafters)].map((m) => m.dispose()));
