/**
 * The calibration store: libSQL through Drizzle. `openStore(url)` opens (or creates) the database,
 * applies the generated migrations in `migrations/`, and returns a typed API over the tables in
 * `core/schema.ts`:
 *
 * - runs: `saveRun` writes a run and everything it produced in one atomic batch; `activate` makes a
 *   run the one the edge serves, behind a regression guard; `rollback` re-activates the previous
 *   one. Activations are an append-only history: the newest row names the active run.
 * - tenants, their fairness policy, and API keys (only a key's sha256 is stored).
 * - checkpoints of a long calibration, keyed by its config hash, so a killed run resumes.
 *
 * Bad input (unknown run, non-complete run, unknown tenant, …) throws `StoreInputError` with a
 * one-line message that says how to fix it; a refused activation throws `RegressionError`.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { fileURLToPath } from "node:url";
import { createClient, type Client } from "@libsql/client";
import { and, asc, desc, eq, isNull, ne } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import { drizzle, type LibSQLDatabase } from "drizzle-orm/libsql";
import { migrate } from "drizzle-orm/libsql/migrator";
import { z } from "zod";
import type { CalibrationRun, PoolRecord, RunSummary, TaskMeasurement, TaskParams, TenantPolicyRecord } from "../core/calibration.ts";
import { validatePolicy, type Policy } from "../core/fit.ts";
import {
  activations,
  apiKeys,
  calibrationCheckpoints,
  calibrationRuns,
  MITIGATIONS,
  POOL_KINDS,
  poolFromRow,
  pools,
  runPolicies,
  taskMeasurements,
  taskParams,
  tenantPolicies,
  tenants,
  type CalibrationRunRow,
  type TaskMeasurementRow,
  type TaskParamsRow,
  type TenantRow,
} from "../core/schema.ts";
import { dbUrl, env } from "./env.ts";

export const MIGRATIONS_DIR = fileURLToPath(new URL("../migrations/", import.meta.url));

/** Bad input to the store (unknown id, wrong state, invalid value): a one-line message with the fix. */
export class StoreInputError extends Error {
  override name = "StoreInputError";
}

export interface Tolerance {
  /** Largest allowed relative drop of any policy's worst-task speed-up (default 0.05). */
  worstSpeedup?: number;
  /** Largest allowed relative rise of U (default 0.10). */
  unfairness?: number;
}

export const DEFAULT_TOLERANCE: Required<Tolerance> = { worstSpeedup: 0.05, unfairness: 0.1 };

export type Regression =
  | { kind: "worst-speedup"; policyId: string; before: number; after: number; tolerance: number }
  | { kind: "missing-policy"; policyId: string; before: number }
  | { kind: "unfairness"; before: number; after: number; tolerance: number };

/** An activation refused by the regression guard; the message is one line and ends with the fix. */
export class RegressionError extends Error {
  override name = "RegressionError";
  constructor(
    readonly runId: string,
    readonly activeRunId: string,
    readonly regressions: Regression[],
  ) {
    super(`run '${runId}' regresses against the active run '${activeRunId}': ${regressions.map(describeRegression).join("; ")} — use --force to override`);
  }
}

export interface RunRecord {
  id: string;
  configHash: string;
  hardware: Record<string, unknown>;
  status: CalibrationRunRow["status"];
  startedAt: string;
  finishedAt: string | null;
  summary: RunSummary | null;
  createdAt: string;
}

export interface RunListEntry extends RunRecord {
  active: boolean;
}

export interface ActiveRun extends RunRecord {
  activationId: number;
  activatedAt: string;
  forced: boolean;
  reason: string;
}

export interface ActivationResult {
  runId: string;
  /** The run that was active before (null if none was). */
  previousRunId: string | null;
  /** false when the run was already active (nothing was written). */
  changed: boolean;
  /** true when `force` overrode the regressions listed in `overridden`. */
  forced: boolean;
  overridden: Regression[];
}

export interface TenantRecord {
  id: string;
  name: string;
  defaultTask: string;
  createdAt: string;
}

export interface AuthenticatedTenant extends TenantRecord {
  /** The id of the API key that matched. */
  keyId: string;
}

export interface ApiKeyInfo {
  id: string;
  tenantId: string;
  prefix: string;
  createdAt: string;
  revokedAt: string | null;
}

export interface Checkpoint<T = unknown> {
  key: string;
  value: T;
  createdAt: string;
}

