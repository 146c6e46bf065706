#!/usr/bin/env bash
# The same model (mlp_digits) trained with SGD, SGD + momentum, RMSprop,
# Adam and AdamW, same seed and data; loss curves on one plot (SVG).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-$root/build}
"$root/examples/digits/prepare.sh"
out="$build/optimizers"
mkdir -p "$out"
declare -A opts=(
  [sgd]="{type: sgd, lr: 0.05}"
  [momentum]="{type: sgd, lr: 0.05, momentum: 0.9}"
  [rmsprop]="{type: rmsprop, lr: 1e-3}"
  [adam]="{type: adam, lr: 1e-3}"
  [adamw]="{type: adamw, lr: 1e-3, weight_decay: 0.05}"
)
args=()
for name in sgd momentum rmsprop adam adamw; do
  # the model file in the digits data's folder layout, with this optimizer
  sed -e "s|  optimizer: .*|  optimizer: ${opts[$name]}|" -e "s|\.\./data/|$root/data/|g" \
    "$root/models/mlp_digits.yaml" > "$out/$name.yaml"
  "$build/bpc" compile "$out/$name.yaml" -o "$out/$name"
  (cd "$out" && "./$name" train --quiet --epochs 20 --log "$name.csv" --save "$name.safetensors" | sed "s/^/$name: /")
  args+=("$name=$out/$name.csv")
done
python3 "$root/examples/optimizers/plot.py" "$out/optimizers.svg" "${args[@]}"
echo "plot: $out/optimizers.svg"
