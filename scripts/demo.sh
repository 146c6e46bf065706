#!/usr/bin/env bash
# The main job: compile models/mlp_digits.yaml into a standalone trainer,
# train it on scikit-learn's 8x8 digits and print its test accuracy.
set -euo pipefail
BUILD=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/examples/digits/prepare.sh"
out="$root/$BUILD/demo"
mkdir -p "$out"
echo "== bpc check models/mlp_digits.yaml"
"$root/$BUILD/bpc" check "$root/models/mlp_digits.yaml" | sed -n '1,12p;/^nodes/,/^kernels:/p'
echo "== bpc compile models/mlp_digits.yaml -o $BUILD/demo/mlp_digits"
time "$root/$BUILD/bpc" compile "$root/models/mlp_digits.yaml" -o "$out/mlp_digits"
echo "== ldd: no LLVM in the trainer"
ldd "$out/mlp_digits" | grep -ci llvm || true
echo "== $BUILD/demo/mlp_digits train (40 epochs)"
cd "$out" && ./mlp_digits train --log metrics.csv
