import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Xoshiro128 } from "../core/rng.ts";
import { bestGamma, expectedTokensPerCall, measuredVerifyCost, operationsFactor, wallTimeFactor, type VerifyCost } from "../core/speedup.ts";
import { isTaskId, TASKS } from "../core/tasks.ts";
import { taskPrompts } from "../corpora/index.ts";
import { generate, maxNewTokensFor } from "../engine/speculative.ts";
import { loadOnnxCausalLM } from "../engine/onnx-lm.ts";
import type { OrtBackend } from "../engine/ort.ts";
import { parse, UsageError } from "./args.ts";
import { poolsCmd } from "./pools.ts";
import { calibrateCmd } from "./calibrate.ts";
import { startCmd } from "./start.ts";
import { driftCmd } from "./drift.ts";
import { recalibrateCmd } from "./recalibrate.ts";
import { activateCmd, rollbackCmd, runsCmd } from "./runs.ts";
import { serveOriginCmd } from "../origin/server.ts";

export interface Command {
  summary: string;
  usage: string;
  run(argv: string[]): Promise<void>;
}

export const MODELS_DIR = fileURLToPath(new URL("../models/", import.meta.url));

/** `base` → models/drafter-base; anything with a slash is a path to a model directory. */
export function modelDir(nameOrPath: string, prefix = ""): string {
  if (nameOrPath.includes("/")) return nameOrPath;
  const dir = `${MODELS_DIR}${prefix}${nameOrPath}`;
  if (!existsSync(dir)) {
    const known = ["base", "balanced"].join(", ");
    throw new UsageError(`no model '${nameOrPath}' in models/ — use one of: ${known}, or a path to a model directory`);
  }
  return dir;
}

function num(v: string | undefined, flag: string, dflt: number, check: (x: number) => boolean = () => true, want = "a number"): number {
  if (v === undefined) return dflt;
  const x = Number(v);
  if (v.trim() === "" || !Number.isFinite(x) || !check(x)) throw new UsageError(`--${flag} must be ${want}, got '${v}'`);
  return x;
}

const generateCmd: Command = {
  summary: "generate text with (speculative) decoding and print it, or tokens and stats with --json",
  usage:
    "(--prompt TEXT | --task TASK [--index N]) [--gamma G] [--drafter base|balanced|DIR] [--temperature T] [--top-p P] [--top-k K] [--proposal-temperature TAU] [--max-tokens N] [--seed S] [--backend node|web] [--json]",
  async run(argv) {
    const { values: v } = parse(
      argv,
      {
        prompt: { type: "string" },
        task: { type: "string" },
        index: { type: "string" },
        gamma: { type: "string" },
        drafter: { type: "string" },
        verifier: { type: "string" },
        temperature: { type: "string" },
        "top-p": { type: "string" },
        "top-k": { type: "string" },
        "proposal-temperature": { type: "string" },
        "max-tokens": { type: "string" },
        seed: { type: "string" },
        backend: { type: "string" },
        json: { type: "boolean" },
      },
      `npx fairspec generate ${generateCmd.usage}`,
    );
    if ((v.prompt === undefined) === (v.task === undefined)) throw new UsageError("give exactly one of --prompt TEXT or --task TASK");
    let text = v.prompt;
    if (v.task !== undefined) {
      if (!isTaskId(v.task)) throw new UsageError(`unknown task '${v.task}' — use one of: ${TASKS.join(", ")}`);
      const index = num(v.index, "index", 0, (x) => Number.isInteger(x) && x >= 0, "an integer >= 0");
      const prompts = taskPrompts(v.task, index + 1);
      text = prompts[index];
      if (text === undefined) throw new UsageError(`task ${v.task} has only ${prompts.length} test prompts`);
    }
    const gamma = num(v.gamma, "gamma", 4, (x) => Number.isInteger(x) && x >= 0 && x <= 32, "an integer from 0 to 32");
    const temperature = num(v.temperature, "temperature", 0, (x) => x >= 0 && x <= 10, "a number from 0 to 10");
    const backend = (v.backend ?? "node") as OrtBackend;
    if (backend !== "node" && backend !== "web") throw new UsageError(`--backend must be node or web, got '${v.backend}'`);
    const verifier = await loadOnnxCausalLM(v.verifier ? modelDir(v.verifier) : `${MODELS_DIR}verifier`, { backend });
    const drafter = gamma > 0 ? await loadOnnxCausalLM(modelDir(v.drafter ?? "base", "drafter-"), { backend }) : undefined;
    const prompt = verifier.tokenizer.encode(text!);
    const room = Math.min(verifier.maxPositions, drafter?.maxPositions ?? Infinity);
    // Keep the end of an over-long prompt (what the model continues from) and say so.
    const keep = prompt.length >= room ? prompt.slice(prompt.length - Math.floor(room / 2)) : prompt;
    if (keep !== prompt && !v.json) console.error(`(prompt truncated to its last ${keep.length} tokens to fit the ${room}-position context)`);
    const fit = maxNewTokensFor({ verifier, drafter, prompt: keep });
    const maxNewTokens = num(v["max-tokens"], "max-tokens", Math.min(64, fit), (x) => Number.isInteger(x) && x >= 1, "an integer >= 1");
    const g = await generate({
      verifier,
      drafter,
      gamma,
      temperature,
      topP: num(v["top-p"], "top-p", 1, (x) => x > 0 && x <= 1, "in (0, 1]"),
      topK: num(v["top-k"], "top-k", 0, (x) => Number.isInteger(x) && x >= 0, "an integer >= 0"),
      proposalTemperature: v["proposal-temperature"] === undefined ? undefined : num(v["proposal-temperature"], "proposal-temperature", 1, (x) => x >= 0, "a number >= 0"),
      prompt: keep,
      maxNewTokens: Math.min(maxNewTokens, fit),
      rng: new Xoshiro128(num(v.seed, "seed", 0, Number.isInteger, "an integer")),
    });
    const out = verifier.tokenizer.decode(g.tokens);
    if (v.json) {
      console.log(JSON.stringify({ prompt: verifier.tokenizer.decode(keep), text: out, tokens: g.tokens, finish_reason: g.finishReason, gamma, drafter: drafter?.id ?? null, stats: g.stats }, null, 2));
    } else {
      process.stdout.write(`${out}\n`);
      const s = g.stats;
      const tps = (g.tokens.length / s.totalMs) * 1000;
      console.error(
        `-- ${g.tokens.length} tokens in ${s.totalMs.toFixed(1)} ms (${tps.toFixed(0)} tok/s), γ=${gamma}${drafter ? ` drafter=${drafter.id}` : ""}` +
          (s.drafted ? `, acceptance ${(s.acceptanceRate * 100).toFixed(1)}%, mean acceptance length ${s.meanAcceptanceLength.toFixed(2)}` : ""),
      );
    }
  },
};

