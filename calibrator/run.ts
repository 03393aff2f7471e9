/**
 * One calibration run, end to end:
 *   teacher-forced measurement per (target temperature, task, drafter) → s-CDF and baselines →
 *   cost model → predicted speed-ups → fit per (policy, target temperature) → timed validation →
 *   one transaction into libSQL → report.
 *
 * Every finished unit (costs, one task's measurement, one finetune, one validation) is stored as a
 * checkpoint keyed by the run hash (config + model files), so a run killed at any point resumes
 * where it stopped. Nothing of the run is visible as a calibration run until the final
 * transaction, and nothing is active until `activate` (or `--activate`) passes the regression guard.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { cpus } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { CalibrationRun, Interval95, PoolRecord, TaskMeasurement, TaskParams, TenantPolicyRecord } from "../core/calibration.ts";
import { spread, unfairnessU } from "../core/fairness.ts";
import { fitPools, type PoolSpec } from "../core/fit.ts";
import { Xoshiro128 } from "../core/rng.ts";
import { isTaskId } from "../core/tasks.ts";
import { taskPrompts } from "../corpora/index.ts";
import type { CausalLM } from "../engine/causal-lm.ts";
import { loadOnnxCausalLM } from "../engine/onnx-lm.ts";
import { configHash, type CalibrationConfig } from "./config.ts";
import { steadyHeapForTiming } from "./heap.ts";
import { costDrift, localDrift, loopCostPrompts, measureCosts, measureLoopCosts, probeRatios, withDrift, type CostProbe, type Costs } from "./costs.ts";
import { continuationOf, measurePrompt, sampleContinuations, summarizePrompts, type Continuation, type PromptStats } from "./measure.ts";
import { candidatePools, SpeedupModel, type AlphaCell } from "./predict.ts";
import { Progress } from "./progress.ts";
import type { AlphaGammaPoint, MitigationName, MitigationResult, ReportData } from "./report-data.ts";
import { writeReport } from "./report.ts";
import { ensureTeacherPool, runFinetune, scdfPrerequisiteError, scdfWeights, uniformWeights, type FinetunePlan } from "./scdf.ts";
import type { Store } from "./store.ts";
import { validateGroup, type ValidationResult } from "./validate.ts";
import { loadPoolsConfig, type Pool } from "../origin/pools.ts";
import { measurePoolRemote } from "./remote.ts";

const ROOT = resolve(fileURLToPath(new URL("..", import.meta.url)));

export interface CalibrateOptions {
  config: CalibrationConfig;
  /** Relative model and prompt paths are resolved against this directory (the config's). */
  baseDir: string;
  store: Store;
  outDir: string;
  quiet?: boolean;
  log?: (line: string) => void;
}

export interface CalibrateResult {
  runId: string;
  runHash: string;
  report: ReportData;
  files: string[];
}

/**
 * Paired cost samples taken inside each validation unit (validate.ts): with ~55 units, 80–130 per
 * target temperature, for ~1 min of extra runs. Four rather than two: the windowed drift below
 * is a median over ~44 of them, and its noise adds to every cell's prediction error.
 */
const COST_PROBES_PER_UNIT = 4;
/** The prediction check's drift for a unit: the median probe ratio over the units within this many of it (~44 probes). */
const LOCAL_DRIFT_UNITS = 5;
const seedOf = (...parts: (string | number)[]) => createHash("sha256").update(parts.join("|")).digest().readUInt32LE(0);

