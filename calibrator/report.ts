/**
 * The calibration report: one self-contained HTML file (inline CSS, charts rendered server-side
 * to SVG with vega-lite → vega and inlined), the same tables as GitHub-flavoured markdown, and a
 * compact summary.json. Everything shown comes from `ReportData`; the output is a pure function of
 * it (no clock, no randomness), so two renders of the same data are byte-identical.
 */
import { randomBytes } from "node:crypto";
import { mkdir, rename, unlink, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import * as vega from "vega";
import * as vl from "vega-lite";
import type { Config, TopLevelSpec } from "vega-lite";
import type { Interval95, TaskMeasurement, TaskParams } from "../core/calibration.ts";
import { spread, type Spread } from "../core/fairness.ts";
import { describePolicy } from "../core/fit.ts";
import type { AlphaGammaPoint, MitigationResult, ReportData } from "./report-data.ts";

// ───────────────────────────── formatting ─────────────────────────────

const isNum = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x);
const DASH = "—";

/** Fixed decimals; "—" for null / NaN / ±∞. */
export const fixed = (x: number | null | undefined, d: number): string => (isNum(x) ? x.toFixed(d) : DASH);
const fAlpha = (x: number | null | undefined) => fixed(x, 3);
const fNats = (x: number | null | undefined) => fixed(x, 3);
const fS = (x: number | null | undefined) => (isNum(x) ? `${x.toFixed(2)}×` : DASH);
const fTemp = (x: number | null | undefined) => (isNum(x) ? String(Number(x.toFixed(3))) : DASH);
const fMs = (x: number | null | undefined) => (isNum(x) ? (Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(2)) : DASH);
const fSci = (x: number | null | undefined) => (isNum(x) ? (x !== 0 && Math.abs(x) < 1e-3 ? x.toExponential(2) : x.toFixed(4)) : DASH);
const fCI = (iv: Interval95 | null | undefined, f: (x: number) => string) =>
  iv ? `${f(iv.estimate)} [${isNum(iv.lo) ? f(iv.lo) : DASH}, ${isNum(iv.hi) ? f(iv.hi) : DASH}]` : DASH;
const signedPct = (x: number) => `${x < 0 ? "−" : "+"}${Math.abs(x * 100).toFixed(0)}%`;
const fTau = (x: number | null) => (x === null ? "= T" : fTemp(x));
const fDrafter = (d: string | null) => d ?? "none (verifier only)";

export function escapeHtml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

/**
 * Markdown text (table cells included): backslash-escape what GFM would read as markup or as a
 * cell boundary (an underscore only where it could start or end emphasis), no line breaks.
 */
