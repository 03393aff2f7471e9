/**
 * npm run bench:engine -- --out FILE.json [--prompts 30] [--new-tokens 64] [--gammas 1,2,3,4,5,6]
 *                         [--drafters base,balanced] [--temperature 0] [--tasks en,ja,...] [--seed 1]
 *
 * Per task: verifier-only vs speculative decoding on the same held-out prompts, for every drafter
 * and γ. Each prompt runs every configuration back to back, so slow drift of this shared machine
 * hits all configurations alike; speed-ups are ratios measured in the same run.
 *
 * Conventions (as vLLM's):
 * - α (alpha) = mean β = mean Σ_x min(p, q) over the draft positions the output reached.
 * - acceptance rate = accepted / drafted (positions after a rejection count as drafted).
 * - mean acceptance length = 1 + accepted / verifier steps (includes the token every step adds).
 * - tokens/s = generated tokens / wall time of the whole request, prefill included.
 * - engine share = time outside model calls / wall time.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { Xoshiro128 } from "../core/rng.ts";
import { TASKS, isTaskId, type TaskId } from "../core/tasks.ts";
import { taskPrompts } from "../corpora/index.ts";
import type { CausalLM } from "../engine/causal-lm.ts";
import { loadOnnxCausalLM } from "../engine/onnx-lm.ts";
import { generate, type Generation } from "../engine/speculative.ts";
import { measureCosts } from "../calibrator/costs.ts";

const { values: a } = parseArgs({
  options: {
    out: { type: "string" },
    prompts: { type: "string", default: "30" },
    "new-tokens": { type: "string", default: "64" },
    gammas: { type: "string", default: "1,2,3,4,5,6" },
    drafters: { type: "string", default: "base,balanced" },
    temperature: { type: "string", default: "0" },
    tasks: { type: "string", default: TASKS.join(",") },
    seed: { type: "string", default: "1" },
  },
});
const nPrompts = Number(a.prompts);
const newTokens = Number(a["new-tokens"]);
const gammas = a.gammas!.split(",").map(Number);
const temperature = Number(a.temperature);
const tasks = a.tasks!.split(",").filter(Boolean);
for (const t of tasks) if (!isTaskId(t)) throw new Error(`unknown task '${t}' — use: ${TASKS.join(",")}`);
if (![nPrompts, newTokens, temperature].every(Number.isFinite) || gammas.some((g) => !Number.isInteger(g) || g < 1)) {
  console.error("bench:engine: --prompts, --new-tokens, --temperature must be numbers and --gammas integers >= 1");
  process.exit(2);
}

const MODELS = new URL("../models/", import.meta.url).pathname;
const verifier = await loadOnnxCausalLM(`${MODELS}verifier`);
const drafters: CausalLM[] = [];
for (const d of a.drafters!.split(",")) drafters.push(await loadOnnxCausalLM(`${MODELS}drafter-${d}`));

interface Acc {
  tokens: number;
  ms: number;
  modelMs: number;
  drafted: number;
  accepted: number;
  steps: number;
  betaSum: number;
  betaN: number;
}
const acc = (): Acc => ({ tokens: 0, ms: 0, modelMs: 0, drafted: 0, accepted: 0, steps: 0, betaSum: 0, betaN: 0 });
function add(x: Acc, g: Generation) {
  const s = g.stats;
  x.tokens += g.tokens.length;
  x.ms += s.totalMs;
  x.modelMs += s.prefillMs + s.drafterMs + s.verifierMs;
  x.drafted += s.drafted;
  x.accepted += s.accepted;
  x.steps += s.steps;
  for (const st of g.stepStats) for (const b of st.beta) (x.betaSum += b), x.betaN++;
}

console.error(`warming up and measuring model costs…`);
const costs = await measureCosts(verifier, drafters, 8);
const result: Record<string, unknown>[] = [];
const started = Date.now();
for (const [ti, task] of (tasks as TaskId[]).entries()) {
  const prompts = taskPrompts(task, nPrompts).map((p) => verifier.tokenizer.encode(p));
  const base = acc();
  const spec = new Map<string, Acc>();
  for (const [pi, prompt] of prompts.entries()) {
    const common = { verifier, prompt, maxNewTokens: newTokens, temperature, stopAtEos: false };
    add(base, await generate({ ...common, gamma: 0, rng: new Xoshiro128(Number(a.seed) + pi) }));
    for (const d of drafters) {
      for (const gamma of gammas) {
        const key = `${d.id}|${gamma}`;
        if (!spec.has(key)) spec.set(key, acc());
        add(spec.get(key)!, await generate({ ...common, drafter: d, gamma, rng: new Xoshiro128(Number(a.seed) + pi) }));
      }
    }
  }
  const baseTps = (base.tokens / base.ms) * 1000;
  const configs = [...spec.entries()].map(([key, x]) => {
    const [drafter, gamma] = key.split("|");
    const tps = (x.tokens / x.ms) * 1000;
    return {
      drafter: drafter!,
      gamma: Number(gamma),
      alpha: x.betaSum / x.betaN,
      acceptance_rate: x.accepted / x.drafted,
      mean_acceptance_length: 1 + x.accepted / x.steps,
      tokens_per_s: tps,
      speedup: tps / baseTps,
      engine_share: 1 - x.modelMs / x.ms,
    };
  });
  const best = configs.reduce((b, c) => (c.speedup > b.speedup ? c : b));
  const perDrafter = Object.fromEntries(
    drafters.map((d) => {
      const cs = configs.filter((c) => c.drafter === d.id);
      const b = cs.reduce((x, c) => (c.speedup > x.speedup ? c : x));
      return [d.id, { alpha: cs[0]!.alpha, best_gamma: b.gamma, best_speedup: b.speedup, mean_acceptance_length_at_best: b.mean_acceptance_length }];
    }),
  );
  result.push({ task, prompts: prompts.length, new_tokens: newTokens, verifier_only_tokens_per_s: baseTps, verifier_only_engine_share: 1 - base.modelMs / base.ms, best, per_drafter: perDrafter, configs });
  const eta = ((Date.now() - started) / (ti + 1)) * (tasks.length - ti - 1);
  console.error(`[${ti + 1}/${tasks.length}] ${task}: best ${best.speedup.toFixed(2)}× (${best.drafter}, γ=${best.gamma}), ~${Math.round(eta / 1000)} s left`);
}

// ---- report ----
const rows = result.map((r) => {
  const pd = r.per_drafter as Record<string, { alpha: number; best_gamma: number; best_speedup: number }>;
  const best = r.best as { speedup: number; drafter: string; gamma: number; engine_share: number; mean_acceptance_length: number };
  return { task: r.task as string, pd, best, baseTps: r.verifier_only_tokens_per_s as number };
});
const names = drafters.map((d) => d.id);
const head = ["task", "verif tok/s", ...names.flatMap((n) => [`α ${n.replace("drafter-", "")}`, `best ${n.replace("drafter-", "")}`]), "best", "MAL", "engine"];
console.log(head.map((h, i) => (i ? h.padStart(i === 1 ? 11 : 14) : h.padEnd(8))).join(" "));
for (const r of rows) {
  const cells = [r.task.padEnd(8), r.baseTps.toFixed(0).padStart(11)];
  for (const n of names) cells.push(r.pd[n]!.alpha.toFixed(3).padStart(14), `${r.pd[n]!.best_speedup.toFixed(2)}× γ=${r.pd[n]!.best_gamma}`.padStart(14));
  cells.push(`${r.best.speedup.toFixed(2)}×`.padStart(14), r.best.mean_acceptance_length.toFixed(2).padStart(14), `${(r.best.engine_share * 100).toFixed(1)}%`.padStart(14));
  console.log(cells.join(" "));
}
const bestTask = rows.reduce((b, r) => (r.best.speedup > b.best.speedup ? r : b));
const worstTask = rows.reduce((b, r) => (r.best.speedup < b.best.speedup ? r : b));
const summary = {
  best_task: { task: bestTask.task, speedup: bestTask.best.speedup, drafter: bestTask.best.drafter, gamma: bestTask.best.gamma },
  worst_task: { task: worstTask.task, speedup: worstTask.best.speedup, drafter: worstTask.best.drafter, gamma: worstTask.best.gamma },
  max_engine_share: Math.max(...result.flatMap((r) => (r.configs as { engine_share: number }[]).map((c) => c.engine_share))),
  targets: {
    best_task_speedup_at_least_1_5: bestTask.best.speedup >= 1.5,
    best_task_speedup_goal_2: bestTask.best.speedup >= 2,
  },
};
console.log(
  `\nbest task ${summary.best_task.task} ${summary.best_task.speedup.toFixed(2)}× · worst task ${summary.worst_task.task} ${summary.worst_task.speedup.toFixed(2)}× · ` +
    `max engine share ${(summary.max_engine_share * 100).toFixed(1)}% · drafter/verifier step cost c = ${costs.drafters.map((d) => `${d.id} ${d.c.toFixed(3)}`).join(", ")}`,
);
const report = {
  bench: "engine",
  date: new Date().toISOString(),
  host: { cpus: (await import("node:os")).cpus().length, cpu: (await import("node:os")).cpus()[0]?.model, node: process.version },
  settings: { prompts: nPrompts, new_tokens: newTokens, gammas, temperature, seed: Number(a.seed), backend: "onnxruntime-node (cpu, 1 thread)" },
  conventions: {
    alpha: "mean of β = Σ min(p, q) over reached draft positions",
    acceptance_rate: "accepted / drafted",
    mean_acceptance_length: "1 + accepted / verifier steps (includes the token each step adds)",
    tokens_per_s: "generated tokens / request wall time incl. prefill",
    engine_share: "1 − time in model calls / wall time",
  },
  costs,
  verifyCost: costs.verifyCost,
  summary,
  tasks: result,
};
if (a.out) {
  writeFileSync(a.out, JSON.stringify(report, null, 2));
  console.log(`wrote ${a.out}`);
}
await Promise.all([verifier.dispose(), ...drafters.map((d) => d.dispose())]);
