#!/usr/bin/env bash
# bench/sample.sh [BUILD] [TOKENS] [UNCACHED_TOKENS] — cached vs uncached
# sampling (issue 19.4) for bench/models/gpt.yaml, by default at GPT-2
# small's shape with T = 1024 (DIMS="L=12 C=768 NH=12 T=1024 B=1 V=50257";
# set DIMS for another). The params are one training step from the
# model's init on random tokens (random params are fine for speed). The
# cached run generates TOKENS (default T - 8: the context filled from a
# one-byte prompt, one whole window then one position per token); the
# uncached one UNCACHED_TOKENS (default 8: each of its tokens runs the whole
# window of T positions, so its rate does not depend on how many). Both
# from the same seed: the uncached text must be the cached one's start.
# Prints each run's tokens/s line and the ratio. Run it on a quiet machine;
# rates from a busy one mean little.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath "${1:-$root/build}")
bpc=$build/bpc
DIMS=${DIMS:-"L=12 C=768 NH=12 T=1024 B=1 V=50257"}
defs=() T=0 V=0
for d in $DIMS; do
  defs+=(-D "$d")
  case $d in T=*) T=${d#T=} ;; V=*) V=${d#V=} ;; esac
done
tokens=${2:-$((T - 8))}
utokens=${3:-8}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
# the bench model with a generate section
{ cat "$root/bench/models/gpt.yaml"; echo; echo "generate: {tokens: tokens, logits: logits}"; } |
  sed 's|path: data/gpt.safetensors|path: gpt.safetensors|' > gpt.yaml
python3 - "$T" "$V" <<'PY'
import json, random, struct, sys
T, V, n = int(sys.argv[1]), int(sys.argv[2]), 4
random.seed(0)
rows = [[random.randrange(V) for _ in range(T + 1)] for _ in range(n)]
toks = [x for r in rows for x in r[:-1]]
tgts = [x for r in rows for x in r[1:]]
nb = 4 * n * T
h = json.dumps({"tokens": {"dtype": "I32", "shape": [n, T], "data_offsets": [0, nb]},
                "targets": {"dtype": "I32", "shape": [n, T], "data_offsets": [nb, 2 * nb]}}).encode()
h += b" " * (-len(h) % 8)
open("gpt.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + struct.pack("<%di" % (2 * n * T), *toks, *tgts))
PY
echo "dims: $DIMS; cached $tokens tokens, uncached $utokens"
"$bpc" compile gpt.yaml "${defs[@]}" -o gpt
./gpt info | grep "^sample"
./gpt train --steps 1 --save p.safetensors --quiet > /dev/null
./gpt sample --params p.safetensors --prompt "x" --tokens "$tokens" --seed 1 > c.txt 2> c.err
./gpt sample --params p.safetensors --prompt "x" --tokens "$utokens" --seed 1 --no-cache > u.txt 2> u.err
cat c.err u.err
if [ "$(head -c "$((utokens + 1))" c.txt | od -An -tx1)" = "$(od -An -tx1 < u.txt)" ]; then
  echo "texts: the uncached text is the cached one's start"
else
  echo "texts: DIFFER"
fi
rate() { sed -n 's/.*s, \([0-9.]*\) tokens\/s.*/\1/p' "$1"; }
python3 -c "import sys; c, u = float(sys.argv[1]), float(sys.argv[2]); print('cached / uncached: %.1fx' % (c / u))" "$(rate c.err)" "$(rate u.err)"