export interface Store {
  /** The Drizzle database, for queries the API does not cover. */
  readonly db: LibSQLDatabase & { $client: Client };
  saveRun(run: CalibrationRun): Promise<string>;
  listRuns(): Promise<RunListEntry[]>;
  getRun(id: string): Promise<RunRecord | null>;
  activeRun(): Promise<ActiveRun | null>;
  taskParams(runId: string, policyId?: string): Promise<TaskParams[]>;
  measurements(runId: string): Promise<TaskMeasurement[]>;
  pools(runId: string): Promise<PoolRecord[]>;
  policies(runId: string): Promise<TenantPolicyRecord[]>;
  activate(runId: string, options?: { force?: boolean; tolerance?: Tolerance }): Promise<ActivationResult>;
  rollback(): Promise<{ runId: string; previousRunId: string }>;
  /** Creates a tenant; throws if the id is taken. */
  createTenant(t: { id: string; name: string; defaultTask: string }): Promise<TenantRecord>;
  /** Creates or updates a tenant (name, default task) and, when given, sets its policy — atomically. */
  ensureTenant(t: { id: string; name: string; defaultTask: string }, policy?: Policy): Promise<TenantRecord>;
  getTenant(id: string): Promise<TenantRecord | null>;
  setTenantPolicy(tenantId: string, policy: Policy): Promise<void>;
  getTenantPolicy(tenantId: string): Promise<Policy | null>;
  /**
   * A new key for the tenant, returned raw exactly once (only its hash is stored). With `rawKey`
   * (e.g. a demo key from the environment) that key is registered instead; registering the same
   * key for the same tenant again is a no-op.
   */
  createApiKey(tenantId: string, rawKey?: string): Promise<{ id: string; key: string; prefix: string }>;
  listApiKeys(tenantId: string): Promise<ApiKeyInfo[]>;
  findTenantByKey(rawKey: string): Promise<AuthenticatedTenant | null>;
  revokeApiKey(id: string): Promise<void>;
  getCheckpoint<T = unknown>(configHash: string, key: string): Promise<T | undefined>;
  putCheckpoint(configHash: string, key: string, value: unknown): Promise<void>;
  listCheckpoints<T = unknown>(configHash: string): Promise<Checkpoint<T>[]>;
  clearCheckpoints(configHash: string): Promise<number>;
  close(): void;
}

// ---------------------------------------------------------------------------------------------
// Validation of a run before anything is written (zod 4: z.number() rejects NaN and ±Infinity).

const num = z.number();
const interval = z.object({ estimate: num, lo: num, hi: num });
const nonEmpty = z.string().min(1);
const policySchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("throughput") }),
  z.object({ kind: z.literal("maxmin") }),
  z.object({ kind: z.literal("alpha-fair"), alpha: num }),
  z.object({ kind: z.literal("floor"), ratio: num }),
]);
const runSchema = z.object({
  configHash: nonEmpty,
  hardware: z.record(z.string(), z.unknown()),
  startedAt: z.iso.datetime({ offset: true }),
  finishedAt: z.iso.datetime({ offset: true }),
  summary: z.looseObject({
    worstSpeedup: z.record(z.string(), num),
    meanSpeedup: z.record(z.string(), num),
    unfairnessU: num,
    unfairnessUAfter: num.nullable(),
  }),
  measurements: z.array(
    z.object({
      task: nonEmpty,
      drafter: nonEmpty,
      mitigation: z.enum(MITIGATIONS),
      targetTemperature: num,
      proposalTemperature: num,
      alpha: interval,
      crossEntropy: interval,
      kl: interval,
      meanTv: num,
      pinskerBound: num,
      boundHolds: z.boolean(),
      prompts: z.int().min(0),
      positions: z.int().min(0),
    }),
  ),
  pools: z.array(
    z.object({
      id: nonEmpty,
      kind: z.enum(POOL_KINDS),
      drafter: nonEmpty.nullable(),
      gamma: z.int().min(0),
      proposalTemperature: num.nullable(),
      urls: z.array(z.string()),
    }),
  ),
  policies: z.array(z.object({ id: nonEmpty, policy: policySchema, maxPools: z.int().min(1) })),
  params: z.array(
    z.object({
      policyId: nonEmpty,
      task: nonEmpty,
      targetTemperature: num,
      poolId: nonEmpty,
      drafter: nonEmpty.nullable(),
      gamma: z.int().min(0),
      proposalTemperature: num.nullable(),
      predictedSpeedup: interval,
      measuredSpeedup: interval.nullable(),
      msPerChar: num.nullable(),
    }),
  ),
});

function firstIssue(error: z.ZodError): string {
  const i = error.issues[0]!;
  const path = i.path.map((p, k) => (typeof p === "number" ? `[${p}]` : `${k ? "." : ""}${String(p)}`)).join("");
  return `${path || "(root)"}: ${i.message}`;
}

