/**
 * One contract, two ONNX Runtime backends (onnxruntime-node native, onnxruntime-web wasm):
 * both must load the committed models and behave identically.
 */
import { describe, expect, it } from "vitest";
import type { CausalLM } from "../engine/causal-lm.ts";
import type { OrtBackend } from "../engine/ort.ts";
import { argmax } from "../engine/sampling.ts";
import { model } from "./support/models.ts";

const maxAbsDiff = (a: Float32Array, b: Float32Array) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

const PROMPT = "int main(int argc, char **argv) {\n\treturn 0;\n}\n/* русский текст, 日本語 */";

for (const backend of ["node", "web"] as OrtBackend[]) {
  describe(`CausalLM contract on onnxruntime-${backend}`, () => {
    for (const name of ["verifier", "drafter-base"]) {
      it(`${name}: loads with its tokenizer and metadata`, async () => {
        const lm = await model(name, backend);
        expect(lm.vocabSize).toBe(257);
        expect(lm.maxPositions).toBe(256);
        expect(lm.eosTokenId).toBe(256);
        const ids = lm.tokenizer.encode(PROMPT);
        expect(ids.length).toBe(new TextEncoder().encode(PROMPT).length); // byte-level
        expect(lm.tokenizer.decode(ids)).toBe(PROMPT);
      });

      it(`${name}: incremental decoding gives the logits of a one-shot prefill`, async () => {
        const lm = await model(name, backend);
        const ids = lm.tokenizer.encode(PROMPT);
        const full = await lm.newSession().append(ids);
        const s = lm.newSession();
        await s.append(ids.slice(0, 20));
        const a = await s.append(ids.slice(20, 21));
        const b = await s.append(ids.slice(21, 26));
        expect(maxAbsDiff(a[0]!, full[20]!)).toBeLessThan(1e-4);
        b.forEach((row, i) => expect(maxAbsDiff(row, full[21 + i]!)).toBeLessThan(1e-4));
        expect(s.length).toBe(26);
      });

      it(`${name}: after rollback, logits equal a fresh prefill of the kept prefix`, async () => {
        const lm = await model(name, backend);
        const ids = lm.tokenizer.encode(PROMPT);
        const s = lm.newSession();
        await s.append(ids.slice(0, 30));
        await s.append([65, 66, 67, 68, 69]); // a rejected draft
        s.rollback(25);
        expect(s.length).toBe(25);
        const after = await s.append(ids.slice(25, 31));
        const fresh = await lm.newSession().append(ids.slice(0, 31));
        after.forEach((row, i) => expect(maxAbsDiff(row, fresh[25 + i]!)).toBeLessThan(1e-4));
        // rolling back twice in a row, and to zero, works too
        s.rollback(10);
        s.rollback(0);
        const again = await s.append(ids.slice(0, 3));
        expect(maxAbsDiff(again[2]!, fresh[2]!)).toBeLessThan(1e-4);
      });

      it(`${name}: refuses to roll forward, overflow the context or take unknown ids`, async () => {
        const lm = await model(name, backend);
        const s = lm.newSession();
        await s.append([1, 2, 3]);
        expect(() => s.rollback(4)).toThrow(/rollback/);
        await expect(s.append([300])).rejects.toThrow(/vocabulary/);
        await expect(s.append(new Array(lm.maxPositions).fill(65))).rejects.toThrow(/context overflow/);
      });
    }
  });
}

describe("backends agree", () => {
  it("onnxruntime-node and onnxruntime-web give the same logits and the same greedy choices", async () => {
    const pairs: [CausalLM, CausalLM][] = [];
    for (const name of ["verifier", "drafter-base"]) pairs.push([await model(name, "node"), await model(name, "web")]);
    for (const [n, w] of pairs) {
      const ids = n.tokenizer.encode(PROMPT);
      const a = await n.newSession().append(ids);
      const b = await w.newSession().append(ids);
      let agree = 0;
      a.forEach((row, i) => {
        expect(maxAbsDiff(row, b[i]!)).toBeLessThan(1e-3);
        if (argmax(row) === argmax(b[i]!)) agree++;
      });
      expect(agree).toBeGreaterThanOrEqual(a.length - 1);
    }
  });
});
