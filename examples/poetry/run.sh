#!/usr/bin/env bash
# Trains examples/poetry/gpt_poetry_10min.yaml (models/gpt_poetry.yaml with
# dropout, 6000 steps, bf16 products) on the Psalms for a 10-minute budget
# (--max-time 600: it saves and evaluates when the time runs out, whatever the
# step count), then samples new verse. Usage: examples/poetry/run.sh [trainer options]
# (MODEL=models/gpt_poetry.yaml STEPS=1500 for the original 1500-step f32 run).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-$root/build}
model=${MODEL:-$root/examples/poetry/gpt_poetry_10min.yaml}
"$root/examples/poetry/prepare.sh"
out="$build/poetry"
mkdir -p "$out"
"$build/bpc" compile "$model" -o "$out/gpt_poetry"
cd "$out"
./gpt_poetry train ${STEPS:+--steps $STEPS} --max-time 600 --log metrics.csv --save gpt_poetry.safetensors "$@"
./gpt_poetry eval --params gpt_poetry.safetensors
./gpt_poetry sample --params gpt_poetry.safetensors --prompt "The LORD is " --tokens 400 --temperature 0.8