function checkPolicy(policy: unknown, what: string): Policy {
  const r = policySchema.safeParse(policy);
  if (!r.success) throw new StoreInputError(`invalid ${what}: ${firstIssue(r.error)} — e.g. { kind: "maxmin" } or { kind: "floor", ratio: 0.7 }`);
  try {
    validatePolicy(r.data);
  } catch (e) {
    throw new StoreInputError(`invalid ${what}: ${(e as Error).message}`);
  }
  return r.data;
}

// ---------------------------------------------------------------------------------------------
// The regression guard (pure).

/** U as the guard sees it: after s-CDF when that ran, else before. */
export const effectiveU = (s: RunSummary): number => s.unfairnessUAfter ?? s.unfairnessU;

/**
 * What `candidate` makes worse than `active`: a policy's worst-task speed-up dropping by more than
 * `tolerance.worstSpeedup` (relative), a policy of the active run missing, or U rising by more than
 * `tolerance.unfairness` (relative). Empty when nothing regressed.
 */
export function findRegressions(active: RunSummary, candidate: RunSummary, tolerance: Tolerance = {}): Regression[] {
  const tw = tolerance.worstSpeedup ?? DEFAULT_TOLERANCE.worstSpeedup;
  const tu = tolerance.unfairness ?? DEFAULT_TOLERANCE.unfairness;
  const eps = 1e-12;
  const out: Regression[] = [];
  for (const [policyId, before] of Object.entries(active.worstSpeedup)) {
    const after = candidate.worstSpeedup[policyId];
    if (after === undefined) out.push({ kind: "missing-policy", policyId, before });
    else if (before - after > tw * Math.abs(before) + eps) out.push({ kind: "worst-speedup", policyId, before, after, tolerance: tw });
  }
  const before = effectiveU(active);
  const after = effectiveU(candidate);
  if (after - before > tu * Math.abs(before) + eps) out.push({ kind: "unfairness", before, after, tolerance: tu });
  return out;
}

const pct = (x: number) => `${x >= 0 ? "+" : "−"}${Math.abs(x * 100).toFixed(1)}%`;
const rel = (before: number, after: number) => (before !== 0 ? (after - before) / Math.abs(before) : Infinity);

export function describeRegression(r: Regression): string {
  switch (r.kind) {
    case "worst-speedup":
      return `worst-task speed-up under '${r.policyId}' ${r.before.toFixed(3)}× → ${r.after.toFixed(3)}× (${pct(rel(r.before, r.after))}, tolerance −${(r.tolerance * 100).toFixed(1)}%)`;
    case "missing-policy":
      return `policy '${r.policyId}' is missing (active run: worst-task speed-up ${r.before.toFixed(3)}×)`;
    case "unfairness":
      return `U ${r.before.toPrecision(4)} → ${r.after.toPrecision(4)} (${pct(rel(r.before, r.after))}, tolerance +${(r.tolerance * 100).toFixed(1)}%)`;
  }
}

