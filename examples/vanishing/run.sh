#!/usr/bin/env bash
# Vanishing gradients: 12 hidden layers of sigmoid against 12 of ReLU +
# batch_norm, same data (8x8 digits), same optimizer; --grad-stats logs every
# param's gradient norm per update; plot_layers.py draws them against depth.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD:-$root/build}
"$root/examples/digits/prepare.sh"
out="$build/vanishing"
mkdir -p "$out"
args=()
for m in sigmoid relu_bn; do
  "$build/bpc" compile "$here/$m.yaml" -o "$out/$m"
  (cd "$out" && "./$m" train --quiet --grad-stats --log "$m.csv" --save "$m.safetensors" 2>/dev/null | sed "s/^/$m: /")
  args+=("$m=$out/$m.csv")
done
python3 "$here/plot_layers.py" "$out/layers.svg" 50 "${args[@]}"
echo "plot: $out/layers.svg"
