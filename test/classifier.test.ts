/**
 * The edge's task classifier (`functions/classifier.ts`, model in `models/task-classifier/`),
 * run by onnxruntime-web (wasm) in Node, as the edge Worker runs it.
 */
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { TASKS, type TaskId } from "../core/tasks.ts";
import { loadDocs, utf8Prefix } from "../corpora/index.ts";
import { createTaskClassifier, IGNORED, ngramIds, snippetBytes, type OrtLike, type TaskClassifierMeta } from "../functions/classifier.ts";
import { loadTaskClassifier, loadTaskClassifierFiles, TASK_CLASSIFIER_DIR } from "../functions/classifier-node.ts";

const meta = JSON.parse(readFileSync(`${TASK_CLASSIFIER_DIR}meta.json`, "utf8")) as TaskClassifierMeta & {
  test_vectors: { text: string; ids: number[]; logits: number[] }[];
};
const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * 20 snippets of at most 256 bytes per task from the TEST slice, at fixed offsets: snippet j comes
 * from document j mod D at a fraction of the document that changes with j, the start moved forward
 * to a character boundary, the end cut back to one (documents under 256 bytes are taken whole).
 */
function fixedSnippets(task: TaskId, n = 20, bytes = 256): string[] {
  const docs = loadDocs(task, "test");
  const out: string[] = [];
  for (let j = 0; j < n; j++) {
    const b = enc.encode(docs[j % docs.length]!.text);
    const frac = (j * 0.618034 + 0.1) % 1;
    let start = Math.max(0, Math.floor((b.length - bytes) * frac));
    while (start < b.length && (b[start]! & 0xc0) === 0x80) start++;
    out.push(dec.decode(utf8Prefix(b.subarray(start), bytes)));
  }
  return out;
}

