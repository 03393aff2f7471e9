"""Train the verifier on a task mix (next-byte prediction). Seeded, resumable, optionally data-parallel.

  /usr/bin/python3 trainer/train.py --run trainer/.runs/verifier --arch verifier --mix balanced \
      --steps 3000 [--max-minutes 90]
  # data-parallel over N processes, one thread each (the fastest way to use a 2-core machine;
  # Debian's torchrun is broken on Python 3.11, so the script launches its own workers):
  ... --procs 2

Re-running the same command resumes from <run>/ckpt.pt (model, optimiser, step, RNG, tokens seen).
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(__file__))
from model import ARCHS, GPT, Config, param_count  # noqa: E402
from data import MIXES, TASKS, MixSampler, bits_per_byte  # noqa: E402


def lr_at(step, steps, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, steps - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def save(path, model, opt, step, tokens, task_tokens, sampler, args, extra=None):
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "tokens": tokens,
                "task_tokens": task_tokens, "rng": sampler.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                "config": model.config.to_dict(), "args": vars(args), "meta": extra or {}}, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a truncated checkpoint


def launch_workers(n):
    import subprocess
    env = dict(os.environ, WORLD_SIZE=str(n), MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("MASTER_PORT", "29533"),
               OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable] + sys.argv, env=dict(env, RANK=str(r))) for r in range(n)]
    codes = [p.wait() for p in procs]
    if any(codes):
        sys.exit(f"a training worker failed (exit codes {codes}); re-run the same command to resume")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--arch", default="verifier", choices=list(ARCHS))
    ap.add_argument("--mix", default="balanced", choices=list(MIXES))
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=8, help="sequences per process per step")
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--max-minutes", type=float, default=0, help="stop (with a checkpoint) after this long")
    ap.add_argument("--stop-at", type=int, default=0, help="stop (with a checkpoint) at this step; the schedule still follows --steps")
    ap.add_argument("--procs", type=int, default=1, help="data-parallel worker processes")
    args = ap.parse_args()
    if args.procs > 1 and "RANK" not in os.environ:
        launch_workers(args.procs)
        return

    torch.set_num_threads(1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        dist.init_process_group("gloo")
    torch.manual_seed(args.seed)
    cfg = ARCHS[args.arch]
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    sampler = MixSampler(MIXES[args.mix], cfg.n_ctx, seed=args.seed + 1000 * rank)
    os.makedirs(args.run, exist_ok=True)
    ckpt = os.path.join(args.run, "ckpt.pt")
    step, tokens, task_tokens = 0, 0, {t: 0 for t in TASKS}
    if os.path.exists(ckpt):
        ck = torch.load(ckpt, map_location="cpu")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, tokens, task_tokens = ck["step"], ck["tokens"], ck["task_tokens"]
        if rank == 0:
            sampler.rng.bit_generator.state = ck["rng"]
        else:
            sampler.rng = np.random.default_rng(args.seed + 1000 * rank + step)
        torch.set_rng_state(ck["torch_rng"])
        if rank == 0:
            print(f"resumed at step {step} ({tokens / 1e6:.2f} M tokens)", flush=True)
    if world > 1:  # every rank starts from rank 0's weights
        for p in model.parameters():
            dist.broadcast(p.data, 0)
    if rank == 0:
        print(f"{args.arch}: {param_count(model) / 1e6:.2f} M params, mix {args.mix}, world {world}", flush=True)
    log = open(os.path.join(args.run, "log.jsonl"), "a") if rank == 0 else None
    t_start = time.time()
    t_last, tok_last = time.time(), tokens
    model.train()
    while step < args.steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        x, y, tasks = sampler.batch(args.batch)
        logits, _ = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if world > 1:
            for p in model.parameters():
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad /= world
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        n = x.numel() * world
        tokens += n
        for t in tasks:  # every rank draws with the same mix; count rank 0's draws × world
            task_tokens[t] += x.shape[1] * world
        stop = bool(args.max_minutes and (time.time() - t_start) / 60 > args.max_minutes) or (args.stop_at and step >= args.stop_at)
        if world > 1:  # all ranks must agree to stop
            flag = torch.tensor([1.0 if stop else 0.0])
            dist.all_reduce(flag)
            stop = flag.item() > 0
        if rank == 0 and (step % 25 == 0 or step == args.steps or stop):
            now = time.time()
            rate = (tokens - tok_last) / max(1e-9, now - t_last)
            t_last, tok_last = now, tokens
            rec = {"step": step, "loss": round(loss.item(), 4), "bits": round(loss.item() / math.log(2), 4),
                   "tokens": tokens, "tok_per_s": round(rate), "lr": opt.param_groups[0]["lr"]}
            if step % args.eval_every == 0 or step == args.steps or stop:
                rec["val_bpb"] = bits_per_byte(model, cfg.n_ctx)
                save(ckpt, model, opt, step, tokens, task_tokens, sampler, args)
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if stop:
            break
    if rank == 0:
        val = bits_per_byte(model, cfg.n_ctx)
        meta = {"role": "verifier", "training": {"objective": "next-byte cross-entropy on the data", "mix": MIXES[args.mix],
                "mix_name": args.mix, "tokens_seen": tokens, "tokens_seen_per_task": task_tokens, "steps": step,
                "seed": args.seed, "complete": step >= args.steps}, "validation_bits_per_byte": val}
        save(ckpt, model, opt, step, tokens, task_tokens, sampler, args, extra=meta)
        print(json.dumps({"done": step >= args.steps, "step": step, "val_bpb": val}), flush=True)
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
