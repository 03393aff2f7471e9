import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Interval95, TaskMeasurement, TaskParams } from "../core/calibration.ts";
import { spread, unfairnessU } from "../core/fairness.ts";
import { renderReport, writeReport } from "../calibrator/report.ts";
import type { AlphaGammaPoint, MitigationResult, ReportData } from "../calibrator/report-data.ts";

const TASKS = ["en", "ja", "<x&y>"] as const;
const BASE = "drafter-base";
const BAL = "drafter-balanced";
const iv = (estimate: number, half: number): Interval95 => ({ estimate, lo: estimate - half, hi: estimate + half });

// Per task: D_T (nats) and α at τ = T for each drafter; the balanced drafter closes the gap.
const fit: Record<string, Record<string, { ce: number; kl: number; alpha: number }>> = {
  [BASE]: { en: { ce: 1.42, kl: 0.11, alpha: 0.81 }, ja: { ce: 2.31, kl: 0.52, alpha: 0.58 }, "<x&y>": { ce: 1.95, kl: 0.34, alpha: 0.67 } },
  [BAL]: { en: { ce: 1.49, kl: 0.14, alpha: 0.78 }, ja: { ce: 1.88, kl: 0.29, alpha: 0.7 }, "<x&y>": { ce: 1.72, kl: 0.22, alpha: 0.73 } },
};
const C = 0.08;
/** Flat-cost speed-up model, enough for a realistic fixture. */
const predicted = (a: number, g: number) => (g === 0 ? 1 : (1 - a ** (g + 1)) / (1 - a) / (g * C + 1));

function measurements(): TaskMeasurement[] {
  const out: TaskMeasurement[] = [];
  for (const drafter of [BASE, BAL])
    for (const task of TASKS)
      for (const T of [0.7, 1])
        for (const tau of [0.7, 1]) {
          const f = fit[drafter]![task]!;
          const alpha = f.alpha - (T === tau ? 0 : 0.03) - (T === 1 ? 0 : 0.02);
          const bound = Math.max(0, 1 - Math.sqrt(f.kl / 2));
          out.push({
            task,
            drafter,
            mitigation: drafter === BASE ? "none" : "data-balancing",
            targetTemperature: T,
            proposalTemperature: tau,
            alpha: iv(alpha, 0.012),
            crossEntropy: iv(f.ce, 0.04),
            kl: iv(f.kl, 0.02),
            meanTv: 1 - alpha,
            pinskerBound: bound,
            boundHolds: alpha >= bound,
            prompts: 24,
            positions: 3072,
          });
        }
  return out;
}

function curves(): AlphaGammaPoint[] {
  const out: AlphaGammaPoint[] = [];
  for (const drafter of [BASE, BAL])
    for (const task of TASKS)
      for (const tau of [0.7, 1])
        for (let gamma = 0; gamma <= 6; gamma++) {
          const alpha = fit[drafter]![task]!.alpha - (tau === 1 ? 0 : 0.03);
          out.push({ task, drafter, targetTemperature: 1, proposalTemperature: tau, gamma, alpha, predictedSpeedup: predicted(alpha, gamma) });
        }
  return out;
}

function mitigation(name: MitigationResult["name"], drafter: string, description: string): MitigationResult {
  const perTask: MitigationResult["perTask"] = {};
  for (const task of TASKS) {
    const f = fit[drafter]![task]!;
    let best = 0;
    for (let g = 1; g <= 6; g++) if (predicted(f.alpha, g) > predicted(f.alpha, best)) best = g;
    perTask[task] = { crossEntropy: f.ce, alpha: f.alpha, speedup: predicted(f.alpha, best), gamma: best, proposalTemperature: 1 };
  }
  const speedups = TASKS.map((t) => perTask[t]!.speedup);
  return { name, drafter, description, unfairnessU: unfairnessU(TASKS.map((t) => fit[drafter]![t]!.ce)), perTask, speedup: spread(speedups) };
}

