/**
 * Fitting per-task speculative parameters under a tenant's fairness policy. Pure.
 *
 * Serving engines (vLLM, SGLang) fix the drafter and γ per server, so per-task parameters are
 * realised as origin pools: a pool is (drafter, γ, proposal temperature τ), γ = 0 being plain
 * decoding. The operator can run at most K pools. A fit chooses the pool set P (|P| ≤ K) and the
 * task → pool assignment that is best for the policy:
 *
 *   throughput   maximise Σ_T w_T S_T                    (w = traffic share)
 *   maxmin       maximise min_T S_T                      (ties: throughput)
 *   alpha-fair   maximise Σ_T w_T u_a(S_T), u_a(x) = x^{1−a}/(1−a), log x at a = 1
 *                (a = 0 is throughput; a → ∞ approaches max-min; ties: throughput)
 *   floor        maximise Σ_T w_T S_T subject to min_T S_T ≥ r · max_T S_T
 *
 * Whatever the fit, the output distribution is the verifier's: only speed changes.
 */

export interface PoolSpec {
  id: string;
  /** null when γ = 0 (no drafter needed). */
  drafter: string | null;
  gamma: number;
  /** null: the proposal temperature follows the request's temperature. */
  proposalTemperature: number | null;
}

export type Policy =
  | { kind: "throughput" }
  | { kind: "maxmin" }
  | { kind: "alpha-fair"; alpha: number }
  | { kind: "floor"; ratio: number };

export interface FitInput<T extends string = string> {
  tasks: readonly T[];
  /** Traffic share per task (any positive scale; normalised here). Default: uniform. */
  traffic?: Partial<Record<T, number>>;
  candidates: readonly PoolSpec[];
  /** Predicted (or measured) speed-up of task T on pool p; 1 = verifier-only speed. */
  speedup: (task: T, pool: PoolSpec) => number;
  maxPools: number;
  policy: Policy;
}

export interface Fit<T extends string = string> {
  pools: PoolSpec[];
  assignment: Record<T, string>;
  speedups: Record<T, number>;
  /** The policy's objective value (−Infinity when no pool set satisfies a floor policy). */
  objective: number;
  /** Traffic-weighted mean speed-up of this fit, whatever the policy. */
  throughput: number;
  feasible: boolean;
  /** "exhaustive" when every pool set of size ≤ K was tried, else "greedy + swaps". */
  search: "exhaustive" | "greedy";
}

export function describePolicy(p: Policy): string {
  switch (p.kind) {
    case "alpha-fair":
      return `alpha-fair(a=${p.alpha})`;
    case "floor":
      return `floor(r=${p.ratio})`;
    default:
      return p.kind;
  }
}

export function validatePolicy(p: Policy): void {
  if (p.kind === "alpha-fair" && !(p.alpha >= 0)) throw new RangeError(`alpha-fair needs a >= 0, got ${p.alpha}`);
  if (p.kind === "floor" && !(p.ratio >= 0 && p.ratio <= 1)) throw new RangeError(`floor needs r in [0, 1], got ${p.ratio}`);
}

const utility = (a: number, x: number) => (a === 1 ? Math.log(x) : x ** (1 - a) / (1 - a));

/** Lexicographic score: higher is better. */
type Score = [primary: number, secondary: number];
const better = (a: Score, b: Score) => a[0] > b[0] + 1e-12 || (Math.abs(a[0] - b[0]) <= 1e-12 && a[1] > b[1] + 1e-12);

interface Assigned<T extends string> {
  choice: Record<T, number>; // index into the pool set
  s: Record<T, number>;
  score: Score;
  feasible: boolean;
}

/** Best assignment of tasks to a fixed pool set. `S[t][j]` = speed-up of task t on pool j. */
function assign<T extends string>(tasks: readonly T[], w: Record<T, number>, S: Record<T, number[]>, policy: Policy): Assigned<T> {
  const choice = {} as Record<T, number>;
  const s = {} as Record<T, number>;
  const throughput = () => tasks.reduce((acc, t) => acc + w[t] * s[t], 0);
  if (policy.kind !== "floor") {
    // Every other objective is increasing in each task's speed-up: each task takes its fastest pool.
    for (const t of tasks) {
      const row = S[t];
      let j = 0;
      for (let k = 1; k < row.length; k++) if (row[k]! > row[j]!) j = k;
      choice[t] = j;
      s[t] = row[j]!;
    }
    const tp = throughput();
    const primary =
      policy.kind === "throughput"
        ? tp
        : policy.kind === "maxmin"
          ? Math.min(...tasks.map((t) => s[t]))
          : tasks.reduce((acc, t) => acc + w[t] * utility(policy.alpha, s[t]), 0);
    return { choice, s, score: [primary, tp], feasible: true };
  }
  // Floor: try every achievable speed-up m as the minimum; each task then takes its fastest pool
  // within [m, m / r] (the cap keeps the best task within 1/r of the worst).
  const r = policy.ratio;
  const levels = [...new Set(tasks.flatMap((t) => S[t]))].sort((a, b) => a - b);
  let best: Assigned<T> = { choice, s, score: [-Infinity, -Infinity], feasible: false };
  for (const m of levels) {
    const cap = r > 0 ? m / r : Infinity;
    const c = {} as Record<T, number>;
    const sv = {} as Record<T, number>;
    let ok = true;
    for (const t of tasks) {
      let j = -1;
      S[t].forEach((x, k) => {
        if (x >= m - 1e-12 && x <= cap + 1e-12 && (j < 0 || x > S[t][j]!)) j = k;
      });
      if (j < 0) {
        ok = false;
        break;
      }
      c[t] = j;
      sv[t] = S[t][j]!;
    }
    if (!ok) continue;
    const tp = tasks.reduce((acc, t) => acc + w[t] * sv[t], 0);
    const cand: Assigned<T> = { choice: c, s: sv, score: [tp, Math.min(...tasks.map((t) => sv[t]))], feasible: true };
    if (!best.feasible || better(cand.score, best.score)) best = cand;
  }
  return best;
}

