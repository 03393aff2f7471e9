/**
 * The edge's task classifier: which task (language or domain, `core/tasks.ts`) a request's text
 * belongs to, when the client gives no hint. Runtime-neutral (Workers and Node): no `node:`
 * imports, and ONNX Runtime is passed in (onnxruntime-web or `onnxruntime-web/wasm`), never
 * imported here.
 *
 * Model: `models/task-classifier/` (trained by `trainer/classifier.py`). Its features are
 * computed here, bit-exactly as in Python:
 *
 *   snippet = drop emoji, pictographs and the like (IGNORED), trim leading ASCII whitespace,
 *             UTF-8 encode, keep the first `meta.snippet.bytes` (256) bytes: a byte cut (a cut
 *             character only adds a few n-grams; training cut snippets at random bytes too)
 *   for n in meta.features.ngrams (1..4), for each position i (n-gram order, then position):
 *     h = 0x811C9DC5 ^ n; for each byte c: h = imul(h ^ c, 0x01000193)     (FNV-1a)
 *     fmix32(h) & (buckets - 1)                                            (murmur3 finaliser)
 *   no n-gram (empty snippet) → [meta.features.empty_id]
 *
 * The graph is batched: ids int64 [batch, N], a row per text, short rows padded with
 * `meta.features.pad_id`; logits [batch, labels]; scores are their softmax. Calls that arrive
 * together run as one batch (see `createTaskClassifier`).
 *
 * Why the FIRST bytes of the text (the caller passes the user's latest message): the task is
 * usually set at the start (the language the user writes in, the code or formula they paste),
 * the edge can stop encoding after 256 bytes of an arbitrarily long body, and the choice does not
 * depend on how long the message is. Long system prompts and earlier turns are deliberately not
 * used: they are often boilerplate in another language than the request.
 */
import type * as Ort from "onnxruntime-common";

/** The parts of an onnxruntime(-web) module used here. */
export type OrtLike = Pick<typeof Ort, "InferenceSession" | "Tensor">;

export interface FeatureSpec {
  ngrams: number[];
  /** Power of two: ids are hash & (buckets - 1). */
  buckets: number;
  /** The id fed when the snippet has no n-gram at all. */
  empty_id: number;
  /** The id that pads a batch's shorter rows (a row the graph leaves out of the pooling). */
  pad_id: number;
}

/** What the classifier needs from `models/task-classifier/meta.json` (the rest is documentation). */
export interface TaskClassifierMeta {
  labels: string[];
  snippet: { bytes: number };
  features: FeatureSpec;
}

export interface TaskClassification {
  /** The most likely task (a label from meta.labels, i.e. a TaskId). */
  task: string;
  /** Its softmax probability; about 1 / labels.length for text that carries no signal. */
  confidence: number;
  /** Softmax probability per label. */
  scores: Record<string, number>;
}

export interface TaskClassifier {
  readonly labels: readonly string[];
  classify(text: string): Promise<TaskClassification>;
  /** Texts classified and model runs made so far (runs < texts when calls were batched). */
  readonly stats: { texts: number; runs: number };
}

export interface BatchingOptions {
  /**
   * Schedules the next batch's run: calls made before it fires join that batch. Default
   * `queueMicrotask`: only calls made in the same turn share a run, and a call's answer never
   * waits on another request's I/O. Node's entry passes `setImmediate` (after the I/O callbacks
   * already due: requests read in one pass of the event loop share a run). Not in Workers:
   * workerd refuses to let one request's promise be settled from another request's timer
   * ("Promise will never complete"), so there each request runs its own.
   */
  defer?: (run: () => void) => void;
  /** Most texts in one run (default 64). */
  maxBatch?: number;
}

const encoder = new TextEncoder();

/**
 * Code points dropped before the snippet is cut (as trainer/classifier.py IGNORED_CLASS): emoji and
 * pictographs, dingbats and miscellaneous symbols, variation selectors, ZWJ, keycap, tag
 * characters. They say nothing about the task, and their UTF-8 bytes look like CJK text's.
 */
