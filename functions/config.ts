/**
 * The gateway's configuration: plain JSON, validated with zod. Runtime-neutral (the Worker bundles
 * it as a JSON import or reads it from a `FAIRSPEC_EDGE_CONFIG` var; Node reads a file).
 *
 * The pools use origin/pools.ts's format. They serve two purposes:
 * - deployment overrides for the pools a calibration run names (same `id`: this config's `urls`,
 *   `model` and `weights` win over the URLs recorded in the run — a run calibrated against a
 *   local origin is served from the production GPU hosts);
 * - the safe `defaultPool` (used when no calibration was ever loaded, or a task has no params)
 *   and the `fallbackPool` (tried when every origin of the chosen pool fails before the first
 *   byte).
 */
import { z } from "zod";
import type { Policy } from "../core/fit.ts";
import { parsePoolsConfig, type Pool } from "../origin/pools.ts";

const ms = (dflt: number) => z.number().int().min(1).max(3_600_000).default(dflt);

export const policySchema = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("throughput") }),
  z.strictObject({ kind: z.literal("maxmin") }),
  z.strictObject({ kind: z.literal("alpha-fair"), alpha: z.number().min(0) }),
  z.strictObject({ kind: z.literal("floor"), ratio: z.number().min(0).max(1) }),
]);

const edgeConfigSchema = z
  .strictObject({
    $schema: z.string().optional(),
    /** The model name clients send and GET /v1/models lists. */
    model: z.string().min(1).default("fairspec"),
    pools: z.array(z.unknown()).min(1),
    /** Relative weight per URL of a pool (same order as its `urls`); default equal. */
    weights: z.record(z.string(), z.array(z.number().min(0)).min(1)).default({}),
    /** Serves every request while no calibration was ever loaded (and tasks without params). */
    defaultPool: z.string().min(1),
    /** Tried after every origin of the chosen pool failed before the first byte; null: none. */
    fallbackPool: z.string().min(1).nullable().default(null),
    /** The policy for tenants without one (or whose policy the active run was not fitted for). */
    defaultPolicy: policySchema.default({ kind: "throughput" }),
    timeouts: z
      .strictObject({
        /** TCP connect (Node entry; on Workers the platform's own connect handling applies). */
        connectMs: ms(2_000),
        /** Until the origin's response headers, for stream requests (the origin sends them once admitted). */
        firstByteMs: ms(30_000),
        /** Until the origin's response headers, for non-stream requests (they come after generation). */
        nonStreamMs: ms(180_000),
        /** Largest gap between two body chunks once streaming; past it the client gets a stream error. */
        idleMs: ms(60_000),
      })
      .prefault({}),
    /** Origins tried per request (chosen pool's URLs, then the fallback pool's), before the first byte only. */
    maxAttempts: z.number().int().min(1).max(10).default(3),
    cache: z
      .strictObject({
        /** Task params (the active run) are fresh this long, then served stale while one refresh runs. */
        paramsTtlMs: ms(30_000),
        /** A known API key (and its tenant's policy) is fresh this long. */
        keyTtlMs: ms(60_000),
        /** An unknown key is remembered as unknown this long. */
        negativeKeyTtlMs: ms(5_000),
        /** Longest wait for libSQL when nothing is cached; stale entries never wait. */
        dbTimeoutMs: ms(1_500),
        /** After a failed refresh, the next one waits this long (a down DB is not hammered). */
        retryMs: ms(2_000),
        /** Keys remembered per isolate (least recently used beyond). */
        maxKeys: z.number().int().min(1).default(10_000),
      })
      .prefault({}),
    rateLimit: z
      .strictObject({
        /** Bucket size per API key, in requests. */
        burst: z.number().int().min(1).default(120),
        /** Refill rate per API key, in requests per second. */
        perSecond: z.number().gt(0).default(20),
      })
      .prefault({}),
    maxBodyBytes: z.number().int().min(1024).default(1 << 20),
    classifier: z
      .strictObject({
        /** Below this confidence the tenant's default task is used. */
        minConfidence: z.number().min(0).max(1).default(0.5),
        timeoutMs: ms(2_000),
        /** Characters of the latest user message classified (its start). */
        maxChars: z.number().int().min(16).default(2_000),
      })
      .prefault({}),
    telemetry: z
      .strictObject({
        /** Rows kept for the next flush while libSQL is unreachable (oldest dropped beyond). */
        maxBuffered: z.number().int().min(1).default(10_000),
        /** Rows per INSERT (8 values each: far below SQLite's bound-parameter limit). */
        batchRows: z.number().int().min(1).max(1000).default(200),
        /** Rows wait this long after the first of a window, then go in one write (0: a write per response). */
        flushDelayMs: z.number().int().min(0).max(60_000).default(1_000),
        /**
         * Ask origins for the usage chunk on every stream so telemetry gets the speculative counts,
         * and strip it again for clients that did not ask for it.
         */
        streamUsage: z.boolean().default(true),
      })
      .prefault({}),
  })
  .superRefine((c, ctx) => {
    let pools: Pool[];
    try {
      pools = parsePoolsConfig({ pools: c.pools }, "edge config").pools;
    } catch (e) {
      ctx.addIssue({ code: "custom", path: ["pools"], message: (e as Error).message });
      return;
    }
    const ids = new Set(pools.map((p) => p.id));
    if (!ids.has(c.defaultPool)) ctx.addIssue({ code: "custom", path: ["defaultPool"], message: `no pool '${c.defaultPool}' (pools: ${[...ids].join(", ")})` });
    if (c.fallbackPool !== null && !ids.has(c.fallbackPool)) ctx.addIssue({ code: "custom", path: ["fallbackPool"], message: `no pool '${c.fallbackPool}'` });
    for (const [id, w] of Object.entries(c.weights)) {
      const p = pools.find((x) => x.id === id);
      if (p && p.urls.length !== w.length) ctx.addIssue({ code: "custom", path: ["weights", id], message: `pool '${id}' has ${p.urls.length} urls, got ${w.length} weights` });
      if (w.every((x) => x === 0)) ctx.addIssue({ code: "custom", path: ["weights", id], message: "at least one weight must be > 0" });
    }
  });

export type EdgeConfigInput = z.input<typeof edgeConfigSchema>;
export type EdgeConfig = Omit<z.output<typeof edgeConfigSchema>, "pools" | "defaultPolicy"> & { pools: Pool[]; defaultPolicy: Policy };

export class EdgeConfigError extends Error {
  override name = "EdgeConfigError";
}

/** Validate a parsed JSON config (or a JSON string); the message names the field. */
export function parseEdgeConfig(json: unknown, source = "edge config"): EdgeConfig {
  let value = json;
  if (typeof json === "string") {
    try {
      value = JSON.parse(json);
    } catch (e) {
      throw new EdgeConfigError(`${source}: not valid JSON: ${(e as Error).message}`);
    }
  }
  const r = edgeConfigSchema.safeParse(value);
  if (!r.success) {
    const i = r.error.issues[0]!;
    const path = i.path.map((p) => (typeof p === "number" ? `[${p}]` : String(p))).join(".");
    throw new EdgeConfigError(`${source}: ${path ? `${path}: ` : ""}${i.message}`);
  }
  return { ...r.data, pools: parsePoolsConfig({ pools: r.data.pools }, source).pools };
}