export function escapeMd(s: string): string {
  return s
    .replace(/[\\|<>*`]|\[(?=[^\]]*\][(:[])/g, (c) => `\\${c}`)
    .replace(/(?<![\p{L}\p{N}])_|_(?![\p{L}\p{N}])/gu, "\\_")
    .replace(/\r?\n/g, " ");
}

/** Rounded for the compact summary; null where not a finite number. */
const r6 = (x: number | null | undefined): number | null => (isNum(x) ? Number(x.toPrecision(6)) : null);

const sameT = (a: number, b: number) => Math.abs(a - b) < 1e-9;

// ───────────────────────────── tables ─────────────────────────────

interface Col<R> {
  head: string;
  cell: (r: R) => string;
  num?: boolean;
  /** Extra CSS class for a cell in HTML. */
  cls?: (r: R) => string | undefined;
}

function htmlTable<R>(rows: readonly R[], cols: readonly Col<R>[], opts: { caption?: string; rowClass?: (r: R) => string | undefined } = {}): string {
  const head = cols.map((c) => `<th${c.num ? ' class="num"' : ""}>${escapeHtml(c.head)}</th>`).join("");
  const body = rows
    .map((r) => {
      const rc = opts.rowClass?.(r);
      const cells = cols
        .map((c) => {
          const cls = [c.num ? "num" : undefined, c.cls?.(r)].filter(Boolean).join(" ");
          return `<td${cls ? ` class="${cls}"` : ""}>${escapeHtml(c.cell(r))}</td>`;
        })
        .join("");
      return `<tr${rc ? ` class="${rc}"` : ""}>${cells}</tr>`;
    })
    .join("\n");
  const caption = opts.caption ? `<caption>${escapeHtml(opts.caption)}</caption>` : "";
  return `<div class="table-wrap"><table>${caption}<thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table></div>`;
}

function mdTable<R>(rows: readonly R[], cols: readonly Col<R>[]): string {
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [
    line(cols.map((c) => escapeMd(c.head))),
    line(cols.map((c) => (c.num ? "---:" : ":---"))),
    ...rows.map((r) => line(cols.map((c) => escapeMd(c.cell(r))))),
  ].join("\n");
}

/** The run's prediction check (findings.prediction), one row per task; none for older runs. */
interface PredictionRow {
  task: string;
  maxRelError: number | null;
  /** Absent in runs before cost probes. */
  maxRelErrorUndrifted?: number | null;
  fitTimeMaxRelError: number;
  fitTimeCisOverlap: boolean;
}
type PredictionFindings = { perTask?: PredictionRow[]; costDrift?: Record<string, { factor: number; samples: number }> };
function predictionRows(data: ReportData): PredictionRow[] {
  const p = (data.findings as { prediction?: PredictionFindings } | undefined)?.prediction;
  return Array.isArray(p?.perTask) ? p.perTask : [];
}
/** The drift factors the cost probes measured, in words; empty for runs without probes. */
function driftNote(data: ReportData): string {
  const d = (data.findings as { prediction?: PredictionFindings } | undefined)?.prediction?.costDrift;
  if (!d || !Object.keys(d).length) return "";
  const each = Object.entries(d).map(([T, x]) => `T = ${T}: ×${fixed(x.factor, 3)} (${x.samples} probes)`);
  return ` Speculative step costs over the whole validation phase relative to the cost model timed before the fit: ${each.join("; ")}.`;
}
const fPct = (x: number | null) => (isNum(x) ? `${(x * 100).toFixed(1)}%` : DASH);
const predictionCols: Col<PredictionRow>[] = [
  { head: "task", cell: (r) => r.task },
  { head: "worst |pred − meas| / meas, validated prompts", cell: (r) => fPct(r.maxRelError), num: true, cls: (r) => (r.maxRelError !== null && r.maxRelError > 0.1 ? "bad" : undefined) },
  { head: "same, costs as timed before the fit", cell: (r) => fPct(r.maxRelErrorUndrifted ?? null), num: true },
  { head: "same, fit-time prediction (calibration prompts)", cell: (r) => fPct(r.fitTimeMaxRelError), num: true },
  { head: "fit-time CI overlaps measured CI", cell: (r) => (r.fitTimeCisOverlap ? "yes" : "no"), cls: (r) => (r.fitTimeCisOverlap ? undefined : "bad") },
];
const PREDICTION_NOTE =
  "Per task, the worst error over its validated (T, pool) cells. Validated prompts: the model (this run's loop costs rescaled by the drift that paired cost probes measured around each validation unit — the units within 5 of it in the order they ran —, tokens per step teacher-forced along the very texts the timed runs produced) against their timed speed-up — the model's own error. Costs as timed before the fit: the same without the drift correction. Fit-time: the prediction the fit used (calibration prompts) against the held-out measurement, which adds the sampling error between the two prompt sets.";

/** The loop cost model (what predictions use), one row per (drafter, target temperature). */
interface LoopCostRow {
  drafter: string;
  T: string;
  baseMs: number;
  /** What a step that ends in a rejection costs more; null in older cost models. */
  rejectionMs: number | null;
  /** γ → [smoothed step ms (used), measured paired-median step ms] */
  byGamma: [string, number, number][];
}
function loopCostRows(c: ReportData["costs"]): LoopCostRow[] {
  const l = c.loop;
  if (!l) return [];
  return l.drafters.flatMap((d) =>
    Object.keys(l.verifier_step_ms).map((T) => ({
      drafter: d.id,
      T,
      baseMs: l.verifier_step_ms[T]!,
      rejectionMs: l.rejection_ms?.[T] ?? null,
      byGamma: Object.entries(d.step_ms[T] ?? {}).map(([g, ms]) => [g, ms, d.step_ms_measured[T]?.[g] ?? Number.NaN] as [string, number, number]),
    })),
  );
}
function loopCostCols(rows: readonly LoopCostRow[]): Col<LoopCostRow>[] {
  const gammas = [...new Set(rows.flatMap((r) => r.byGamma.map(([g]) => g)))];
  return [
    { head: "drafter", cell: (r) => r.drafter },
    { head: "T", cell: (r) => r.T, num: true },
    { head: "verifier-only ms/step", cell: (r) => fixed(r.baseMs, 3), num: true },
    ...gammas.map((g) => ({
      head: `γ = ${g}: ms/step (÷ verifier-only)`,
      cell: (r: LoopCostRow) => {
        const x = r.byGamma.find(([k]) => k === g);
        return x ? `${fixed(x[1], 3)} (${fixed(x[1] / r.baseMs, 3)}×; measured ${fixed(x[2] / r.baseMs, 3)}×)` : DASH;
      },
      num: true,
    })),
    {
      head: "a step that rejects: + ms (÷ verifier-only)",
      cell: (r: LoopCostRow) => (isNum(r.rejectionMs) ? `${fixed(r.rejectionMs, 3)} (${fixed(r.rejectionMs / r.baseMs, 3)}×)` : DASH),
      num: true,
    },
  ];
}
const LOOP_COST_NOTE =
  "What predictions use: one decoding step at each γ, timed inside real generations, each speculative run paired with a verifier-only run next to it on the same prompt (rounds cycle through the tasks' calibration prompts). A step whose drafts are all accepted costs the γ column (the measured paired medians, each moved to no rejection along the slope, made non-decreasing in γ); a step that ends in a rejection costs the last column more (one Theil–Sen slope per T over every cell: paired ratio against the run's fraction of rejecting steps).";

// ───────────────────────────── derived data ─────────────────────────────

const MITIGATION_ORDER = ["none", "s-cdf", "data-balancing", "temperature-tuning"];

interface Derived {
  taskOrder: string[];
  byTask: <T extends { task: string }>(xs: readonly T[]) => T[];
  baseDrafter: string;
  mitigations: MitigationResult[];
  baseMitigation: MitigationResult | undefined;
  /** drafter → (task → the measurement shown in the main table). */
  mainMeasurements: { drafter: string; mitigation: string; rows: TaskMeasurement[] }[];
  curves: (AlphaGammaPoint & { proposalNote: string })[];
  basePerTask: Record<string, { alpha: number | null; speedup: number | null; gamma: number | null; proposalTemperature: number | null; crossEntropy: number | null }>;
  baseSpread: Spread | null;
  policyOutcomes: PolicyOutcome[];
}

interface PolicyOutcome {
  id: string;
  description: string;
  maxPools: number;
  poolsUsed: number;
  tasks: number;
  validated: number;
  worst: number | null;
  worstTask: string | null;
  mean: number | null;
  best: number | null;
  jain: number | null;
}

/** The speed-up a task actually gets: measured where validated, else predicted. */
const effectiveSpeedup = (p: TaskParams) => p.measuredSpeedup?.estimate ?? p.predictedSpeedup.estimate;

function derive(data: ReportData): Derived {
  const ref = data.referenceTemperature;
  const seen = new Set(data.tasks);
  const extra = new Set<string>();
  for (const t of [...data.measurements, ...data.params, ...data.curves]) if (!seen.has(t.task)) extra.add(t.task);
  for (const m of data.mitigations) for (const t of Object.keys(m.perTask)) if (!seen.has(t)) extra.add(t);
  const taskOrder = [...data.tasks, ...[...extra].sort()];
  const rank = new Map(taskOrder.map((t, i) => [t, i]));
  const byTask = <T extends { task: string }>(xs: readonly T[]) => [...xs].sort((a, b) => rank.get(a.task)! - rank.get(b.task)!);

  const mitigations = [...data.mitigations].sort((a, b) => MITIGATION_ORDER.indexOf(a.name) - MITIGATION_ORDER.indexOf(b.name));
  const baseMitigation = mitigations.find((m) => m.name === "none");
  const baseDrafter = baseMitigation?.drafter ?? data.drafters[0] ?? data.measurements[0]?.drafter ?? "";

  // Main measurement table: per drafter and task, the reference temperature with τ = T (else the
  // τ nearest T; else the target temperature nearest the reference).
  const drafterOrder = [...data.drafters];
  for (const m of data.measurements) if (!drafterOrder.includes(m.drafter)) drafterOrder.push(m.drafter);
  const mainMeasurements = drafterOrder
    .map((drafter) => {
      const mine = data.measurements.filter((m) => m.drafter === drafter);
      const rows: TaskMeasurement[] = [];
      for (const task of taskOrder) {
        const forTask = mine.filter((m) => m.task === task);
        if (forTask.length === 0) continue;
        const nearestT = forTask.reduce((best, m) => (Math.abs(m.targetTemperature - ref) < Math.abs(best - ref) ? m.targetTemperature : best), forTask[0]!.targetTemperature);
        const atT = forTask.filter((m) => sameT(m.targetTemperature, nearestT));
        const pick = atT.reduce((best, m) => {
          const d = Math.abs(m.proposalTemperature - m.targetTemperature);
          const db = Math.abs(best.proposalTemperature - best.targetTemperature);
          return d < db - 1e-12 || (Math.abs(d - db) <= 1e-12 && m.proposalTemperature < best.proposalTemperature) ? m : best;
        });
        rows.push(pick);
      }
      return { drafter, mitigation: mine[0]?.mitigation ?? "none", rows };
    })
    .filter((g) => g.rows.length > 0);

  // α–γ curves: base drafter, reference temperature; per (task, γ) the point at τ = T when there
  // is one, else the best proposal temperature.
  const curveMap = new Map<string, AlphaGammaPoint>();
  for (const p of data.curves) {
    if (p.drafter !== baseDrafter || !sameT(p.targetTemperature, ref)) continue;
    const key = `${p.task}\u0000${p.gamma}`;
    const cur = curveMap.get(key);
    const pIsRef = sameT(p.proposalTemperature, ref);
    if (!cur) curveMap.set(key, p);
    else {
      const curIsRef = sameT(cur.proposalTemperature, ref);
      if ((pIsRef && !curIsRef) || (pIsRef === curIsRef && p.predictedSpeedup > cur.predictedSpeedup)) curveMap.set(key, p);
    }
  }
  const curves = byTask([...curveMap.values()])
    .sort((a, b) => rank.get(a.task)! - rank.get(b.task)! || a.gamma - b.gamma)
    .map((p) => ({ ...p, proposalNote: sameT(p.proposalTemperature, ref) ? "τ = T" : `τ = ${fTemp(p.proposalTemperature)}` }));

  // Base drafter per task: from the "none" mitigation, else from measurements and curves.
  const basePerTask: Derived["basePerTask"] = {};
  for (const task of taskOrder) {
    const b = baseMitigation?.perTask[task];
    if (b) {
      basePerTask[task] = { alpha: b.alpha, speedup: b.speedup, gamma: b.gamma, proposalTemperature: b.proposalTemperature, crossEntropy: b.crossEntropy };
      continue;
    }
    const m = mainMeasurements.find((g) => g.drafter === baseDrafter)?.rows.find((r) => r.task === task);
    const c = curves.filter((p) => p.task === task).reduce<AlphaGammaPoint | null>((best, p) => (!best || p.predictedSpeedup > best.predictedSpeedup ? p : best), null);
    if (m || c)
      basePerTask[task] = {
        alpha: m?.alpha.estimate ?? null,
        speedup: c?.predictedSpeedup ?? null,
        gamma: c?.gamma ?? null,
        proposalTemperature: c?.proposalTemperature ?? m?.proposalTemperature ?? null,
        crossEntropy: m?.crossEntropy.estimate ?? null,
      };
  }
  const baseSpeedups = Object.values(basePerTask).map((b) => b.speedup).filter(isNum);
  const baseSpread = baseMitigation?.speedup ?? (baseSpeedups.length ? spread(baseSpeedups) : null);

  // Per policy: the outcome at the reference temperature (all temperatures if none there).
  const policyIds = [...data.policies.map((p) => p.id)];
  for (const p of data.params) if (!policyIds.includes(p.policyId)) policyIds.push(p.policyId);
  const policyOutcomes = policyIds.map((id): PolicyOutcome => {
    const rec = data.policies.find((p) => p.id === id);
    const all = data.params.filter((p) => p.policyId === id);
    const atRef = all.filter((p) => sameT(p.targetTemperature, ref));
    const ps = atRef.length ? atRef : all;
    const xs = ps.map(effectiveSpeedup).filter(isNum);
    const worstP = ps.reduce<TaskParams | null>((w, p) => (isNum(effectiveSpeedup(p)) && (!w || effectiveSpeedup(p) < effectiveSpeedup(w)) ? p : w), null);
    const sp = xs.length ? spread(xs) : null;
    return {
      id,
      description: rec ? describePolicy(rec.policy) : "(not in policies)",
      maxPools: rec?.maxPools ?? NaN,
      poolsUsed: new Set(all.map((p) => p.poolId)).size,
      tasks: new Set(ps.map((p) => p.task)).size,
      validated: ps.filter((p) => p.measuredSpeedup !== null).length,
      worst: sp?.min ?? null,
      worstTask: worstP?.task ?? null,
      mean: sp?.mean ?? null,
      best: sp?.max ?? null,
      jain: sp?.jain ?? null,
    };
  });

  return { taskOrder, byTask, baseDrafter, mitigations, baseMitigation, mainMeasurements, curves, basePerTask, baseSpread, policyOutcomes };
}

// ───────────────────────────── charts ─────────────────────────────

const CHART_CONFIG: Config = {
  font: "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif",
  background: "white",
  view: { stroke: null },
  axis: { labelFontSize: 11, titleFontSize: 12, titleFontWeight: 500, gridColor: "#e8e8ee", domainColor: "#888", tickColor: "#888" },
  legend: { labelFontSize: 11, titleFontSize: 12, titleFontWeight: 500, labelLimit: 220 },
  title: { fontSize: 13, fontWeight: 600, anchor: "start" },
  range: { category: ["#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2", "#eeca3b", "#ff9da6", "#9d755d", "#bab0ac", "#1f3b73", "#8c6d31"] },
} as const;

async function toSvg(liteSpec: TopLevelSpec): Promise<string> {
  const spec = vl.compile({ ...liteSpec, config: CHART_CONFIG }).spec;
  const view = new vega.View(vega.parse(spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

const groupedWidth = (groups: number, perGroup: number) => Math.min(960, Math.max(320, groups * (perGroup * 16 + 14)));
/** The dashed 1× rule layered over speed-up charts. */
const oneRule = { mark: { type: "rule" as const, color: "#444", strokeDash: [4, 3] }, encoding: { y: { datum: 1 } } };

interface Chart {
  title: string;
  caption: string;
  svg: string | null;
  /** Shown instead of the chart when there is nothing to draw. */
  empty: string;
}

async function buildCharts(data: ReportData, d: Derived): Promise<Chart[]> {
  const ref = fTemp(data.referenceTemperature);
  const mitNames = d.mitigations.map((m) => m.name);
  const perTaskRows = d.mitigations.flatMap((m) =>
    d.taskOrder.filter((t) => m.perTask[t]).map((task) => ({ task, mitigation: m.name, alpha: m.perTask[task]!.alpha, speedup: m.perTask[task]!.speedup, gamma: m.perTask[task]!.gamma })),
  );
  const tasksWithRows = d.taskOrder.filter((t) => perTaskRows.some((r) => r.task === t));
  const width = groupedWidth(tasksWithRows.length, Math.max(1, mitNames.length));
  const xTask = { field: "task", type: "nominal", sort: tasksWithRows, title: "task", axis: { labelAngle: tasksWithRows.length > 8 ? -35 : 0 } } as const;
  const colorMit = { field: "mitigation", type: "nominal", sort: mitNames, scale: { domain: mitNames }, title: "mitigation" } as const;

  const charts: Chart[] = [];

  // 1. α per task before / after mitigation.
  charts.push({
    title: "Acceptance rate α per task, before and after mitigation",
    caption: `α at the reference target temperature T = ${ref}, for each mitigation's drafter at that task's best γ and proposal temperature.`,
    empty: "No mitigation results in this run.",
    svg: perTaskRows.length
      ? await toSvg({
          width,
          height: 240,
          data: { values: perTaskRows },
          mark: { type: "bar" },
          encoding: {
            x: xTask,
            xOffset: { field: "mitigation", sort: mitNames },
            y: { field: "alpha", type: "quantitative", title: "α (acceptance rate)", scale: { domain: [0, 1] } },
            color: colorMit,
          },
        })
      : null,
  });

  // 2. Best predicted speed-up per task before / after.
  charts.push({
    title: "Best predicted speed-up S per task, before and after mitigation",
    caption: `Predicted speed-up over verifier-only decoding at T = ${ref}, at each task's best γ; the dashed rule is 1× (no gain).`,
    empty: "No mitigation results in this run.",
    svg: perTaskRows.length
      ? await toSvg({
          width,
          height: 240,
          data: { values: perTaskRows },
          layer: [
            {
              mark: { type: "bar" },
              encoding: {
                x: xTask,
                xOffset: { field: "mitigation", sort: mitNames },
                y: { field: "speedup", type: "quantitative", title: "predicted speed-up S (×)" },
                color: colorMit,
              },
            },
            oneRule,
          ],
        })
      : null,
  });

  // 3. α–γ curves.
  const curveTasks = d.taskOrder.filter((t) => d.curves.some((p) => p.task === t));
  const nonRefTau = d.curves.some((p) => !sameT(p.proposalTemperature, data.referenceTemperature));
  charts.push({
    title: "Predicted speed-up vs γ per task",
    caption:
      `Drafter ${d.baseDrafter}, target temperature T = ${ref}, proposal temperature τ = T` +
      (nonRefTau ? " (the best τ where τ = T was not measured)" : "") +
      ". γ = 0 is verifier-only decoding; the dashed rule is 1×.",
    empty: "No α–γ curve points for the base drafter at the reference temperature.",
    svg: d.curves.length
      ? await toSvg({
          width: 560,
          height: 280,
          data: { values: d.curves.map((p) => ({ task: p.task, gamma: p.gamma, speedup: p.predictedSpeedup, alpha: p.alpha })) },
          layer: [
            {
              mark: { type: "line", point: true, strokeWidth: 2 },
              encoding: {
                x: { field: "gamma", type: "quantitative", title: "γ (draft length)", axis: { tickMinStep: 1, format: "d" } },
                y: { field: "speedup", type: "quantitative", title: "predicted speed-up S (×)", scale: { zero: false } },
                color: { field: "task", type: "nominal", sort: curveTasks, scale: { domain: curveTasks }, title: "task" },
              },
            },
            oneRule,
          ],
        })
      : null,
  });

  // 4. Predicted vs measured.
  const validated = d.byTask(data.params.filter((p) => p.measuredSpeedup !== null && isNum(p.measuredSpeedup.estimate) && isNum(p.predictedSpeedup.estimate)));
  const scatter = validated.map((p) => ({
    task: p.task,
    policy: p.policyId,
    predicted: p.predictedSpeedup.estimate,
    predictedLo: isNum(p.predictedSpeedup.lo) ? p.predictedSpeedup.lo : p.predictedSpeedup.estimate,
    predictedHi: isNum(p.predictedSpeedup.hi) ? p.predictedSpeedup.hi : p.predictedSpeedup.estimate,
    measured: p.measuredSpeedup!.estimate,
    measuredLo: isNum(p.measuredSpeedup!.lo) ? p.measuredSpeedup!.lo : p.measuredSpeedup!.estimate,
    measuredHi: isNum(p.measuredSpeedup!.hi) ? p.measuredSpeedup!.hi : p.measuredSpeedup!.estimate,
  }));
  const ext = scatter.flatMap((s) => [s.predictedLo, s.predictedHi, s.measuredLo, s.measuredHi]);
  const lo0 = Math.min(1, ...ext);
  const hi0 = Math.max(1, ...ext);
  const pad = (hi0 - lo0) * 0.06 || 0.1;
  const domain = [Math.max(0, lo0 - pad), hi0 + pad];
  const scatterTasks = d.taskOrder.filter((t) => scatter.some((s) => s.task === t));
  const scatterPolicies = [...new Set(scatter.map((s) => s.policy))];
  const sx = { type: "quantitative", scale: { domain, zero: false, nice: false } } as const;
  charts.push({
    title: "Predicted vs measured speed-up",
    caption: "Each point is one (policy, task, target temperature) validated by a timed run against verifier-only decoding; bars are 95% CIs; the dashed line is y = x.",
    empty: "No fitted parameters were validated by a timed run.",
    svg: scatter.length
      ? await toSvg({
          width: 400,
          height: 400,
          layer: [
            {
              data: { values: [{ v: domain[0] }, { v: domain[1] }] },
              mark: { type: "line", color: "#999", strokeDash: [5, 4] },
              encoding: { x: { field: "v", ...sx, title: "predicted speed-up (×)" }, y: { field: "v", ...sx, title: "measured speed-up (×)" } },
            },
            {
              data: { values: scatter },
              layer: [
                { mark: { type: "rule", opacity: 0.6 }, encoding: { x: { field: "predicted", ...sx }, y: { field: "measuredLo", ...sx }, y2: { field: "measuredHi" }, color: { field: "task", type: "nominal", sort: scatterTasks, scale: { domain: scatterTasks }, title: "task" } } },
                { mark: { type: "rule", opacity: 0.6 }, encoding: { y: { field: "measured", ...sx }, x: { field: "predictedLo", ...sx }, x2: { field: "predictedHi" }, color: { field: "task", type: "nominal", sort: scatterTasks, scale: { domain: scatterTasks }, title: "task" } } },
                {
                  mark: { type: "point", filled: true, size: 70 },
                  encoding: {
                    x: { field: "predicted", ...sx },
                    y: { field: "measured", ...sx },
                    color: { field: "task", type: "nominal", sort: scatterTasks, scale: { domain: scatterTasks }, title: "task" },
                    shape: { field: "policy", type: "nominal", sort: scatterPolicies, title: "policy" },
                  },
                },
              ],
            },
          ],
        })
      : null,
  });

  // 5. U and speed-up spread per mitigation.
  const uRows = d.mitigations.map((m) => ({ mitigation: m.name, U: m.unfairnessU }));
  const spreadRows = d.mitigations.flatMap((m) => [
    { mitigation: m.name, stat: "min", value: m.speedup.min },
    { mitigation: m.name, stat: "mean", value: m.speedup.mean },
    { mitigation: m.name, stat: "max", value: m.speedup.max },
  ]);
  const stats = ["min", "mean", "max"];
  charts.push({
    title: "Unfairness U and speed-up spread per mitigation",
    caption: "Left: U, the variance over tasks of the divergence D_T (lower is fairer). Right: minimum, mean and maximum over tasks of the best predicted speed-up; the dashed rule is 1×.",
    empty: "No mitigation results in this run.",
    svg: d.mitigations.length
      ? await toSvg({
          hconcat: [
            {
              width: Math.max(160, mitNames.length * 56),
              height: 220,
              data: { values: uRows },
              mark: { type: "bar" },
              encoding: {
                x: { field: "mitigation", type: "nominal", sort: mitNames, title: "mitigation", axis: { labelAngle: -25 } },
                y: { field: "U", type: "quantitative", title: "U = Var_T(D_T) (nats²)" },
                color: { ...colorMit, legend: null },
              },
            },
            {
              width: Math.max(240, mitNames.length * 3 * 18 + mitNames.length * 14),
              height: 220,
              data: { values: spreadRows },
              layer: [
                {
                  mark: { type: "bar" },
                  encoding: {
                    x: { field: "mitigation", type: "nominal", sort: mitNames, title: "mitigation", axis: { labelAngle: -25 } },
                    xOffset: { field: "stat", sort: stats },
                    y: { field: "value", type: "quantitative", title: "speed-up over tasks (×)" },
                    color: { field: "stat", type: "nominal", sort: stats, scale: { domain: stats, range: ["#e45756", "#4c78a8", "#54a24b"] }, title: "over tasks" },
                  },
                },
                oneRule,
              ],
            },
          ],
          resolve: { scale: { color: "independent" } },
        })
      : null,
  });

  return charts;
}

