/**
 * CausalLM over an ONNX decoder in the Optimum / transformers.js layout:
 *   inputs  input_ids, attention_mask, position_ids, past_key_values.{i}.key/value
 *   outputs logits, present.{i}.key/value        (KV tensors [batch, heads, seq, head_dim])
 * Batch size 1. The KV cache is the `present` tensors of the last call, reused as the next
 * call's past without copying; rollback only shortens the valid length, and the tensors are
 * compacted lazily on the next append.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type * as Ort from "onnxruntime-common";
import type { CausalLM, LMSession } from "./causal-lm.ts";
import { createSession, loadOrt, type OrtModule, type OrtOptions } from "./ort.ts";
import { loadTokenizer, type Tokenizer } from "./tokenizer.ts";

interface Arch {
  nLayer: number;
  nHead: number;
  headDim: number;
  nCtx: number;
  vocab: number;
}

export async function loadOnnxCausalLM(dir: string, opts: OrtOptions = {}): Promise<CausalLM> {
  const [bytes, tokJson, metaJson] = await Promise.all([
    readFile(join(dir, "model.onnx")),
    readFile(join(dir, "tokenizer.json"), "utf8"),
    readFile(join(dir, "meta.json"), "utf8"),
  ]).catch((e: NodeJS.ErrnoException) => {
    throw new Error(`cannot load model from ${dir}: ${e.code === "ENOENT" ? `missing ${e.path}` : e.message}`);
  });
  const meta = JSON.parse(metaJson) as Record<string, unknown> & { architecture: Record<string, number> };
  const a = meta.architecture;
  const arch: Arch = {
    nLayer: a.n_layer!,
    nHead: a.n_head!,
    headDim: a.d_model! / a.n_head!,
    nCtx: a.n_ctx!,
    vocab: a.vocab!,
  };
  const ort = await loadOrt(opts.backend ?? "node");
  const session = await createSession(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), opts);
  return new OnnxCausalLM(dir.replace(/\/+$/, "").split("/").pop()!, ort, session, arch, loadTokenizer(tokJson), meta);
}

class OnnxCausalLM implements CausalLM {
  readonly vocabSize: number;
  readonly maxPositions: number;
  readonly eosTokenId: number | null;

  constructor(
    readonly id: string,
    private ort: OrtModule,
    private session: Ort.InferenceSession,
    private arch: Arch,
    readonly tokenizer: Tokenizer,
    readonly meta: Record<string, unknown>,
  ) {
    this.vocabSize = arch.vocab;
    this.maxPositions = arch.nCtx;
    this.eosTokenId = typeof meta.eos_token_id === "number" ? meta.eos_token_id : tokenizer.eosTokenId;
  }

  newSession(): LMSession {
    return new OnnxSession(this.ort, this.session, this.arch);
  }

  async dispose() {
    await this.session.release();
  }
}

class OnnxSession implements LMSession {
  /** Per layer: [key, value] data laid out [heads, physLength, headDim]. */
  private kv: Float32Array[] = [];
  private physLength = 0;
  private validLength = 0;

  constructor(
    private ort: OrtModule,
    private session: Ort.InferenceSession,
    private arch: Arch,
  ) {}

  get length() {
    return this.validLength;
  }

  rollback(length: number) {
    if (!Number.isInteger(length) || length < 0 || length > this.validLength) {
      throw new RangeError(`rollback(${length}): cache holds ${this.validLength} tokens`);
    }
    this.validLength = length;
  }

  async append(tokens: readonly number[]): Promise<Float32Array[]> {
    const T = tokens.length;
    if (T === 0) return [];
    const { nLayer, nHead, headDim, nCtx, vocab } = this.arch;
    const past = this.validLength;
    if (past + T > nCtx) throw new RangeError(`context overflow: ${past} cached + ${T} new > ${nCtx} positions`);
    if (this.physLength !== past) this.compact();
    const ids = new BigInt64Array(T);
    const pos = new BigInt64Array(T);
    for (let i = 0; i < T; i++) {
      const t = tokens[i]!;
      if (!Number.isInteger(t) || t < 0 || t >= vocab) throw new RangeError(`token id ${t} outside vocabulary of ${vocab}`);
      ids[i] = BigInt(t);
      pos[i] = BigInt(past + i);
    }
    const { Tensor } = this.ort;
    const feeds: Record<string, Ort.Tensor> = {
      input_ids: new Tensor("int64", ids, [1, T]),
      attention_mask: new Tensor("int64", new BigInt64Array(past + T).fill(1n), [1, past + T]),
      position_ids: new Tensor("int64", pos, [1, T]),
    };
    const empty = new Float32Array(0);
    for (let l = 0; l < nLayer; l++) {
      feeds[`past_key_values.${l}.key`] = new Tensor("float32", this.kv[2 * l] ?? empty, [1, nHead, past, headDim]);
      feeds[`past_key_values.${l}.value`] = new Tensor("float32", this.kv[2 * l + 1] ?? empty, [1, nHead, past, headDim]);
    }
    const out = await this.session.run(feeds);
    for (let l = 0; l < nLayer; l++) {
      this.kv[2 * l] = out[`present.${l}.key`]!.data as Float32Array;
      this.kv[2 * l + 1] = out[`present.${l}.value`]!.data as Float32Array;
    }
    this.physLength = this.validLength = past + T;
    const logits = out.logits!.data as Float32Array;
    return Array.from({ length: T }, (_, i) => logits.subarray(i * vocab, (i + 1) * vocab));
  }

  /** Cut every KV tensor down to the valid length (after a rollback). */
  private compact() {
    const { nHead, headDim } = this.arch;
    const keep = this.validLength * headDim;
    const stride = this.physLength * headDim;
    this.kv = this.kv.map((t) => {
      const c = new Float32Array(nHead * keep);
      for (let h = 0; h < nHead; h++) c.set(t.subarray(h * stride, h * stride + keep), h * keep);
      return c;
    });
    this.physLength = this.validLength;
  }
}
