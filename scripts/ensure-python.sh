#!/usr/bin/env bash
# The calibrator's s-CDF step and the trainer need Debian's PyTorch + ONNX (and mandoc for the
# corpus builder). Installs them when missing and we can (root with apt); otherwise says how.
set -euo pipefail
PKGS="python3-torch python3-onnx libopenblas0-openmp mandoc"
if /usr/bin/python3 -c "import torch, onnx" 2>/dev/null && command -v mandoc >/dev/null; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian packages for the trainer: $PKGS" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
else
  echo "missing Python packages for the trainer — run: sudo apt-get install -y --no-install-recommends $PKGS" >&2
  exit 1
fi
