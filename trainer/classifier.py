"""The edge's task classifier: hashed byte n-grams → embedding, mean- and max-pooled → linear → task logits.

  /usr/bin/python3 trainer/classifier.py --out models/task-classifier

Features (computed outside the graph, in Python here and in `functions/classifier.ts` at the
edge; both must agree bit-exactly, `test/classifier.test.ts` checks hard-coded vectors):

  bytes   = snippet_bytes(text): drop the IGNORED code points (emoji, pictographs, dingbats, ZWJ,
            variation selectors: no task signal, and their UTF-8 bytes look like CJK), trim
            leading ASCII whitespace, UTF-8 encode, keep the first SNIPPET_BYTES = 256 bytes (a
            byte cut, not a character one; the edge passes the latest user message)
  for n in NGRAMS, for i in 0 .. len(bytes) - n (n-gram order first, then position):
      h = 0x811C9DC5 ^ n                                   (uint32)
      for k in 0 .. n-1: h = (h ^ bytes[i+k]) * 0x01000193 mod 2^32      (FNV-1a step)
      h ^= h >> 16; h *= 0x85EBCA6B; h ^= h >> 13; h *= 0xC2B2AE35; h ^= h >> 16   (murmur3 fmix32)
      id = h & (BUCKETS - 1)
  no n-gram at all (empty input) → the single id BUCKETS (a reserved row trained towards uniform)

In TypeScript every step is `Math.imul` / `^` / `>>>` on 32-bit integers. The ONNX graph is
batched: it takes `ids` (int64, [batch, N], N ≥ 1; a row per text, short rows padded with the
id PAD = BUCKETS + 1, an all-zero row) and returns `logits` (float32, [batch, n_tasks]):
Gather(table, ids) → per row the mean over its real ids (ReduceSum / count) and the max
(padding replaced by -inf) → Concat → Gemm. The table is stored as float16 followed by a Cast
(folded by onnxruntime at session start, so inference is float32). Only Gather, Cast, Equal,
Not, Unsqueeze, Where, ReduceSum, ReduceMax, Div, Concat and Gemm: all in onnxruntime-web's
wasm CPU kernels.

  /usr/bin/python3 trainer/classifier.py --reexport models/task-classifier

rewrites an exported model in the current graph from its own weights (no training).

Training: balanced over the 11 tasks, random snippets of 32..256 bytes (and 10% of 1..31 bytes,
so that very short inputs come out unsure) cut at random byte positions (also mid-line,
mid-character) from the TRAIN streams only, plus a few percent of junk snippets (empty,
whitespace, emoji, symbols, other scripts) with a uniform target so that they come out with low
confidence. Seeded (same command → same model); one CPU thread, about 1.5 minutes. Progress is
monitored on the VALIDATION slices; the TEST slices are scored once at the end (256-byte windows).
"""
import argparse
import json
import os
import re
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TASKS = ["en", "de", "fr", "es", "ru", "ja", "zh", "ar", "code-py", "code-c", "math"]
SNIPPET_BYTES = 256
MIN_TRAIN_BYTES = 32
NGRAMS = (1, 2, 3, 4)  # default of --ngrams; the exported spec is in meta.json
FNV_OFFSET = 0x811C9DC5
FNV_PRIME = 0x01000193
M32 = 0xFFFFFFFF


# ---------------------------------------------------------------- features (the shared spec)

def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> 16)
    h = (h * 0x85EBCA6B) & M32
    h = h ^ (h >> 13)
    h = (h * 0xC2B2AE35) & M32
    return h ^ (h >> 16)


def ngram_ids_batch(x: np.ndarray, lens: np.ndarray, buckets: int):
    """x: uint8 [B, L] (zero-padded), lens: [B]. Returns (ids int64 [total], offsets int64 [B]) in
    the spec's order (per row: n-gram order, then position); rows with no n-gram get [buckets]."""
    x = x.astype(np.uint64)
    B, L = x.shape
    per_n = []
    for n in NGRAMS:
        w = L - n + 1
        if w <= 0:
            per_n.append((np.zeros((B, 0), np.int64), np.zeros((B, 0), bool)))
            continue
        h = np.full((B, w), FNV_OFFSET ^ n, dtype=np.uint64)
        for k in range(n):
            h = ((h ^ x[:, k:k + w]) * FNV_PRIME) & M32
        ids = (_fmix32(h) & (buckets - 1)).astype(np.int64)
        valid = np.arange(w)[None, :] <= (lens[:, None] - n)
        per_n.append((ids, valid))
    ids = np.concatenate([p[0] for p in per_n], axis=1)
    valid = np.concatenate([p[1] for p in per_n], axis=1)
    counts = valid.sum(1)
    empty = counts == 0
    if empty.any():  # reserved id for "no n-gram": put it in the first column of empty rows
        ids[empty, 0] = buckets
        valid[empty, 0] = True
        counts = valid.sum(1)
    flat = ids[valid]  # row-major: keeps each row's order
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return torch.from_numpy(flat), torch.from_numpy(offsets)