// ───────────────────────────── table definitions (shared by HTML and markdown) ─────────────────────────────

const measurementCols: Col<TaskMeasurement>[] = [
  { head: "task", cell: (m) => m.task },
  { head: "T", cell: (m) => fTemp(m.targetTemperature), num: true },
  { head: "τ", cell: (m) => fTemp(m.proposalTemperature), num: true },
  { head: "α [95% CI]", cell: (m) => fCI(m.alpha, fAlpha), num: true },
  { head: "D_T nats [95% CI]", cell: (m) => fCI(m.crossEntropy, fNats), num: true },
  { head: "K_T nats [95% CI]", cell: (m) => fCI(m.kl, fNats), num: true },
  { head: "mean TV", cell: (m) => fixed(m.meanTv, 3), num: true },
  { head: "Pinsker bound", cell: (m) => fAlpha(m.pinskerBound), num: true },
  { head: "α ≥ bound", cell: (m) => (m.boundHolds ? "yes" : "NO"), cls: (m) => (m.boundHolds ? "ok" : "bad") },
  { head: "prompts", cell: (m) => String(m.prompts), num: true },
  { head: "positions", cell: (m) => String(m.positions), num: true },
];

const allMeasurementCols: Col<TaskMeasurement>[] = [{ head: "drafter", cell: (m) => m.drafter }, { head: "mitigation", cell: (m) => m.mitigation }, ...measurementCols];

