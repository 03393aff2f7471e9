"""Export a trained checkpoint to ONNX (Optimum decoder layout) + tokenizer.json + meta.json.

  /usr/bin/python3 trainer/export.py --ckpt trainer/.runs/verifier/ckpt.pt --out models/verifier

Weights are stored as float16 initializers followed by a Cast to float32: the file is half the
size, and onnxruntime folds the casts at session start, so inference runs in float32. The
drafter and the verifier are both served (and measured) at exactly this precision.
"""
import argparse
import json
import os
import sys

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper, TensorProto

sys.path.insert(0, os.path.dirname(__file__))
from model import GPT, Config, OnnxWrapper, EOT  # noqa: E402


def export_onnx(model: GPT, path: str, fp16_weights: bool = True):
    c = model.config
    model.eval()
    hd = c.d_model // c.n_head
    ids = torch.tensor([[1, 2, 3]], dtype=torch.long)
    past_len = 2
    mask = torch.ones(1, past_len + 3, dtype=torch.long)
    pos = torch.arange(past_len, past_len + 3).unsqueeze(0)
    past = []
    in_names = ["input_ids", "attention_mask", "position_ids"]
    out_names = ["logits"]
    dyn = {"input_ids": {0: "batch_size", 1: "sequence_length"},
           "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
           "position_ids": {0: "batch_size", 1: "sequence_length"},
           "logits": {0: "batch_size", 1: "sequence_length"}}
    for i in range(c.n_layer):
        for kv in ("key", "value"):
            past.append(torch.zeros(1, c.n_head, past_len, hd))
            n = f"past_key_values.{i}.{kv}"
            in_names.append(n)
            dyn[n] = {0: "batch_size", 2: "past_sequence_length"}
            o = f"present.{i}.{kv}"
            out_names.append(o)
            dyn[o] = {0: "batch_size", 2: "total_sequence_length"}
    tmp = path + ".fp32"
    with torch.no_grad():
        torch.onnx.export(OnnxWrapper(model), (ids, mask, pos, *past), tmp, input_names=in_names,
                          output_names=out_names, dynamic_axes=dyn, opset_version=17,
                          # No folding: initializers keep their parameter names (the weight
                          # transposes stay as graph nodes, which onnxruntime folds at load), so
                          # the committed ONNX file alone can be loaded back for finetuning.
                          do_constant_folding=False)
    m = onnx.load(tmp)
    os.remove(tmp)
    if fp16_weights:
        m = _store_weights_fp16(m)
    onnx.checker.check_model(m)
    onnx.save(m, path)


def _store_weights_fp16(m):
    g = m.graph
    new_inits, casts = [], []
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size >= 256:
            h = numpy_helper.from_array(arr.astype(np.float16), init.name + "__fp16")
            new_inits.append(h)
            casts.append(helper.make_node("Cast", [h.name], [init.name], to=TensorProto.FLOAT, name=init.name + "__cast"))
        else:
            new_inits.append(init)
    del g.initializer[:]
    g.initializer.extend(new_inits)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(casts + nodes)
    return m


def tokenizer_json():
    """A byte-level BPE tokenizer.json with no merges, in the Hugging Face `tokenizers` schema.

    Byte b maps to the GPT-2 byte-to-unicode character, exactly as real byte-level BPE models
    (GPT-2, Qwen, Llama-3) store their vocabularies, so the engine's loader is the real one."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_to_char = {b: chr(c) for b, c in zip(bs, cs)}
    vocab = {byte_to_char[b]: b for b in range(256)}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": EOT, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": []},
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--fp32", action="store_true", help="store float32 weights")
    a = ap.parse_args()
    ck = torch.load(a.ckpt, map_location="cpu")
    model = GPT(Config(**ck["config"]))
    model.load_state_dict(ck["model"])
    os.makedirs(a.out, exist_ok=True)
    export_onnx(model, os.path.join(a.out, "model.onnx"), fp16_weights=not a.fp32)
    with open(os.path.join(a.out, "tokenizer.json"), "w") as f:
        json.dump(tokenizer_json(), f, ensure_ascii=False)
    meta = dict(ck.get("meta", {}))
    meta["architecture"] = {"type": "gpt2-style decoder, pre-LN, learned positions, tied embeddings", **ck["config"]}
    meta["parameters"] = sum(p.numel() for p in model.parameters())
    meta["weights_dtype"] = "float32" if a.fp32 else "float16 (cast to float32 at load)"
    meta["eos_token_id"] = EOT
    with open(os.path.join(a.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2, ensure_ascii=False)
    print(f"exported {a.out}: {os.path.getsize(os.path.join(a.out, 'model.onnx')) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
