/**
 * A small bigram-table language model for statistical tests of the sampling math: its exact
 * next-token distributions are known in closed form, so millions of draws cost seconds and the
 * exact law of a whole sequence can be enumerated. The engine sees it through the same CausalLM
 * interface as the ONNX models; the ONNX models are tested separately on the real weights.
 */
import { Xoshiro128 } from "../../core/rng.ts";
import type { CausalLM, LMSession } from "../../engine/causal-lm.ts";
import { loadTokenizer } from "../../engine/tokenizer.ts";

export interface TableLMOptions {
  vocab: number;
  seed: number;
  /** Scale of the random logits (larger: peakier distributions). */
  sharpness?: number;
  /** Start from another table and add noise of this scale: a "drafter" that roughly fits it. */
  like?: { lm: { logits(prev: number): Float32Array }; noise: number };
  maxPositions?: number;
}

export function tableLM(o: TableLMOptions): CausalLM & { logits(prev: number): Float32Array; readonly calls: number } {
  const { vocab, seed, sharpness = 2, maxPositions = 64 } = o;
  const rng = new Xoshiro128(seed);
  const table = Array.from({ length: vocab }, (_, prev) =>
    Float32Array.from({ length: vocab }, (_, i) => (o.like ? o.like.lm.logits(prev)[i]! + o.like.noise * gaussian(rng) : sharpness * gaussian(rng))),
  );
  const vocabJson: Record<string, number> = {};
  for (let i = 0; i < vocab; i++) vocabJson[String.fromCharCode(65 + i)] = i;
  const tokenizer = loadTokenizer({ model: { type: "BPE", vocab: vocabJson, merges: [] }, pre_tokenizer: null });
  let calls = 0;
  const lm = {
    id: `table-${seed}`,
    vocabSize: vocab,
    maxPositions,
    eosTokenId: null,
    tokenizer,
    meta: {},
    get calls() {
      return calls;
    },
    logits: (prev: number) => table[prev]!,
    newSession(): LMSession {
      const seq: number[] = [];
      return {
        get length() {
          return seq.length;
        },
        async append(tokens: readonly number[]) {
          calls++;
          if (seq.length + tokens.length > maxPositions) throw new RangeError("context overflow");
          seq.push(...tokens);
          return tokens.map((t) => table[t]!);
        },
        rollback(n: number) {
          seq.length = n;
        },
      };
    },
    async dispose() {},
  };
  return lm;
}

function gaussian(rng: Xoshiro128): number {
  const u = Math.max(rng.uniform(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.uniform());
}