export const IGNORED = /[\u200d\u20e3\u2600-\u27bf\u2b00-\u2bff\ufe00-\ufe0f\u{1f000}-\u{1faff}\u{e0000}-\u{e007f}]/gu;
const LEADING_WS = /^[ \t\n\r\f\v]+/;
const CHUNK = 1024;

/**
 * The classifier's input bytes: drop IGNORED code points, trim leading ASCII whitespace, UTF-8
 * encode, keep the first `maxBytes` bytes (a byte cut). Works through the text in chunks and stops
 * as soon as enough is kept, so a long message costs no more than a short one; the result is the
 * same as processing the whole text.
 */
export function snippetBytes(text: string, maxBytes = 256): Uint8Array {
  let kept = "";
  for (let i = 0; i < text.length && kept.length < maxBytes; ) {
    let end = Math.min(text.length, i + CHUNK);
    const last = text.charCodeAt(end - 1);
    if (end < text.length && last >= 0xd800 && last <= 0xdbff) end++; // keep surrogate pairs whole
    // trim(trim(a) + b) = trim(a + b), and dropping works per code point, so chunking is exact
    kept = (kept + text.slice(i, end).replace(IGNORED, "")).replace(LEADING_WS, "");
    i = end;
  }
  // Every UTF-16 unit encodes to at least one byte: `maxBytes` units give `maxBytes` bytes.
  const b = encoder.encode(kept);
  return b.length > maxBytes ? b.subarray(0, maxBytes) : b;
}

const fmix32 = (h: number): number => {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
};

/** Hashed byte n-gram ids of a snippet, in the order the trainer produces them. */
export function ngramIds(bytes: Uint8Array, spec: FeatureSpec): number[] {
  const mask = spec.buckets - 1;
  const ids: number[] = [];
  for (const n of spec.ngrams) {
    for (let i = 0; i + n <= bytes.length; i++) {
      let h = 0x811c9dc5 ^ n;
      for (let k = 0; k < n; k++) h = Math.imul(h ^ bytes[i + k]!, 0x01000193);
      ids.push(fmix32(h) & mask);
    }
  }
  if (ids.length === 0) ids.push(spec.empty_id);
  return ids;
}

export function softmax(logits: ArrayLike<number>): number[] {
  const n = logits.length;
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, logits[i]!);
  // Plain loops, same operations in the same order as exp / sum-from-0 / divide element-wise.
  const e: number[] = new Array<number>(n);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += e[i] = Math.exp(logits[i]! - max);
  for (let i = 0; i < n; i++) e[i] = e[i]! / sum;
  return e;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * A batch's ids as int64 [rows.length, width], each row padded with `pad` to the longest. The ids
 * are in [0, 2^31): written as 32-bit halves, no BigInt per id.
 */
function int64Batch(rows: readonly (readonly number[])[], pad: number): { data: BigInt64Array; width: number } {
  let width = 1;
  for (const r of rows) width = Math.max(width, r.length);
  const data = new BigInt64Array(rows.length * width);
  const halves = new Int32Array(data.buffer);
  const put = (at: number, v: number) => {
    if (LITTLE_ENDIAN && v >= 0 && v <= 0x7fffffff && Number.isInteger(v)) halves[2 * at] = v;
    else data[at] = BigInt(v);
  };
  for (let b = 0; b < rows.length; b++) {
    const r = rows[b]!;
    const at = b * width;
    for (let i = 0; i < r.length; i++) put(at + i, r[i]!);
    for (let i = r.length; i < width; i++) put(at + i, pad);
  }
  return { data, width };
}

function checkMeta(meta: TaskClassifierMeta): void {
  const f = meta.features;
  if (!Array.isArray(meta.labels) || meta.labels.length === 0) throw new Error("task classifier meta: no labels");
  if (!f || !Number.isInteger(f.buckets) || f.buckets <= 0 || (f.buckets & (f.buckets - 1)) !== 0)
    throw new Error("task classifier meta: features.buckets must be a power of two");
  if (!Array.isArray(f.ngrams) || f.ngrams.length === 0 || f.ngrams.some((n) => !Number.isInteger(n) || n < 1))
    throw new Error("task classifier meta: features.ngrams must be positive integers");
  if (!Number.isInteger(f.empty_id)) throw new Error("task classifier meta: features.empty_id missing");
  if (!Number.isInteger(f.pad_id)) throw new Error("task classifier meta: features.pad_id missing (a model exported before batching: re-export it with trainer/classifier.py --reexport DIR)");
  if (!meta.snippet || !Number.isInteger(meta.snippet.bytes) || meta.snippet.bytes < 1)
    throw new Error("task classifier meta: snippet.bytes missing");
}