function paramCols(pools: ReportData["pools"]): Col<TaskParams>[] {
  return [
    { head: "task", cell: (p) => p.task },
    { head: "T", cell: (p) => fTemp(p.targetTemperature), num: true },
    { head: "pool", cell: (p) => p.poolId },
    { head: "kind", cell: (p) => pools.find((q) => q.id === p.poolId)?.kind ?? DASH },
    { head: "drafter", cell: (p) => fDrafter(p.drafter) },
    { head: "γ", cell: (p) => String(p.gamma), num: true },
    { head: "τ", cell: (p) => fTau(p.proposalTemperature), num: true },
    { head: "predicted S [95% CI]", cell: (p) => fCI(p.predictedSpeedup, (x) => fS(x)), num: true },
    { head: "measured S [95% CI]", cell: (p) => (p.measuredSpeedup ? fCI(p.measuredSpeedup, (x) => fS(x)) : "not validated"), num: true },
    { head: "ms/char", cell: (p) => fMs(p.msPerChar), num: true },
  ];
}

const policyOutcomeCols: Col<PolicyOutcome>[] = [
  { head: "policy", cell: (o) => o.id },
  { head: "objective", cell: (o) => o.description },
  { head: "max pools", cell: (o) => (isNum(o.maxPools) ? String(o.maxPools) : DASH), num: true },
  { head: "pools used", cell: (o) => String(o.poolsUsed), num: true },
  { head: "validated", cell: (o) => `${o.validated}/${o.tasks}`, num: true },
  { head: "worst S", cell: (o) => fS(o.worst), num: true },
  { head: "worst task", cell: (o) => o.worstTask ?? DASH },
  { head: "mean S", cell: (o) => fS(o.mean), num: true },
  { head: "best S", cell: (o) => fS(o.best), num: true },
  { head: "Jain", cell: (o) => fixed(o.jain, 3), num: true },
];

