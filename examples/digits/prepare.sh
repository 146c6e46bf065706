#!/usr/bin/env bash
# Makes data/digits/{train,test}.csv from scikit-learn's 8x8 digits, taken
# from Debian's python3-sklearn package without installing it (apt-get
# download + dpkg -x: no scipy, no numpy). The split is deterministic: every
# 5th sample (index % 5 == 0) is the test set (360 of 1797), the rest train.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out="$root/data/digits"
[ -s "$out/train.csv" ] && [ -s "$out/test.csv" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
apt-get download python3-sklearn >/dev/null 2>&1 || { apt-get update -qq && apt-get download python3-sklearn >/dev/null; }
dpkg -x python3-sklearn_*.deb pkg
src=$(find pkg -name digits.csv.gz | head -1)
[ -n "$src" ] || { echo "prepare.sh: digits.csv.gz not found in python3-sklearn" >&2; exit 1; }
mkdir -p "$out"
# 64 pixel columns (0..16) then the label; write atomically.
zcat "$src" | awk -F, -v tr="$out/train.csv.tmp" -v te="$out/test.csv.tmp" \
  'NF == 65 { if ((NR - 1) % 5 == 0) print > te; else print > tr }'
mv "$out/train.csv.tmp" "$out/train.csv"
mv "$out/test.csv.tmp" "$out/test.csv"
echo "digits: $(wc -l < "$out/train.csv") train, $(wc -l < "$out/test.csv") test samples in $out"
