/**
 * The calibration store's tables (libSQL / SQLite), shared by the calibrator (Node, `@libsql/client`)
 * and the edge (Workers, `drizzle-orm/libsql/web`). Runtime imports: `drizzle-orm/sqlite-core` only,
 * so this file loads anywhere; the `import type`s below are erased.
 *
 * Conventions:
 * - SQL names are snake_case; TypeScript names camelCase.
 * - Times are ISO-8601 UTC text (`2025-06-01T12:00:00.000Z`): sortable as text and readable in a
 *   SQL shell. Defaults are filled in by Drizzle (`$defaultFn`) so every writer that uses this
 *   schema gets them.
 * - JSON columns are `text` with `mode: "json"`, typed with `$type`.
 * - A run and everything it produced are written in one transaction; the child rows go when a run
 *   is deleted (`on delete cascade`), except activations, which are history and block deletion.
 * - The active run is the run of the newest `activations` row (highest id). A rollback appends a
 *   row; nothing is ever updated or deleted there.
 */
import type { RunSummary, TaskMeasurement, PoolRecord } from "./calibration.ts";
import type { Policy } from "./fit.ts";
import { foreignKey, index, integer, primaryKey, real, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

const now = () => new Date().toISOString();

export const RUN_STATUSES = ["running", "complete", "failed"] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export const MITIGATIONS = ["none", "s-cdf", "data-balancing", "temperature-tuning"] as const satisfies readonly TaskMeasurement["mitigation"][];
export const POOL_KINDS = ["fairspec", "vllm", "sglang"] as const satisfies readonly PoolRecord["kind"][];

/** One calibration run. Its id is `run_` + UTC timestamp + random suffix (sortable by creation). */
export const calibrationRuns = sqliteTable(
  "calibration_runs",
  {
    id: text("id").primaryKey(),
    configHash: text("config_hash").notNull(),
    hardware: text("hardware", { mode: "json" }).$type<Record<string, unknown>>().notNull(),
    status: text("status", { enum: RUN_STATUSES }).notNull().default("running"),
    startedAt: text("started_at").notNull(),
    /** null while running. */
    finishedAt: text("finished_at"),
    /** null until the run completes. */
    summary: text("summary", { mode: "json" }).$type<RunSummary>(),
    createdAt: text("created_at").notNull().$defaultFn(now),
  },
  (t) => [index("calibration_runs_config_hash_idx").on(t.configHash), index("calibration_runs_created_at_idx").on(t.createdAt)],
);

export const taskMeasurements = sqliteTable(
  "task_measurements",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    runId: text("run_id")
      .notNull()
      .references(() => calibrationRuns.id, { onDelete: "cascade" }),
    task: text("task").notNull(),
    drafter: text("drafter").notNull(),
    mitigation: text("mitigation", { enum: MITIGATIONS }).notNull(),
    targetTemperature: real("target_temperature").notNull(),
    proposalTemperature: real("proposal_temperature").notNull(),
    alpha: real("alpha").notNull(),
    alphaLo: real("alpha_lo").notNull(),
    alphaHi: real("alpha_hi").notNull(),
    crossEntropy: real("cross_entropy").notNull(),
    crossEntropyLo: real("cross_entropy_lo").notNull(),
    crossEntropyHi: real("cross_entropy_hi").notNull(),
    kl: real("kl").notNull(),
    klLo: real("kl_lo").notNull(),
    klHi: real("kl_hi").notNull(),
    meanTv: real("mean_tv").notNull(),
    pinskerBound: real("pinsker_bound").notNull(),
    boundHolds: integer("bound_holds", { mode: "boolean" }).notNull(),
    prompts: integer("prompts").notNull(),
    positions: integer("positions").notNull(),
  },
  (t) => [
    uniqueIndex("task_measurements_key_idx").on(t.runId, t.task, t.drafter, t.mitigation, t.targetTemperature, t.proposalTemperature),
  ],
);

