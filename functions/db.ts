/**
 * The gateway's reads and writes on the calibration store (libSQL through Drizzle, tables from
 * core/schema.ts). Runtime-neutral: it takes a Drizzle libSQL database, which the Worker builds
 * over `@libsql/client/web` (HTTP) and Node over `@libsql/client` (file: or HTTP).
 *
 * Every read the request path needs is one statement, one round trip: the key lookup (key ⋈
 * tenant ⟕ policy), and the active run's pools, policies and params (JSON-aggregated subqueries of
 * the newest activation). No `batch` on the request path: @libsql/client leaves a failed batch's
 * per-step promises unhandled when the HTTP request itself fails (an outage), which Node and
 * workerd report as unhandled rejections.
 */
import { desc, eq, sql } from "drizzle-orm";
import type { LibSQLDatabase } from "drizzle-orm/libsql/driver-core";
import type { PoolRecord, RunSummary, TaskParams } from "../core/calibration.ts";
import type { Policy } from "../core/fit.ts";
import { activations, apiKeys, calibrationRuns, poolFromRow, pools, runPolicies, taskParams, telemetry, tenantPolicies, tenants, type NewTelemetryRow } from "../core/schema.ts";

/** A stored API key with its tenant and the tenant's policy (what authentication caches). */
export interface KeyRecord {
  keyId: string;
  keyHash: string;
  tenantId: string;
  tenantName: string;
  defaultTask: string;
  revoked: boolean;
  /** null: the tenant has no policy (the config's default policy applies). */
  policy: Policy | null;
}

/** A pool of the active run (the calibrator's record of it). */
export type RunPool = PoolRecord;

/** The part of a run's fitted parameters the edge routes by. */
export type RunParams = Pick<TaskParams, "policyId" | "task" | "targetTemperature" | "poolId" | "drafter" | "gamma" | "proposalTemperature">;

/** Everything the router needs from the active calibration run. */
export interface ParamsSnapshot {
  runId: string;
  activatedAt: string;
  pools: RunPool[];
  policies: { id: string; policy: Policy }[];
  params: RunParams[];
}

export interface RunInfo {
  id: string;
  configHash: string;
  status: string;
  startedAt: string;
  finishedAt: string | null;
  createdAt: string;
  summary: RunSummary | null;
  active: boolean;
}

export interface ActiveRunInfo extends RunInfo {
  activatedAt: string;
  forced: boolean;
  reason: string;
  pools: RunPool[];
  policies: { id: string; policy: Policy; maxPools: number }[];
}

export type TelemetryRow = Required<Omit<NewTelemetryRow, "id">>;

export interface EdgeDb {
  findKey(keyHash: string): Promise<KeyRecord | null>;
  /** The active run's pools, policies and params; null when no run was ever activated. */
  loadSnapshot(): Promise<ParamsSnapshot | null>;
  /** undefined: no such tenant; policy null: the tenant has none. */
  getTenantPolicy(tenantId: string): Promise<{ tenantId: string; policy: Policy | null; updatedAt: string | null } | undefined>;
  /** false: no such tenant. */
  setTenantPolicy(tenantId: string, policy: Policy, updatedAt: string): Promise<boolean>;
  listRuns(): Promise<RunInfo[]>;
  activeRun(): Promise<ActiveRunInfo | null>;
  /** One INSERT (the caller keeps it under SQLite's bound-parameter limit). */
  insertTelemetry(rows: readonly TelemetryRow[]): Promise<void>;
}

// Any Drizzle libSQL database (web, node, http): the query builder is the same.
type Db = LibSQLDatabase<Record<string, never>>;

/**
 * The telemetry INSERT: every row of a batch as one JSON parameter, unpacked by SQLite's
 * `json_each`. Same rows and the same `ON CONFLICT (request_id) DO NOTHING` as Drizzle's multi-row
 * VALUES, but one short statement text whatever the batch size: no query building in JS (Drizzle
 * spent ~30 µs per row on it) and no parsing of a 1,800-placeholder statement by SQLite per batch.
 * (`WHERE true` is SQLite's way to put an upsert clause after a SELECT.)
 */
const TELEMETRY_FIELDS = {
  requestId: telemetry.requestId,
  tenantId: telemetry.tenantId,
  task: telemetry.task,
  poolId: telemetry.poolId,
  drafted: telemetry.drafted,
  accepted: telemetry.accepted,
  completionTokens: telemetry.completionTokens,
  latencyMs: telemetry.latencyMs,
  createdAt: telemetry.createdAt,
} as const satisfies Record<keyof TelemetryRow, unknown>;
const telemetryInsertHead = sql.raw(
  `insert into "telemetry" (${Object.values(TELEMETRY_FIELDS)
    .map((c) => `"${c.name}"`)
    .join(", ")}) select ${Object.keys(TELEMETRY_FIELDS)
    .map((k) => `value ->> '$.${k}'`)
    .join(", ")} from json_each(`,
);
const telemetryInsertTail = sql.raw(`) where true on conflict ("${telemetry.requestId.name}") do nothing`);


/** The run fields every listing shows. */
function runInfo(r: typeof calibrationRuns.$inferSelect, active: boolean) {
  return { id: r.id, configHash: r.configHash, status: r.status, startedAt: r.startedAt, finishedAt: r.finishedAt, createdAt: r.createdAt, summary: r.summary, active };
}

