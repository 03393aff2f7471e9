"""Task corpora as training streams and held-out evaluation windows (bytes → token ids)."""
import json
import os

import numpy as np
import torch

from model import EOT

ROOT = os.path.join(os.path.dirname(__file__), "..", "corpora")
TASKS = ["en", "de", "fr", "es", "ru", "ja", "zh", "ar", "code-py", "code-c", "math"]

# Training mixes (fractions of sequences). `skewed` mimics pre-training imbalance: English and
# code heavy, and ja, zh, ar and math each at 2% of tokens.
MIXES = {
    "balanced": {t: 1 / len(TASKS) for t in TASKS},
    "skewed": {"en": 0.34, "code-py": 0.18, "code-c": 0.14, "de": 0.07, "fr": 0.07, "es": 0.06, "ru": 0.06,
               "ja": 0.02, "zh": 0.02, "ar": 0.02, "math": 0.02},
}


def load_train(task: str) -> np.ndarray:
    path = os.path.join(ROOT, ".cache", "train", f"{task}.bin")
    if not os.path.exists(path):
        raise SystemExit(f"missing {path}: build the corpora first with `npm run corpora`")
    raw = np.fromfile(path, dtype=np.uint8).astype(np.int64)
    raw[raw == 0] = EOT  # the corpus builder separates documents with a NUL byte
    return raw


def load_heldout(task: str, split: str = "validation") -> np.ndarray:
    ids = []
    with open(os.path.join(ROOT, "data", task, f"{split}.jsonl"), encoding="utf8") as f:
        for line in f:
            if line.strip():
                ids.extend(json.loads(line)["text"].encode("utf8"))
                ids.append(EOT)
    return np.array(ids, dtype=np.int64)


class MixSampler:
    """Draws (task, window) pairs: task by mix weight, window uniformly inside that task's stream."""

    def __init__(self, mix: dict, n_ctx: int, seed: int):
        self.tasks = [t for t in TASKS if mix.get(t, 0) > 0]
        w = np.array([mix[t] for t in self.tasks], dtype=np.float64)
        self.weights = w / w.sum()
        self.streams = {t: load_train(t) for t in self.tasks}
        self.n_ctx = n_ctx
        self.rng = np.random.default_rng(seed)

    def set_weights(self, mix: dict):
        w = np.array([mix.get(t, 0.0) for t in self.tasks], dtype=np.float64)
        self.weights = w / w.sum()

    def batch(self, batch_size: int):
        task_idx = self.rng.choice(len(self.tasks), size=batch_size, p=self.weights)
        x = np.empty((batch_size, self.n_ctx + 1), dtype=np.int64)
        for b, ti in enumerate(task_idx):
            s = self.streams[self.tasks[ti]]
            start = self.rng.integers(0, len(s) - self.n_ctx - 1)
            x[b] = s[start:start + self.n_ctx + 1]
        t = torch.from_numpy(x)
        return t[:, :-1], t[:, 1:], [self.tasks[i] for i in task_idx]


def heldout_windows(task: str, n_ctx: int, max_windows: int, split: str = "validation"):
    s = load_heldout(task, split)
    n = min(max_windows, (len(s) - 1) // n_ctx)
    x = np.stack([s[i * n_ctx:(i + 1) * n_ctx + 1] for i in range(n)])
    t = torch.from_numpy(x)
    return t[:, :-1], t[:, 1:]


@torch.no_grad()
def bits_per_byte(model, n_ctx: int, max_windows: int = 24, split: str = "validation") -> dict:
    """Mean cross-entropy in bits over byte targets (document separators excluded), per task."""
    model.eval()
    out = {}
    for task in TASKS:
        x, y = heldout_windows(task, n_ctx, max_windows, split)
        logits, _ = model(x)
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
        keep = y.reshape(-1) != EOT
        out[task] = round(float(ce[keep].mean()) / float(np.log(2)), 4)
    model.train()
    return out