function checkTolerance(t: Tolerance | undefined): Required<Tolerance> {
  // `?? default`, not a spread: an explicit `undefined` (an unset CLI flag) means the default.
  const out = { worstSpeedup: t?.worstSpeedup ?? DEFAULT_TOLERANCE.worstSpeedup, unfairness: t?.unfairness ?? DEFAULT_TOLERANCE.unfairness };
  for (const [k, v] of Object.entries(out)) {
    if (!(typeof v === "number" && Number.isFinite(v) && v >= 0)) throw new StoreInputError(`tolerance.${k} must be a number >= 0, got ${String(v)}`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Ids, keys and hashes.

const URL_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

/** n random characters from `alphabet` (a power-of-two size ≤ 256, so no modulo bias). */
function randomChars(n: number, alphabet: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  let s = "";
  for (const b of bytes) s += alphabet[b % alphabet.length];
  return s;
}

/** `run_20250601T120000Z_k3v9qx2a`: creation time (sortable), then a random suffix. */
export function newRunId(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
  return `run_${stamp}_${randomChars(8, BASE32)}`;
}

export const API_KEY_PATTERN = /^fs_[A-Za-z0-9_-]{32}$/;

export const hashApiKey = (rawKey: string): string => createHash("sha256").update(rawKey, "utf8").digest("hex");

function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, "utf8");
  const y = Buffer.from(b, "utf8");
  return x.length === y.length && timingSafeEqual(x, y);
}

const TENANT_ID = /^[a-z0-9_-]{1,64}$/;

const nowIso = () => new Date().toISOString();

function* chunks<T>(xs: readonly T[], size: number): Generator<T[]> {
  for (let i = 0; i < xs.length; i += size) yield xs.slice(i, i + size);
}

// ---------------------------------------------------------------------------------------------
// Row ↔ record mapping.

const toRunRecord = (r: CalibrationRunRow): RunRecord => ({
  id: r.id,
  configHash: r.configHash,
  hardware: r.hardware,
  status: r.status,
  startedAt: r.startedAt,
  finishedAt: r.finishedAt,
  summary: r.summary,
  createdAt: r.createdAt,
});

const toMeasurement = (r: TaskMeasurementRow): TaskMeasurement => ({
  task: r.task,
  drafter: r.drafter,
  mitigation: r.mitigation,
  targetTemperature: r.targetTemperature,
  proposalTemperature: r.proposalTemperature,
  alpha: { estimate: r.alpha, lo: r.alphaLo, hi: r.alphaHi },
  crossEntropy: { estimate: r.crossEntropy, lo: r.crossEntropyLo, hi: r.crossEntropyHi },
  kl: { estimate: r.kl, lo: r.klLo, hi: r.klHi },
  meanTv: r.meanTv,
  pinskerBound: r.pinskerBound,
  boundHolds: r.boundHolds,
  prompts: r.prompts,
  positions: r.positions,
});

const toParams = (r: TaskParamsRow): TaskParams => ({
  policyId: r.policyId,
  task: r.task,
  targetTemperature: r.targetTemperature,
  poolId: r.poolId,
  drafter: r.drafter,
  gamma: r.gamma,
  proposalTemperature: r.proposalTemperature,
  predictedSpeedup: { estimate: r.predictedSpeedup, lo: r.predictedSpeedupLo, hi: r.predictedSpeedupHi },
  measuredSpeedup:
    r.measuredSpeedup === null ? null : { estimate: r.measuredSpeedup, lo: r.measuredSpeedupLo ?? r.measuredSpeedup, hi: r.measuredSpeedupHi ?? r.measuredSpeedup },
  msPerChar: r.msPerChar,
});

const toTenant = (r: TenantRow): TenantRecord => ({ id: r.id, name: r.name, defaultTask: r.defaultTask, createdAt: r.createdAt });

/** Why a failed run write failed, in words, when a param names a pool or policy the run lacks. */
function danglingReference(run: CalibrationRun): string | null {
  const poolIds = new Set(run.pools.map((p) => p.id));
  const policyIds = new Set(run.policies.map((p) => p.id));
  for (const p of run.params) {
    if (!policyIds.has(p.policyId)) return `param (policy '${p.policyId}', task '${p.task}') names a policy the run does not define`;
    if (!poolIds.has(p.poolId)) return `param (policy '${p.policyId}', task '${p.task}') names pool '${p.poolId}', which the run does not define`;
  }
  return null;
}

function checkTenant(t: { id: string; name: string; defaultTask: string }) {
  if (typeof t.id !== "string" || !TENANT_ID.test(t.id)) {
    throw new StoreInputError(`invalid tenant id '${String(t.id)}' — use 1 to 64 of a-z, 0-9, '-' and '_'`);
  }
  if (typeof t.name !== "string" || t.name.trim() === "") throw new StoreInputError(`tenant '${t.id}' needs a non-empty name`);
  if (typeof t.defaultTask !== "string" || t.defaultTask.trim() === "") throw new StoreInputError(`tenant '${t.id}' needs a default task`);
  return { id: t.id, name: t.name.trim(), defaultTask: t.defaultTask.trim() };
}

const unknownRun = (id: string) => new StoreInputError(`unknown run '${id}' — list runs with \`npx fairspec runs\``);

// ---------------------------------------------------------------------------------------------

/**
 * Opens the store at `url` (`file:PATH` or a libSQL server URL), creating the database file if
 * needed, and applies any migrations it lacks (idempotent). `authToken` defaults to
 * FAIRSPEC_DB_AUTH_TOKEN for remote URLs.
 */
export async function openStore(url: string = env().FAIRSPEC_DB_URL, options: { authToken?: string } = {}): Promise<Store> {
  const u = dbUrl.safeParse(url);
  if (!u.success) throw new StoreInputError(`database URL ${u.error.issues[0]!.message}`);
  const remote = !u.data.startsWith("file:");
  const authToken = options.authToken ?? (remote ? env().FAIRSPEC_DB_AUTH_TOKEN : undefined);
  let client: Client;
  try {
    // Local files are shared with other processes (the edge, `fairspec runs`): every pooled
    // connection waits up to 5 s for a lock instead of failing at once with SQLITE_BUSY.
    client = createClient(authToken ? { url: u.data, authToken } : { url: u.data, timeout: 5000 });
  } catch (e) {
    throw new StoreInputError(`cannot open the calibration store at ${u.data}: ${(e as Error).message.split("\n")[0]} — check --db / FAIRSPEC_DB_URL`);
  }
  // WAL (persistent in the file): readers in other processes never block the calibrator's writes.
  if (!remote) await client.execute("PRAGMA journal_mode = WAL");
  const db = drizzle(client);
  try {
    await migrate(db, { migrationsFolder: MIGRATIONS_DIR });
  } catch (e) {
    client.close();
    throw new Error(`cannot migrate the calibration store at ${u.data}: ${(e as Error).message.split("\n")[0]}`, { cause: e });
  }
  return makeStore(db, client);
}

function makeStore(db: LibSQLDatabase & { $client: Client }, client: Client): Store {
  const getRunRow = (id: string) => db.select().from(calibrationRuns).where(eq(calibrationRuns.id, id)).get();

  const requireRun = async (id: string) => {
    const row = await getRunRow(id);
    if (!row) throw unknownRun(id);
    return row;
  };

  const requireTenant = async (id: string) => {
    const row = await db.select().from(tenants).where(eq(tenants.id, id)).get();
    if (!row) throw new StoreInputError(`unknown tenant '${id}' — create it first`);
    return row;
  };

  const latestActivation = (q: Pick<LibSQLDatabase, "select"> = db) =>
    q
      .select({ activation: activations, run: calibrationRuns })
      .from(activations)
      .innerJoin(calibrationRuns, eq(activations.runId, calibrationRuns.id))
      .orderBy(desc(activations.id))
      .limit(1)
      .get();

  const store: Store = {
    db,

    async saveRun(run) {
      const parsed = runSchema.safeParse(run);
      if (!parsed.success) throw new StoreInputError(`invalid calibration run: ${firstIssue(parsed.error)}`);
      const id = newRunId();
      const stmts: BatchItem<"sqlite">[] = [
        db.insert(calibrationRuns).values({
          id,
          configHash: run.configHash,
          hardware: run.hardware,
          status: "complete",
          startedAt: run.startedAt,
          finishedAt: run.finishedAt,
          summary: run.summary,
        }),
      ];
      const measurementRows = run.measurements.map((m) => ({
        runId: id,
        task: m.task,
        drafter: m.drafter,
        mitigation: m.mitigation,
        targetTemperature: m.targetTemperature,
        proposalTemperature: m.proposalTemperature,
        alpha: m.alpha.estimate,
        alphaLo: m.alpha.lo,
        alphaHi: m.alpha.hi,
        crossEntropy: m.crossEntropy.estimate,
        crossEntropyLo: m.crossEntropy.lo,
        crossEntropyHi: m.crossEntropy.hi,
        kl: m.kl.estimate,
        klLo: m.kl.lo,
        klHi: m.kl.hi,
        meanTv: m.meanTv,
        pinskerBound: m.pinskerBound,
        boundHolds: m.boundHolds,
        prompts: m.prompts,
        positions: m.positions,
      }));
      const poolRows = run.pools.map((p) => ({
        runId: id,
        poolId: p.id,
        kind: p.kind,
        drafter: p.drafter,
        gamma: p.gamma,
        proposalTemperature: p.proposalTemperature,
        urls: p.urls,
      }));
      const policyRows = run.policies.map((p) => ({ runId: id, policyId: p.id, policy: p.policy, maxPools: p.maxPools }));
      const paramRows = run.params.map((p) => ({
        runId: id,
        policyId: p.policyId,
        task: p.task,
        targetTemperature: p.targetTemperature,
        poolId: p.poolId,
        drafter: p.drafter,
        gamma: p.gamma,
        proposalTemperature: p.proposalTemperature,
        predictedSpeedup: p.predictedSpeedup.estimate,
        predictedSpeedupLo: p.predictedSpeedup.lo,
        predictedSpeedupHi: p.predictedSpeedup.hi,
        measuredSpeedup: p.measuredSpeedup?.estimate ?? null,
        measuredSpeedupLo: p.measuredSpeedup?.lo ?? null,
        measuredSpeedupHi: p.measuredSpeedup?.hi ?? null,
        msPerChar: p.msPerChar,
      }));
      // Parents before children (foreign keys are checked per statement). ≤ 21 columns × 200 rows
      // per INSERT stays far below SQLite's bound-parameter limit.
      for (const c of chunks(measurementRows, 200)) stmts.push(db.insert(taskMeasurements).values(c));
      for (const c of chunks(poolRows, 200)) stmts.push(db.insert(pools).values(c));
      for (const c of chunks(policyRows, 200)) stmts.push(db.insert(runPolicies).values(c));
      for (const c of chunks(paramRows, 200)) stmts.push(db.insert(taskParams).values(c));
      try {
        // One batch = one transaction (and one round trip to a remote server): all or nothing.
        await db.batch(stmts as [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]]);
      } catch (e) {
        const msg = (e as Error).message.split("\n")[0];
        const why = /FOREIGN KEY/i.test(msg ?? "") ? danglingReference(run) : null;
        throw new Error(`saving the run failed, nothing was written: ${why ?? msg}`, { cause: e });
      }
      return id;
    },

    async listRuns() {
      const [rows, active] = await Promise.all([
        db.select().from(calibrationRuns).orderBy(desc(calibrationRuns.createdAt), desc(calibrationRuns.id)).all(),
        latestActivation(),
      ]);
      return rows.map((r) => ({ ...toRunRecord(r), active: r.id === active?.run.id }));
    },

    async getRun(id) {
      const row = await getRunRow(id);
      return row ? toRunRecord(row) : null;
    },

    async activeRun() {
      const row = await latestActivation();
      if (!row) return null;
      const a = row.activation;
      return { ...toRunRecord(row.run), activationId: a.id, activatedAt: a.activatedAt, forced: a.forced, reason: a.reason };
    },

    async taskParams(runId, policyId) {
      await requireRun(runId);
      if (policyId !== undefined) {
        const known = await db.select({ id: runPolicies.policyId }).from(runPolicies).where(eq(runPolicies.runId, runId)).all();
        if (!known.some((k) => k.id === policyId)) {
          throw new StoreInputError(`run '${runId}' has no policy '${policyId}' — it has: ${known.map((k) => k.id).join(", ") || "none"}`);
        }
      }
      const rows = await db
        .select()
        .from(taskParams)
        .where(policyId === undefined ? eq(taskParams.runId, runId) : and(eq(taskParams.runId, runId), eq(taskParams.policyId, policyId)))
        .orderBy(asc(taskParams.policyId), asc(taskParams.task), asc(taskParams.targetTemperature))
        .all();
      return rows.map(toParams);
    },

    async measurements(runId) {
      await requireRun(runId);
      const rows = await db.select().from(taskMeasurements).where(eq(taskMeasurements.runId, runId)).orderBy(asc(taskMeasurements.id)).all();
      return rows.map(toMeasurement);
    },

    async pools(runId) {
      await requireRun(runId);
      const rows = await db.select().from(pools).where(eq(pools.runId, runId)).orderBy(asc(pools.poolId)).all();
      return rows.map(poolFromRow);
    },

    async policies(runId) {
      await requireRun(runId);
      const rows = await db.select().from(runPolicies).where(eq(runPolicies.runId, runId)).orderBy(asc(runPolicies.policyId)).all();
      return rows.map((r) => ({ id: r.policyId, policy: r.policy, maxPools: r.maxPools }));
    },

    async activate(runId, options = {}) {
      const tolerance = checkTolerance(options.tolerance);
      // A write transaction (BEGIN IMMEDIATE): the check and the append see the same active run.
      return db.transaction(async (tx) => {
        const run = await tx.select().from(calibrationRuns).where(eq(calibrationRuns.id, runId)).get();
        if (!run) throw unknownRun(runId);
        if (run.status !== "complete") {
          throw new StoreInputError(`run '${runId}' is ${run.status}, not complete — only complete runs can be activated; list runs with \`npx fairspec runs\``);
        }
        if (!run.summary) throw new StoreInputError(`run '${runId}' has no summary — it cannot be checked against the active run`);
        const current = await latestActivation(tx);
        const previousRunId = current?.run.id ?? null;
        if (previousRunId === runId) return { runId, previousRunId, changed: false, forced: false, overridden: [] };
        const regressions = current?.run.summary ? findRegressions(current.run.summary, run.summary, tolerance) : [];
        if (regressions.length > 0 && !options.force) throw new RegressionError(runId, previousRunId!, regressions);
        const forced = regressions.length > 0;
        await tx.insert(activations).values({
          runId,
          forced,
          reason: forced ? `activate --force over: ${regressions.map(describeRegression).join("; ")}` : previousRunId ? `activate (replaces ${previousRunId})` : "activate",
        });
        return { runId, previousRunId, changed: true, forced, overridden: regressions };
      });
    },

    async rollback() {
      return db.transaction(async (tx) => {
        const current = await latestActivation(tx);
        if (!current) throw new StoreInputError("no run is active, so there is nothing to roll back — activate one with `npx fairspec activate RUN`");
        const currentId = current.run.id;
        const prev = await tx
          .select({ runId: activations.runId })
          .from(activations)
          .where(ne(activations.runId, currentId))
          .orderBy(desc(activations.id))
          .limit(1)
          .get();
        if (!prev) throw new StoreInputError(`no earlier run to roll back to — '${currentId}' is the only run ever activated`);
        await tx.insert(activations).values({ runId: prev.runId, forced: false, reason: `rollback (replaces ${currentId})` });
        return { runId: prev.runId, previousRunId: currentId };
      });
    },

    async createTenant(t) {
      const v = checkTenant(t);
      const rows = await db.insert(tenants).values(v).onConflictDoNothing().returning();
      if (!rows[0]) throw new StoreInputError(`tenant '${v.id}' already exists`);
      return toTenant(rows[0]);
    },

    async ensureTenant(t, policy) {
      const v = checkTenant(t);
      const p = policy === undefined ? undefined : checkPolicy(policy, `policy for tenant '${v.id}'`);
      const updatedAt = nowIso();
      const upsert = db
        .insert(tenants)
        .values(v)
        .onConflictDoUpdate({ target: tenants.id, set: { name: v.name, defaultTask: v.defaultTask } })
        .returning();
      if (p === undefined) return toTenant((await upsert)[0]!);
      const [rows] = await db.batch([
        upsert,
        db.insert(tenantPolicies).values({ tenantId: v.id, policy: p, updatedAt }).onConflictDoUpdate({ target: tenantPolicies.tenantId, set: { policy: p, updatedAt } }),
      ]);
      return toTenant(rows[0]!);
    },

    async getTenant(id) {
      const row = await db.select().from(tenants).where(eq(tenants.id, id)).get();
      return row ? toTenant(row) : null;
    },

    async setTenantPolicy(tenantId, policy) {
      const p = checkPolicy(policy, `policy for tenant '${tenantId}'`);
      await requireTenant(tenantId);
      const updatedAt = nowIso();
      await db
        .insert(tenantPolicies)
        .values({ tenantId, policy: p, updatedAt })
        .onConflictDoUpdate({ target: tenantPolicies.tenantId, set: { policy: p, updatedAt } });
    },

    async getTenantPolicy(tenantId) {
      await requireTenant(tenantId);
      const row = await db.select().from(tenantPolicies).where(eq(tenantPolicies.tenantId, tenantId)).get();
      return row?.policy ?? null;
    },

    async createApiKey(tenantId, rawKey) {
      await requireTenant(tenantId);
      if (rawKey !== undefined && !API_KEY_PATTERN.test(rawKey)) {
        // The edge accepts only this shape, so a key of any other shape could never authenticate.
        throw new StoreInputError("an API key must be 'fs_' followed by 32 letters, digits, '_' or '-'");
      }
      const key = rawKey ?? `fs_${randomChars(32, URL_SAFE)}`;
      const keyHash = hashApiKey(key);
      const prefix = key.slice(0, 8);
      const existing = await db.select({ id: apiKeys.id, tenantId: apiKeys.tenantId }).from(apiKeys).where(eq(apiKeys.keyHash, keyHash)).get();
      if (existing) {
        if (existing.tenantId !== tenantId) throw new StoreInputError("that API key already belongs to another tenant — choose another key");
        return { id: existing.id, key, prefix };
      }
      const id = `key_${randomChars(16, BASE32)}`;
      await db.insert(apiKeys).values({ id, tenantId, keyHash, prefix });
      return { id, key, prefix };
    },

    async listApiKeys(tenantId) {
      await requireTenant(tenantId);
      return db
        .select({ id: apiKeys.id, tenantId: apiKeys.tenantId, prefix: apiKeys.prefix, createdAt: apiKeys.createdAt, revokedAt: apiKeys.revokedAt })
        .from(apiKeys)
        .where(eq(apiKeys.tenantId, tenantId))
        .orderBy(asc(apiKeys.createdAt), asc(apiKeys.id))
        .all();
    },

    async findTenantByKey(rawKey) {
      if (typeof rawKey !== "string" || !API_KEY_PATTERN.test(rawKey)) return null;
      const hash = hashApiKey(rawKey);
      const row = await db
        .select({ key: apiKeys, tenant: tenants })
        .from(apiKeys)
        .innerJoin(tenants, eq(apiKeys.tenantId, tenants.id))
        .where(eq(apiKeys.keyHash, hash))
        .get();
      if (!row || !sameHash(row.key.keyHash, hash) || row.key.revokedAt !== null) return null;
      return { ...toTenant(row.tenant), keyId: row.key.id };
    },

    async revokeApiKey(id) {
      const updated = await db
        .update(apiKeys)
        .set({ revokedAt: nowIso() })
        .where(and(eq(apiKeys.id, id), isNull(apiKeys.revokedAt)))
        .returning({ id: apiKeys.id });
      if (updated.length > 0) return;
      const exists = await db.select({ id: apiKeys.id }).from(apiKeys).where(eq(apiKeys.id, id)).get();
      if (!exists) throw new StoreInputError(`unknown API key '${id}'`);
      // Already revoked: nothing to do (the first revocation time is kept).
    },

    async getCheckpoint<T>(configHash: string, key: string) {
      const row = await db
        .select({ value: calibrationCheckpoints.value })
        .from(calibrationCheckpoints)
        .where(and(eq(calibrationCheckpoints.configHash, configHash), eq(calibrationCheckpoints.key, key)))
        .get();
      return row ? (row.value as T) : undefined;
    },

    async putCheckpoint(configHash, key, value) {
      if (value === undefined || value === null) throw new StoreInputError(`checkpoint '${key}' needs a value (not null or undefined)`);
      let json: string | undefined;
      try {
        json = JSON.stringify(value);
      } catch (e) {
        throw new StoreInputError(`checkpoint '${key}' is not JSON-serialisable: ${(e as Error).message}`);
      }
      if (json === undefined) throw new StoreInputError(`checkpoint '${key}' is not JSON-serialisable`);
      const createdAt = nowIso();
      await db
        .insert(calibrationCheckpoints)
        .values({ configHash, key, value, createdAt })
        .onConflictDoUpdate({ target: [calibrationCheckpoints.configHash, calibrationCheckpoints.key], set: { value, createdAt } });
    },

    async listCheckpoints<T>(configHash: string) {
      const rows = await db
        .select({ key: calibrationCheckpoints.key, value: calibrationCheckpoints.value, createdAt: calibrationCheckpoints.createdAt })
        .from(calibrationCheckpoints)
        .where(eq(calibrationCheckpoints.configHash, configHash))
        .orderBy(asc(calibrationCheckpoints.createdAt), asc(calibrationCheckpoints.key))
        .all();
      return rows.map((r) => ({ key: r.key, value: r.value as T, createdAt: r.createdAt }));
    },

    async clearCheckpoints(configHash) {
      const gone = await db
        .delete(calibrationCheckpoints)
        .where(eq(calibrationCheckpoints.configHash, configHash))
        .returning({ key: calibrationCheckpoints.key });
      return gone.length;
    },

    close() {
      client.close();
    },
  };
  return store;
}

