/**
 * Drift: does the acceptance the edge sees in production still match what the active calibration
 * run measured? Pure math first, then one I/O function (`driftReport`) that reads the store.
 *
 * What the telemetry holds. The edge writes one row per request (functions/app.ts, stream.ts):
 * `drafted` = the origin's `num_draft_tokens` and `accepted` = `num_accepted_draft_tokens` —
 * TOTALS per request. The per-position counts (`num_accepted_tokens_per_pos`) are in the origin's
 * answer but not stored, so the direct estimator of calibrator/remote.ts (each reached position is
 * one Bernoulli(α) trial) is not available here. Neither is the request's temperature.
 *
 * The estimator. accepted / drafted is vLLM's acceptance rate r, not α: positions after a
 * rejection are drafted but never reached. Under the i.i.d. model (each reached draft position is
 * accepted with probability α, independently) a step drafts γ tokens and accepts the first k with
 * probability α^k(1 − α) (k < γ) or α^γ, so
 *
 *     r(α) = E[accepted] / E[drafted] = (α − α^{γ+1}) / (γ(1 − α)) = (1/γ) Σ_{k=1..γ} α^k,
 *
 * increasing from r(0) = 0 to r(1) = 1; α̂ = r⁻¹(r̂) is found by bisection, with γ the pool's.
 * r̂ = Σaᵢ / Σdᵢ over requests i (a ratio of sums). Its standard error treats requests as the
 * independent units (steps within one request share a prompt, so they are not independent):
 * the linearised (delta-method, cluster-robust) variance of a ratio estimator,
 *
 *     Var(r̂) ≈ n / (n − 1) · Σ (aᵢ − r̂ dᵢ)² / (Σ dᵢ)²,
 *
 * computed from per-group sums (Σd², Σa², Σad) that SQL returns, so no request is loaded. The 95 %
 * interval r̂ ± 1.96·SE (clipped to [0, 1]) maps through the increasing r⁻¹ to α's interval: the
 * map preserves coverage exactly. Caveats: the engine drafts fewer than γ tokens in the last steps
 * before max_tokens (γ is clipped), which makes r̂, and so α̂, slightly high for short completions;
 * α varying across prompts makes α̂ the α that explains the pooled rate, close to but not exactly
 * the mean α the calibration measures (mean β over positions).
 *
 * The comparison. Per (tenant, task, pool) — and over all tenants of a (task, pool) when more than
 * one tenant sent it — the calibrated α is the active run's `task_measurements` row for the pool's
 * drafter, at the pool's proposal temperature τ, at the target temperature(s) T the run assigned
 * this pool to this task (`task_params`). Telemetry does not say which T a request used: when the
 * pool serves the task at several T, the calibrated α is the range over them, and drift is
 * measured from the nearest end. A group drifted when its drafted tokens ≥ `minDrafted` and the
 * calibrated α lies outside the online CI by more than `tolerance`:
 *
 *     gap = max(0, calibrated.lo − online.hi, online.lo − calibrated.hi) > tolerance.
 *
 * A task drifted when any of its groups did.
 */
import type { PoolRecord, TaskMeasurement, TaskParams } from "../core/calibration.ts";
import { telemetryGroups, type Store, type TelemetryGroup } from "./store.ts";

export const Z95 = 1.959963984540054;
export const DEFAULT_TOLERANCE = 0.05;
export const DEFAULT_MIN_DRAFTED = 500;

// ---------------------------------------------------------------------------------------------
// Pure math.

/** vLLM's acceptance rate under the i.i.d. model: (α − α^{γ+1}) / (γ(1 − α)) = (1/γ) Σ_{k=1..γ} α^k. */
export function acceptanceRateOf(alpha: number, gamma: number): number {
  if (!Number.isInteger(gamma) || gamma < 1) throw new RangeError(`gamma must be an integer >= 1, got ${gamma}`);
  let s = 0;
  let p = 1;
  for (let k = 1; k <= gamma; k++) {
    p *= alpha;
    s += p;
  }
  return s / gamma;
}

