/**
 * From measured α and the measured cost model to predicted speed-ups and candidate pools. Pure.
 *
 * Predicted S_T(γ) = (1 − α^{γ+1}) / ((1 − α)(γc + v(γ+1))) with c and v measured on this host.
 * Deviation from the paper's i.i.d. model, flagged: none here — acceptance is assumed i.i.d.
 * across positions, and the validation runs (measured S) show how far that holds.
 */
import type { Interval95 } from "../core/calibration.ts";
import type { PoolSpec } from "../core/fit.ts";
import { measuredVerifyCost, requestSpeedup, wallTimeFactor, type RequestCosts } from "../core/speedup.ts";
import type { Costs } from "./costs.ts";

export interface AlphaCell {
  task: string;
  drafter: string;
  targetTemperature: number;
  proposalTemperature: number;
  alpha: Interval95;
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

  private request = new Map<string, RequestCosts>();

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
    if (costs.loop) {
      const lv = measuredVerifyCost(costs.loop.verifyCost);
      for (const d of costs.loop.drafters)
        this.request.set(d.id, {
          verifierStepMs: costs.loop.verifier_step_ms,
          drafterStepMs: d.step_ms,
          verifierPrefillMsPerToken: costs.loop.verifier_prefill_ms_per_token,
          drafterPrefillMsPerToken: d.prefill_ms_per_token,
          verifyCost: lv,
        });
    }
    for (const cell of cells) this.alpha.set(key(cell.task, cell.drafter, cell.targetTemperature, cell.proposalTemperature), cell.alpha);
  }

  alphaOf(task: string, drafter: string, T: number, tau: number): Interval95 {
    const a = this.alpha.get(key(task, drafter, T, tau));
    if (!a) throw new Error(`no α measured for task ${task}, drafter ${drafter}, T=${T}, τ=${tau}`);
    return a;
  }

  /** Predicted speed-up with the interval implied by α's interval (S is increasing in α). */
  predict(task: string, pool: PoolSpec, T: number): Interval95 {
    if (pool.gamma === 0 || pool.drafter === null) return { estimate: 1, lo: 1, hi: 1 };
    const c = this.c.get(pool.drafter);
    if (c === undefined) throw new Error(`no cost measured for drafter ${pool.drafter}`);
    const a = this.alphaOf(task, pool.drafter, T, pool.proposalTemperature ?? T);
    const rc = this.request.get(pool.drafter);
    const P = this.shape?.promptTokens.get(task);
    const clamp = (x: number) => Math.min(1, Math.max(0, x));
    const f =
      rc && this.shape && P !== undefined
        ? (x: number) => requestSpeedup(clamp(x), pool.gamma, P, this.shape!.newTokens, rc)
        : (x: number) => wallTimeFactor(clamp(x), pool.gamma, c, this.verifyCost);
    return { estimate: f(a.estimate), lo: f(a.lo), hi: f(a.hi) };
  }
}

const key = (task: string, drafter: string, T: number, tau: number) => `${task}|${drafter}|${T}|${tau}`;