describe("task classifier features", () => {
  // Produced by trainer/classifier.py: ngram_ids(text.encode("utf8"), 1 << 15) with n-grams 1..4.
  const PY: [string, number[]][] = [
    ["", [32768]],
    ["a", [15142]],
    ["ab", [15142, 24465, 20499]],
    ["def f(x):", [3699, 18478, 30565, 20257, 30565, 708, 7353, 11962, 3498, 5479, 23902, 27790, 29358, 21747, 5525, 27171, 28267, 10057, 19741, 9763, 30882, 13947, 13847, 13903, 27634, 4405, 24262, 32705, 16716, 1417]],
    ["Grüße, ça", [16899, 23578, 1567, 13718, 1567, 16811, 18478, 267, 20257, 1567, 6071, 15142, 27107, 22342, 12655, 8723, 25146, 9470, 3753, 18307, 13522, 5070, 16955, 15769, 10433, 32085, 22079, 9082, 1056, 29014, 30882, 15337, 18679, 562, 23340, 23214, 15158, 9287, 26065, 31426, 18266, 3417]],
    ["日本語", [8827, 16800, 18787, 8827, 26879, 9265, 5737, 31940, 25135, 21925, 21789, 22397, 18450, 29520, 8115, 17025, 6691, 19378, 24755, 22418, 24764, 9540, 25713, 17271, 8508, 30042, 6670, 29098, 11123, 641]],
    ["🙂 ok", [170, 16811, 11655, 27795, 20257, 27215, 27407, 8355, 13668, 7781, 25676, 20200, 26878, 114, 13942, 9991, 17988, 12465, 8549, 15221, 4133, 13987]],
    ["\u0000\u00ff", [17543, 1567, 6906, 21633, 3656, 5651]],
  ];

  // Whole pipeline, text → snippet → ids: ngram_ids(snippet_bytes(text), 1 << 15) in Python.
  const PY_TEXT: [string, number[]][] = [
    ["🙂🚀", [32768]],
    [" \n\t👍🏽 Grüße ❤️ 🇩🇪 ok", [16899,23578,1567,13718,1567,16811,18478,20257,20257,20257,27215,27407,27107,22342,12655,8723,25146,9470,26566,29426,29426,20200,26878,15769,10433,32085,22079,9082,17915,15344,912,23570,12465,562,23340,23214,15158,15920,1597,17274,26876,2788]],
    ["∑ x² ≤ 1 ✓", [19938,4091,31653,20257,7353,4553,24160,20257,19938,27161,19645,20257,3937,20257,12391,17458,26228,18313,11898,24491,12627,24408,29836,6992,29899,21717,20530,12548,13455,648,16298,1016,18353,19722,6019,4684,14745,17062,12812,27695,13527,14141,10890,6477,29846,6749,15427,4307,2483,21742]],
  ];

  it("the committed model uses the spec these vectors were made with", () => {
    expect(meta.features).toEqual({ ...meta.features, ngrams: [1, 2, 3, 4], buckets: 32768, empty_id: 32768 });
    expect(meta.labels).toEqual([...TASKS]);
    expect(meta.snippet.bytes).toBe(256);
  });

  it("TypeScript n-gram ids equal Python's, bit for bit", () => {
    for (const [text, ids] of PY) expect(ngramIds(enc.encode(text), meta.features), JSON.stringify(text)).toEqual(ids);
    for (const [text, ids] of PY_TEXT) expect(ngramIds(snippetBytes(text), meta.features), JSON.stringify(text)).toEqual(ids);
    // and the vectors the trainer wrote next to the model
    for (const v of meta.test_vectors) expect(ngramIds(snippetBytes(v.text), meta.features)).toEqual(v.ids);
  });

  it("the snippet: emoji and the like dropped, leading whitespace trimmed, first 256 UTF-8 bytes", () => {
    expect(snippetBytes("  \n\tabc")).toEqual(enc.encode("abc"));
    expect(snippetBytes("🙂 \u200d\ufe0f ❤️\n  abc 👍🏽 d")).toEqual(enc.encode("abc  d"));
    expect(snippetBytes("\u00a0abc")).toEqual(enc.encode("\u00a0abc")); // only ASCII whitespace is trimmed
    // chunked processing equals processing the whole text
    const noisy = "🙂 ".repeat(3000) + "x".repeat(100) + "é😀".repeat(400);
    const whole = enc.encode(noisy.replace(IGNORED, "").replace(/^[ \t\n\r\f\v]+/, "")).subarray(0, 256);
    expect(snippetBytes(noisy)).toEqual(whole);
    const long = "é".repeat(300); // 600 bytes: cut at byte 256, mid-character is fine
    expect(snippetBytes(long)).toEqual(enc.encode(long).subarray(0, 256));
    const cjkExtB = "𠀀".repeat(200); // astral, not dropped: surrogate pairs, cut mid-character
    expect(snippetBytes(cjkExtB)).toEqual(enc.encode(cjkExtB).subarray(0, 256));
    expect(snippetBytes("")).toEqual(new Uint8Array(0));
  });
});