function mitigationCols(base: MitigationResult | undefined): Col<MitigationResult>[] {
  return [
    { head: "mitigation", cell: (m) => m.name },
    { head: "drafter", cell: (m) => m.drafter },
    { head: "U (nats²)", cell: (m) => fSci(m.unfairnessU), num: true },
    {
      head: "U vs none",
      cell: (m) => (base && m !== base && isNum(base.unfairnessU) && base.unfairnessU > 0 && isNum(m.unfairnessU) ? signedPct(m.unfairnessU / base.unfairnessU - 1) : DASH),
      num: true,
    },
    { head: "mean S", cell: (m) => fS(m.speedup.mean), num: true },
    { head: "min S", cell: (m) => fS(m.speedup.min), num: true },
    { head: "max S", cell: (m) => fS(m.speedup.max), num: true },
    { head: "worst/best", cell: (m) => fixed(m.speedup.worstToBest, 3), num: true },
    { head: "Jain", cell: (m) => fixed(m.speedup.jain, 3), num: true },
  ];
}

interface PoolRow {
  id: string;
  kind: string;
  drafter: string | null;
  gamma: number;
  proposalTemperature: number | null;
  urls: string[];
  usedBy: string;
}
const poolCols: Col<PoolRow>[] = [
  { head: "pool", cell: (p) => p.id },
  { head: "kind", cell: (p) => p.kind },
  { head: "drafter", cell: (p) => fDrafter(p.drafter) },
  { head: "γ", cell: (p) => String(p.gamma), num: true },
  { head: "τ", cell: (p) => fTau(p.proposalTemperature), num: true },
  { head: "used by (policy: tasks)", cell: (p) => p.usedBy || DASH },
  { head: "origins", cell: (p) => (p.urls.length ? p.urls.join(", ") : DASH) },
];

