#!/usr/bin/env bash
# Before the tests: the calibrator's s-CDF step and the trainer need Debian's PyTorch + ONNX (and
# mandoc for the corpus builder): installed when missing and we can (root with apt), else we say how.
set -euo pipefail
PKGS="python3-torch python3-onnx python3-numpy libopenblas0-openmp mandoc"
if ! { /usr/bin/python3 -c "import numpy, torch, onnx" 2>/dev/null && command -v mandoc >/dev/null; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian packages for the trainer: $PKGS" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
else
  echo "missing Python packages for the trainer — run: sudo apt-get install -y --no-install-recommends $PKGS" >&2
  exit 1
fi
fi

# s-CDF finetuning in the calibrator tests draws teacher windows from the training text, which is
# rebuilt from Debian packages on demand (not committed): build it once if it is missing.
if [ ! -f corpora/.cache/train/en.bin ]; then
  echo "building the training corpora (once, ~1 min): npm run corpora" >&2
  npx tsx corpora/build.ts >&2
fi
