/**
 * From measured α and the measured cost model to predicted speed-ups and candidate pools. Pure.
 *
 * With loop costs (calibrator/costs.ts) and a request shape, S_T(γ) is a whole request's speed-up
 * (core/speedup.ts requestSpeedup: prefill, then N / E[tokens per call] steps at the step cost
 * measured for this γ and target temperature); without them, the paper's factor
 * (1 − α^{γ+1}) / ((1 − α)(γc + v(γ+1))). Acceptance is assumed i.i.d. across positions, as in the
 * paper; the validation runs (measured S) show how far that holds.
 */
import type { Interval95 } from "../core/calibration.ts";
import type { PoolSpec } from "../core/fit.ts";
import { costAtGamma, measuredVerifyCost, requestSpeedup, requestSpeedupAt, wallTimeFactor, type RequestCosts } from "../core/speedup.ts";
import { nearestTemperature, type Costs, type LoopCosts } from "./costs.ts";

export interface AlphaCell {
  task: string;
  drafter: string;
  targetTemperature: number;
  proposalTemperature: number;
  alpha: Interval95;
  /** E[tokens per verifier step] by γ from the measured β sequences (measure.ts); else α i.i.d. */
  tokensPerStep?: Readonly<Record<string, Interval95>>;
  /** By γ: the fraction of those steps that end in a rejection (measure.ts); else 1 − α^γ. */
  rejectingFraction?: Readonly<Record<string, number>>;
}

/** A workload the model predicts for: tokens per step (and the fraction of steps rejecting) at the pool's γ, mean prompt length. */
export interface Workload {
  tokensPerStep: Interval95;
  rejectingFraction?: number;
  promptTokens: number;
}

export function poolId(drafter: string | null, gamma: number, tau: number | null): string {
  return gamma === 0 || drafter === null ? "off" : `${drafter}-g${gamma}-t${tau}`;
}

export function candidatePools(drafters: readonly string[], gammas: readonly number[], taus: readonly number[]): PoolSpec[] {
  const out: PoolSpec[] = [{ id: "off", drafter: null, gamma: 0, proposalTemperature: null }];
  for (const d of drafters) for (const g of gammas) if (g > 0) for (const t of taus) out.push({ id: poolId(d, g, t), drafter: d, gamma: g, proposalTemperature: t });
  return out;
}

export class SpeedupModel {
  private verifyCost;
  private c: Map<string, number>;
  private alpha = new Map<string, Interval95>();
  private tokensPerStep = new Map<string, Readonly<Record<string, Interval95>>>();
  private rejecting = new Map<string, Readonly<Record<string, number>>>();

  private loop: LoopCosts | undefined;

  /**
   * With loop costs and the request shape (prompt tokens per task, new tokens), predictions are
   * whole-request speed-ups (prefill included) — what validation measures; else the paper's factor.
   */
  constructor(
    costs: Costs,
    cells: readonly AlphaCell[],
    private shape?: { promptTokens: ReadonlyMap<string, number>; newTokens: number },
  ) {
    this.verifyCost = measuredVerifyCost(costs.verifyCost);
    this.c = new Map(costs.drafters.map((d) => [d.id, d.c]));
    this.loop = costs.loop;
    for (const cell of cells) {
      const k = key(cell.task, cell.drafter, cell.targetTemperature, cell.proposalTemperature);
      this.alpha.set(k, cell.alpha);
      if (cell.tokensPerStep) this.tokensPerStep.set(k, cell.tokensPerStep);
      if (cell.rejectingFraction) this.rejecting.set(k, cell.rejectingFraction);
    }
  }

  /** The loop costs of one request at (drafter, γ, T); T reads the nearest measured temperature. */
  private requestCosts(drafter: string, gamma: number, T: number): RequestCosts | undefined {
    const loop = this.loop;
    const d = loop?.drafters.find((x) => x.id === drafter);
    if (!loop || !d) return undefined;
    const t = nearestTemperature(loop, T);
    return {
      verifierPrefillMsPerToken: loop.verifier_prefill_ms_per_token,
      drafterPrefillMsPerToken: d.prefill_ms_per_token,
      baseStepMs: loop.verifier_step_ms[t]!,
      specStepMs: costAtGamma(d.step_ms[t]!, gamma),
      rejectionMs: loop.rejection_ms?.[t],
    };
  }

  alphaOf(task: string, drafter: string, T: number, tau: number): Interval95 {
    const a = this.alpha.get(key(task, drafter, T, tau));
    if (!a) throw new Error(`no α measured for task ${task}, drafter ${drafter}, T=${T}, τ=${tau}`);
    return a;
  }

  /**
   * Predicted speed-up, with the interval implied by the interval of what it is computed from (S
   * increases with α and with tokens per step). With loop costs and a request shape: a whole
   * request's speed-up from the tokens per step measured along the β sequences (the i.i.d. formula
   * in α where none were measured); otherwise the paper's factor.
   */
  predict(task: string, pool: PoolSpec, T: number): Interval95 {
    return this.predictWith(task, pool, T);
  }

  /**
   * The same prediction for a given workload: tokens per step teacher-forced on those prompts and
   * their mean length, with this model's costs. Validation uses it to check the model on exactly
   * the prompts it timed, apart from the sampling error between prompt sets.
   */
  predictFor(task: string, pool: PoolSpec, T: number, workload: Workload): Interval95 {
    return this.predictWith(task, pool, T, workload);
  }

  private predictWith(task: string, pool: PoolSpec, T: number, workload?: Workload): Interval95 {
    if (pool.gamma === 0 || pool.drafter === null) return { estimate: 1, lo: 1, hi: 1 };
    const c = this.c.get(pool.drafter);
    if (c === undefined) throw new Error(`no cost measured for drafter ${pool.drafter}`);
    const tau = pool.proposalTemperature ?? T;
    const a = this.alphaOf(task, pool.drafter, T, tau);
    const rc = this.requestCosts(pool.drafter, pool.gamma, T);
    const P = workload?.promptTokens ?? this.shape?.promptTokens.get(task);
    const clamp = (x: number) => Math.min(1, Math.max(0, x));
    const each = (i: Interval95, f: (x: number) => number): Interval95 => ({ estimate: f(i.estimate), lo: f(i.lo), hi: f(i.hi) });
    if (!(rc && this.shape && P !== undefined)) return each(a, (x) => wallTimeFactor(clamp(x), pool.gamma, c, this.verifyCost));
    const N = this.shape.newTokens;
    const k = key(task, pool.drafter, T, tau);
    const tps = workload ? workload.tokensPerStep : this.tokensPerStep.get(k)?.[String(pool.gamma)];
    const f = workload ? workload.rejectingFraction : this.rejecting.get(k)?.[String(pool.gamma)];
    // Without a measured rejecting fraction, the i.i.d. one at the cell's α: 1 − α^γ.
    const rejecting = clamp(f ?? 1 - clamp(a.estimate) ** pool.gamma);
    if (tps) return each(tps, (x) => requestSpeedupAt(Math.min(pool.gamma + 1, Math.max(1, x)), P, N, rc, rejecting));
    return each(a, (x) => requestSpeedup(clamp(x), pool.gamma, P, N, rc));
  }
}

const key = (task: string, drafter: string, T: number, tau: number) => `${task}|${drafter}|${T}|${tau}`;