export function createEdgeDb(db: Db): EdgeDb {
  const latestActivation = () =>
    db.select({ activation: activations, run: calibrationRuns }).from(activations).innerJoin(calibrationRuns, eq(activations.runId, calibrationRuns.id)).orderBy(desc(activations.id)).limit(1);

  return {
    async findKey(keyHash) {
      const rows = await db
        .select({
          keyId: apiKeys.id,
          keyHash: apiKeys.keyHash,
          revokedAt: apiKeys.revokedAt,
          tenantId: tenants.id,
          tenantName: tenants.name,
          defaultTask: tenants.defaultTask,
          policy: tenantPolicies.policy,
        })
        .from(apiKeys)
        .innerJoin(tenants, eq(apiKeys.tenantId, tenants.id))
        .leftJoin(tenantPolicies, eq(tenantPolicies.tenantId, tenants.id))
        .where(eq(apiKeys.keyHash, keyHash))
        .limit(1);
      const r = rows[0];
      if (!r) return null;
      return {
        keyId: r.keyId,
        keyHash: r.keyHash,
        tenantId: r.tenantId,
        tenantName: r.tenantName,
        defaultTask: r.defaultTask,
        revoked: r.revokedAt !== null,
        policy: r.policy ?? null,
      };
    },

    async loadSnapshot() {
      // One statement: one round trip and one consistent read of the active run (no batch, whose
      // per-step promises @libsql/client leaves unhandled when the HTTP request itself fails).
      const p = pools;
      const rp = runPolicies;
      const tp = taskParams;
      const rows = await db.all<{ runId: string; activatedAt: string; pools: string; policies: string; params: string }>(sql`
        select a.run_id as runId, a.activated_at as activatedAt,
          (select json_group_array(json_object('id', ${p.poolId}, 'kind', ${p.kind}, 'drafter', ${p.drafter}, 'gamma', ${p.gamma},
             'proposalTemperature', ${p.proposalTemperature}, 'urls', json(${p.urls}))) from ${p} where ${p.runId} = a.run_id) as pools,
          (select json_group_array(json_object('id', ${rp.policyId}, 'policy', json(${rp.policy}))) from ${rp} where ${rp.runId} = a.run_id) as policies,
          (select json_group_array(json_object('policyId', ${tp.policyId}, 'task', ${tp.task}, 'targetTemperature', ${tp.targetTemperature},
             'poolId', ${tp.poolId}, 'drafter', ${tp.drafter}, 'gamma', ${tp.gamma}, 'proposalTemperature', ${tp.proposalTemperature}))
             from ${tp} where ${tp.runId} = a.run_id) as params
        from ${activations} a order by a.id desc limit 1`);
      const r = rows[0];
      if (!r) return null;
      return {
        runId: r.runId,
        activatedAt: r.activatedAt,
        pools: JSON.parse(r.pools) as RunPool[],
        policies: JSON.parse(r.policies) as { id: string; policy: Policy }[],
        params: JSON.parse(r.params) as RunParams[],
      };
    },

    async getTenantPolicy(tenantId) {
      const rows = await db
        .select({ tenantId: tenants.id, policy: tenantPolicies.policy, updatedAt: tenantPolicies.updatedAt })
        .from(tenants)
        .leftJoin(tenantPolicies, eq(tenantPolicies.tenantId, tenants.id))
        .where(eq(tenants.id, tenantId))
        .limit(1);
      const r = rows[0];
      return r ? { tenantId: r.tenantId, policy: r.policy ?? null, updatedAt: r.updatedAt ?? null } : undefined;
    },

    async setTenantPolicy(tenantId, policy, updatedAt) {
      const t = await db.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, tenantId)).limit(1);
      if (!t[0]) return false;
      await db.insert(tenantPolicies).values({ tenantId, policy, updatedAt }).onConflictDoUpdate({ target: tenantPolicies.tenantId, set: { policy, updatedAt } });
      return true;
    },

    async listRuns() {
      const [rows, active] = await Promise.all([
        db.select().from(calibrationRuns).orderBy(desc(calibrationRuns.createdAt), desc(calibrationRuns.id)),
        db.select({ runId: activations.runId }).from(activations).orderBy(desc(activations.id)).limit(1),
      ]);
      const activeId = active[0]?.runId;
      return rows.map((r) => runInfo(r, r.id === activeId));
    },

    async activeRun() {
      const row = (await latestActivation())[0];
      if (!row) return null;
      const [poolRows, policyRows] = await Promise.all([
        db.select().from(pools).where(eq(pools.runId, row.run.id)),
        db.select().from(runPolicies).where(eq(runPolicies.runId, row.run.id)),
      ]);
      return {
        ...runInfo(row.run, true),
        activatedAt: row.activation.activatedAt,
        forced: row.activation.forced,
        reason: row.activation.reason,
        pools: poolRows.map(poolFromRow),
        policies: policyRows.map((p) => ({ id: p.policyId, policy: p.policy, maxPools: p.maxPools })),
      };
    },

    async insertTelemetry(rows) {
      // A retried batch (its first reply lost) must not count twice: requestId is unique.
      if (rows.length > 0) await db.run(sql`${telemetryInsertHead}${JSON.stringify(rows)}${telemetryInsertTail}`);
    },
  };
}