function* combinations(n: number, k: number): Generator<number[]> {
  const idx = Array.from({ length: k }, (_, i) => i);
  if (k > n) return;
  while (true) {
    yield [...idx];
    let i = k - 1;
    while (i >= 0 && idx[i] === n - k + i) i--;
    if (i < 0) return;
    idx[i]!++;
    for (let j = i + 1; j < k; j++) idx[j] = idx[j - 1]! + 1;
  }
}

function binom(n: number, k: number): number {
  let r = 1;
  for (let i = 1; i <= k; i++) r = (r * (n - k + i)) / i;
  return r;
}

const EXHAUSTIVE_LIMIT = 200_000;

export function fitPools<T extends string>(input: FitInput<T>): Fit<T> {
  const { tasks, candidates, policy } = input;
  validatePolicy(policy);
  if (tasks.length === 0) throw new RangeError("fit needs at least one task");
  if (candidates.length === 0) throw new RangeError("fit needs at least one candidate pool");
  if (!Number.isInteger(input.maxPools) || input.maxPools < 1) throw new RangeError(`max pools must be an integer >= 1, got ${input.maxPools}`);
  const K = Math.min(input.maxPools, candidates.length);
  const rawW = tasks.map((t) => input.traffic?.[t] ?? 1);
  if (rawW.some((x) => !(x >= 0))) throw new RangeError("traffic shares must be >= 0");
  const total = rawW.reduce((s, x) => s + x, 0) || 1;
  const w = Object.fromEntries(tasks.map((t, i) => [t, rawW[i]! / total])) as Record<T, number>;
  const full = Object.fromEntries(tasks.map((t) => [t, candidates.map((c) => input.speedup(t, c))])) as Record<T, number[]>;
  for (const t of tasks) if (full[t].some((x) => !(x > 0))) throw new RangeError(`speed-ups must be > 0 (task ${t})`);

  const evaluate = (set: number[]) => {
    const S = Object.fromEntries(tasks.map((t) => [t, set.map((j) => full[t][j]!)])) as Record<T, number[]>;
    return { set, a: assign(tasks, w, S, policy) };
  };
  let best: { set: number[]; a: Assigned<T> } | null = null;
  const consider = (cand: { set: number[]; a: Assigned<T> }) => {
    if (!best || (cand.a.feasible && !best.a.feasible) || (cand.a.feasible === best.a.feasible && better(cand.a.score, best.a.score))) best = cand;
  };
  let search: Fit<T>["search"] = "exhaustive";
  let count = 0;
  for (let k = 1; k <= K; k++) count += binom(candidates.length, k);
  if (count <= EXHAUSTIVE_LIMIT) {
    for (let k = 1; k <= K; k++) for (const set of combinations(candidates.length, k)) consider(evaluate(set));
  } else {
    // Greedy growth, then single swaps until no swap improves the objective.
    search = "greedy";
    let set: number[] = [];
    for (let k = 0; k < K; k++) {
      let add: { set: number[]; a: Assigned<T> } | null = null;
      for (let j = 0; j < candidates.length; j++) {
        if (set.includes(j)) continue;
        const e = evaluate([...set, j]);
        if (!add || (e.a.feasible && !add.a.feasible) || better(e.a.score, add.a.score)) add = e;
      }
      set = add!.set;
      consider(add!);
    }
    for (let improved = true; improved; ) {
      improved = false;
      const cur: { set: number[]; a: Assigned<T> } = best!;
      for (let i = 0; i < cur.set.length && !improved; i++) {
        for (let j = 0; j < candidates.length && !improved; j++) {
          if (cur.set.includes(j)) continue;
          const e = evaluate(cur.set.map((x, k) => (k === i ? j : x)));
          if ((e.a.feasible && !cur.a.feasible) || better(e.a.score, cur.a.score)) {
            consider(e);
            improved = true;
          }
        }
      }
    }
  }
  const b = best! as { set: number[]; a: Assigned<T> };
  // Drop pools no task uses: they would cost a server for nothing.
  const used = [...new Set(tasks.map((t) => b.set[b.a.choice[t]]!))].sort((x, y) => x - y);
  const pools = used.map((j) => candidates[j]!);
  const assignment = Object.fromEntries(tasks.map((t) => [t, candidates[b.set[b.a.choice[t]]!]!.id])) as Record<T, string>;
  const throughput = tasks.reduce((acc, t) => acc + w[t] * (b.a.s[t] ?? 0), 0);
  return {
    pools,
    assignment,
    speedups: b.a.s,
    objective: b.a.feasible ? b.a.score[0] : -Infinity,
    throughput,
    feasible: b.a.feasible,
    search,
  };
}
