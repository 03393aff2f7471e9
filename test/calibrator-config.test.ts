import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { configHash, ConfigError, parseConfig } from "../calibrator/config.ts";

const example = JSON.parse(readFileSync(new URL("../calibrator/calibrate.example.json", import.meta.url), "utf8"));

describe("calibration config", () => {
  it("accepts the shipped example and fills defaults", () => {
    const c = parseConfig(example);
    expect(Object.keys(c.tasks)).toHaveLength(11);
    expect(c.bootstrapResamples).toBe(1000);
    expect(c.scdf.blend).toBe(0.3); // the shipped config blends (a flagged deviation; the default is the paper's 0)
    expect(parseConfig({ ...example, scdf: { enabled: true } }).scdf.blend).toBe(0);
  });

  it("names the bad field in one line", () => {
    const bad = (patch: Record<string, unknown>) => () => parseConfig({ ...example, ...patch });
    expect(bad({ gammas: [1, -2] })).toThrow(/^config: gammas\.1: /);
    expect(bad({ tasks: { en: { corpus: "xx" } } })).toThrow(/tasks/);
    expect(bad({ policies: [{ id: "f", kind: "floor", ratio: 3 }] })).toThrow(/policies\.0\.ratio/);
    expect(bad({ tenants: [{ id: "t", name: "T", policy: "nope", defaultTask: "en" }] })).toThrow(/tenants\.0\.policy: unknown policy 'nope'/);
    expect(bad({ surprise: 1 })).toThrow(ConfigError);
    expect(bad({ models: { verifier: "v", drafters: {} } })).toThrow(/models\.drafters/);
  });

  it("hashes configs stably (key order does not matter) and differently when a value changes", () => {
    const a = parseConfig(example);
    const b = parseConfig(Object.fromEntries(Object.entries(example).reverse()));
    expect(configHash(a)).toBe(configHash(b));
    expect(configHash(parseConfig({ ...example, seed: 2 }))).not.toBe(configHash(a));
  });
});

describe("s-CDF prerequisites", () => {
  it("say in one line, before any work, what to install or build", async () => {
    const { scdfPrerequisiteError } = await import("../calibrator/scdf.ts");
    const oneLine = (m: string | null) => {
      expect(m).not.toBeNull();
      expect(m!).not.toContain("\n");
      return m!;
    };
    expect(oneLine(scdfPrerequisiteError("/nonexistent/python3", ["en"]))).toMatch(/cannot start \/nonexistent\/python3 .*apt-get install .*python3-torch/);
    // A Python that lacks the modules: its own import error names the module.
    const fake = `${process.execPath}`; // node, run with `-c …`: exits non-zero without "No module named"
    expect(oneLine(scdfPrerequisiteError(fake, ["en"]))).toMatch(/needs PyTorch, ONNX and NumPy .*apt-get install/);
    // With Debian's PyTorch (npm test's pretest installs it) only the training text can be missing.
    expect(scdfPrerequisiteError("/usr/bin/python3", ["en"])).toBeNull();
    expect(oneLine(scdfPrerequisiteError("/usr/bin/python3", ["en", "xx"]))).toMatch(/not built yet \(xx\) — run: npm run corpora/);
  });
});