# Code points that carry no task signal and are dropped before the snippet is cut: emoji and
# pictographs, dingbats and miscellaneous symbols, variation selectors, ZWJ, keycap, tag characters.
# (JavaScript: the same class with the `u` flag; `functions/classifier.ts` IGNORED.)
IGNORED_CLASS = r"[\u200d\u20e3\u2600-\u27bf\u2b00-\u2bff\ufe00-\ufe0f\U0001f000-\U0001faff\U000e0000-\U000e007f]"
IGNORED = re.compile(IGNORED_CLASS)
LEADING_WS = re.compile(r"^[ \t\n\r\f\v]+")


def normalize(text: str) -> str:
    """Drop IGNORED code points, then leading ASCII whitespace."""
    return LEADING_WS.sub("", IGNORED.sub("", text))


def snippet_bytes(text: str) -> bytes:
    """The classifier's input: the first SNIPPET_BYTES UTF-8 bytes of normalize(text) (byte cut)."""
    return normalize(text).encode("utf8")[:SNIPPET_BYTES]


def ngram_ids(b: bytes, buckets: int) -> list:
    x = np.frombuffer(b[:SNIPPET_BYTES], dtype=np.uint8)[None, :]
    if x.shape[1] == 0:
        return [buckets]
    ids, _ = ngram_ids_batch(x, np.array([x.shape[1]]), buckets)
    return ids.tolist()


# ---------------------------------------------------------------- data

def load_train(task: str) -> np.ndarray:
    path = os.path.join(ROOT, "corpora", ".cache", "train", f"{task}.bin")
    if not os.path.exists(path):
        raise SystemExit(f"missing {path}: build the corpora first with `npm run corpora`")
    raw = open(path, "rb").read().decode("utf8", "surrogateescape")  # byte-exact round trip
    return np.frombuffer(IGNORED.sub("", raw).encode("utf8", "surrogateescape"), dtype=np.uint8)


