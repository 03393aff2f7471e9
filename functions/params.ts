/**
 * From the active run's rows to a routing decision: which of the run's policies a tenant's policy
 * is, and the fitted parameters for (policy, task, target temperature nearest the request's).
 * Pure; built once per snapshot load, looked up per request in O(log n).
 */
import type { Policy } from "../core/fit.ts";
import type { ParamsSnapshot, RunParams, RunPool } from "./db.ts";

export interface ParamsIndex {
  runId: string;
  activatedAt: string;
  pools: ReadonlyMap<string, RunPool>;
  policies: readonly { id: string; policy: Policy }[];
  /** policyId → task → params sorted by target temperature. */
  params: ReadonlyMap<string, ReadonlyMap<string, readonly RunParams[]>>;
  tasks: ReadonlySet<string>;
}

export function indexSnapshot(s: ParamsSnapshot): ParamsIndex {
  const params = new Map<string, Map<string, RunParams[]>>();
  const tasks = new Set<string>();
  for (const p of s.params) {
    let byTask = params.get(p.policyId);
    if (!byTask) params.set(p.policyId, (byTask = new Map()));
    let list = byTask.get(p.task);
    if (!list) byTask.set(p.task, (list = []));
    list.push(p);
    tasks.add(p.task);
  }
  for (const byTask of params.values()) for (const list of byTask.values()) list.sort((a, b) => a.targetTemperature - b.targetTemperature);
  return {
    runId: s.runId,
    activatedAt: s.activatedAt,
    pools: new Map(s.pools.map((p) => [p.id, p])),
    policies: [...s.policies].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)),
    params,
    tasks,
  };
}

/** Structural equality of two policies (kind and its parameter). */
export function samePolicy(a: Policy, b: Policy): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind === "alpha-fair") return a.alpha === (b as typeof a).alpha;
  if (a.kind === "floor") return a.ratio === (b as typeof a).ratio;
  return true;
}

export type PolicySource = "tenant" | "default" | "first";

/**
 * The run policy to serve a tenant with: the tenant's own if the run was fitted for it, else the
 * config's default policy, else the run's first policy (by id). null when the run has none.
 */
export function choosePolicy(index: ParamsIndex, tenantPolicy: Policy | null, defaultPolicy: Policy): { id: string; source: PolicySource } | null {
  if (tenantPolicy) {
    const m = index.policies.find((p) => samePolicy(p.policy, tenantPolicy));
    if (m) return { id: m.id, source: "tenant" };
  }
  const d = index.policies.find((p) => samePolicy(p.policy, defaultPolicy));
  if (d) return { id: d.id, source: "default" };
  const first = index.policies[0];
  return first ? { id: first.id, source: "first" } : null;
}

/** The entry whose target temperature is nearest `temperature` (ties: the lower one). */
export function nearest(list: readonly RunParams[], temperature: number): RunParams | undefined {
  let lo = 0;
  let hi = list.length - 1;
  if (hi < 0) return undefined;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid]!.targetTemperature < temperature) lo = mid + 1;
    else hi = mid;
  }
  const above = list[lo]!;
  const below = lo > 0 ? list[lo - 1]! : undefined;
  if (below && temperature - below.targetTemperature <= above.targetTemperature - temperature) return below;
  return above;
}

export function lookupParams(index: ParamsIndex, policyId: string, task: string, temperature: number): RunParams | undefined {
  const list = index.params.get(policyId)?.get(task);
  return list ? nearest(list, temperature) : undefined;
}