/** α with acceptanceRateOf(α, γ) = rate (rate clipped to [0, 1]), by bisection to ~1e-12. */
export function alphaFromAcceptanceRate(rate: number, gamma: number): number {
  if (!Number.isInteger(gamma) || gamma < 1) throw new RangeError(`gamma must be an integer >= 1, got ${gamma}`);
  if (Number.isNaN(rate)) return NaN;
  const r = Math.min(1, Math.max(0, rate));
  if (gamma === 1 || r === 0 || r === 1) return r;
  let lo = 0;
  let hi = 1;
  for (let i = 0; i < 60; i++) {
    const mid = (lo + hi) / 2;
    if (acceptanceRateOf(mid, gamma) < r) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/** Per-group sums over requests (what `telemetryGroups` returns). */
export interface RatioSums {
  requests: number;
  drafted: number;
  accepted: number;
  draftedSq: number;
  acceptedSq: number;
  acceptedDrafted: number;
}

export interface RateEstimate {
  rate: number;
  /** Standard error of the rate (NaN with fewer than 2 requests). */
  se: number;
  lo: number;
  hi: number;
}

/** r̂ = Σa / Σd with the cluster-robust (requests as units) linearised interval, clipped to [0, 1]. */
export function acceptanceRateInterval(s: RatioSums, z = Z95): RateEstimate {
  if (!(s.drafted > 0)) return { rate: NaN, se: NaN, lo: 0, hi: 1 };
  const r = s.accepted / s.drafted;
  if (s.requests < 2) return { rate: r, se: NaN, lo: 0, hi: 1 };
  // Σ (aᵢ − r dᵢ)² = Σa² − 2r Σad + r² Σd² (clamped: rounding can make it a hair negative).
  const resid = Math.max(0, s.acceptedSq - 2 * r * s.acceptedDrafted + r * r * s.draftedSq);
  const se = Math.sqrt((s.requests / (s.requests - 1)) * resid) / s.drafted;
  return { rate: r, se, lo: Math.max(0, r - z * se), hi: Math.min(1, r + z * se) };
}

export interface AlphaEstimate {
  alpha: number;
  lo: number;
  hi: number;
  rate: RateEstimate;
}

/** Online α with its CI from a group's sums and the pool's γ (see the file comment). */
export function onlineAlphaFromTotals(s: RatioSums, gamma: number, z = Z95): AlphaEstimate {
  const rate = acceptanceRateInterval(s, z);
  return { alpha: alphaFromAcceptanceRate(rate.rate, gamma), lo: alphaFromAcceptanceRate(rate.lo, gamma), hi: alphaFromAcceptanceRate(rate.hi, gamma), rate };
}

export type DriftStatus = "drifted" | "ok" | "insufficient";

/** Distance from the calibrated range to the online CI (0 when they overlap). */
export function driftGap(online: { lo: number; hi: number }, calibrated: { lo: number; hi: number }): number {
  return Math.max(0, calibrated.lo - online.hi, online.lo - calibrated.hi);
}

export function classifyDrift(drafted: number, gap: number, o: { tolerance: number; minDrafted: number }): DriftStatus {
  if (drafted < o.minDrafted) return "insufficient";
  return gap > o.tolerance ? "drifted" : "ok";
}

// ---------------------------------------------------------------------------------------------
// Matching telemetry to the active run (pure).

export interface DriftOptions {
  tolerance?: number;
  minDrafted?: number;
}

/** The calibrated α a (task, pool) group is compared with. */
export interface CalibratedAlpha {
  /** At the run's reference temperature when the pool serves the task there, else the first T. */
  alpha: number;
  /** The range over the target temperatures the pool serves the task at (lo = hi for one T). */
  lo: number;
  hi: number;
  targetTemperatures: number[];
  /** The measurement's own bootstrap CI at the representative T (for information). */
  ci: { lo: number; hi: number };
}

export interface DriftRow {
  /** "*" = every tenant that sent this task to this pool (only when more than one did). */
  tenantId: string;
  task: string;
  poolId: string;
  drafter: string;
  gamma: number;
  proposalTemperature: number | null;
  requests: number;
  drafted: number;
  accepted: number;
  online: AlphaEstimate;
  calibrated: CalibratedAlpha;
  gap: number;
  status: DriftStatus;
  first: string;
  last: string;
}

export interface UnmatchedGroup {
  tenantId: string;
  task: string;
  poolId: string;
  requests: number;
  drafted: number;
  why: string;
}

export interface TaskDrift {
  task: string;
  status: DriftStatus;
  /** Largest gap among the task's groups with enough data (0 when none). */
  gap: number;
  drafted: number;
}

export interface DriftReport {
  runId: string;
  since: string;
  until: string | null;
  tolerance: number;
  minDrafted: number;
  /** Tasks, drifted first, then by gap. */
  tasks: TaskDrift[];
  drifted: string[];
  rows: DriftRow[];
  unmatched: UnmatchedGroup[];
}

export interface RunView {
  runId: string;
  referenceTemperature?: number;
  pools: PoolRecord[];
  params: TaskParams[];
  measurements: TaskMeasurement[];
}

const same = (a: number, b: number) => Math.abs(a - b) < 1e-9;

/** The calibrated α for `task` served by `pool`, or why there is none. */
export function calibratedAlphaFor(run: RunView, task: string, pool: PoolRecord): CalibratedAlpha | string {
  if (pool.gamma === 0 || pool.drafter === null) return "the pool does not draft (γ = 0)";
  const Ts = [...new Set(run.params.filter((p) => p.task === task && p.poolId === pool.id).map((p) => p.targetTemperature))].sort((a, b) => a - b);
  if (Ts.length === 0) return `the active run does not serve task '${task}' from pool '${pool.id}' (a fallback, or a task routed as another)`;
  const cells: { T: number; m: TaskMeasurement }[] = [];
  for (const T of Ts) {
    const tau = pool.proposalTemperature ?? T;
    const m = run.measurements.find((x) => x.task === task && x.drafter === pool.drafter && same(x.targetTemperature, T) && same(x.proposalTemperature, tau));
    if (m) cells.push({ T, m });
  }
  if (cells.length === 0) return `the active run has no α measurement for task '${task}', drafter '${pool.drafter}', τ ${pool.proposalTemperature ?? "= T"}`;
  const ref = cells.find((c) => run.referenceTemperature !== undefined && same(c.T, run.referenceTemperature)) ?? cells[0]!;
  const alphas = cells.map((c) => c.m.alpha.estimate);
  return { alpha: ref.m.alpha.estimate, lo: Math.min(...alphas), hi: Math.max(...alphas), targetTemperatures: cells.map((c) => c.T), ci: { lo: ref.m.alpha.lo, hi: ref.m.alpha.hi } };
}

const addSums = (a: TelemetryGroup, b: TelemetryGroup): TelemetryGroup => ({
  ...a,
  requests: a.requests + b.requests,
  drafted: a.drafted + b.drafted,
  accepted: a.accepted + b.accepted,
  draftedSq: a.draftedSq + b.draftedSq,
  acceptedSq: a.acceptedSq + b.acceptedSq,
  acceptedDrafted: a.acceptedDrafted + b.acceptedDrafted,
  first: a.first < b.first ? a.first : b.first,
  last: a.last > b.last ? a.last : b.last,
});

/** The drift report for telemetry groups against a run (pure; `driftReport` does the I/O). */
export function computeDrift(groups: readonly TelemetryGroup[], run: RunView, window: { since: string; until?: string | null }, o: DriftOptions = {}): DriftReport {
  const tolerance = o.tolerance ?? DEFAULT_TOLERANCE;
  const minDrafted = o.minDrafted ?? DEFAULT_MIN_DRAFTED;
  if (!(Number.isFinite(tolerance) && tolerance >= 0)) throw new RangeError(`tolerance must be a number >= 0, got ${tolerance}`);
  if (!(Number.isFinite(minDrafted) && minDrafted >= 0)) throw new RangeError(`minDrafted must be a number >= 0, got ${minDrafted}`);
  const rows: DriftRow[] = [];
  const unmatched: UnmatchedGroup[] = [];
  // Per (task, pool): the tenants' groups, then an all-tenants row when there are several.
  const byTaskPool = new Map<string, TelemetryGroup[]>();
  for (const g of groups) {
    const k = `${g.task}\u0000${g.poolId}`;
    byTaskPool.set(k, [...(byTaskPool.get(k) ?? []), g]);
  }
  for (const gs of byTaskPool.values()) {
    const { task, poolId } = gs[0]!;
    const pool = run.pools.find((p) => p.id === poolId);
    const cal = pool ? calibratedAlphaFor(run, task, pool) : `pool '${poolId}' is not in the active run`;
    if (typeof cal === "string") {
      for (const g of gs) unmatched.push({ tenantId: g.tenantId, task, poolId, requests: g.requests, drafted: g.drafted, why: cal });
      continue;
    }
    const all = gs.length > 1 ? [...gs, { ...gs.reduce(addSums), tenantId: "*" }] : gs;
    for (const g of all) {
      const online = onlineAlphaFromTotals(g, pool!.gamma);
      const gap = driftGap(online, cal);
      rows.push({
        tenantId: g.tenantId,
        task,
        poolId,
        drafter: pool!.drafter!,
        gamma: pool!.gamma,
        proposalTemperature: pool!.proposalTemperature,
        requests: g.requests,
        drafted: g.drafted,
        accepted: g.accepted,
        online,
        calibrated: cal,
        gap,
        status: classifyDrift(g.drafted, gap, { tolerance, minDrafted }),
        first: g.first,
        last: g.last,
      });
    }
  }
  const order: Record<DriftStatus, number> = { drifted: 0, ok: 1, insufficient: 2 };
  const tasks: TaskDrift[] = [...new Set(rows.map((r) => r.task))].map((task) => {
    const rs = rows.filter((r) => r.task === task);
    const status: DriftStatus = rs.some((r) => r.status === "drifted") ? "drifted" : rs.some((r) => r.status === "ok") ? "ok" : "insufficient";
    const enough = rs.filter((r) => r.status !== "insufficient");
    const drafted = rs.filter((r) => r.tenantId !== "*").reduce((a, r) => a + r.drafted, 0);
    return { task, status, gap: enough.length ? Math.max(...enough.map((r) => r.gap)) : 0, drafted };
  });
  tasks.sort((a, b) => order[a.status] - order[b.status] || b.gap - a.gap || a.task.localeCompare(b.task));
  rows.sort((a, b) => order[a.status] - order[b.status] || b.gap - a.gap || a.task.localeCompare(b.task) || a.tenantId.localeCompare(b.tenantId) || a.poolId.localeCompare(b.poolId));
  return {
    runId: run.runId,
    since: window.since,
    until: window.until ?? null,
    tolerance,
    minDrafted,
    tasks,
    drifted: tasks.filter((t) => t.status === "drifted").map((t) => t.task),
    rows,
    unmatched,
  };
}

// ---------------------------------------------------------------------------------------------
// I/O.

/** No run is active: there is no calibration to compare the telemetry with. */
export class NoActiveRunError extends Error {
  override name = "NoActiveRunError";
}

/**
 * The drift of the telemetry since the active run's activation (or `since`) against the active
 * run. Throws `NoActiveRunError` when no run is active.
 */
export async function driftReport(store: Store, o: DriftOptions & { since?: string; until?: string } = {}): Promise<DriftReport> {
  const active = await store.activeRun();
  if (!active) throw new NoActiveRunError("no run is active, so there is no calibrated α to compare with — activate one with `npx fairspec activate RUN`");
  const since = o.since ?? active.activatedAt;
  const [groups, pools, params, measurements] = await Promise.all([
    telemetryGroups(store, { since, until: o.until }),
    store.pools(active.id),
    store.taskParams(active.id),
    store.measurements(active.id),
  ]);
  const ref = active.summary?.referenceTemperature;
  return computeDrift(groups, { runId: active.id, referenceTemperature: typeof ref === "number" ? ref : undefined, pools, params, measurements }, { since, until: o.until }, o);
}
