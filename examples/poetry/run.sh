#!/usr/bin/env bash
# Trains models/gpt_poetry.yaml on the Psalms: 1500 steps, about 10 minutes
# on 2 cores (a cosine schedule over them; at most 11 minutes, then it saves),
# then samples new verse. Usage: examples/poetry/run.sh [trainer options]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-$root/build}
"$root/examples/poetry/prepare.sh"
out="$build/poetry"
mkdir -p "$out"
"$build/bpc" compile "$root/models/gpt_poetry.yaml" -o "$out/gpt_poetry"
cd "$out"
timeout --signal=INT 660 ./gpt_poetry train --steps 1500 --log metrics.csv --save gpt_poetry.safetensors "$@" || [ $? -eq 130 ]
./gpt_poetry eval --params gpt_poetry.safetensors
./gpt_poetry sample --params gpt_poetry.safetensors --prompt "The LORD is " --tokens 400 --temperature 0.8
