#!/usr/bin/env bash
# bench/setup.sh BUILD — what `make bench` needs beyond the build: Debian's
# python3-torch (PyTorch eager), the OpenMP build of OpenBLAS it runs fastest
# with, libopenblas-dev (bench_gemm's OpenBLAS sgemm), matplotlib and venv;
# then a venv in BUILD/venv with JAX and a PyTorch 2.x for torch.compile from
# the Python package index. A peer that cannot be installed is skipped by
# bench.py and named in its output, never faked.
set -euo pipefail
BUILD=${1:-build-bench}
pkgs=(python3-torch python3-numpy python3-matplotlib python3-venv libopenblas0-openmp libopenblas-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
VENV="$BUILD/venv"
mkdir -p "$BUILD"
[ -x "$VENV/bin/python3" ] || /usr/bin/python3 -m venv "$VENV"
"$VENV/bin/python3" -c "import jax, optax" 2>/dev/null ||
  "$VENV/bin/pip" install -q jax optax numpy || echo "bench: JAX could not be installed; it will be skipped"
"$VENV/bin/python3" -c "import torch._dynamo" 2>/dev/null ||
  "$VENV/bin/pip" install -q torch || echo "bench: torch (for torch.compile) could not be installed; it will be skipped"