def load_docs(task: str, split: str) -> list:
    with open(os.path.join(ROOT, "corpora", "data", task, f"{split}.jsonl"), encoding="utf8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def char_start(b: bytes, i: int) -> int:
    while i < len(b) and (b[i] & 0xC0) == 0x80:
        i += 1
    return i


def char_end(b: bytes, i: int) -> int:
    """Largest j ≤ i such that b[:j] ends on a character boundary (as corpora's utf8Prefix)."""
    if i >= len(b):
        return len(b)
    while i > 0 and (b[i] & 0xC0) == 0x80:
        i -= 1
    return i


def test_snippets(task: str, split: str = "test") -> list:
    """Every non-overlapping 256-byte window of every document, start moved forward and end moved
    back to character boundaries (so each is a valid string, as a user message would be).
    Documents shorter than 256 bytes give one snippet (the whole document). Each goes through
    snippet_bytes, exactly as the edge prepares a message."""
    out = []
    for text in load_docs(task, split):
        b = text.encode("utf8")
        if len(b) <= SNIPPET_BYTES:
            out.append(snippet_bytes(text))
            continue
        for s in range(0, len(b) - SNIPPET_BYTES + 1, SNIPPET_BYTES):
            s2 = char_start(b, s)
            out.append(snippet_bytes(b[s2:char_end(b, s2 + SNIPPET_BYTES)].decode("utf8")))
    return out


EMOJI_RANGES = [(0x1F300, 0x1F5FF), (0x1F600, 0x1F64F), (0x1F680, 0x1F6FF), (0x1F900, 0x1F9FF),
                (0x2600, 0x26FF), (0x2700, 0x27BF)]
OTHER_SCRIPTS = [(0xAC00, 0xD7A3), (0x0E01, 0x0E30), (0x0905, 0x0939), (0x0531, 0x0556),
                 (0x10D0, 0x10F0), (0x05D0, 0x05EA)]  # Hangul, Thai, Devanagari, Armenian, Georgian, Hebrew
SYMBOLS = "!?.,:;-_*+=~^|/\\'\"`@&%$#<>()[]{}…•·–—"


def junk_snippet(rng: np.random.Generator) -> str:
    """Text that carries no task signal (target: uniform). Goes through snippet_bytes like any
    message, so emoji are mostly dropped before hashing; what is left must still come out unsure."""
    kind = rng.integers(0, 5)
    n = int(min(64, rng.geometric(0.15)))  # mostly short
    if kind == 0:
        return ""
    if kind == 1:
        return "".join(rng.choice([" ", "\n", "\t", "\r\n", "  "], size=n))
    if kind == 2:  # emoji with ZWJ / variation selectors, spaces and symbols in between
        cs = []
        for _ in range(n):
            lo, hi = EMOJI_RANGES[rng.integers(0, len(EMOJI_RANGES))]
            cs.append(chr(int(rng.integers(lo, hi + 1))))
            r = rng.random()
            cs.append("\u200d" if r < 0.1 else "\ufe0f" if r < 0.2 else " " if r < 0.4 else
                      str(rng.choice(list(SYMBOLS))) if r < 0.5 else "")
        return "".join(cs)
    if kind == 3:
        return "".join(rng.choice(list(SYMBOLS + " "), size=n))
    lo, hi = OTHER_SCRIPTS[rng.integers(0, len(OTHER_SCRIPTS))]
    return "".join(chr(int(rng.integers(lo, hi + 1))) if rng.random() > 0.15 else " " for _ in range(n * 2))


class Sampler:
    def __init__(self, seed: int, junk: float, short: float):
        self.streams = [load_train(t) for t in TASKS]
        self.rng = np.random.default_rng(seed)
        self.junk = junk
        self.short = short

    def snippet(self, s: np.ndarray) -> np.ndarray:
        while True:
            if self.rng.random() < self.short:  # very short inputs, so that they come out unsure
                n = int(np.exp(self.rng.uniform(0, np.log(MIN_TRAIN_BYTES))))  # log-uniform 1..31
            else:
                n = int(self.rng.integers(MIN_TRAIN_BYTES, SNIPPET_BYTES + 1))
            start = int(self.rng.integers(0, len(s) - n))
            w = s[start:start + n]
            z = np.flatnonzero(w == 0)  # document separator: keep the longer side
            if len(z):
                a, b = w[:z[0]], w[z[-1] + 1:]
                w = a if len(a) >= len(b) else b
            if len(w) >= min(16, n):
                return w

    def batch(self, size: int, buckets: int):
        x = np.zeros((size, SNIPPET_BYTES), dtype=np.uint8)
        lens = np.zeros(size, dtype=np.int64)
        target = np.zeros((size, len(TASKS)), dtype=np.float32)
        tasks = self.rng.integers(0, len(TASKS), size=size)
        is_junk = self.rng.random(size) < self.junk
        for i in range(size):
            if is_junk[i]:
                w = np.frombuffer(snippet_bytes(junk_snippet(self.rng)), dtype=np.uint8)
                target[i] = 1.0 / len(TASKS)
            else:
                w = self.snippet(self.streams[tasks[i]])
                target[i, tasks[i]] = 1.0
            x[i, :len(w)] = w
            lens[i] = len(w)
        ids, offsets = ngram_ids_batch(x, lens, buckets)
        return ids, offsets, torch.from_numpy(target)


# ---------------------------------------------------------------- model

class Classifier(nn.Module):
    """One embedding table, pooled two ways: the mean (overall style) and the max (so that a few
    telling n-grams, e.g. some kana in an English-looking snippet, are not averaged away)."""

    def __init__(self, buckets: int, dim: int, pooling: str):
        super().__init__()
        self.pooling = pooling.split("+")
        self.bag = nn.EmbeddingBag(buckets + 1, dim, mode="mean")
        self.out = nn.Linear(dim * len(self.pooling), len(TASKS))
        nn.init.normal_(self.bag.weight, std=0.1)

    def forward(self, ids, offsets):
        pooled = [F.embedding_bag(ids, self.bag.weight, offsets, mode=m) for m in self.pooling]
        return self.out(torch.cat(pooled, dim=1))


@torch.no_grad()
def evaluate(model, snippets_by_task: dict, buckets: int, batch: int = 512):
    model.eval()
    conf = np.zeros((len(TASKS), len(TASKS)), dtype=np.int64)
    for ti, t in enumerate(TASKS):
        sn = snippets_by_task[t]
        for j in range(0, len(sn), batch):
            chunk = sn[j:j + batch]
            x = np.zeros((len(chunk), SNIPPET_BYTES), dtype=np.uint8)
            lens = np.array([len(c) for c in chunk])
            for i, c in enumerate(chunk):
                x[i, :len(c)] = np.frombuffer(c, dtype=np.uint8)
            ids, offsets = ngram_ids_batch(x, lens, buckets)
            pred = model(ids, offsets).argmax(1).numpy()
            for p in pred:
                conf[ti, p] += 1
    model.train()
    return conf


def summarize(conf: np.ndarray) -> dict:
    per = {t: round(float(conf[i, i] / max(1, conf[i].sum())), 4) for i, t in enumerate(TASKS)}
    overall = round(float(np.trace(conf) / conf.sum()), 4)
    confusions = []
    for i, t in enumerate(TASKS):
        for j, u in enumerate(TASKS):
            if i != j and conf[i, j]:
                confusions.append({"true": t, "predicted": u, "count": int(conf[i, j]),
                                   "rate": round(float(conf[i, j] / conf[i].sum()), 4)})
    confusions.sort(key=lambda c: -c["count"])
    return {"overall": overall, "per_task": per, "snippets": {t: int(conf[i].sum()) for i, t in enumerate(TASKS)},
            "top_confusions": confusions[:12], "confusion_matrix": conf.tolist()}


# ---------------------------------------------------------------- export

def export_onnx(table16: np.ndarray, w: np.ndarray, b: np.ndarray, pooling: list, path: str):
    """The graph, batched: `ids` int64 [batch, n_ids], each row one text's ids, rows shorter than
    the longest padded with PAD = table rows (an extra all-zero row). Per row: the sum of its rows
    over the ids (pad rows add 0) divided by its count of real ids (the mean), and the max over
    its ids (pad rows replaced by -inf first), then Concat → Gemm → logits [batch, n_tasks].

    Why batched: the edge classifies the requests that arrive together in one run; a run's fixed
    cost in onnxruntime-web (~40 µs) is far above its kernels' (a few µs for 1,000 ids)."""
    rows, dim = table16.shape
    pad = rows  # the id of the padding row
    nodes = [
        helper.make_node("Cast", ["table_fp16"], ["table"], to=TensorProto.FLOAT),
        helper.make_node("Gather", ["table", "ids"], ["rows"], axis=0),  # [batch, n_ids, dim]
        helper.make_node("Equal", ["ids", "pad_id"], ["is_pad"]),  # [batch, n_ids]
    ]
    pooled = []
    for m in pooling:
        if m == "mean":
            nodes += [
                helper.make_node("ReduceSum", ["rows", "axis1"], ["sum"], keepdims=0),  # pad rows add 0
                helper.make_node("Not", ["is_pad"], ["is_real"]),
                helper.make_node("Cast", ["is_real"], ["real"], to=TensorProto.FLOAT),
                helper.make_node("ReduceSum", ["real", "axis1"], ["count"], keepdims=1),  # [batch, 1]
                helper.make_node("Div", ["sum", "count"], ["pooled_mean"]),
            ]
        else:
            nodes += [
                helper.make_node("Unsqueeze", ["is_pad", "axis2"], ["is_pad3"]),  # [batch, n_ids, 1]
                helper.make_node("Where", ["is_pad3", "minus_inf", "rows"], ["rows_for_max"]),
                helper.make_node("ReduceMax", ["rows_for_max"], ["pooled_max"], axes=[1], keepdims=0),
            ]
        pooled.append(f"pooled_{m}")
    if len(pooled) > 1:
        nodes.append(helper.make_node("Concat", pooled, ["pooled"], axis=1))
    else:
        nodes.append(helper.make_node("Identity", pooled, ["pooled"]))
    nodes.append(helper.make_node("Gemm", ["pooled", "out_weight", "out_bias"], ["logits"], transB=1))
    table_padded = np.concatenate([table16, np.zeros((1, dim), np.float16)])
    consts = {"pad_id": np.array(pad, np.int64), "axis1": np.array([1], np.int64), "axis2": np.array([2], np.int64),
              "minus_inf": np.array(-np.inf, np.float32)}
    graph = helper.make_graph(
        nodes, "task_classifier",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "n_ids"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(TASKS)])],
        [numpy_helper.from_array(table_padded, "table_fp16"), numpy_helper.from_array(w, "out_weight"),
         numpy_helper.from_array(b, "out_bias")] + [numpy_helper.from_array(v, k) for k, v in consts.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="fairspec")
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, path)