/** "1:1,5:1.4" or a bench JSON file with a `verifyCost` array of [tokens, relCost]. */
function parseVerifyCost(spec: string): VerifyCost {
  if (existsSync(spec)) {
    const j = JSON.parse(readFileSync(spec, "utf8"));
    const pts = j.verifyCost ?? j.verify_cost;
    if (!Array.isArray(pts)) throw new UsageError(`${spec} has no 'verifyCost' array of [tokens, relativeCost] pairs`);
    return measuredVerifyCost(pts);
  }
  const pts = spec.split(",").map((kv) => {
    const [n, c] = kv.split(":").map(Number);
    if (!Number.isFinite(n) || !Number.isFinite(c)) throw new UsageError(`--verify-cost expects 'tokens:cost,…' like '1:1,5:1.4', got '${spec}'`);
    return [n!, c!] as const;
  });
  return measuredVerifyCost(pts);
}

const speedupCmd: Command = {
  summary: "the analytic speed-up model: tokens per verifier call, wall-time factor, best γ",
  usage: "--alpha A --gamma G --c C [--verify-cost 'n:cost,…'|FILE.json] [--gamma-max N] [--json]",
  async run(argv) {
    const { values: v } = parse(
      argv,
      { alpha: { type: "string" }, gamma: { type: "string" }, c: { type: "string" }, "verify-cost": { type: "string" }, "gamma-max": { type: "string" }, json: { type: "boolean" } },
      `npx fairspec speedup ${speedupCmd.usage}`,
    );
    for (const f of ["alpha", "gamma", "c"] as const) if (v[f] === undefined) throw new UsageError(`--${f} is required — usage: npx fairspec speedup ${speedupCmd.usage}`);
    const alpha = num(v.alpha, "alpha", 0, (x) => x >= 0 && x <= 1, "in [0, 1]");
    const gamma = num(v.gamma, "gamma", 0, (x) => Number.isInteger(x) && x >= 0 && x <= 64, "an integer from 0 to 64");
    const c = num(v.c, "c", 0, (x) => x >= 0, "a number >= 0 (drafter step cost / verifier step cost)");
    const gammaMax = num(v["gamma-max"], "gamma-max", 16, (x) => Number.isInteger(x) && x >= 1 && x <= 64, "an integer from 1 to 64");
    const verifyCost = v["verify-cost"] ? parseVerifyCost(v["verify-cost"]) : undefined;
    const r = {
      alpha,
      gamma,
      c,
      verify_cost: verifyCost ? "measured" : "flat (paper's assumption)",
      expected_tokens_per_verifier_call: expectedTokensPerCall(alpha, gamma),
      wall_time_factor: wallTimeFactor(alpha, gamma, c, verifyCost),
      operations_factor: operationsFactor(alpha, gamma, c),
      best: bestGamma(alpha, c, gammaMax, verifyCost),
    };
    if (v.json) console.log(JSON.stringify(r, null, 2));
    else {
      console.log(`α=${alpha} γ=${gamma} c=${c}  (verify cost: ${r.verify_cost})`);
      console.log(`  expected tokens per verifier call  ${r.expected_tokens_per_verifier_call.toFixed(4)}`);
      console.log(`  wall-time factor (speed-up)        ${r.wall_time_factor.toFixed(4)}×`);
      console.log(`  total operations factor            ${r.operations_factor.toFixed(4)}×`);
      console.log(`  best γ in 0..${gammaMax}                   ${r.best.gamma}  (${r.best.factor.toFixed(4)}×)`);
    }
  },
};

