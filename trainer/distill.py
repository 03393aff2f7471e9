"""Distil a drafter from the verifier: the drafter learns the verifier's next-byte distribution
(not the raw data), on a task mix of our choosing.

Two phases, both resumable:

  # 1. teacher targets: the verifier's top-k distribution on windows of every task's training
  #    stream, computed once and shared by every drafter (and by corrective finetuning later)
  /usr/bin/python3 trainer/distill.py targets --teacher trainer/.runs/verifier/ckpt.pt \
      --pool trainer/.runs/pool [--windows 1500] [--procs 2]
  # 2. a drafter on a mix
  /usr/bin/python3 trainer/distill.py student --pool trainer/.runs/pool --run trainer/.runs/base \
      --mix skewed --steps 6000 [--init CKPT] [--weights '{"ja": 0.3, ...}']

Loss: the cross-entropy of the drafter q against the teacher p restricted to p's top-k tokens,
with p's remaining mass assigned to "any other token" (log of q's mass outside the top-k). This
is exact for the top-k and a proper bound for the tail, so minimising it drives q towards p.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from model import ARCHS, GPT, Config, param_count  # noqa: E402
from data import MIXES, TASKS, bits_per_byte, load_train  # noqa: E402
from train import lr_at, launch_workers  # noqa: E402

TOP_K = 32


def load_model(path):
    """A training checkpoint (.pt) or an exported model directory (model.onnx + meta.json)."""
    if os.path.isdir(path):
        from onnx_weights import load_gpt_from_onnx
        with open(os.path.join(path, "meta.json")) as f:
            meta = json.load(f)
        return load_gpt_from_onnx(path), {"meta": meta}
    ck = torch.load(path, map_location="cpu")
    m = GPT(Config(**ck["config"]))
    m.load_state_dict(ck["model"])
    return m, ck


@torch.no_grad()
def targets(args):
    torch.set_num_threads(1)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    teacher, _ = load_model(args.teacher)
    teacher.eval()
    n_ctx = teacher.config.n_ctx
    os.makedirs(args.pool, exist_ok=True)
    for task in TASKS[rank::world]:
        out = os.path.join(args.pool, f"{task}.npz")
        if os.path.exists(out):
            continue
        rng = np.random.default_rng(TASKS.index(task) + 7)
        stream = load_train(task)
        starts = rng.integers(0, len(stream) - n_ctx - 1, size=args.windows)
        x = np.stack([stream[s:s + n_ctx + 1] for s in starts])
        idx = np.empty((args.windows, n_ctx, TOP_K), dtype=np.int16)
        lp = np.empty((args.windows, n_ctx, TOP_K), dtype=np.float16)
        t0 = time.time()
        for b in range(0, args.windows, 16):
            logits, _ = teacher(torch.from_numpy(x[b:b + 16, :-1]))
            logp = F.log_softmax(logits.float(), dim=-1)
            v, i = logp.topk(TOP_K, dim=-1)
            idx[b:b + 16] = i.numpy().astype(np.int16)
            lp[b:b + 16] = v.numpy().astype(np.float16)
        tmp = out + ".tmp.npz"
        np.savez(tmp, x=x, idx=idx, logp=lp)
        os.replace(tmp, out)
        print(f"[rank {rank}] {task}: {args.windows} windows in {time.time() - t0:.0f} s", flush=True)


def distill_loss(logits, idx, logp):
    """Cross-entropy of q against p's top-k plus p's tail mass on q's tail mass (see module doc)."""
    logq = F.log_softmax(logits, dim=-1)
    p_top = logp.exp()
    logq_top = logq.gather(-1, idx)
    p_tail = (1 - p_top.sum(-1)).clamp_min(0)
    q_tail = (1 - logq_top.exp().sum(-1)).clamp_min(1e-6)
    return -((p_top * logq_top).sum(-1) + p_tail * q_tail.log()).mean()