/** The origin pools a run's fit chose: (drafter, γ, τ) per pool, and where they serve. */
export const pools = sqliteTable(
  "pools",
  {
    runId: text("run_id")
      .notNull()
      .references(() => calibrationRuns.id, { onDelete: "cascade" }),
    poolId: text("pool_id").notNull(),
    kind: text("kind", { enum: POOL_KINDS }).notNull(),
    /** null when γ = 0. */
    drafter: text("drafter"),
    gamma: integer("gamma").notNull(),
    /** null: follows the request's temperature. */
    proposalTemperature: real("proposal_temperature"),
    urls: text("urls", { mode: "json" }).$type<string[]>().notNull(),
  },
  (t) => [primaryKey({ name: "pools_pk", columns: [t.runId, t.poolId] })],
);

/** The policies a run was fitted for (a tenant's policy selects one of them). */
export const runPolicies = sqliteTable(
  "run_policies",
  {
    runId: text("run_id")
      .notNull()
      .references(() => calibrationRuns.id, { onDelete: "cascade" }),
    policyId: text("policy_id").notNull(),
    policy: text("policy", { mode: "json" }).$type<Policy>().notNull(),
    maxPools: integer("max_pools").notNull(),
  },
  (t) => [primaryKey({ name: "run_policies_pk", columns: [t.runId, t.policyId] })],
);

/**
 * The fitted parameters per (run, policy, task, target temperature) — what the edge reads.
 * Each row names a policy and a pool of the same run (composite foreign keys).
 */
export const taskParams = sqliteTable(
  "task_params",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    runId: text("run_id")
      .notNull()
      .references(() => calibrationRuns.id, { onDelete: "cascade" }),
    policyId: text("policy_id").notNull(),
    task: text("task").notNull(),
    targetTemperature: real("target_temperature").notNull(),
    poolId: text("pool_id").notNull(),
    drafter: text("drafter"),
    gamma: integer("gamma").notNull(),
    proposalTemperature: real("proposal_temperature"),
    predictedSpeedup: real("predicted_speedup").notNull(),
    predictedSpeedupLo: real("predicted_speedup_lo").notNull(),
    predictedSpeedupHi: real("predicted_speedup_hi").notNull(),
    /** The three measured columns are all null (not validated) or all set. */
    measuredSpeedup: real("measured_speedup"),
    measuredSpeedupLo: real("measured_speedup_lo"),
    measuredSpeedupHi: real("measured_speedup_hi"),
    msPerChar: real("ms_per_char"),
  },
  (t) => [
    // Serves lookups by (run_id, policy_id, task) through its prefix, and keeps one row per key.
    uniqueIndex("task_params_run_policy_task_idx").on(t.runId, t.policyId, t.task, t.targetTemperature),
    foreignKey({ name: "task_params_policy_fk", columns: [t.runId, t.policyId], foreignColumns: [runPolicies.runId, runPolicies.policyId] }).onDelete(
      "cascade",
    ),
    foreignKey({ name: "task_params_pool_fk", columns: [t.runId, t.poolId], foreignColumns: [pools.runId, pools.poolId] }).onDelete("cascade"),
  ],
);

/** Append-only activation history; the newest row (highest id) names the active run. */
export const activations = sqliteTable(
  "activations",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    runId: text("run_id")
      .notNull()
      .references(() => calibrationRuns.id),
    activatedAt: text("activated_at").notNull().$defaultFn(now),
    /** true when the regression guard refused and `force` overrode it. */
    forced: integer("forced", { mode: "boolean" }).notNull().default(false),
    reason: text("reason").notNull(),
  },
  (t) => [index("activations_run_id_idx").on(t.runId)],
);

export const tenants = sqliteTable("tenants", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  defaultTask: text("default_task").notNull(),
  createdAt: text("created_at").notNull().$defaultFn(now),
});

