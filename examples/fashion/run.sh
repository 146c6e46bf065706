#!/usr/bin/env bash
# Fashion-MNIST (Debian's dataset-fashion-mnist, IDX files): logistic
# regression, an MLP and a CNN, each compiled to a standalone trainer and
# trained; prints each test accuracy.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-$root/build}
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null; }
fi
out="$build/fashion"
mkdir -p "$out"
cd "$out"
for m in fashion_logreg fashion_mlp fashion_cnn; do
  "$build/bpc" compile "$root/models/$m.yaml" -o "$m"
  echo "== $m"
  /usr/bin/time -f "%e s" "./$m" train --quiet --log "$m.csv"
done