def student(args):
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    pool = {}
    for t in TASKS:
        z = np.load(os.path.join(args.pool, f"{t}.npz"))
        pool[t] = (torch.from_numpy(z["x"].astype(np.int64)), torch.from_numpy(z["idx"].astype(np.int64)),
                   torch.from_numpy(z["logp"].astype(np.float32)))
    mix = json.loads(args.weights) if args.weights else MIXES[args.mix]
    tasks = [t for t in TASKS if mix.get(t, 0) > 0]
    w = np.array([mix[t] for t in tasks], dtype=np.float64)
    w /= w.sum()
    os.makedirs(args.run, exist_ok=True)
    ckpt = os.path.join(args.run, "ckpt.pt")
    if args.init and not os.path.exists(ckpt):
        model, ck0 = load_model(args.init)
        parent = ck0.get("meta", {})
    else:
        model, parent = GPT(ARCHS[args.arch]), None
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    rng = np.random.default_rng(args.seed)
    step, tokens, task_tokens = 0, 0, {t: 0 for t in TASKS}
    if os.path.exists(ckpt):
        ck = torch.load(ckpt, map_location="cpu")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, tokens, task_tokens = ck["step"], ck["tokens"], ck["task_tokens"]
        rng.bit_generator.state = ck["rng"]
        parent = ck.get("meta", {}).get("parent")
        print(f"resumed at step {step}", flush=True)
    print(f"drafter {param_count(model) / 1e6:.3f} M params, mix {json.dumps({t: round(float(x), 3) for t, x in zip(tasks, w)})}", flush=True)
    t_last = time.time()
    model.train()

    def save(meta=None):
        tmp = ckpt + ".tmp"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "tokens": tokens,
                    "task_tokens": task_tokens, "rng": rng.bit_generator.state, "config": model.config.to_dict(),
                    "meta": meta or {"parent": parent}}, tmp)
        os.replace(tmp, ckpt)

    while step < args.steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        ti = rng.choice(len(tasks), size=args.batch, p=w)
        xs, ids, lps = [], [], []
        for t in ti:
            x, idx, lp = pool[tasks[t]]
            j = int(rng.integers(0, x.shape[0]))
            xs.append(x[j, :-1]); ids.append(idx[j]); lps.append(lp[j])
            task_tokens[tasks[t]] += x.shape[1] - 1
        x, idx, lp = torch.stack(xs), torch.stack(ids), torch.stack(lps)
        logits, _ = model(x)
        loss = distill_loss(logits, idx, lp)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += x.numel()
        if step % 200 == 0 or step == args.steps:
            now = time.time()
            print(json.dumps({"step": step, "loss": round(loss.item(), 4), "tok_per_s": round(200 * x.numel() / (now - t_last))}), flush=True)
            t_last = now
        if step % 1000 == 0:
            save()
    val = bits_per_byte(model, model.config.n_ctx)
    meta = {"role": "drafter", "parent": parent,
            "training": {"objective": f"distillation from the verifier (top-{TOP_K} cross-entropy + tail mass)",
                         "teacher": os.path.relpath(args.pool), "mix": {t: float(x) for t, x in zip(tasks, w)},
                         "mix_name": "custom" if args.weights else args.mix, "tokens_seen": tokens,
                         "tokens_seen_per_task": task_tokens,
                         "token_share_per_task": {t: round(n / max(1, tokens), 4) for t, n in task_tokens.items()},
                         "steps": step, "seed": args.seed, "init": args.init},
            "validation_bits_per_byte": val}
    save(meta)
    print(json.dumps({"done": True, "val_bpb": val}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("targets")
    a.add_argument("--teacher", required=True)
    a.add_argument("--pool", required=True)
    a.add_argument("--windows", type=int, default=1500)
    a.add_argument("--procs", type=int, default=1)
    b = sub.add_parser("student")
    b.add_argument("--pool", required=True)
    b.add_argument("--run", required=True)
    b.add_argument("--arch", default="drafter", choices=list(ARCHS))
    b.add_argument("--mix", default="skewed", choices=list(MIXES))
    b.add_argument("--weights", default="", help="JSON task→weight, overrides --mix (corrective finetuning)")
    b.add_argument("--init", default="", help="start from this checkpoint (finetuning)")
    b.add_argument("--steps", type=int, default=6000)
    b.add_argument("--batch", type=int, default=16)
    b.add_argument("--lr", type=float, default=3e-3)
    b.add_argument("--warmup", type=int, default=100)
    b.add_argument("--seed", type=int, default=99)
    args = ap.parse_args()
    if args.cmd == "targets":
        if args.procs > 1 and "RANK" not in os.environ:
            launch_workers(args.procs)
        else:
            targets(args)
    else:
        student(args)


if __name__ == "__main__":
    main()