// ───────────────────────────── HTML ─────────────────────────────

const CSS = `
:root { --fg:#1d1d24; --muted:#5f6170; --line:#e3e4ea; --bg:#fff; --panel:#f7f7fa; --accent:#4c78a8; --bad:#b3261e; --ok:#1e7d32; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg); font:14px/1.5 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif; }
main { max-width:1160px; margin:0 auto; padding:28px 24px 64px; }
h1 { font-size:26px; margin:0 0 4px; letter-spacing:-0.01em; }
h2 { font-size:19px; margin:40px 0 10px; padding-bottom:6px; border-bottom:1px solid var(--line); }
h3 { font-size:15px; margin:22px 0 8px; }
p.lead, .muted { color:var(--muted); }
code { font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; background:var(--panel); padding:1px 4px; border-radius:4px; }
dl.meta { display:grid; grid-template-columns:max-content 1fr; gap:2px 16px; margin:14px 0 0; font-size:13px; }
dl.meta dt { color:var(--muted); } dl.meta dd { margin:0; word-break:break-all; }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(180px,1fr)); gap:12px; margin:18px 0 0; }
.card { background:var(--panel); border:1px solid var(--line); border-radius:8px; padding:10px 14px; }
.card .k { color:var(--muted); font-size:12px; } .card .v { font-size:20px; font-weight:600; font-variant-numeric:tabular-nums; }
figure { margin:18px 0 26px; padding:14px; border:1px solid var(--line); border-radius:8px; background:#fff; }
figure h3 { margin:0 0 8px; }
figure svg { max-width:100%; height:auto; display:block; }
figcaption { color:var(--muted); font-size:12.5px; margin-top:8px; }
.empty { color:var(--muted); font-style:italic; }
.table-wrap { overflow-x:auto; margin:8px 0 18px; }
table { border-collapse:collapse; font-size:13px; min-width:50%; }
caption { text-align:left; color:var(--muted); font-size:12.5px; padding:0 0 6px; }
th, td { padding:5px 10px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; white-space:nowrap; }
th { background:var(--panel); font-weight:600; border-bottom:2px solid var(--line); }
tbody tr:nth-child(even) td { background:#fbfbfd; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
td.ok { color:var(--ok); } td.bad, tr.bad td { color:var(--bad); font-weight:600; }
details { margin:8px 0 18px; } summary { cursor:pointer; color:var(--accent); }
ul.notes li { margin:4px 0; }
footer { margin-top:48px; color:var(--muted); font-size:12px; }
`;

