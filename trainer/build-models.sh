#!/usr/bin/env bash
# Rebuild every committed model from the corpora. Resumable: each step continues from its
# checkpoint. See trainer/README.md. Takes ~2 h on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
R=trainer/.runs
[ -f corpora/.cache/train/en.bin ] || npm run corpora
# The committed verifier: 2,500 steps of a 4,500-step cosine schedule, then the schedule cut to
# 2,900 steps so the last 400 anneal at a low learning rate (it had to fit one working session).
$PY trainer/train.py --run $R/verifier --arch verifier --mix balanced --steps 4500 --stop-at 2500 --procs 2
$PY trainer/train.py --run $R/verifier --arch verifier --mix balanced --steps 2900 --procs 2
$PY trainer/distill.py targets --teacher $R/verifier/ckpt.pt --pool $R/pool --windows 1500 --procs 2
$PY trainer/distill.py student --pool $R/pool --run $R/drafter-base --mix skewed --steps 6000 &
$PY trainer/distill.py student --pool $R/pool --run $R/drafter-balanced --mix balanced --steps 6000 &
wait
for m in verifier drafter-base drafter-balanced; do
  $PY trainer/export.py --ckpt $R/$m/ckpt.pt --out models/$m
done
