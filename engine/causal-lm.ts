/**
 * The causal-LM interface the speculative engine runs on. A model is loaded once; each generation
 * opens its own session, which owns a KV cache that can be rolled back to any committed length.
 */
import type { Tokenizer } from "./tokenizer.ts";

export interface CausalLM {
  /** Directory name or other stable identifier. */
  readonly id: string;
  readonly vocabSize: number;
  /** Largest number of positions the model can attend over (prompt + generated). */
  readonly maxPositions: number;
  readonly eosTokenId: number | null;
  readonly tokenizer: Tokenizer;
  /** Free-form metadata from the model's meta.json. */
  readonly meta: Record<string, unknown>;
  newSession(): LMSession;
  dispose(): Promise<void>;
}

export interface LMSession {
  /** Tokens currently in the KV cache. */
  readonly length: number;
  /**
   * Run the model on `tokens` after the cached ones and cache them. Returns one row of
   * `vocabSize` logits per appended token: row i predicts the token after tokens[i].
   */
  append(tokens: readonly number[]): Promise<Float32Array[]>;
  /** Forget everything after the first `length` cached tokens. */
  rollback(length: number): void;
}