function durationText(a: string, b: string): string | null {
  const t0 = Date.parse(a);
  const t1 = Date.parse(b);
  if (!isNum(t0) || !isNum(t1) || t1 < t0) return null;
  const s = Math.round((t1 - t0) / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

const hwValue = (v: unknown): string => (typeof v === "string" ? v : JSON.stringify(v) ?? String(v));

function poolRows(data: ReportData): PoolRow[] {
  return data.pools.map((p) => {
    const users = new Map<string, string[]>();
    for (const t of data.params) if (t.poolId === p.id) users.set(t.policyId, [...(users.get(t.policyId) ?? []), t.task]);
    const usedBy = [...users].map(([pol, ts]) => `${pol}: ${[...new Set(ts)].join(", ")}`).join("; ");
    return { ...p, usedBy };
  });
}

function html(data: ReportData, d: Derived, charts: Chart[]): string {
  const e = escapeHtml;
  const ref = fTemp(data.referenceTemperature);
  const dur = durationText(data.run.startedAt, data.run.finishedAt);
  const meta: [string, string][] = [
    ["run", data.run.id ?? "(not stored)"],
    ["config hash", data.run.configHash],
    ["started", data.run.startedAt],
    ["finished", data.run.finishedAt + (dur ? ` (${dur})` : "")],
    ["tasks", d.taskOrder.join(", ")],
    ["drafters", data.drafters.join(", ")],
    ["target temperatures", data.targetTemperatures.map(fTemp).join(", ") + ` (reference T = ${ref})`],
    ...Object.entries(data.run.hardware).map(([k, v]): [string, string] => [`hardware · ${k}`, hwValue(v)]),
  ];

  const after = d.mitigations.filter((m) => m.name !== "none" && isNum(m.unfairnessU));
  const bestAfter = after.reduce<MitigationResult | null>((b, m) => (!b || m.unfairnessU < b.unfairnessU ? m : b), null);
  const cards: [string, string][] = [
    ["U, base drafter", fSci(d.baseMitigation?.unfairnessU)],
    ...(bestAfter ? [[`U after ${bestAfter.name}`, fSci(bestAfter.unfairnessU)] as [string, string]] : []),
    ["base S, worst task", fS(d.baseSpread?.min)],
    ["base S, mean over tasks", fS(d.baseSpread?.mean)],
    ["base S, Jain's index", fixed(d.baseSpread?.jain, 3)],
    ["policies", String(d.policyOutcomes.length)],
  ];

  const out: string[] = [];
  out.push(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${e(`fairspec calibration report${data.run.id ? ` — ${data.run.id}` : ""}`)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
<h1>fairspec calibration report</h1>
<p class="lead">Per-task acceptance, divergence and speed-up of speculative decoding; the parameters fitted under each tenant policy; and what each mitigation does to the spread. The output distribution is always the verifier's: only speed differs between tasks.</p>
<dl class="meta">${meta.map(([k, v]) => `<dt>${e(k)}</dt><dd>${e(v)}</dd>`).join("")}</dl>
<div class="cards">${cards.map(([k, v]) => `<div class="card"><div class="k">${e(k)}</div><div class="v">${e(v)}</div></div>`).join("")}</div>`);

  out.push(`<h2>Charts</h2>`);
  for (const c of charts) {
    out.push(`<figure><h3>${e(c.title)}</h3>${c.svg ?? `<p class="empty">${e(c.empty)}</p>`}<figcaption>${e(c.caption)}</figcaption></figure>`);
  }

  out.push(`<h2>Policy outcomes</h2>
<p class="muted">Speed-up each task gets under each policy at T = ${e(ref)}: measured where the parameters were validated by a timed run, predicted otherwise. Mean is unweighted over tasks.</p>`);
  out.push(htmlTable(d.policyOutcomes, policyOutcomeCols));

  out.push(`<h2>Mitigation comparison</h2>
<p class="muted">U is the variance over tasks of D_T for the mitigation's drafter; S figures are the per-task best predicted speed-ups at T = ${e(ref)}. Worst/best is min S / max S (1 is perfectly even); Jain's index is 1 when every task gets the same speed-up.</p>`);
  out.push(htmlTable(d.mitigations, mitigationCols(d.baseMitigation)));
  if (d.mitigations.length) {
    for (const m of d.mitigations) if (m.description) out.push(`<p class="muted"><strong>${e(m.name)}</strong> (${e(m.drafter)}): ${e(m.description)}</p>`);
    const cols: Col<string>[] = [
      { head: "task", cell: (t) => t },
      ...d.mitigations.flatMap((m): Col<string>[] => [
        { head: `${m.name}: α`, cell: (t) => fAlpha(m.perTask[t]?.alpha), num: true },
        { head: `${m.name}: S`, cell: (t) => fS(m.perTask[t]?.speedup), num: true },
        { head: `${m.name}: γ, τ`, cell: (t) => (m.perTask[t] ? `${m.perTask[t]!.gamma}, ${fTemp(m.perTask[t]!.proposalTemperature)}` : DASH), num: true },
      ]),
    ];
    out.push(`<h3>Per task, per mitigation</h3>`);
    out.push(htmlTable(d.taskOrder.filter((t) => d.mitigations.some((m) => m.perTask[t])), cols));
  }

  out.push(`<h2>Per-task measurements</h2>
<p class="muted">Teacher-forced on held-out prompts. α: mean acceptance probability β at target temperature T and proposal temperature τ (τ = T where measured). D_T: mean cross-entropy H(p, q); K_T: mean KL(p‖q), both in nats on the raw distributions. Pinsker bound: 1 − √(K_T/2), which α must not fall below (Theorem 1). 95% CIs by bootstrap over prompts.</p>`);
  if (d.mainMeasurements.length === 0) out.push(`<p class="empty">No measurements.</p>`);
  for (const g of d.mainMeasurements) {
    out.push(`<h3>Drafter ${e(g.drafter)}${g.mitigation !== "none" ? ` <span class="muted">(mitigation: ${e(g.mitigation)})</span>` : ""}</h3>`);
    out.push(htmlTable(g.rows, measurementCols, { rowClass: (m) => (m.boundHolds ? undefined : "bad") }));
  }
  if (data.measurements.length > d.mainMeasurements.reduce((s, g) => s + g.rows.length, 0)) {
    const all = [...data.measurements].sort(
      (a, b) =>
        a.drafter.localeCompare(b.drafter) ||
        d.taskOrder.indexOf(a.task) - d.taskOrder.indexOf(b.task) ||
        a.targetTemperature - b.targetTemperature ||
        a.proposalTemperature - b.proposalTemperature,
    );
    out.push(`<details><summary>All ${all.length} measurements (every target and proposal temperature)</summary>${htmlTable(all, allMeasurementCols, { rowClass: (m) => (m.boundHolds ? undefined : "bad") })}</details>`);
  }

  out.push(`<h2>Fitted parameters per policy</h2>
<p class="muted">Task → origin pool (drafter, γ, proposal temperature τ; τ "= T" follows the request's temperature; γ = 0 is verifier-only). Predicted S from the analytic model with the measured cost curve; measured S from a timed validation run against verifier-only decoding.</p>`);
  const pc = paramCols(data.pools);
  for (const o of d.policyOutcomes) {
    const rec = data.policies.find((p) => p.id === o.id);
    const rows = d.byTask(data.params.filter((p) => p.policyId === o.id)).sort((a, b) => d.taskOrder.indexOf(a.task) - d.taskOrder.indexOf(b.task) || a.targetTemperature - b.targetTemperature);
    out.push(`<h3>Policy ${e(o.id)} <span class="muted">— ${e(o.description)}${rec ? `, at most ${rec.maxPools} pool${rec.maxPools === 1 ? "" : "s"}` : ""}</span></h3>`);
    out.push(rows.length ? htmlTable(rows, pc) : `<p class="empty">No fitted parameters for this policy.</p>`);
  }
  const pr = predictionRows(data);
  if (pr.length) out.push(`<h2>Prediction check</h2>\n<p class="muted">${e(PREDICTION_NOTE + driftNote(data))}</p>`, htmlTable(pr, predictionCols));

  out.push(`<h2>Pools</h2>`);
  out.push(data.pools.length ? htmlTable(poolRows(data), poolCols) : `<p class="empty">No pools.</p>`);

  const c = data.costs;
  out.push(`<h2>Cost model</h2>
<p class="muted">Measured on this hardware at a cached context of ${e(String(c.context))} tokens. c = drafter step / verifier step; the verify-cost curve is the verifier's cost for one call over n tokens relative to a one-token call (the analytic model uses it instead of a flat cost).</p>
<div class="cards"><div class="card"><div class="k">verifier step</div><div class="v">${e(fMs(c.verifier_step_ms))} ms</div></div></div>`);
  out.push(
    htmlTable(c.drafters, [
      { head: "drafter", cell: (x) => x.id },
      { head: "step ms", cell: (x) => fMs(x.step_ms), num: true },
      { head: "c", cell: (x) => fixed(x.c, 3), num: true },
    ]),
  );
  const lc = loopCostRows(c);
  if (lc.length) out.push(`<h3>In the decoding loop</h3>\n<p class="muted">${e(LOOP_COST_NOTE)}</p>`, htmlTable(lc, loopCostCols(lc)));
  out.push(
    htmlTable(
      c.verifyCost,
      [
        { head: "tokens verified (n)", cell: (x) => String(x[0]), num: true },
        { head: "relative cost", cell: (x) => fixed(x[1], 3), num: true },
        { head: "ms (≈)", cell: (x) => fMs(x[1] * c.verifier_step_ms), num: true },
      ],
      { caption: "Verify-cost curve" },
    ),
  );

  out.push(`<h2>Notes</h2>`);
  out.push(data.notes.length ? `<ul class="notes">${data.notes.map((n) => `<li>${e(n)}</li>`).join("")}</ul>` : `<p class="empty">None.</p>`);
  out.push(`<footer>fairspec · config ${e(data.run.configHash)}${data.run.id ? ` · run ${e(data.run.id)}` : ""} · finished ${e(data.run.finishedAt)}</footer>
</main>
</body>
</html>
`);
  return out.join("\n");
}

// ───────────────────────────── markdown ─────────────────────────────

function markdown(data: ReportData, d: Derived): string {
  const ref = fTemp(data.referenceTemperature);
  const m = escapeMd;
  const out: string[] = [];
  out.push(`# fairspec calibration report`);
  out.push(
    [
      `- run: ${m(data.run.id ?? "(not stored)")}`,
      `- config hash: \`${data.run.configHash.replace(/`/g, "")}\``,
      `- started ${m(data.run.startedAt)}, finished ${m(data.run.finishedAt)}`,
      `- tasks: ${m(d.taskOrder.join(", "))}`,
      `- drafters: ${m(data.drafters.join(", "))}`,
      `- reference target temperature T = ${ref}`,
    ].join("\n"),
  );

  out.push(`## Policy outcomes\n\nSpeed-up at T = ${ref}: measured where validated, else predicted.\n\n${mdTable(d.policyOutcomes, policyOutcomeCols)}`);
  out.push(`## Mitigation comparison\n\n${mdTable(d.mitigations, mitigationCols(d.baseMitigation))}`);

  out.push(`## Per-task measurements\n\nAt T = ${ref} (nearest measured), τ = T where measured. D_T, K_T in nats; 95% bootstrap CIs over prompts.`);
  for (const g of d.mainMeasurements) {
    out.push(`### Drafter ${m(g.drafter)}${g.mitigation !== "none" ? ` (mitigation: ${m(g.mitigation)})` : ""}\n\n${mdTable(g.rows, measurementCols)}`);
  }

  out.push(`## Fitted parameters per policy`);
  const pc = paramCols(data.pools);
  for (const o of d.policyOutcomes) {
    const rows = d.byTask(data.params.filter((p) => p.policyId === o.id)).sort((a, b) => d.taskOrder.indexOf(a.task) - d.taskOrder.indexOf(b.task) || a.targetTemperature - b.targetTemperature);
    out.push(`### Policy ${m(o.id)} — ${m(o.description)}\n\n${rows.length ? mdTable(rows, pc) : "_No fitted parameters._"}`);
  }

  const pr = predictionRows(data);
  if (pr.length) out.push(`## Prediction check\n\n${PREDICTION_NOTE}${driftNote(data)}\n\n${mdTable(pr, predictionCols)}`);
  const lc = loopCostRows(data.costs);
  if (lc.length) out.push(`## Cost model (in the decoding loop)\n\n${LOOP_COST_NOTE}\n\n${mdTable(lc, loopCostCols(lc))}`);

  if (data.notes.length) out.push(`## Notes\n\n${data.notes.map((n) => `- ${m(n)}`).join("\n")}`);
  return out.join("\n\n") + "\n";
}

// ───────────────────────────── summary ─────────────────────────────

const spreadJson = (s: Spread | null) =>
  s && { mean: r6(s.mean), variance: r6(s.variance), min: r6(s.min), max: r6(s.max), worstToBest: r6(s.worstToBest), jain: r6(s.jain) };

function summary(data: ReportData, d: Derived) {
  return {
    run: { id: data.run.id, configHash: data.run.configHash, startedAt: data.run.startedAt, finishedAt: data.run.finishedAt, hardware: data.run.hardware },
    referenceTemperature: data.referenceTemperature,
    tasks: d.taskOrder,
    baseDrafter: d.baseDrafter,
    policies: Object.fromEntries(
      d.policyOutcomes.map((o) => [o.id, { description: o.description, worstSpeedup: r6(o.worst), worstTask: o.worstTask, meanSpeedup: r6(o.mean), validated: o.validated, tasks: o.tasks }]),
    ),
    speedupBasis: "measured where validated, else predicted; at the reference temperature",
    unfairnessU: Object.fromEntries(d.mitigations.map((m) => [m.name, r6(m.unfairnessU)])),
    perTask: Object.fromEntries(
      Object.entries(d.basePerTask).map(([t, b]) => [t, { alpha: r6(b.alpha), speedup: r6(b.speedup), gamma: b.gamma, proposalTemperature: b.proposalTemperature }]),
    ),
    fairness: spreadJson(d.baseSpread),
    mitigationSpread: Object.fromEntries(d.mitigations.map((m) => [m.name, spreadJson(m.speedup)])),
    findings: data.findings ?? null,
    costs: data.costs,
  };
}

// ───────────────────────────── entry points ─────────────────────────────

export async function renderReport(data: ReportData): Promise<{ html: string; markdown: string; summary: object }> {
  const d = derive(data);
  const charts = await buildCharts(data, d);
  return { html: html(data, d, charts), markdown: markdown(data, d), summary: summary(data, d) };
}

async function writeAtomic(path: string, content: string): Promise<void> {
  const tmp = join(resolve(path, ".."), `.${path.split(/[\\/]/).pop()}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  try {
    await writeFile(tmp, content, "utf8");
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
}

/** Writes report.html, report.md and summary.json into `outDir` (each atomically); returns their paths. */
export async function writeReport(data: ReportData, outDir: string): Promise<string[]> {
  const r = await renderReport(data);
  const dir = resolve(outDir);
  await mkdir(dir, { recursive: true });
  const files: [string, string][] = [
    [join(dir, "report.html"), r.html],
    [join(dir, "report.md"), r.markdown],
    [join(dir, "summary.json"), JSON.stringify(r.summary, null, 2) + "\n"],
  ];
  for (const [p, c] of files) await writeAtomic(p, c);
  return files.map(([p]) => p);
}
