"""Load a committed ONNX model (exported by export.py) back into a PyTorch GPT, so finetuning
(e.g. corrective drafter finetuning) and teacher targets need only the files in models/."""
import json
import os

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from model import GPT, Config

FP16_SUFFIX = "__fp16"


def load_gpt_from_onnx(model_dir: str) -> GPT:
    with open(os.path.join(model_dir, "meta.json")) as f:
        arch = json.load(f)["architecture"]
    cfg = Config(**{k: arch[k] for k in ("n_layer", "d_model", "n_head", "d_ff", "n_ctx", "vocab")})
    model = GPT(cfg)
    g = onnx.load(os.path.join(model_dir, "model.onnx")).graph
    weights = {}
    for init in g.initializer:
        name = init.name[: -len(FP16_SUFFIX)] if init.name.endswith(FP16_SUFFIX) else init.name
        if name.startswith("model."):
            weights[name[len("model."):]] = torch.from_numpy(numpy_helper.to_array(init).astype(np.float32))
    missing = set(model.state_dict()) - set(weights)
    if missing:
        raise SystemExit(f"{model_dir}/model.onnx lacks weights {sorted(missing)[:5]}: re-export it with trainer/export.py")
    model.load_state_dict(weights)
    return model
