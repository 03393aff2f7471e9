/**
 * What a calibration run produces, as plain data: the contract between the calibrator (which
 * measures and fits), the store (which writes it to libSQL in one transaction) and the edge
 * (which reads the active run's task parameters).
 */
import type { Policy } from "./fit.ts";

export interface Interval95 {
  estimate: number;
  lo: number;
  hi: number;
}

/** One (task, drafter, target temperature, proposal temperature, mitigation) measurement. */
export interface TaskMeasurement {
  task: string;
  drafter: string;
  /** "none" for the drafter as shipped; else the mitigation that produced this drafter. */
  mitigation: "none" | "s-cdf" | "data-balancing" | "temperature-tuning";
  targetTemperature: number;
  proposalTemperature: number;
  /** α_T = mean β over teacher-forced positions, with a bootstrap CI over prompts. */
  alpha: Interval95;
  /** D_T = mean cross-entropy H(p, q) in nats (the paper's divergence). */
  crossEntropy: Interval95;
  /** K_T = mean KL(p‖q) in nats. */
  kl: Interval95;
  meanTv: number;
  /** Theorem 1: 1 − √(K_T / 2); `boundHolds` = alpha ≥ bound. */
  pinskerBound: number;
  boundHolds: boolean;
  prompts: number;
  positions: number;
}

export interface PoolRecord {
  id: string;
  kind: "fairspec" | "vllm" | "sglang";
  drafter: string | null;
  gamma: number;
  proposalTemperature: number | null;
  urls: string[];
}

export interface TenantPolicyRecord {
  /** Stable id of the policy within a run, e.g. "throughput", "maxmin", "alpha-fair:2", "floor:0.7". */
  id: string;
  policy: Policy;
  maxPools: number;
}

/** The fitted parameters for one (policy, task, target temperature). */
export interface TaskParams {
  policyId: string;
  task: string;
  targetTemperature: number;
  poolId: string;
  drafter: string | null;
  gamma: number;
  proposalTemperature: number | null;
  predictedSpeedup: Interval95;
  /** Timed validation run at these parameters vs verifier-only; null if not validated. */
  measuredSpeedup: Interval95 | null;
  /** Wall ms per output character (what a user feels: bytes per character differ by script). */
  msPerChar: number | null;
}

export interface RunSummary {
  /** Worst task's (predicted, or measured where validated) speed-up under each policy. */
  worstSpeedup: Record<string, number>;
  meanSpeedup: Record<string, number>;
  /** U = variance of D_T across tasks for the base drafter (before mitigation). */
  unfairnessU: number;
  /** U after s-CDF, when it ran. */
  unfairnessUAfter: number | null;
  [k: string]: unknown;
}

export interface CalibrationRun {
  configHash: string;
  hardware: Record<string, unknown>;
  startedAt: string;
  finishedAt: string;
  summary: RunSummary;
  measurements: TaskMeasurement[];
  pools: PoolRecord[];
  policies: TenantPolicyRecord[];
  params: TaskParams[];
}