function params(): TaskParams[] {
  const out: TaskParams[] = [];
  const assign: Record<string, Record<string, string>> = {
    throughput: { en: "p-base-4", ja: "p-base-2", "<x&y>": "p-base-4" },
    "floor:0.7": { en: "p-base-2", ja: "p-bal-3", "<x&y>": "p-bal-3" },
  };
  const pools: Record<string, { drafter: string; gamma: number }> = { "p-base-4": { drafter: BASE, gamma: 4 }, "p-base-2": { drafter: BASE, gamma: 2 }, "p-bal-3": { drafter: BAL, gamma: 3 } };
  for (const policyId of Object.keys(assign))
    for (const task of TASKS) {
      const poolId = assign[policyId]![task]!;
      const pool = pools[poolId]!;
      const s = predicted(fit[pool.drafter]![task]!.alpha, pool.gamma);
      const validated = task !== "ja" || policyId === "throughput";
      out.push({
        policyId,
        task,
        targetTemperature: 1,
        poolId,
        drafter: pool.drafter,
        gamma: pool.gamma,
        proposalTemperature: null,
        predictedSpeedup: iv(s, 0.06),
        measuredSpeedup: validated ? iv(s * 0.93, 0.08) : null,
        msPerChar: validated ? 4.1 / (s * 0.93) : null,
      });
    }
  return out;
}

const data: ReportData = {
  run: { id: "run-2024-06-01-a", configHash: "9f2c1e7a", startedAt: "2024-06-01T02:00:00.000Z", finishedAt: "2024-06-01T03:12:41.000Z", hardware: { cpu: "2 × x86_64", onnxruntime: "1.30.0", threads: 2 } },
  tasks: [...TASKS],
  drafters: [BASE, BAL],
  targetTemperatures: [0.7, 1],
  referenceTemperature: 1,
  costs: {
    context: 96,
    verifier_step_ms: 6.42,
    drafters: [
      { id: BASE, step_ms: 0.51, c: 0.0794 },
      { id: BAL, step_ms: 0.52, c: 0.081 },
    ],
    verifyCost: [
      [1, 1],
      [2, 1.08],
      [4, 1.21],
      [8, 1.55],
    ],
  },
  measurements: measurements(),
  curves: curves(),
  policies: [
    { id: "throughput", policy: { kind: "throughput" }, maxPools: 2 },
    { id: "floor:0.7", policy: { kind: "floor", ratio: 0.7 }, maxPools: 2 },
  ],
  pools: [
    { id: "p-base-4", kind: "fairspec", drafter: BASE, gamma: 4, proposalTemperature: null, urls: ["http://origin-a.internal:8080"] },
    { id: "p-base-2", kind: "fairspec", drafter: BASE, gamma: 2, proposalTemperature: null, urls: [] },
    { id: "p-bal-3", kind: "vllm", drafter: BAL, gamma: 3, proposalTemperature: null, urls: [] },
  ],
  params: params(),
  mitigations: [mitigation("none", BASE, "The drafter as shipped."), mitigation("data-balancing", BAL, "Drafter retrained on a task-balanced corpus mix.")],
  notes: ["Timings on a shared 2-core CPU: treat measured speed-ups as ratios.", "Task <x&y> is synthetic & exists to test escaping."],
};

/** The markdown table that follows `heading` (its body rows, header and separator excluded). */
function mdRows(md: string, heading: string): string[] {
  const lines = md.split("\n");
  const at = lines.findIndex((l) => l === heading);
  expect(at, `heading ${heading}`).toBeGreaterThanOrEqual(0);
  let i = at + 1;
  while (i < lines.length && !lines[i]!.startsWith("|")) {
    expect(lines[i]!.startsWith("#"), `table under ${heading}`).toBe(false);
    i++;
  }
  const table: string[] = [];
  while (i < lines.length && lines[i]!.startsWith("|")) table.push(lines[i++]!);
  expect(table[1]).toMatch(/^\|( ?(:---|---:) ?\|)+$/);
  return table.slice(2);
}

