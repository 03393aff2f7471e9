/** Facts about the committed models that the rest of fairspec relies on. */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { TASKS } from "../core/tasks.ts";
import { MODELS_DIR } from "./support/models.ts";

const meta = (name: string) => JSON.parse(readFileSync(`${MODELS_DIR}${name}/meta.json`, "utf8"));
const drafters = readdirSync(MODELS_DIR).filter((d) => d.startsWith("drafter-"));

describe("committed models", () => {
  it("has a verifier and at least two drafters, each file ≤ 10 MB and ≤ 30 MB together", () => {
    expect(drafters.length).toBeGreaterThanOrEqual(2);
    let total = 0;
    for (const dir of ["verifier", ...drafters]) {
      for (const f of readdirSync(`${MODELS_DIR}${dir}`)) {
        const size = statSync(`${MODELS_DIR}${dir}/${f}`).size;
        expect(size, `${dir}/${f}`).toBeLessThanOrEqual(10_000_000);
        total += size;
      }
    }
    expect(total).toBeLessThanOrEqual(30_000_000);
  });

  it("the verifier's validation bits/byte is lower than every drafter's on every task", () => {
    const v = meta("verifier").validation_bits_per_byte;
    for (const d of drafters) {
      const bpb = meta(d).validation_bits_per_byte;
      for (const t of TASKS) expect(v[t], `${d} on ${t}: verifier ${v[t]} vs drafter ${bpb[t]}`).toBeLessThan(bpb[t]);
    }
  });

  it("drafters are distilled from the verifier; base is trained on a skewed mix", () => {
    for (const d of drafters) expect(meta(d).training.objective).toMatch(/distillation from the verifier/);
    const share = meta("drafter-base").training.token_share_per_task;
    for (const t of ["ja", "zh", "ar", "math"]) expect(share[t], t).toBeLessThanOrEqual(0.03);
    expect(share.en).toBeGreaterThan(0.25);
  });

  it("records architecture, training mix and tokens seen", () => {
    for (const name of ["verifier", ...drafters]) {
      const m = meta(name);
      expect(m.architecture.n_layer).toBeGreaterThan(0);
      expect(m.training.tokens_seen).toBeGreaterThan(0);
      expect(Object.keys(m.training.mix).length).toBeGreaterThan(0);
    }
  });
});