// ---------------------------------------------------------------------------------------------
// Telemetry reads (the edge writes the rows: functions/telemetry.ts). Raw SQL on the store's
// client: one aggregate query, whatever the number of rows.

/**
 * Telemetry summed per (tenant, task, pool) over a window, with the per-request second moments a
 * ratio estimator's variance needs (Σd², Σa², Σad over requests) — so the drift check reads one
 * row per group instead of every request. Only requests that drafted something count.
 */
export interface TelemetryGroup {
  tenantId: string;
  task: string;
  poolId: string;
  /** Requests with drafted > 0. */
  requests: number;
  /** Σ drafted (num_draft_tokens) over those requests. */
  drafted: number;
  /** Σ accepted (num_accepted_draft_tokens). */
  accepted: number;
  draftedSq: number;
  acceptedSq: number;
  acceptedDrafted: number;
  /** created_at of the first and last request in the window. */
  first: string;
  last: string;
}

/**
 * The telemetry of `[since, until)` (ISO-8601 UTC text, as the edge writes `created_at`; either
 * bound optional), summed per (tenant, task, pool), ordered by task, tenant, pool.
 */
export async function telemetryGroups(store: Store, window: { since?: string; until?: string } = {}): Promise<TelemetryGroup[]> {
  const where = ["drafted > 0"];
  const args: string[] = [];
  if (window.since !== undefined) {
    where.push("created_at >= ?");
    args.push(window.since);
  }
  if (window.until !== undefined) {
    where.push("created_at < ?");
    args.push(window.until);
  }
  const rs = await store.db.$client.execute({
    sql: `SELECT tenant_id, task, pool_id, count(*) AS requests, sum(drafted) AS drafted, sum(accepted) AS accepted,
            sum(drafted * drafted) AS drafted_sq, sum(accepted * accepted) AS accepted_sq, sum(accepted * drafted) AS accepted_drafted,
            min(created_at) AS first, max(created_at) AS last
          FROM telemetry WHERE ${where.join(" AND ")}
          GROUP BY task, tenant_id, pool_id ORDER BY task, tenant_id, pool_id`,
    args,
  });
  return rs.rows.map((r) => ({
    tenantId: String(r.tenant_id),
    task: String(r.task),
    poolId: String(r.pool_id),
    requests: Number(r.requests),
    drafted: Number(r.drafted),
    accepted: Number(r.accepted),
    draftedSq: Number(r.drafted_sq),
    acceptedSq: Number(r.accepted_sq),
    acceptedDrafted: Number(r.accepted_drafted),
    first: String(r.first),
    last: String(r.last),
  }));
}