describe("calibration report", () => {
  let r: Awaited<ReturnType<typeof renderReport>>;
  beforeAll(async () => {
    r = await renderReport(data);
  });

  it("HTML is one self-contained file", () => {
    expect(r.html.startsWith("<!DOCTYPE html>")).toBe(true);
    expect(r.html).not.toMatch(/<script/i);
    expect(r.html).not.toMatch(/<link\b/i);
    expect(r.html).not.toMatch(/@import|url\(/i);
    expect(r.html).not.toMatch(/<img\b|<iframe\b/i);
    // The only URLs are SVG namespace URIs and the pool's origin URL, shown as escaped text.
    const urls = [...r.html.matchAll(/https?:\/\/[^\s"'<>)]+/g)].map((m) => m[0]);
    const allowed = new Set(["http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink", "http://origin-a.internal:8080"]);
    for (const u of urls) expect(allowed.has(u), u).toBe(true);
    // …and no attribute references anything external.
    expect(r.html).not.toMatch(/(href|src)="https?:/i);
    expect(r.html).toContain("<style>");
  });

  it("inlines one SVG per chart", () => {
    const svgs = r.html.match(/<svg\b/g) ?? [];
    expect(svgs.length).toBeGreaterThanOrEqual(5);
    expect(r.html.match(/<figure>/g)?.length).toBe(svgs.length);
    expect(r.html).not.toContain('class="empty"');
  });

  it("names every task and policy, and escapes text", () => {
    for (const t of ["en", "ja"]) expect(r.html).toContain(`<td>${t}</td>`);
    for (const p of ["throughput", "floor:0.7"]) expect(r.html).toContain(p);
    expect(r.html).toContain("&lt;x&amp;y&gt;");
    expect(r.html).not.toContain("<x&y>");
    expect(r.html).not.toMatch(/<x&/);
    expect(r.html).toContain("<td>&lt;x&amp;y&gt;</td>");
  });

  it("formats numbers: α with 3 decimals, S with 2 and ×", () => {
    expect(r.html).toContain("0.810 [0.798, 0.822]"); // α, base drafter, en, T = τ = 1
    expect(r.html).toMatch(/\d\.\d\d× \[\d\.\d\d×, \d\.\d\d×\]/);
    expect(r.html).toContain("not validated");
  });

  it("markdown has the tables with the right row counts", () => {
    const md = r.markdown;
    expect(mdRows(md, "## Mitigation comparison")).toHaveLength(2);
    expect(mdRows(md, "## Policy outcomes")).toHaveLength(2);
    for (const d of [BASE]) expect(mdRows(md, `### Drafter ${d}`)).toHaveLength(3);
    expect(mdRows(md, `### Drafter ${BAL} (mitigation: data-balancing)`)).toHaveLength(3);
    expect(mdRows(md, "### Policy throughput — throughput")).toHaveLength(3);
    expect(mdRows(md, "### Policy floor:0.7 — floor(r=0.7)")).toHaveLength(3);
    // Each measurement row has as many cells as its header; the escaped task stays one cell.
    const rows = mdRows(md, `### Drafter ${BASE}`);
    const cells = (l: string) => l.split(/(?<!\\)\|/).length;
    expect(rows.every((l) => cells(l) === cells(md.split("\n").find((x) => x.startsWith("| task | T |"))!))).toBe(true);
    expect(md).toContain("\\<x&y\\>");
    expect(md).not.toMatch(/(?<!\\)<x&y/);
  });

  it("summary is compact and complete", () => {
    const s = r.summary as Record<string, any>;
    expect(s.run.id).toBe("run-2024-06-01-a");
    expect(Object.keys(s.policies)).toEqual(["throughput", "floor:0.7"]);
    expect(s.policies["floor:0.7"].worstSpeedup).toBeLessThanOrEqual(s.policies["floor:0.7"].meanSpeedup);
    expect(Object.keys(s.unfairnessU)).toEqual(["none", "data-balancing"]);
    expect(s.unfairnessU["data-balancing"]).toBeLessThan(s.unfairnessU.none);
    expect(Object.keys(s.perTask)).toEqual([...TASKS]);
    expect(s.perTask.en.alpha).toBeCloseTo(0.81, 6);
    expect(s.fairness.min).toBeLessThanOrEqual(s.fairness.max);
    expect(JSON.stringify(s).length).toBeLessThan(4000);
  });

  it("renders the same data to the same bytes", async () => {
    const again = await renderReport(data);
    expect(again.html).toBe(r.html);
    expect(again.markdown).toBe(r.markdown);
  });

  it("copes with no mitigations, curves or validations", async () => {
    const bare = await renderReport({ ...data, mitigations: [], curves: [], params: data.params.map((p) => ({ ...p, measuredSpeedup: null })) });
    expect(bare.html.match(/class="empty"/g)?.length).toBe(5);
    expect(bare.html).not.toMatch(/<svg\b/);
    expect(bare.html).not.toContain("NaN");
  });

  describe("writeReport", () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), "fairspec-report-"));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it("writes the three files, and no temp files are left behind", async () => {
      const out = join(dir, "nested", "out");
      const paths = await writeReport(data, out);
      expect(paths.map((p) => p.slice(out.length + 1))).toEqual(["report.html", "report.md", "summary.json"]);
      expect((await readdir(out)).sort()).toEqual(["report.html", "report.md", "summary.json"]);
      const summary = JSON.parse(await readFile(join(out, "summary.json"), "utf8"));
      expect(summary.run.configHash).toBe("9f2c1e7a");
      expect(await readFile(join(out, "report.html"), "utf8")).toBe(r.html);
      // Overwriting works too.
      await writeReport(data, out);
      expect((await readdir(out)).sort()).toEqual(["report.html", "report.md", "summary.json"]);
    });
  });
});
