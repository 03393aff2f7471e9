/**
 * The calibration config: one JSON file, validated once with zod. Every error names the field.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { z } from "zod";
import { TASKS } from "../core/tasks.ts";

const policy = z.discriminatedUnion("kind", [
  z.object({ id: z.string().min(1), kind: z.literal("throughput") }).strict(),
  z.object({ id: z.string().min(1), kind: z.literal("maxmin") }).strict(),
  z.object({ id: z.string().min(1), kind: z.literal("alpha-fair"), alpha: z.number().min(0) }).strict(),
  z.object({ id: z.string().min(1), kind: z.literal("floor"), ratio: z.number().min(0).max(1) }).strict(),
]);

const task = z.union([
  z.object({ corpus: z.enum(TASKS) }).strict(),
  z.object({ prompts: z.string().min(1).describe("path to a JSONL file of {\"prompt\": \"…\"} lines") }).strict(),
]);

const temperature = z.number().min(0).max(2);

export const calibrationConfig = z
  .object({
    models: z
      .object({
        verifier: z.string().min(1),
        drafters: z.record(z.string().regex(/^[a-z0-9-]+$/, "drafter names are lowercase letters, digits and dashes"), z.string().min(1)).refine((d) => Object.keys(d).length > 0, "at least one drafter"),
      })
      .strict(),
    tasks: z.record(z.string().min(1), task).refine((t) => Object.keys(t).length >= 2, "at least two tasks (fairness is across tasks)"),
    /** Traffic share per task for the throughput objectives (default uniform). */
    traffic: z.record(z.string(), z.number().min(0)).optional(),
    promptsPerTask: z.number().int().min(2).max(1000).default(24),
    promptBytes: z.number().int().min(8).max(200).default(96),
    newTokens: z.number().int().min(8).max(160).default(64),
    targetTemperatures: z.array(temperature).min(1).default([0, 1]),
    topP: z.number().gt(0).max(1).default(1),
    gammas: z.array(z.number().int().min(0).max(16)).min(1).default([0, 1, 2, 3, 4, 5, 6]),
    proposalTemperatures: z.array(temperature).min(1).default([0, 0.7, 1, 1.3]),
    maxPools: z.number().int().min(1).max(16).default(3),
    /** The uncalibrated default every task would get without fairspec: this drafter, this γ, τ = T. */
    uncalibrated: z
      .object({ drafter: z.string().default("base"), gamma: z.number().int().min(1).max(16).default(4) })
      .strict()
      .default({ drafter: "base", gamma: 4 }),
    origins: z
      .object({
        kind: z.enum(["fairspec", "vllm", "sglang"]).default("fairspec"),
        urls: z.array(z.url()).default([]),
      })
      .strict()
      .default({ kind: "fairspec", urls: [] }),
    policies: z.array(policy).min(1).default([
      { id: "throughput", kind: "throughput" },
      { id: "maxmin", kind: "maxmin" },
    ]),
    tenants: z
      .array(z.object({ id: z.string().regex(/^[a-z0-9_-]+$/), name: z.string().min(1), policy: z.string(), defaultTask: z.string() }).strict())
      .default([]),
    validation: z
      .object({ prompts: z.number().int().min(0).max(200).default(8), newTokens: z.number().int().min(8).max(160).default(64) })
      .strict()
      .default({ prompts: 8, newTokens: 64 }),
    scdf: z
      .object({
        enabled: z.boolean().default(true),
        /** The drafter to correct (its model must be a directory exported by trainer/export.py). */
        drafter: z.string().default("base"),
        steps: z.number().int().min(10).max(100_000).default(1500),
        /** Teacher windows per task (256 positions each) for the distillation targets. */
        windows: z.number().int().min(16).max(10_000).default(400),
        /**
         * Deviation from the paper, off by default: mix this share of uniform task weights into
         * the shift-by-minimum weights, so the best task keeps some weight and is not forgotten.
         */
        blend: z.number().min(0).max(1).default(0),
        python: z.string().default("/usr/bin/python3"),
      })
      .strict()
      .default({ enabled: true, drafter: "base", steps: 1500, windows: 400, blend: 0, python: "/usr/bin/python3" }),
    /**
     * Validate through origin pools over HTTP instead of in-process: a pools config file
     * (origin/pools.ts format). fairspec pools take any parameters per request; vLLM / SGLang
     * pools validate only the parameters they were launched with.
     */
    remote: z
      .object({
        pools: z.string().min(1),
        concurrencyPerUrl: z.number().int().min(1).max(64).default(2),
        timeoutMs: z.number().int().min(1000).max(600_000).default(120_000),
      })
      .strict()
      .optional(),
    bootstrapResamples: z.number().int().min(100).max(100_000).default(1000),
    seed: z.number().int().default(1),
  })
  .strict()
  .superRefine((c, ctx) => {
    for (const p of c.policies) if (c.policies.filter((q) => q.id === p.id).length > 1) ctx.addIssue({ code: "custom", path: ["policies"], message: `duplicate policy id '${p.id}'` });
    for (const [i, t] of c.tenants.entries()) {
      if (!c.policies.some((p) => p.id === t.policy)) ctx.addIssue({ code: "custom", path: ["tenants", i, "policy"], message: `unknown policy '${t.policy}' (defined: ${c.policies.map((p) => p.id).join(", ")})` });
      if (!(t.defaultTask in c.tasks)) ctx.addIssue({ code: "custom", path: ["tenants", i, "defaultTask"], message: `unknown task '${t.defaultTask}'` });
    }
    if (!(c.uncalibrated.drafter in c.models.drafters)) ctx.addIssue({ code: "custom", path: ["uncalibrated", "drafter"], message: `unknown drafter '${c.uncalibrated.drafter}'` });
    if (c.scdf.enabled && !(c.scdf.drafter in c.models.drafters)) ctx.addIssue({ code: "custom", path: ["scdf", "drafter"], message: `unknown drafter '${c.scdf.drafter}'` });
    for (const t of Object.keys(c.traffic ?? {})) if (!(t in c.tasks)) ctx.addIssue({ code: "custom", path: ["traffic", t], message: `unknown task '${t}'` });
  });

export type CalibrationConfig = z.infer<typeof calibrationConfig>;

export class ConfigError extends Error {}

/** One line: the first problem, with the path of the bad field. */
export function parseConfig(raw: unknown, source = "config"): CalibrationConfig {
  const r = calibrationConfig.safeParse(raw);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const path = issue.path.length ? issue.path.join(".") : "(top level)";
  const more = r.error.issues.length > 1 ? ` (and ${r.error.issues.length - 1} more)` : "";
  throw new ConfigError(`${source}: ${path}: ${issue.message}${more}`);
}

export function loadConfig(file: string): CalibrationConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError(`cannot read config ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message} — pass an existing file with --config (example: calibrator/calibrate.example.json)`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
  return parseConfig(raw, file);
}

/** Stable hash of a parsed config (keys sorted), used to resume a run of the same config. */
export function configHash(c: CalibrationConfig): string {
  const canon = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(canon) : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon((v as Record<string, unknown>)[k])])) : v;
  return createHash("sha256").update(JSON.stringify(canon(c))).digest("hex").slice(0, 16);
}