describe("task classifier on onnxruntime-web", () => {
  it("gives the trainer's logits for its test vectors", async () => {
    const clf = await loadTaskClassifier();
    for (const v of meta.test_vectors) {
      const r = await clf.classify(v.text);
      const m = Math.max(...v.logits);
      const z = v.logits.reduce((a, l) => a + Math.exp(l - m), 0);
      meta.labels.forEach((l, i) => expect(r.scores[l]!).toBeCloseTo(Math.exp(v.logits[i]! - m) / z, 4));
    }
  });

  it("top-1 accuracy ≥ 95% on 20 fixed 256-byte test snippets per task", async () => {
    const clf = await loadTaskClassifier();
    let right = 0;
    let total = 0;
    const per: Record<string, string> = {};
    const confused: string[] = [];
    const ms: number[] = [];
    for (const task of TASKS) {
      let ok = 0;
      const snippets = fixedSnippets(task);
      for (const s of snippets) {
        const t0 = performance.now();
        const r = await clf.classify(s);
        ms.push(performance.now() - t0);
        expect(TASKS).toContain(r.task);
        if (r.task === task) ok++;
        else confused.push(`${task}→${r.task}`);
      }
      per[task] = `${ok}/${snippets.length}`;
      right += ok;
      total += snippets.length;
    }
    ms.sort((a, b) => a - b);
    console.log(
      `task classifier: ${right}/${total} = ${((100 * right) / total).toFixed(1)}%`,
      JSON.stringify(per),
      confused.length ? `errors: ${confused.join(" ")}` : "",
      `median ${ms[ms.length >> 1]!.toFixed(2)} ms per classification`,
    );
    expect(right / total).toBeGreaterThanOrEqual(0.95);
  });

  it("clear cases", async () => {
    const clf = await loadTaskClassifier();
    const cases: [string, TaskId][] = [
      ["Die Funktion gibt bei Erfolg null zurück, andernfalls wird errno gesetzt.", "de"],
      ["La fonction renvoie zéro en cas de succès ; sinon errno est positionné.", "fr"],
      ["Функция возвращает ноль при успешном выполнении.", "ru"],
      ["この関数は成功すると 0 を返す。", "ja"],
      ["def main():\n    for i in range(10):\n        print(i)\n", "code-py"],
      ["static int foo(struct device *dev)\n{\n\treturn -EINVAL;\n}\n", "code-c"],
    ];
    for (const [text, task] of cases) expect((await clf.classify(text)).task, text).toBe(task);
  });

  it("empty, whitespace-only and emoji-only input: a valid task with low confidence, no throw", async () => {
    const clf = await loadTaskClassifier();
    for (const text of ["", " ", "   \n\t  \n", "🙂", "🚀🔥🎉👍", "😀 😃 😄 😁 😆", "👍🏽", "❤️", "👨‍👩‍👧", "🇯🇵", "?!"]) {
      const r = await clf.classify(text);
      expect(TASKS).toContain(r.task);
      expect(r.confidence, JSON.stringify(text)).toBeLessThan(0.5);
      const sum = Object.values(r.scores).reduce((a, b) => a + b, 0);
      expect(sum).toBeCloseTo(1, 5);
      expect(Object.keys(r.scores)).toEqual([...TASKS]);
    }
  });

  it("calls made together run as one batch, and each text's scores are bit for bit what it gets alone", async () => {
    const clf = await loadTaskClassifier();
    // Lengths from empty to a full 256-byte snippet: the batch pads every row to the longest.
    const texts = ["Привет, как дела? Это русский текст.", "import os\nimport sys\n\ndef main():\n    pass\n", "", "🙂", "ok", ...TASKS.map((t) => fixedSnippets(t, 1)[0]!)];
    const alone = [];
    for (const t of texts) alone.push(await clf.classify(t));
    const runs = clf.stats.runs;
    const together = await Promise.all(texts.map((t) => clf.classify(t)));
    expect(clf.stats.runs - runs).toBe(1);
    for (let i = 0; i < texts.length; i++) expect(together[i], JSON.stringify(texts[i])).toEqual(alone[i]);
  });

  it("a batch over maxBatch is split into runs; a failing run fails only its own calls", async () => {
    const { model, meta: m } = await loadTaskClassifierFiles();
    const ort = (await import("onnxruntime-web")) as unknown as OrtLike;
    const clf = await createTaskClassifier(ort, model, m, { maxBatch: 4 });
    const texts = Array.from({ length: 10 }, (_, i) => fixedSnippets(TASKS[i % TASKS.length]!, 2)[1]!);
    const out = await Promise.all(texts.map((t) => clf.classify(t)));
    expect(clf.stats).toEqual({ texts: 10, runs: 3 });
    for (let i = 0; i < texts.length; i++) expect(out[i]).toEqual(await clf.classify(texts[i]!));
    // A session whose runs fail: every waiting call rejects, and the next call runs again.
    let fail = true;
    const flaky = {
      Tensor: ort.Tensor,
      InferenceSession: {
        create: async (...a: Parameters<OrtLike["InferenceSession"]["create"]>) => {
          const s = await ort.InferenceSession.create(...a);
          return new Proxy(s, { get: (t, k) => (k === "run" ? (...r: Parameters<typeof s.run>) => (fail ? Promise.reject(new Error("boom")) : t.run(...r)) : Reflect.get(t, k)) });
        },
      },
    } as unknown as OrtLike;
    const f = await createTaskClassifier(flaky, model, m);
    const failed = await Promise.allSettled([f.classify("a"), f.classify("b")]);
    expect(failed.map((r) => r.status)).toEqual(["rejected", "rejected"]);
    fail = false;
    expect((await f.classify(texts[0]!)).task).toBe(out[0]!.task);
  });
});