const demoCmd: Command = {
  summary: "per task: verifier-only vs speculative decoding with each drafter on held-out prompts (greedy)",
  usage: "[--prompts N] [--gamma G] [--max-tokens N]",
  async run(argv) {
    const { values: v } = parse(argv, { prompts: { type: "string" }, gamma: { type: "string" }, "max-tokens": { type: "string" } }, `npx fairspec demo ${demoCmd.usage}`);
    const nPrompts = num(v.prompts, "prompts", 3, (x) => Number.isInteger(x) && x >= 1 && x <= 50, "an integer from 1 to 50");
    const gamma = num(v.gamma, "gamma", 4, (x) => Number.isInteger(x) && x >= 1 && x <= 16, "an integer from 1 to 16");
    const maxNewTokens = num(v["max-tokens"], "max-tokens", 64, (x) => Number.isInteger(x) && x >= 1 && x <= 128, "an integer from 1 to 128");
    const verifier = await loadOnnxCausalLM(`${MODELS_DIR}verifier`);
    const drafters = [await loadOnnxCausalLM(modelDir("base", "drafter-")), await loadOnnxCausalLM(modelDir("balanced", "drafter-"))];
    console.log(`verifier-only vs speculative (γ=${gamma}, greedy, ${nPrompts} held-out prompts × ${maxNewTokens} tokens per task)\n`);
    console.log(`${"task".padEnd(8)} ${"α base".padStart(8)} ${"α balanced".padStart(11)} ${"speed-up base".padStart(14)} ${"balanced".padStart(9)}  sample (verifier greedy = speculative greedy)`);
    for (const task of TASKS) {
      const ms = [0, 0, 0];
      const acc = [0, 0];
      const drafted = [0, 0];
      let sample = "";
      for (const text of taskPrompts(task, nPrompts)) {
        const prompt = verifier.tokenizer.encode(text);
        const common = { verifier, prompt, maxNewTokens, temperature: 0, rng: new Xoshiro128(0), stopAtEos: false };
        const base = await generate({ ...common, gamma: 0 });
        ms[0]! += base.stats.totalMs;
        for (const [i, drafter] of drafters.entries()) {
          const g = await generate({ ...common, drafter, gamma });
          if (g.tokens.join() !== base.tokens.join()) throw new Error(`greedy mismatch on ${task}: the engine is broken`);
          ms[i + 1]! += g.stats.totalMs;
          acc[i]! += g.stats.accepted;
          drafted[i]! += g.stats.drafted;
        }
        sample ||= verifier.tokenizer.decode(base.tokens).replace(/\s+/g, " ").slice(0, 40);
      }
      const cell = (x: number, w: number) => x.toFixed(2).padStart(w);
      console.log(
        `${task.padEnd(8)} ${cell(acc[0]! / drafted[0]!, 8)} ${cell(acc[1]! / drafted[1]!, 11)} ${(cell(ms[0]! / ms[1]!, 13) + "×")} ${(cell(ms[0]! / ms[2]!, 8) + "×")}  ${JSON.stringify(sample)}`,
      );
    }
    console.log("\nα here = accepted / drafted. Full measurements: npm run bench:engine -- --out FILE.json");
  },
};

export const COMMANDS: Record<string, Command> = {
  generate: generateCmd,
  speedup: speedupCmd,
  demo: demoCmd,
  start: startCmd,
  calibrate: calibrateCmd,
  recalibrate: recalibrateCmd,
  drift: driftCmd,
  runs: runsCmd,
  activate: activateCmd,
  rollback: rollbackCmd,
  pools: poolsCmd,
  "serve-origin": serveOriginCmd,
};
