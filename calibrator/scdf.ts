/**
 * s-CDF — stochastic corrective drafter finetuning (Sandler et al.), and the data-balancing
 * baseline, run through the trainer:
 *   1. weights from the measured D_T: shift-by-minimum w_T ∝ D_T − min D (optionally blended with
 *      uniform weights — a flagged deviation, off by default);
 *   2. a plan file (weights, steps, teacher, start drafter) written next to the report;
 *   3. `trainer/distill.py student --init <drafter dir> --weights <w>`: only the drafter is
 *      trained (the verifier is frozen, so output quality cannot change), each minibatch's tasks
 *      drawn by the weights — the "stochastic" part;
 *   4. `trainer/export.py` exports it as a new drafter directory, which the calibrator re-measures.
 * Teacher targets come from the committed verifier ONNX (trainer/distill.py targets).
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { shiftByMinimumWeights } from "../core/fairness.ts";

const ROOT = resolve(fileURLToPath(new URL("..", import.meta.url)));

export interface FinetunePlan {
  name: "s-cdf" | "data-balancing";
  weights: Record<string, number>;
  fromDrafter: string;
  fromDir: string;
  steps: number;
  teacherPool: string;
  outDir: string;
  seed: number;
  divergences?: Record<string, number>;
}

export function scdfWeights(divergence: Record<string, number>, blend = 0): Record<string, number> {
  const w = shiftByMinimumWeights(divergence);
  const m = Object.keys(w).length;
  return Object.fromEntries(Object.entries(w).map(([t, x]) => [t, (1 - blend) * x + blend / m]));
}

export function uniformWeights(tasks: readonly string[]): Record<string, number> {
  return Object.fromEntries(tasks.map((t) => [t, 1 / tasks.length]));
}

/** Runs a trainer command; `signal` kills it (the calibrator aborts its children when it fails). */
function run(cmd: string, args: string[], log: (line: string) => void, signal?: AbortSignal): Promise<void> {
  const what = `${cmd} ${args[0]} ${args[1] ?? ""}`;
  return new Promise((res, rej) => {
    if (signal?.aborted) return rej(new Error(`${what} not started: the calibration was aborted`));
    const p = spawn(cmd, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], signal });
    let tail = "";
    const onData = (b: Buffer) => {
      const text = b.toString();
      tail = (tail + text).slice(-2000);
      for (const line of text.split("\n")) if (line.trim() && !/Warning|warn\(/.test(line)) log(line.trim());
    };
    p.stdout.on("data", onData);
    p.stderr.on("data", onData);
    p.on("error", (e) => rej(e.name === "AbortError" ? new Error(`${what} stopped: the calibration was aborted`) : new Error(`cannot start ${cmd}: ${e.message} — install Debian's python3-torch and python3-onnx (see trainer/README.md)`)));
    p.on("close", (code) => (code === 0 ? res() : rej(new Error(`${what} exited with ${code}: ${tail.split("\n").filter(Boolean).slice(-2).join(" | ")}`))));
  });
}

const TRAINER_PACKAGES = "python3-torch python3-onnx python3-numpy libopenblas0-openmp";

/**
 * What the finetunes need, checked before any measurement, so a machine without them fails in a
 * second with the fix rather than after minutes of work: Debian's PyTorch, ONNX and NumPy for
 * `python`, and the training text of every corpus task (built from Debian packages, not committed).
 */
export function scdfPrerequisiteError(python: string, corpusTasks: readonly string[]): string | null {
  const probe = spawnSync(python, ["-c", "import numpy, torch, onnx"], { cwd: ROOT, encoding: "utf8", timeout: 60_000 });
  if (probe.error) return `s-CDF cannot start ${python} (${probe.error.message}) — install Debian's PyTorch: sudo apt-get install -y --no-install-recommends ${TRAINER_PACKAGES}, or set scdf.python / scdf.enabled false in the config`;
  if (probe.status !== 0) {
    const missing = /No module named '([^']+)'/.exec(probe.stderr ?? "")?.[1];
    return `s-CDF needs ${missing ? `the Python module '${missing}'` : "PyTorch, ONNX and NumPy"} for ${python} — run: sudo apt-get install -y --no-install-recommends ${TRAINER_PACKAGES} (or set scdf.enabled false in the config)`;
  }
  const absent = corpusTasks.filter((t) => !existsSync(join(ROOT, "corpora", ".cache", "train", `${t}.bin`)));
  if (absent.length) return `s-CDF trains on the tasks' training text, which is not built yet (${absent.join(", ")}) — run: npm run corpora (~1 min), or set scdf.enabled false in the config`;
  return null;
}

/** Teacher targets from the committed verifier (shared by every finetune; resumable per task). */
export async function ensureTeacherPool(python: string, verifierDir: string, poolDir: string, windows: number, log: (l: string) => void, signal?: AbortSignal) {
  await run(python, ["trainer/distill.py", "targets", "--teacher", verifierDir, "--pool", poolDir, "--windows", String(windows), "--procs", "2"], log, signal);
}

/**
 * Runs (or resumes) one finetune and exports the drafter; returns the exported directory. The
 * trainer uses one thread, so two finetunes run side by side on this 2-core host.
 */
export async function runFinetune(python: string, plan: FinetunePlan, log: (l: string) => void, signal?: AbortSignal): Promise<string> {
  mkdirSync(plan.outDir, { recursive: true });
  writeFileSync(join(plan.outDir, "plan.json"), JSON.stringify(plan, null, 2));
  const runDir = join(plan.outDir, "run");
  const modelDir = join(plan.outDir, `drafter-${plan.name}`);
  if (existsSync(join(modelDir, "model.onnx"))) return modelDir;
  await run(
    python,
    ["trainer/distill.py", "student", "--pool", plan.teacherPool, "--run", runDir, "--init", plan.fromDir, "--weights", JSON.stringify(plan.weights), "--steps", String(plan.steps), "--lr", "1e-3", "--warmup", "20", "--seed", String(plan.seed)],
    log,
    signal,
  );
  await run(python, ["trainer/export.py", "--ckpt", join(runDir, "ckpt.pt"), "--out", modelDir], log, signal);
  return modelDir;
}
