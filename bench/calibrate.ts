/**
 * npm run bench:calibrate -- --out FILE.json [--tasks en,ja,...] [--prompts 48] [--new-tokens 64]
 *                            [--drafter base] [--temperature 1] [--gammas 1,2,3,4,5,6] [--seed 1] [--reps 4]
 *
 * Does the cheap calibration agree with the expensive truth? Per task:
 * - α from teacher forcing (the calibrator's method) vs α observed in real speculative runs at
 *   γ = 1 (where every verifier step tests exactly one draft), each with a bootstrap CI over prompts;
 * - wall time of the teacher-forced measurement vs measuring every γ by running it;
 * - the γ the calibrator would fit (calibrator/predict.ts SpeedupModel: tokens per step from the
 *   teacher-forced β sequences and the cost model measured in the decoding loop) vs the best γ found by exhaustive timed runs:
 *   measured S(fitted γ) / S(best γ); and predicted vs measured S at every γ.
 * Timed runs go back to back per prompt (verifier-only and every γ, in an order rotated per prompt),
 * so drift hits all alike. The exhaustive truth is noisy itself: at T = 1 one pass over 48 prompts
 * has ±2–3% sampling noise in tokens per step per γ (measured: four passes of ru at γ = 4 gave
 * 2.68–2.78), as large as the 3% the fit is judged by, and the best of six noisy γ is biased up.
 * So the exhaustive runs repeat `--reps` times with fresh seeds, and fitted-vs-best carries a
 * bootstrap CI over prompts. The cost ratio compares teacher forcing with one exhaustive pass.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { bootstrap, ratioOfSums } from "../core/bootstrap.ts";
import { Xoshiro128 } from "../core/rng.ts";
import { isTaskId, TASKS, type TaskId } from "../core/tasks.ts";
import { taskPrompts } from "../corpora/index.ts";
import { steadyHeapForTiming } from "../calibrator/heap.ts";
import { loopCostPrompts, measureCosts, measureLoopCosts } from "../calibrator/costs.ts";
import { SpeedupModel } from "../calibrator/predict.ts";
import { measurePrompt, sampleContinuations, summarizePrompts } from "../calibrator/measure.ts";
import { loadOnnxCausalLM } from "../engine/onnx-lm.ts";
import { generate } from "../engine/speculative.ts";

steadyHeapForTiming(); // the same heap sizing as the calibrator, whose timings this bench checks

const { values: a } = parseArgs({
  options: {
    out: { type: "string" },
    tasks: { type: "string", default: TASKS.join(",") },
    prompts: { type: "string", default: "48" },
    "new-tokens": { type: "string", default: "64" },
    drafter: { type: "string", default: "base" },
    temperature: { type: "string", default: "1" },
    gammas: { type: "string", default: "1,2,3,4,5,6" },
    seed: { type: "string", default: "1" },
    reps: { type: "string", default: "4" },
  },
});
const tasks = a.tasks!.split(",") as TaskId[];
for (const t of tasks) if (!isTaskId(t)) throw new Error(`unknown task '${t}'`);
const nPrompts = Number(a.prompts);
const newTokens = Number(a["new-tokens"]);
const T = Number(a.temperature);
const gammas = a.gammas!.split(",").map(Number);
const seed = Number(a.seed);
const reps = Number(a.reps);
if (!(Number.isInteger(reps) && reps >= 1)) throw new Error(`--reps must be a positive integer (got '${a.reps}')`);

const MODELS = new URL("../models/", import.meta.url).pathname;
const verifier = await loadOnnxCausalLM(`${MODELS}verifier`);
const drafter = await loadOnnxCausalLM(`${MODELS}drafter-${a.drafter}`);
const costs = await measureCosts(verifier, [drafter]);
// As the calibrator does: cost rounds cycle through real prompts, two per task.
const costPrompts = loopCostPrompts(tasks.map((t) => taskPrompts(t, 2, 96, "validation").map((p) => verifier.tokenizer.encode(p))));
costs.loop = await measureLoopCosts(verifier, [drafter], { gammas, temperatures: [T], newTokens, prompts: costPrompts, reps: Math.max(10, costPrompts.length) });

const rows = [];
for (const task of tasks) {
  const prompts = taskPrompts(task, nPrompts, 96, "validation").map((p) => verifier.tokenizer.encode(p));

  // The calibrator's way: sample continuations, one teacher-forced pass per model.
  const t0 = performance.now();
  const conts = await sampleContinuations(verifier, prompts, { newTokens, temperature: T, rng: new Xoshiro128(seed), drafter, gamma: 3 });
  const units = [];
  for (const cont of conts) units.push(await measurePrompt(drafter, cont, { temperature: T }, [T], gammas));
  const tf = summarizePrompts(units, [T], new Xoshiro128(seed + 1), 1000);
  const teacherForcedMs = performance.now() - t0;

  // The expensive way: run every γ (and verifier-only) on the same prompts, timed.
  const t1 = performance.now();
  const time = new Map<number, number[]>();
  // Where a prediction error comes from: the step cost, or the tokens each step yields (α).
  const loopMs = new Map<number, number>();
  const stepsTaken = new Map<number, number>();
  const online: { accepted: number; drafted: number }[] = [];
  // time.get(γ)[i]: prompt i's wall time summed over the reps (the bootstrap unit is the prompt).
  for (const g of [0, ...gammas]) time.set(g, prompts.map(() => 0));
  const order = [0, ...gammas];
  for (let rep = 0; rep < reps; rep++) for (const [i, prompt] of prompts.entries()) {
    const common = { verifier, prompt, maxNewTokens: newTokens, temperature: T, stopAtEos: false };
    const k = (i + rep) % order.length;
    for (const g of [...order.slice(k), ...order.slice(0, k)]) {
      const run = await generate({ ...common, drafter: g ? drafter : undefined, gamma: g, proposalTemperature: T, rng: new Xoshiro128(seed + 100 + i + 7919 * rep) });
      time.get(g)![i]! += run.stats.totalMs;
      loopMs.set(g, (loopMs.get(g) ?? 0) + run.stats.totalMs - run.stats.prefillMs);
      stepsTaken.set(g, (stepsTaken.get(g) ?? 0) + run.stats.steps);
      if (g === 1) online.push({ accepted: run.stats.accepted, drafted: run.stats.drafted });
    }
  }
  const exhaustiveMs = (performance.now() - t1) / reps;
  const alphaOnline = bootstrap(online, ratioOfSums((u) => u.accepted, (u) => u.drafted), new Xoshiro128(seed + 2), 1000);
  const sum = (xs: number[]) => xs.reduce((s, x) => s + x, 0);
  const measuredS = Object.fromEntries(gammas.map((g) => [g, sum(time.get(0)!) / sum(time.get(g)!)]));
  const bestMeasured = gammas.reduce((b, g) => (measuredS[g]! > measuredS[b]! ? g : b));
  // The calibrator's prediction for these prompts' mean length and this many new tokens.
  const meanPrompt = prompts.reduce((n, p) => n + p.length, 0) / prompts.length;
  const model = new SpeedupModel(costs, [{ task, drafter: drafter.id, targetTemperature: T, proposalTemperature: T, alpha: tf.alpha[0]!, tokensPerStep: tf.tokensPerStep[0], rejectingFraction: tf.rejectingFraction[0] }], { promptTokens: new Map([[task, meanPrompt]]), newTokens });
  const predictedS = Object.fromEntries(gammas.map((g) => [g, model.predict(task, { id: "", drafter: drafter.id, gamma: g, proposalTemperature: T }, T).estimate]));
  const fittedGamma = gammas.reduce((b, g) => (predictedS[g]! > predictedS[b]! ? g : b));
  const overlap = tf.alpha[0]!.lo <= alphaOnline.hi && alphaOnline.lo <= tf.alpha[0]!.hi;
  const row = {
    task,
    alpha_teacher_forced: tf.alpha[0],
    alpha_online_gamma1: alphaOnline,
    cis_overlap: overlap,
    teacher_forced_ms: teacherForcedMs,
    exhaustive_timed_ms: exhaustiveMs,
    cost_ratio: exhaustiveMs / teacherForcedMs,
    measured_speedup_by_gamma: measuredS,
    best_measured_gamma: bestMeasured,
    fitted_gamma: fittedGamma,
    predicted_speedup_by_gamma: predictedS,
    predicted_speedup_at_fitted: predictedS[fittedGamma],
    /** Observed in the timed runs, to compare with costs.loop and with (1 − α^{γ+1}) / (1 − α). */
    observed_step_ms_by_gamma: Object.fromEntries([0, ...gammas].map((g) => [g, loopMs.get(g)! / stepsTaken.get(g)!])),
    observed_tokens_per_step_by_gamma: Object.fromEntries([0, ...gammas].map((g) => [g, (reps * prompts.length * newTokens) / stepsTaken.get(g)!])),
    /** |predicted − measured| / measured, worst over γ. */
    max_prediction_error: Math.max(...gammas.map((g) => Math.abs(predictedS[g]! - measuredS[g]!) / measuredS[g]!)),
    fitted_vs_best: measuredS[fittedGamma]! / measuredS[bestMeasured]!,
    /** S(fitted) / S(best) = Σ t(best) / Σ t(fitted) over the same prompts; 95% bootstrap CI over prompts. */
    fitted_vs_best_ci: bootstrap(prompts.map((_, i) => i), ratioOfSums((i) => time.get(bestMeasured)![i]!, (i) => time.get(fittedGamma)![i]!), new Xoshiro128(seed + 3), 1000),
  };
  rows.push(row);
  console.error(
    `${task.padEnd(8)} α tf ${tf.alpha[0]!.estimate.toFixed(3)} [${tf.alpha[0]!.lo.toFixed(3)}, ${tf.alpha[0]!.hi.toFixed(3)}]  online ${alphaOnline.estimate.toFixed(3)} [${alphaOnline.lo.toFixed(3)}, ${alphaOnline.hi.toFixed(3)}]  ` +
      `cost ${row.cost_ratio.toFixed(1)}×  γ fit ${fittedGamma} / best ${bestMeasured}: ${(row.fitted_vs_best * 100).toFixed(1)}% [${(row.fitted_vs_best_ci.lo * 100).toFixed(1)}, ${(row.fitted_vs_best_ci.hi * 100).toFixed(1)}]  ` +
      `S pred/meas at γ fit ${predictedS[fittedGamma]!.toFixed(2)}/${measuredS[fittedGamma]!.toFixed(2)}, worst error over γ ${(row.max_prediction_error * 100).toFixed(1)}%`,
  );
}
const summary = {
  tasks: rows.length,
  alpha_cis_overlap: rows.filter((r) => r.cis_overlap).length,
  min_cost_ratio: Math.min(...rows.map((r) => r.cost_ratio)),
  min_fitted_vs_best: Math.min(...rows.map((r) => r.fitted_vs_best)),
  mean_fitted_vs_best: rows.reduce((s, r) => s + r.fitted_vs_best, 0) / rows.length,
  /** Tasks whose CI of S(fitted)/S(best) reaches 97%: not distinguishable from meeting the bar. */
  fitted_vs_best_ci_reaches_97pct: rows.filter((r) => r.fitted_vs_best_ci.hi >= 0.97).length,
  max_prediction_error: Math.max(...rows.map((r) => r.max_prediction_error)),
};
console.log(
  `\nα agreement (CIs overlap): ${summary.alpha_cis_overlap}/${summary.tasks} tasks · teacher forcing is ≥ ${summary.min_cost_ratio.toFixed(1)}× cheaper than timing every γ · ` +
    `fitted γ reaches ≥ ${(summary.min_fitted_vs_best * 100).toFixed(1)}% (mean ${(summary.mean_fitted_vs_best * 100).toFixed(1)}%) of the best γ's measured speed-up (CI reaches 97% on ${summary.fitted_vs_best_ci_reaches_97pct}/${summary.tasks}) · predicted S within ${(summary.max_prediction_error * 100).toFixed(1)}% of measured at every γ`,
);
if (a.out) {
  writeFileSync(a.out, JSON.stringify({ bench: "calibrate", date: new Date().toISOString(), settings: { tasks, prompts: nPrompts, newTokens, temperature: T, gammas, drafter: a.drafter, seed, reps }, costs, summary, tasks: rows }, null, 2));
  console.log(`wrote ${a.out}`);
}
await verifier.dispose();
await drafter.dispose();