export const tenantPolicies = sqliteTable("tenant_policies", {
  tenantId: text("tenant_id")
    .primaryKey()
    .references(() => tenants.id, { onDelete: "cascade" }),
  policy: text("policy", { mode: "json" }).$type<Policy>().notNull(),
  updatedAt: text("updated_at").notNull().$defaultFn(now),
});

/** API keys: only the sha256 (hex) of the raw key is stored, plus its first 8 characters for display. */
export const apiKeys = sqliteTable(
  "api_keys",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id, { onDelete: "cascade" }),
    keyHash: text("key_hash").notNull().unique("api_keys_key_hash_unique"),
    prefix: text("prefix").notNull(),
    createdAt: text("created_at").notNull().$defaultFn(now),
    revokedAt: text("revoked_at"),
  },
  (t) => [index("api_keys_tenant_id_idx").on(t.tenantId)],
);

/**
 * Finished units of a (possibly killed) calibration, keyed by the calibration's config hash, so a
 * rerun with the same config resumes. Never an active run.
 */
export const calibrationCheckpoints = sqliteTable(
  "calibration_checkpoints",
  {
    configHash: text("config_hash").notNull(),
    key: text("key").notNull(),
    value: text("value", { mode: "json" }).$type<unknown>().notNull(),
    createdAt: text("created_at").notNull().$defaultFn(now),
  },
  (t) => [primaryKey({ name: "calibration_checkpoints_pk", columns: [t.configHash, t.key] })],
);

/** A named lease (e.g. "calibration"): one holder at a time until `expires_at`. */
export const calibrationLease = sqliteTable("calibration_lease", {
  name: text("name").primaryKey(),
  holder: text("holder").notNull(),
  expiresAt: text("expires_at").notNull(),
});

/** Per-request speculative stats, batch-written by the edge. No foreign keys: writes stay cheap. */
export const telemetry = sqliteTable(
  "telemetry",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    /**
     * Minted by the edge per request. A batch INSERT whose reply was lost (libSQL killed after the
     * commit) is retried; the unique index makes that retry a no-op instead of a duplicate row.
     * Nullable: rows written before this column existed have none.
     */
    requestId: text("request_id"),
    tenantId: text("tenant_id").notNull(),
    task: text("task").notNull(),
    poolId: text("pool_id").notNull(),
    drafted: integer("drafted").notNull(),
    accepted: integer("accepted").notNull(),
    completionTokens: integer("completion_tokens").notNull(),
    latencyMs: real("latency_ms").notNull(),
    createdAt: text("created_at").notNull().$defaultFn(now),
  },
  (t) => [index("telemetry_tenant_created_idx").on(t.tenantId, t.createdAt), uniqueIndex("telemetry_request_id_idx").on(t.requestId)],
);

export type CalibrationRunRow = typeof calibrationRuns.$inferSelect;
export type TaskMeasurementRow = typeof taskMeasurements.$inferSelect;
export type PoolRow = typeof pools.$inferSelect;

/** A `pools` row as the calibrator and the edge both read it. */
export const poolFromRow = (r: PoolRow): PoolRecord => ({
  id: r.poolId,
  kind: r.kind,
  drafter: r.drafter,
  gamma: r.gamma,
  proposalTemperature: r.proposalTemperature,
  urls: r.urls,
});
export type RunPolicyRow = typeof runPolicies.$inferSelect;
export type TaskParamsRow = typeof taskParams.$inferSelect;
export type ActivationRow = typeof activations.$inferSelect;
export type TenantRow = typeof tenants.$inferSelect;
export type TenantPolicyRow = typeof tenantPolicies.$inferSelect;
export type ApiKeyRow = typeof apiKeys.$inferSelect;
export type CalibrationCheckpointRow = typeof calibrationCheckpoints.$inferSelect;
export type CalibrationLeaseRow = typeof calibrationLease.$inferSelect;
export type TelemetryRow = typeof telemetry.$inferSelect;
export type NewTelemetryRow = typeof telemetry.$inferInsert;