def exported_weights(path: str):
    """(table16 without the padding row, out_weight, out_bias) of a model.onnx this file exported."""
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    table16 = inits["table_fp16"]
    if "pad_id" in inits:  # batched export: drop the padding row
        table16 = table16[:-1]
    return table16, inits["out_weight"], inits["out_bias"]


def reference_logits(table16: np.ndarray, w: np.ndarray, b: np.ndarray, ids: list, pooling: list) -> list:
    """What the ONNX graph computes, in float32 numpy (for the TS test to compare against)."""
    rows = table16[np.array(ids)].astype(np.float32)
    pooled = np.concatenate([{"mean": rows.mean(0), "max": rows.max(0)}[m] for m in pooling])
    return (pooled @ w.T + b).astype(np.float32).tolist()


# ---------------------------------------------------------------- main

def main():
    global NGRAMS
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "task-classifier"))
    ap.add_argument("--buckets-log2", type=int, default=15)
    ap.add_argument("--dim", type=int, default=24)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--junk", type=float, default=0.06)
    ap.add_argument("--short", type=float, default=0.1, help="fraction of real snippets of 1..31 bytes")
    ap.add_argument("--ngrams", default=",".join(map(str, NGRAMS)))
    ap.add_argument("--pooling", default="mean+max", choices=["mean", "mean+max"])
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--eval-every", type=int, default=500)
    args = ap.parse_args()

    NGRAMS = tuple(int(n) for n in args.ngrams.split(","))
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    buckets = 1 << args.buckets_log2
    t0 = time.time()
    sampler = Sampler(args.seed, args.junk, args.short)
    # Held-out monitoring during training: the committed VALIDATION slices (never the test ones).
    val = {t: test_snippets(t, "validation") for t in TASKS}
    model = Classifier(buckets, args.dim, args.pooling)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + np.cos(np.pi * min(s, args.steps) / args.steps)))
    log = []
    run_loss = 0.0
    for step in range(1, args.steps + 1):
        ids, offsets, target = sampler.batch(args.batch, buckets)
        loss = F.cross_entropy(model(ids, offsets), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run_loss += float(loss)
        if step % args.eval_every == 0 or step == args.steps:
            s = summarize(evaluate(model, val, buckets))
            entry = {"step": step, "loss": round(run_loss / args.eval_every, 4), "val_top1": s["overall"],
                     "minutes": round((time.time() - t0) / 60, 2)}
            run_loss = 0.0
            log.append(entry)
            print(json.dumps(entry), " worst:", sorted(s["per_task"].items(), key=lambda kv: kv[1])[:3], flush=True)

    # Score exactly what is exported: float16 table.
    with torch.no_grad():
        model.bag.weight.copy_(model.bag.weight.half().float())
    val_s = summarize(evaluate(model, val, buckets))
    test_s = summarize(evaluate(model, {t: test_snippets(t, "test") for t in TASKS}, buckets))
    print("validation top-1", val_s["overall"], "test top-1", test_s["overall"])
    print("test per task", json.dumps(test_s["per_task"]))
    print("top confusions", json.dumps(test_s["top_confusions"][:6]))

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "model.onnx")
    table16 = model.bag.weight.detach().numpy().astype(np.float16)
    w = model.out.weight.detach().numpy().astype(np.float32)
    b = model.out.bias.detach().numpy().astype(np.float32)
    export_onnx(table16, w, b, model.pooling, path)
    vectors = []
    for text in ["", "ab", "Hello, world!", "def f(x):\n    return x ** 2\n", "Grüße aus Köln — ça va? ¿Qué?",
                 "日本語のテキスト", "Привет", "🙂🚀", " \n\t👍🏽 Grüße ❤️ 🇩🇪 ok", "∑ x² ≤ 1 ✓"]:
        ids = ngram_ids(snippet_bytes(text), buckets)
        vectors.append({"text": text, "ids": ids, "logits": [round(v, 5) for v in reference_logits(table16, w, b, ids, model.pooling)]})
    meta = {
        "name": "fairspec task classifier",
        "labels": TASKS,
        **graph_docs(buckets),
        "snippet": {"bytes": SNIPPET_BYTES, "take": "first", "cut": "byte (no character alignment)",
                    "drop": IGNORED_CLASS, "drop_syntax": "Python re; in JavaScript \\u{1f000} etc. with the u flag",
                    "trim_leading": "[ \\t\\n\\r\\f\\v]+",
                    "steps": "drop `drop` code points, trim leading ASCII whitespace, UTF-8 encode, keep the first `bytes` bytes"},
        "features": {
            "kind": "hashed byte n-grams; embedding mean- and max-pooled",
            "ngrams": list(NGRAMS),
            "buckets": buckets,
            "empty_id": buckets,
            "pad_id": buckets + 1,
            "order": "n-gram order ascending, then position ascending",
            "hash": "h = 0x811C9DC5 ^ n; for each byte c: h = imul(h ^ c, 0x01000193); "
                    "fmix32 (h ^= h>>>16; h = imul(h, 0x85EBCA6B); h ^= h>>>13; h = imul(h, 0xC2B2AE35); h ^= h>>>16); "
                    "id = h & (buckets - 1)",
        },
        "model": {"embedding_dim": args.dim, "pooling": model.pooling, "table_rows": buckets + 2, "table_dtype": "float16 (Cast to float32 in graph)",
                  "params": int(sum(p.numel() for p in model.parameters())), "opset": 17,
                  "onnx_bytes": os.path.getsize(path)},
        "training": {
            "command": "/usr/bin/python3 trainer/classifier.py " + " ".join(
                f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
            "data": "corpora/.cache/train/<task>.bin (TRAIN streams only), balanced over tasks",
            "snippets": f"{MIN_TRAIN_BYTES}..{SNIPPET_BYTES} bytes (uniform; a `short_fraction` of 1..{MIN_TRAIN_BYTES - 1} "
                        "bytes, log-uniform) at random byte offsets, split at document separators",
            "junk_fraction": args.junk,
            "short_fraction": args.short,
            "junk": "empty, whitespace, emoji (ZWJ/VS16) with spaces and symbols, symbols, non-task scripts "
                    "(Hangul, Thai, Devanagari, Armenian, Georgian, Hebrew), through snippet_bytes; target uniform",
            "steps": args.steps, "batch": args.batch, "lr": args.lr, "optimizer": "Adam, 100-step warm-up, cosine",
            "seed": args.seed, "threads": 1, "minutes": round((time.time() - t0) / 60, 2), "log": log,
        },
        "evaluation": {
            "snippets": "every non-overlapping 256-byte window of every held-out document (start moved forward, "
                        "end back to character boundaries); documents under 256 bytes whole",
            "validation": {k: val_s[k] for k in ("overall", "per_task", "snippets")},
            "test": test_s,
        },
        "test_vectors": vectors,
    }
    with open(os.path.join(args.out, "meta.json"), "w", encoding="utf8") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("wrote", path, os.path.getsize(path), "bytes")


def graph_docs(buckets: int) -> dict:
    return {
        "inputs": {"ids": f"int64 [batch, n_ids], n_ids >= 1: one row of hashed n-gram ids (see features) per text; "
                          f"rows shorter than the longest padded with features.pad_id ({buckets + 1})"},
        "outputs": {"logits": "float32 [batch, n_labels], a row per text, in `labels` order; softmax gives the scores"},
    }


def reexport(out: str):
    """Rewrites out/model.onnx in this file's current graph from the weights already in it (no
    training: the same model, e.g. the unbatched graph of an earlier version made batched), and
    the graph's entries in out/meta.json."""
    path = os.path.join(out, "model.onnx")
    with open(os.path.join(out, "meta.json"), encoding="utf8") as f:
        meta = json.load(f)
    table16, w, b = exported_weights(path)
    export_onnx(table16, w, b, meta["model"]["pooling"], path)
    buckets = meta["features"]["buckets"]
    meta.update(graph_docs(buckets))
    meta["features"]["pad_id"] = buckets + 1
    meta["model"]["table_rows"] = buckets + 2
    meta["model"]["onnx_bytes"] = os.path.getsize(path)
    for v in meta["test_vectors"]:
        assert v["logits"] == [round(x, 5) for x in reference_logits(table16, w, b, v["ids"], meta["model"]["pooling"])]
    with open(os.path.join(out, "meta.json"), "w", encoding="utf8") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("re-exported", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--reexport":  # --reexport DIR
        reexport(sys.argv[2])
    else:
        main()
