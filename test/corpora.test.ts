import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { TASKS } from "../core/tasks.ts";
import { loadDocs, taskPrompts } from "../corpora/index.ts";

const manifest = JSON.parse(readFileSync(new URL("../corpora/manifest.json", import.meta.url), "utf8"));

describe("corpora", () => {
  it("has every task with recorded sources, versions, licenses and checksums", () => {
    expect(TASKS.length).toBeGreaterThanOrEqual(10);
    for (const t of TASKS) {
      const m = manifest.tasks[t];
      expect(m, t).toBeDefined();
      for (const s of m.sources) {
        expect(s.version, `${t} ${s.name}`).toMatch(/\d/);
        expect(s.license, `${t} ${s.name}`).toBeTruthy();
        expect(s.sha256).toMatch(/^[0-9a-f]{64}$/);
      }
      expect(m.outputs.train.bytes).toBeGreaterThan(900_000);
    }
  });

  it("committed held-out slices match the manifest's sha256 (nothing edited by hand)", () => {
    for (const t of TASKS) {
      for (const split of ["validation", "test"] as const) {
        const body = readFileSync(new URL(`../corpora/data/${t}/${split}.jsonl`, import.meta.url));
        expect(createHash("sha256").update(body).digest("hex"), `${t}/${split}`).toBe(manifest.tasks[t].outputs[split].sha256);
      }
    }
  });

  it("splits by document: no document is in both validation and test", () => {
    for (const t of TASKS) {
      const val = new Set(loadDocs(t, "validation").map((d) => d.id));
      for (const d of loadDocs(t, "test")) expect(val.has(d.id), `${t}: ${d.id}`).toBe(false);
    }
  });

  it("gives at least 30 distinct prompts per task for the benchmarks", () => {
    for (const t of TASKS) {
      const ps = taskPrompts(t, 30);
      expect(ps, t).toHaveLength(30);
      expect(new Set(ps).size, t).toBeGreaterThanOrEqual(28);
    }
  });
});
