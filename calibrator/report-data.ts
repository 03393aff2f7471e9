/**
 * Everything the calibration report shows, as plain data (also written as summary.json).
 */
import type { PoolRecord, TaskMeasurement, TaskParams, TenantPolicyRecord } from "../core/calibration.ts";
import type { Spread } from "../core/fairness.ts";
import type { Costs } from "./costs.ts";

export type MitigationName = "none" | "s-cdf" | "data-balancing" | "temperature-tuning";

export interface MitigationResult {
  name: MitigationName;
  /** The drafter this mitigation serves with (a new drafter for s-CDF / data balancing). */
  drafter: string;
  description: string;
  /** U = variance over tasks of D_T for this drafter. */
  unfairnessU: number;
  /** Per-task figures at the reference setting (target temperature, best γ for that task). */
  perTask: Record<string, { crossEntropy: number; alpha: number; speedup: number; gamma: number; proposalTemperature: number }>;
  /** Spread of the per-task best predicted speed-ups. */
  speedup: Spread;
}

export interface AlphaGammaPoint {
  task: string;
  drafter: string;
  targetTemperature: number;
  proposalTemperature: number;
  gamma: number;
  alpha: number;
  predictedSpeedup: number;
}

export interface ReportData {
  run: { id: string | null; configHash: string; startedAt: string; finishedAt: string; hardware: Record<string, unknown> };
  tasks: string[];
  drafters: string[];
  targetTemperatures: number[];
  /** The target temperature the fairness comparisons and mitigations use. */
  referenceTemperature: number;
  costs: Costs;
  measurements: TaskMeasurement[];
  curves: AlphaGammaPoint[];
  policies: TenantPolicyRecord[];
  pools: PoolRecord[];
  params: TaskParams[];
  mitigations: MitigationResult[];
  notes: string[];
  /** The headline checks of a run (disparity, fit vs uncalibrated, s-CDF effect, prediction error). */
  findings?: Record<string, unknown>;
}