/**
 * Loads the model into an inference session of the given ONNX Runtime module.
 *
 * Batching: a run of onnxruntime-web costs ~40 µs of fixed overhead (JS ↔ wasm calls, tensor
 * copies), its kernels a few µs, so a gateway under load spends most of its classifier time on
 * overhead. Calls wait for the next `defer` tick and run together (at most `maxBatch` per run;
 * one run at a time, the calls that arrive meanwhile making the next batch); with Node's
 * `setImmediate` a lone call costs one extra tick of the event loop (in bench:edge, less than
 * the run-to-run spread of its latency test). Each text's logits are its own row: padding adds exact zeros
 * to its sums and -inf to its max, so its scores do not depend on what it was batched with
 * (test/classifier.test.ts checks them bit for bit against runs alone).
 */
export async function createTaskClassifier(
  ort: OrtLike,
  modelBytes: Uint8Array,
  meta: TaskClassifierMeta,
  batching: BatchingOptions = {},
): Promise<TaskClassifier> {
  checkMeta(meta);
  const session = await ort.InferenceSession.create(modelBytes, {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all",
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: "sequential",
  });
  const inputName = session.inputNames[0] ?? "ids";
  const outputName = session.outputNames[0] ?? "logits";
  const labels = [...meta.labels];
  const defer = batching.defer ?? queueMicrotask;
  const maxBatch = Math.max(1, batching.maxBatch ?? 64);
  const stats = { texts: 0, runs: 0 };

  interface Waiting {
    ids: number[];
    resolve(logits: Float32Array): void;
    reject(e: unknown): void;
  }
  let waiting: Waiting[] = [];
  let scheduled = false;
  let running = false;

  const run = async (batch: readonly Waiting[]): Promise<Float32Array> => {
    const { data, width } = int64Batch(batch.map((w) => w.ids), meta.features.pad_id);
    const input = new ort.Tensor("int64", data, [batch.length, width]);
    const out = await session.run({ [inputName]: input });
    const logits = out[outputName];
    if (!logits || logits.type !== "float32") throw new Error("task classifier: unexpected model output");
    const values = logits.data as Float32Array;
    if (values.length !== batch.length * labels.length) throw new Error(`task classifier: ${values.length} logits for ${batch.length} × ${labels.length} labels`);
    return values;
  };

  const flush = async (): Promise<void> => {
    scheduled = false;
    const batch = waiting.length > maxBatch ? waiting.splice(0, maxBatch) : waiting;
    if (batch === waiting) waiting = [];
    if (batch.length === 0) return;
    running = true;
    stats.runs++;
    try {
      const values = await run(batch);
      const n = labels.length;
      for (let b = 0; b < batch.length; b++) batch[b]!.resolve(values.subarray(b * n, (b + 1) * n));
    } catch (e) {
      for (const w of batch) w.reject(e);
    } finally {
      running = false;
      schedule();
    }
  };

  const schedule = () => {
    if (scheduled || running || waiting.length === 0) return;
    scheduled = true;
    defer(() => void flush());
  };

  return {
    labels,
    stats,
    async classify(text: string): Promise<TaskClassification> {
      const ids = ngramIds(snippetBytes(String(text ?? ""), meta.snippet.bytes), meta.features);
      stats.texts++;
      const logits = await new Promise<Float32Array>((resolve, reject) => {
        waiting.push({ ids, resolve, reject });
        schedule();
      });
      const probs = softmax(logits);
      let best = 0;
      for (let i = 1; i < probs.length; i++) if (probs[i]! > probs[best]!) best = i;
      const scores: Record<string, number> = {};
      for (let i = 0; i < labels.length; i++) scores[labels[i]!] = probs[i]!;
      return { task: labels[best]!, confidence: probs[best]!, scores };
    },
  };
}