export async function calibrate(o: CalibrateOptions): Promise<CalibrateResult> {
  steadyHeapForTiming();
  const { config: cfg, store } = o;
  const log = o.log ?? ((l: string) => !o.quiet && process.stderr.write(`${l}\n`));
  const path = (p: string) => (isAbsolute(p) ? p : existsSync(resolve(o.baseDir, p)) ? resolve(o.baseDir, p) : resolve(ROOT, p));
  const startedAt = new Date().toISOString();

  // The run hash covers the config and the bytes of every model it uses: new model files or a
  // changed config start a new run; the same ones resume.
  const modelDirs: Record<string, string> = { verifier: path(cfg.models.verifier) };
  for (const [name, dir] of Object.entries(cfg.models.drafters)) modelDirs[name] = path(dir);
  const h = createHash("sha256").update(configHash(cfg));
  for (const [name, dir] of Object.entries(modelDirs)) {
    const f = join(dir, "model.onnx");
    if (!existsSync(f)) throw new Error(`model '${name}' not found: ${f} is missing — fix models in the config`);
    h.update(name).update(readFileSync(f));
  }
  const runHash = h.digest("hex").slice(0, 20);
  const cp = async <T>(key: string, compute: () => Promise<T>): Promise<T> => {
    const got = (await store.getCheckpoint(runHash, key)) as T | null;
    if (got !== null && got !== undefined) return got;
    const v = await compute();
    await store.putCheckpoint(runHash, key, v);
    return v;
  };
  if (cfg.scdf.enabled) {
    const finetunesDone = (await Promise.all(["finetune|s-cdf", "finetune|data-balancing"].map((k) => store.getCheckpoint(runHash, k)))).every((x) => x !== null && x !== undefined);
    const problem = finetunesDone ? null : scdfPrerequisiteError(cfg.scdf.python, Object.keys(cfg.tasks).filter((t) => "corpus" in cfg.tasks[t]!));
    if (problem) throw new Error(problem);
  }
  const resumed = (await store.listCheckpoints(runHash)).length;
  log(`calibration ${runHash}${resumed ? ` (resuming: ${resumed} finished units found)` : ""}`);

  const children = new AbortController();
  const verifier = await loadOnnxCausalLM(modelDirs.verifier!);
  const drafters = new Map<string, CausalLM>();
  for (const name of Object.keys(cfg.models.drafters)) drafters.set(name, await loadOnnxCausalLM(modelDirs[name]!));
  try {
    // ---- 2. prompts ----
    const tasks = Object.keys(cfg.tasks);
    const prompts = new Map<string, number[][]>();
    const heldout = new Map<string, number[][]>();
    const heldoutText = new Map<string, string[]>();
    for (const t of tasks) {
      const spec = cfg.tasks[t]!;
      let texts: string[];
      let test: string[];
      if ("corpus" in spec) {
        if (!isTaskId(spec.corpus)) throw new Error(`unknown corpus ${spec.corpus}`);
        texts = taskPrompts(spec.corpus, cfg.promptsPerTask, cfg.promptBytes, "validation");
        test = taskPrompts(spec.corpus, cfg.validation.prompts, cfg.promptBytes, "test");
      } else {
        const lines = readFileSync(path(spec.prompts), "utf8").split("\n").filter(Boolean);
        const all = lines.map((l, i) => {
          try {
            return String(JSON.parse(l).prompt);
          } catch {
            throw new Error(`${spec.prompts}:${i + 1}: expected a JSON line like {"prompt": "…"}`);
          }
        });
        texts = all.slice(0, cfg.promptsPerTask);
        test = all.slice(cfg.promptsPerTask, cfg.promptsPerTask + cfg.validation.prompts);
        if (test.length === 0) test = texts.slice(0, cfg.validation.prompts);
      }
      const enc = (s: string) => verifier.tokenizer.encode(s).slice(-Math.floor(verifier.maxPositions / 2));
      prompts.set(t, texts.map(enc));
      heldout.set(t, test.map(enc));
      heldoutText.set(t, test.map((s) => verifier.tokenizer.decode(enc(s))));
    }

    // ---- 3. teacher-forced measurement ----
    const taus = cfg.proposalTemperatures;
    const stats = new Map<string, PromptStats[]>(); // `${T}|${task}|${drafter}`
    const continuations = async (T: number, task: string): Promise<Continuation[]> => {
      const toks = await cp(`cont|${T}|${task}`, async () => {
        const rng = new Xoshiro128(seedOf(cfg.seed, "cont", T, task));
        const drafter = drafters.get(cfg.uncalibrated.drafter);
        const cs = await sampleContinuations(verifier, prompts.get(task)!, { newTokens: cfg.newTokens, temperature: T, topP: cfg.topP, rng, drafter, gamma: 3 });
        return cs.map((c) => c.continuation);
      });
      // Verifier rows are recomputed (one pass per prompt): cheap, and checkpoints stay small.
      const out: Continuation[] = [];
      for (const [i, prompt] of prompts.get(task)!.entries()) out.push(await continuationOf(verifier, prompt, toks[i]!));
      return out;
    };
    const measureDrafter = async (name: string, lm: CausalLM, label: string) => {
      const p = new Progress(`measure ${label}`, cfg.targetTemperatures.length * tasks.length, o.quiet);
      for (const T of cfg.targetTemperatures) {
        for (const task of tasks) {
          const key = `${T}|${task}|${name}`;
          // (measure3: units carry expected steps and rejecting steps per γ; older checkpoints did not.)
          const v = await cp(`measure3|${key}`, async () => {
            const cs = await continuations(T, task);
            const units: PromptStats[] = [];
            for (const c of cs) units.push(await measurePrompt(lm, c, { temperature: T, topP: cfg.topP }, taus, cfg.gammas.filter((g) => g > 0)));
            return units;
          });
          stats.set(key, v);
          p.tick();
        }
      }
      p.finish();
    };
    for (const [name, lm] of drafters) await measureDrafter(name, lm, `drafter ${name}`);

    const summarize = (T: number, task: string, drafter: string) =>
      summarizePrompts(stats.get(`${T}|${task}|${drafter}`)!, taus, new Xoshiro128(seedOf(cfg.seed, "boot", T, task, drafter)), cfg.bootstrapResamples);
    const referenceT = cfg.targetTemperatures.includes(1) ? 1 : cfg.targetTemperatures[0]!;

    // ---- 4. mitigations: s-CDF, and the paper's baselines ----
    const mitigationDrafters = new Map<MitigationName, string>(); // mitigation → drafter name in `stats`
    const notes: string[] = [];
    if (cfg.scdf.enabled) {
      const base = cfg.scdf.drafter;
      const D = Object.fromEntries(tasks.map((t) => [t, summarize(referenceT, t, base).crossEntropy.estimate]));
      const pool = join(o.outDir, "finetune", "teacher-pool");
      const plans: FinetunePlan[] = [
        { name: "s-cdf", weights: scdfWeights(D, cfg.scdf.blend), divergences: D, fromDrafter: base, fromDir: modelDirs[base]!, steps: cfg.scdf.steps, teacherPool: pool, outDir: join(o.outDir, "finetune", "s-cdf"), seed: cfg.seed },
        { name: "data-balancing", weights: uniformWeights(tasks), fromDrafter: base, fromDir: modelDirs[base]!, steps: cfg.scdf.steps, teacherPool: pool, outDir: join(o.outDir, "finetune", "data-balancing"), seed: cfg.seed },
      ];
      const corpusTasks = tasks.filter((t) => "corpus" in cfg.tasks[t]!);
      if (corpusTasks.length < tasks.length) notes.push("s-CDF finetunes only on corpus tasks; prompt-file tasks are measured but not trained on.");
      const prog = new Progress("s-CDF and data-balancing finetunes (side by side)", 3, o.quiet);
      // (Built while this process measured, on the other core, the pool cost as much time again:
      // the measurement slowed by 60%. So it runs alone, one trainer process per core.)
      await cp("teacher-pool", async () => {
        await ensureTeacherPool(cfg.scdf.python, modelDirs.verifier!, pool, cfg.scdf.windows, (l) => log(`  [targets] ${l}`), children.signal);
        return true;
      });
      prog.tick();
      // Both finetunes at once (one trainer thread each, one per core); each drafter is measured as
      // soon as its finetune is done, in plan order.
      const finetuned = plans.map((plan) => {
        const w = Object.fromEntries(Object.entries(plan.weights).filter(([t]) => corpusTasks.includes(t)));
        return cp(`finetune|${plan.name}`, () => runFinetune(cfg.scdf.python, { ...plan, weights: w }, (l) => log(`  [${plan.name}] ${l}`), children.signal));
      });
      for (const f of finetuned) f.catch(() => {}); // each is awaited in turn below
      for (const [i, plan] of plans.entries()) {
        const dir = await finetuned[i]!;
        const lm = await loadOnnxCausalLM(dir);
        await measureDrafter(plan.name, lm, `drafter ${plan.name}`);
        await lm.dispose();
        mitigationDrafters.set(plan.name, plan.name);
        prog.tick();
      }
      prog.finish();
      notes.push(`s-CDF weights (shift-by-minimum over D_T of '${base}' at T=${referenceT}${cfg.scdf.blend ? `, blended ${cfg.scdf.blend} with uniform` : ""}): ${Object.entries(plans[0]!.weights).map(([t, x]) => `${t} ${x.toFixed(3)}`).join(", ")}`);
    }

    // ---- 5. measurements table ----
    const allDrafters = [...drafters.keys(), ...mitigationDrafters.values()];
    const measurements: TaskMeasurement[] = [];
    const cells: AlphaCell[] = [];
    for (const T of cfg.targetTemperatures) {
      for (const task of tasks) {
        for (const d of allDrafters) {
          const s = summarize(T, task, d);
          taus.forEach((tau, k) => {
            const a = s.alpha[k]!;
            cells.push({ task, drafter: d, targetTemperature: T, proposalTemperature: tau, alpha: a, tokensPerStep: s.tokensPerStep[k], rejectingFraction: s.rejectingFraction[k] });
            measurements.push({
              task,
              drafter: d,
              mitigation: d === "s-cdf" ? "s-cdf" : d === "data-balancing" ? "data-balancing" : "none",
              targetTemperature: T,
              proposalTemperature: tau,
              alpha: a,
              crossEntropy: s.crossEntropy,
              kl: s.kl,
              meanTv: s.meanTv,
              pinskerBound: s.pinskerBound,
              boundHolds: 1 - s.meanTv >= s.pinskerBound - 1e-9,
              prompts: s.prompts,
              positions: s.positions,
            });
          });
        }
      }
    }
    // ---- 5b. cost model on this host ----
    // Measured here, right before the fit and the timed validation rather than first: on a shared
    // host the relative costs drift over minutes (a run whose cost model was timed during a burst
    // of load, then validated on a quiet machine, missed its predictions by up to 34%).
    // (The key names the cost model's shape: a checkpoint of an older shape is not reused.)
    // Two rounds per task, each round on another task's calibration prompt.
    const costPrompts = loopCostPrompts(tasks.map((t) => prompts.get(t)!));
    const costs: Costs = await cp("costs-v5", async () => {
      const reps = Math.max(10, costPrompts.length);
      const p = new Progress("cost model (isolated, then in the decoding loop)", reps + 2, o.quiet);
      const c = await measureCosts(verifier, [...drafters.values()]);
      p.tick();
      c.loop = await measureLoopCosts(verifier, [...drafters.values()], {
        gammas: cfg.gammas,
        temperatures: cfg.targetTemperatures,
        newTokens: cfg.validation.newTokens,
        prompts: costPrompts,
        reps,
        onRound: () => p.tick(),
      });
      const loopT = String(cfg.targetTemperatures.at(-1));
      const loopSteps = c.loop.drafters.map((d) => `${d.id} ${Object.entries(d.step_ms[loopT]!).map(([g, ms]) => `γ${g} ${ms.toFixed(2)}`).join(" ")}`).join("; ");
      p.finish(`verifier step ${c.verifier_step_ms.toFixed(2)} ms, c = ${c.drafters.map((d) => `${d.id} ${d.c.toFixed(3)}`).join(", ")}; in the loop at T=${loopT}: verifier-only ${c.loop.verifier_step_ms[loopT]!.toFixed(2)} ms/step, ${loopSteps} ms/step`);
      return c;
    });
    // The cost model is keyed by model id (directory name); map it to the config's drafter names.
    const costsByName: Costs = {
      ...costs,
      drafters: [...drafters.entries()].map(([name, lm]) => ({ ...costs.drafters.find((d) => d.id === lm.id)!, id: name })),
      loop: costs.loop && { ...costs.loop, drafters: [...drafters.entries()].map(([name, lm]) => ({ ...costs.loop!.drafters.find((d) => d.id === lm.id)!, id: name })) },
    };

    const costsAll: Costs = {
      ...costsByName,
      drafters: [
        ...costsByName.drafters,
        // Finetuned drafters keep their parent's architecture, hence its step cost.
        ...[...mitigationDrafters.values()].map((n) => ({ ...costsByName.drafters.find((d) => d.id === cfg.scdf.drafter)!, id: n })),
      ],
      loop: costsByName.loop && {
        ...costsByName.loop,
        drafters: [
          ...costsByName.loop.drafters,
          ...[...mitigationDrafters.values()].map((n) => ({ ...costsByName.loop!.drafters.find((d) => d.id === cfg.scdf.drafter)!, id: n })),
        ],
      },
    };
    // Validation runs use the held-out prompts: predict for their length and new-token count.
    const meanLen = (ps: number[][] | undefined) => (ps && ps.length ? ps.reduce((a, p) => a + p.length, 0) / ps.length : null);
    const promptTokens = new Map(tasks.map((t) => [t, meanLen(heldout.get(t)) ?? meanLen(prompts.get(t)) ?? cfg.promptBytes]));
    const model = new SpeedupModel(costsAll, cells, { promptTokens, newTokens: cfg.validation.newTokens });

    // ---- 6. fit per (policy, target temperature), then timed validation ----
    const servingDrafters = [...drafters.keys()];
    const candidates = candidatePools(servingDrafters, cfg.gammas, taus);
    const policies: TenantPolicyRecord[] = cfg.policies.map((p) => {
      const { id, ...policy } = p;
      return { id, policy: policy as TenantPolicyRecord["policy"], maxPools: cfg.maxPools };
    });
    const params: TaskParams[] = [];
    const usedPools = new Map<string, PoolSpec>();
    const validations = new Map<string, ValidationResult>();
    const toValidate: { T: number; task: string; pool: PoolSpec }[] = [];
    const fits: { policyId: string; T: number; assignment: Record<string, string> }[] = [];
    for (const T of cfg.targetTemperatures) {
      for (const pol of policies) {
        const fit = fitPools({ tasks, traffic: cfg.traffic, candidates, speedup: (t, p) => model.predict(t, p, T).estimate, maxPools: cfg.maxPools, policy: pol.policy });
        if (!fit.feasible) notes.push(`policy ${pol.id} at T=${T}: no pool set satisfies it; fell back to the best infeasible fit`);
        fits.push({ policyId: pol.id, T, assignment: fit.assignment });
        for (const task of tasks) {
          const pool = candidates.find((c) => c.id === fit.assignment[task])!;
          usedPools.set(pool.id, pool);
          if (cfg.validation.prompts > 0 && !toValidate.some((v) => v.T === T && v.task === task && v.pool.id === pool.id)) toValidate.push({ T, task, pool });
        }
      }
    }
    // The uncalibrated default (one drafter, one γ, τ = T for every task) is validated too: it is
    // the baseline the fit must beat.
    const uncalibrated: PoolSpec = { id: "", drafter: cfg.uncalibrated.drafter, gamma: cfg.uncalibrated.gamma, proposalTemperature: null };
    const referenceT0 = cfg.targetTemperatures.includes(1) ? 1 : cfg.targetTemperatures[0]!;
    const uncalibratedAt = (T: number): PoolSpec => {
      const tau = taus.includes(T) ? T : taus[0]!;
      return { ...uncalibrated, id: `${cfg.uncalibrated.drafter}-g${cfg.uncalibrated.gamma}-t${tau}`, proposalTemperature: tau };
    };
    if (cfg.validation.prompts > 0)
      for (const task of tasks) {
        const pool = uncalibratedAt(referenceT0);
        if (!toValidate.some((v) => v.T === referenceT0 && v.task === task && v.pool.id === pool.id)) toValidate.push({ T: referenceT0, task, pool });
      }
    const remotePools: Pool[] = cfg.remote ? (await loadPoolsConfig(path(cfg.remote.pools))).pools : [];
    /** A remote pool that can run these parameters: any fairspec pool, or a fixed pool that matches. */
    const remoteFor = (p: PoolSpec): Pool | undefined =>
      remotePools.find((r) => r.kind === "fairspec") ??
      remotePools.find((r) => r.gamma === p.gamma && r.drafter === p.drafter && (p.gamma === 0 || r.proposal_temperature === p.proposalTemperature));
    const remoteBaseline = remotePools.find((r) => r.gamma === 0);
    // Units run grouped by (T, task), each group against one verifier-only run per prompt
    // (validate.ts); units are numbered in run order, which the drift windows below rely on.
    const groups = new Map<string, number[]>();
    for (const [unit, { T, task }] of toValidate.entries()) groups.set(`${T}|${task}`, [...(groups.get(`${T}|${task}`) ?? []), unit]);
    const runOrder = [...groups.values()].flat();
    toValidate.splice(0, toValidate.length, ...runOrder.map((u) => toValidate[u]!));
    if (toValidate.length) {
      const p = new Progress(`validation runs (timed, vs verifier-only${cfg.remote ? ", through origin pools" : ""})`, toValidate.length, o.quiet);
      const remoteUnit = async ({ T, task, pool }: (typeof toValidate)[number], remote: Pool): Promise<ValidationResult> => {
        const m = await measurePoolRemote(remote, heldoutText.get(task)!, {
          temperature: T,
          topP: cfg.topP,
          maxTokens: cfg.validation.newTokens,
          seed: seedOf(cfg.seed, "validate", task),
          wanted: { drafter: pool.drafter, gamma: pool.gamma, proposal_temperature: pool.proposalTemperature },
          concurrencyPerUrl: cfg.remote!.concurrencyPerUrl,
          timeoutMs: cfg.remote!.timeoutMs,
          baseline: remoteBaseline,
          rng: new Xoshiro128(seedOf(cfg.seed, "vboot", T, task, pool.id)),
          resamples: cfg.bootstrapResamples,
        });
        return { measuredSpeedup: m.speedup, msPerChar: m.msPerChar, verifierOnlyMsPerChar: null, via: remote.id, onlineAlpha: m.alpha };
      };
      let first = 0;
      for (const size of [...groups.values()].map((g) => g.length)) {
        const units = toValidate.slice(first, first + size).map((u, k) => ({ ...u, unit: first + k, remote: cfg.remote ? remoteFor(u.pool) : undefined }));
        first += size;
        const { T, task } = units[0]!;
        for (const u of units) if (cfg.remote && !u.remote) notes.push(`no remote pool runs ${u.pool.id}; validated in-process instead`);
        for (const u of units.filter((x) => x.remote)) {
          validations.set(`${T}|${task}|${u.pool.id}`, await cp(`validate-v3|${T}|${task}|${u.pool.id}`, () => remoteUnit(u, u.remote!)));
          p.tick();
        }
        const local = units.filter((x) => !x.remote);
        if (!local.length) continue;
        // (v4: one checkpoint per group, cells in run order.)
        const results = await cp(`validate-v4|${T}|${task}|${local.map((u) => u.pool.id).join(",")}`, () =>
          validateGroup({
            verifier,
            cells: local.map(({ pool, unit }) => ({
              drafter: pool.drafter ? drafters.get(pool.drafter) : undefined,
              gamma: pool.gamma,
              proposalTemperature: pool.proposalTemperature,
              rng: new Xoshiro128(seedOf(cfg.seed, "vboot", T, task, pool.id)),
              costProbes: { prompts: costPrompts, count: COST_PROBES_PER_UNIT, offset: unit * COST_PROBES_PER_UNIT },
            })),
            temperature: T,
            topP: cfg.topP,
            prompts: heldout.get(task)!,
            newTokens: cfg.validation.newTokens,
            seed: seedOf(cfg.seed, "validate", task),
            resamples: cfg.bootstrapResamples,
          }),
        );
        for (const [k, u] of local.entries()) {
          validations.set(`${T}|${task}|${u.pool.id}`, results[k]!);
          p.tick();
        }
      }
      p.finish();
    }
    for (const f of fits) {
      for (const task of tasks) {
        const pool = usedPools.get(f.assignment[task]!)!;
        const v = validations.get(`${f.T}|${task}|${pool.id}`);
        params.push({
          policyId: f.policyId,
          task,
          targetTemperature: f.T,
          poolId: pool.id,
          drafter: pool.drafter,
          gamma: pool.gamma,
          proposalTemperature: pool.proposalTemperature,
          predictedSpeedup: model.predict(task, pool, f.T),
          measuredSpeedup: v?.measuredSpeedup ?? null,
          msPerChar: v?.msPerChar ?? null,
        });
      }
    }
    const pools: PoolRecord[] = [...usedPools.values()].map((p) => ({ id: p.id, kind: cfg.origins.kind, drafter: p.drafter, gamma: p.gamma, proposalTemperature: p.proposalTemperature, urls: cfg.origins.urls }));

    // ---- 7. fairness analytics before / after ----
    const bestFor = (task: string, drafter: string, tauChoice: "request" | "best") => {
      let best = { speedup: 1, gamma: 0, proposalTemperature: referenceT, alpha: 0 };
      const tauList = tauChoice === "best" ? taus : [taus.includes(referenceT) ? referenceT : taus[0]!];
      for (const tau of tauList)
        for (const g of cfg.gammas) {
          if (g === 0) continue;
          const s = model.predict(task, { id: "", drafter, gamma: g, proposalTemperature: tau }, referenceT).estimate;
          if (s > best.speedup) best = { speedup: s, gamma: g, proposalTemperature: tau, alpha: model.alphaOf(task, drafter, referenceT, tau).estimate };
        }
      if (best.alpha === 0) best.alpha = model.alphaOf(task, drafter, referenceT, tauList[0]!).estimate;
      return best;
    };
    const mitigation = (name: MitigationName, drafter: string, description: string, tauChoice: "request" | "best"): MitigationResult => {
      const perTask: MitigationResult["perTask"] = {};
      for (const t of tasks) {
        const b = bestFor(t, drafter, tauChoice);
        perTask[t] = { crossEntropy: summarize(referenceT, t, drafter).crossEntropy.estimate, alpha: b.alpha, speedup: b.speedup, gamma: b.gamma, proposalTemperature: b.proposalTemperature };
      }
      return { name, drafter, description, unfairnessU: unfairnessU(tasks.map((t) => perTask[t]!.crossEntropy)), perTask, speedup: spread(tasks.map((t) => perTask[t]!.speedup)) };
    };
    const baseName = cfg.scdf.drafter in cfg.models.drafters ? cfg.scdf.drafter : [...drafters.keys()][0]!;
    const mitigations: MitigationResult[] = [mitigation("none", baseName, `drafter '${baseName}' as shipped, τ = T`, "request")];
    mitigations.push(mitigation("temperature-tuning", baseName, `drafter '${baseName}', proposal temperature tuned per task`, "best"));
    if (mitigationDrafters.has("data-balancing")) mitigations.push(mitigation("data-balancing", "data-balancing", "finetuned from the base drafter with uniform task weights (same budget as s-CDF)", "request"));
    if (mitigationDrafters.has("s-cdf")) mitigations.push(mitigation("s-cdf", "s-cdf", "finetuned from the base drafter with shift-by-minimum task weights", "request"));

    // ---- 8. α–γ curves for the report ----
    const curves: AlphaGammaPoint[] = [];
    for (const task of tasks)
      for (const d of allDrafters)
        for (const g of cfg.gammas) {
          const tau = taus.includes(referenceT) ? referenceT : taus[0]!;
          const alpha = model.alphaOf(task, d, referenceT, tau).estimate;
          curves.push({ task, drafter: d, targetTemperature: referenceT, proposalTemperature: tau, gamma: g, alpha, predictedSpeedup: model.predict(task, { id: "", drafter: d, gamma: g, proposalTemperature: tau }, referenceT).estimate });
        }

    // ---- 9. one transaction ----
    const speedOf = (p: TaskParams) => p.measuredSpeedup?.estimate ?? p.predictedSpeedup.estimate;
    const refParams = (policyId: string) => params.filter((p) => p.policyId === policyId && p.targetTemperature === referenceT);
    const finishedAt = new Date().toISOString();
    const hardware = { cpu: cpus()[0]?.model ?? "unknown", cores: cpus().length, node: process.version, runtime: "onnxruntime-node, CPU, 1 thread per session" };
    const run: CalibrationRun = {
      configHash: runHash,
      hardware,
      startedAt,
      finishedAt,
      summary: {
        referenceTemperature: referenceT,
        worstSpeedup: Object.fromEntries(policies.map((p) => [p.id, Math.min(...refParams(p.id).map(speedOf))])),
        meanSpeedup: Object.fromEntries(policies.map((p) => [p.id, refParams(p.id).reduce((a, x) => a + speedOf(x), 0) / tasks.length])),
        unfairnessU: mitigations[0]!.unfairnessU,
        unfairnessUAfter: mitigations.find((m) => m.name === "s-cdf")?.unfairnessU ?? null,
        mitigations: Object.fromEntries(mitigations.map((m) => [m.name, { U: m.unfairnessU, speedup: m.speedup }])),
      },
      measurements,
      pools,
      policies,
      params,
    };
    // Uncalibrated default vs the fit, per task at the reference temperature (measured where validated).
    const uPool = uncalibratedAt(referenceT);
    const uncal = Object.fromEntries(
      tasks.map((t) => {
        const v = validations.get(`${referenceT}|${t}|${uPool.id}`);
        return [t, { predicted: model.predict(t, uPool, referenceT).estimate, measured: v?.measuredSpeedup.estimate ?? null }];
      }),
    );
    run.summary.uncalibrated = {
      pool: uPool.id,
      perTask: uncal,
      speedup: spread(tasks.map((t) => uncal[t]!.measured ?? uncal[t]!.predicted)),
    };
    // The model's prediction for exactly the prompts each validation timed (their teacher-forced
    // tokens per step, this run's costs): what checks the speed-up model. The fit-time prediction
    // (calibration prompts) differs from it by the sampling error between the two prompt sets.
    // Its costs: the cost model rescaled by the drift the validation's cost probes measured around
    // each unit (the units just before and after it), so model and measurement see the same host
    // conditions. The per-T factor over the whole phase is reported too.
    const poolById = new Map(toValidate.map(({ pool }) => [pool.id, pool]));
    const probesOf = ({ T, task, pool }: (typeof toValidate)[number]): CostProbe[] =>
      pool.drafter === null ? [] : (validations.get(`${T}|${task}|${pool.id}`)?.costProbes ?? []).map((p) => ({ drafter: pool.drafter!, gamma: pool.gamma, temperature: T, stepRatio: p.stepRatio, rejectingFraction: p.rejectingFraction }));
    const loop = costsAll.loop;
    const drift = loop ? costDrift(loop, toValidate.flatMap(probesOf)) : {};
    const unitRatios = loop ? toValidate.map((u) => probeRatios(loop, probesOf(u))) : toValidate.map(() => []);
    const unitDrift = localDrift(unitRatios, LOCAL_DRIFT_UNITS);
    const unitOf = new Map(toValidate.map((u, i) => [`${u.T}|${u.task}|${u.pool.id}`, i]));
    const scaledModels = new Map<number, SpeedupModel>();
    const modelScaled = (factor: number): SpeedupModel => {
      if (!loop || factor === 1) return model;
      let m = scaledModels.get(factor);
      if (!m) {
        m = new SpeedupModel({ ...costsAll, loop: withDrift(loop, Object.fromEntries(Object.keys(loop.verifier_step_ms).map((t) => [t, { factor }]))) }, cells, { promptTokens, newTokens: cfg.validation.newTokens });
        scaledModels.set(factor, m);
      }
      return m;
    };
    const modelAt = (unit: number) => modelScaled(unitDrift[unit]!);
    type Rescale = "window" | "none";
    /** A validated unit with what its prediction needs (teacher-forced statistics), or null. */
    const validatedUnit = (T: number, task: string, poolId: string) => {
      const key = `${T}|${task}|${poolId}`;
      const v = validations.get(key);
      const pool = poolById.get(poolId);
      const unit = unitOf.get(key);
      return v?.teacherForced && pool && unit !== undefined ? { v, teacherForced: v.teacherForced, pool, unit } : null;
    };
    const predictedOnValidated = (T: number, task: string, poolId: string, rescale: Rescale = "window"): Interval95 | null => {
      const u = validatedUnit(T, task, poolId);
      return u ? (rescale === "window" ? modelAt(u.unit) : model).predictFor(task, u.pool, T, u.teacherForced) : null;
    };
    // Diagnostic: the same (drifted) model fed the acceptance the timed runs realised, so what is
    // left is the cost model's own error; the gap to predictedOnValidated is acceptance sampling.
    const predictedGivenRealized = (T: number, task: string, poolId: string): number | null => {
      const u = validatedUnit(T, task, poolId);
      const r = u?.v.realized;
      if (!u || !r) return null;
      const tps = { estimate: r.tokensPerStep, lo: r.tokensPerStep, hi: r.tokensPerStep };
      return modelAt(u.unit).predictFor(task, u.pool, T, { ...u.teacherForced, tokensPerStep: tps, rejectingFraction: r.rejectingFraction }).estimate;
    };
    run.summary.validation = [...validations.entries()].map(([key, v]) => {
      const [T, task, pool] = key.split("|") as [string, string, string];
      return {
        targetTemperature: Number(T),
        task,
        pool,
        via: v.via,
        measuredSpeedup: v.measuredSpeedup.estimate,
        predictedOnValidatedPrompts: predictedOnValidated(Number(T), task, pool)?.estimate ?? null,
        predictedGivenRealizedAcceptance: predictedGivenRealized(Number(T), task, pool),
        realized: v.realized ?? null,
        costDrift: unitDrift[unitOf.get(key) ?? -1] ?? null,
        onlineAlpha: v.onlineAlpha?.estimate ?? null,
      };
    });
    run.summary.fitted = Object.fromEntries(policies.map((p) => [p.id, spread(refParams(p.id).map(speedOf))]));
    const predErr = params.filter((p) => p.measuredSpeedup).map((p) => Math.abs(p.predictedSpeedup.estimate / p.measuredSpeedup!.estimate - 1));
    run.summary.predictionError = { max: Math.max(0, ...predErr), mean: predErr.length ? predErr.reduce((a, x) => a + x, 0) / predErr.length : null, validated: predErr.length };
    // Headline findings at the reference temperature (measured speed-ups where validated).
    const pct = (after: number, before: number) => (before === 0 ? null : (after - before) / before);
    const uncalSpread = run.summary.uncalibrated as { speedup: ReturnType<typeof spread> };
    const fittedSpreads = run.summary.fitted as Record<string, ReturnType<typeof spread>>;
    const none = mitigations.find((m) => m.name === "none")!;
    const scdf = mitigations.find((m) => m.name === "s-cdf");
    const relErr = (predicted: number, measured: number) => Math.abs(predicted / measured - 1);
    const perTaskErr = tasks.map((t) => {
      const ps = params.filter((p) => p.task === t && p.measuredSpeedup);
      // Each validated (T, pool) once, though several policies may share it.
      const cells = [...new Map(ps.map((p) => [`${p.targetTemperature}|${p.poolId}`, p])).values()];
      const errorWith = (rescale: Rescale) =>
        cells.map((p) => {
          const pred = predictedOnValidated(p.targetTemperature, t, p.poolId, rescale);
          return pred ? relErr(pred.estimate, p.measuredSpeedup!.estimate) : null;
        });
      const worst = (es: (number | null)[]) => (es.every((e) => e !== null) && es.length ? Math.max(...(es as number[])) : null);
      const onValidated = errorWith("window");
      const givenRealized = cells.map((p) => {
        const pred = predictedGivenRealized(p.targetTemperature, t, p.poolId);
        return pred === null ? null : relErr(pred, p.measuredSpeedup!.estimate);
      });
      const fitTime = cells.map((p) => relErr(p.predictedSpeedup.estimate, p.measuredSpeedup!.estimate));
      return {
        task: t,
        maxRelError: worst(onValidated),
        maxRelErrorUndrifted: worst(errorWith("none")),
        maxRelErrorGivenRealizedAcceptance: worst(givenRealized),
        fitTimeMaxRelError: Math.max(0, ...fitTime),
        fitTimeCisOverlap: cells.every((p) => p.predictedSpeedup.lo <= p.measuredSpeedup!.hi && p.measuredSpeedup!.lo <= p.predictedSpeedup.hi),
      };
    });
    const findings = {
      temperature: referenceT,
      disparity: { uncalibratedPool: uPool.id, worst: uncalSpread.speedup.min, best: uncalSpread.speedup.max, worstToBest: uncalSpread.speedup.worstToBest },
      fit: Object.fromEntries(
        policies.map((p) => [p.id, { worst: fittedSpreads[p.id]!.min, mean: fittedSpreads[p.id]!.mean, worstRises: fittedSpreads[p.id]!.min > uncalSpread.speedup.min, meanDoesNotFall: fittedSpreads[p.id]!.mean >= uncalSpread.speedup.mean - 1e-9 }]),
      ),
      uncalibratedMean: uncalSpread.speedup.mean,
      scdf: scdf
        ? { uBefore: none.unfairnessU, uAfter: scdf.unfairnessU, uChange: pct(scdf.unfairnessU, none.unfairnessU), speedupVarianceBefore: none.speedup.variance, speedupVarianceAfter: scdf.speedup.variance, speedupVarianceChange: pct(scdf.speedup.variance, none.speedup.variance) }
        : null,
      prediction: {
        basis:
          "maxRelError: the model's prediction for the validated prompts themselves (teacher-forced tokens per step; this run's loop costs rescaled by the drift that paired cost probes measured around each validation unit, within ±5 units; costDrift: the same over the whole phase, per T) vs their timed speed-up; maxRelErrorUndrifted: the same with the loop costs as timed before the fit; maxRelErrorGivenRealizedAcceptance (diagnostic): the drifted model fed the tokens per step and rejecting fraction the timed runs realised, i.e. the cost model's error alone; fitTime*: the prediction made for the fit (calibration prompts, costs as timed before the fit) vs the held-out measurement",
        costDrift: drift,
        perTask: perTaskErr,
        tasksWithin10pct: perTaskErr.filter((e) => e.maxRelError !== null && e.maxRelError <= 0.1).length,
        fitTimeTasksWithin10pct: perTaskErr.filter((e) => e.fitTimeMaxRelError <= 0.1).length,
        fitTimeTasksCisOverlap: perTaskErr.filter((e) => e.fitTimeCisOverlap).length,
        tasks: tasks.length,
      },
    };
    run.summary.findings = findings;
    const runId = await store.saveRun(run);
    for (const t of cfg.tenants) await store.ensureTenant({ id: t.id, name: t.name, defaultTask: t.defaultTask }, cfg.policies.find((p) => p.id === t.policy)!);

    const report: ReportData = {
      findings,
      run: { id: runId, configHash: runHash, startedAt, finishedAt, hardware },
      tasks,
      drafters: allDrafters,
      targetTemperatures: cfg.targetTemperatures,
      referenceTemperature: referenceT,
      costs: costsAll,
      measurements,
      curves,
      policies,
      pools,
      params,
      mitigations,
      notes,
    };
    const files = await writeReport(report, o.outDir);
    await store.clearCheckpoints(runHash);
    return { runId, runHash, report, files };
  } finally {
    children.abort(); // a failed run leaves no trainer running
    await verifier.dispose();
    for (const d of drafters.values()) await d.dispose();
  }
}

