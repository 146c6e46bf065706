#!/usr/bin/env bash
# Cached sampling (issue 19.4) through the real binary: for small GPTs
# written here (packed q/k/v with a position-embedding param; separate
# projections, rms_norm and positions from arange), trained a few steps,
# `sample` with the cache prints the same text as `--no-cache` (the whole
# window per token) for the same seed: prompts shorter and longer than T,
# generating past T (the window slides), greedy and top-k, f32 and f64, the
# JIT (`bpc run`) and a compiled trainer. A model whose graph mixes
# positions otherwise (a mean over time) falls back, says why once on
# stderr, and prints the same text as before. Texts are compared (not
# logits): these models' logits are far from ties, so f32 rounding between
# the two paths cannot flip a sample (test_codegen's decode case compares
# the logits themselves). Prints "N passed, M failed".
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bpc=$(realpath "${1:-$root/build/bpc}")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
cd "$tmp"

# a text with structure, so a few steps give decisive logits
python3 - <<'PY' 2>/dev/null || for i in $(seq 400); do echo "the lord is my shepherd; i shall not want. he leadeth me beside the still waters."; done > t.txt
import random
random.seed(7)
w = "the lord is my shepherd i shall not want he maketh me to lie down in green pastures".split()
open("t.txt", "w").write(" ".join(random.choice(w) for _ in range(4000)))
PY

# gpt_poetry's graph (packed q, k, v; wpe a [T, C] param)
sed 's|path: ../examples/poetry/psalms.txt|path: t.txt|' "$root/models/gpt_poetry.yaml" > gpt.yaml
# separate q, k, v projections, rms_norm, positions by arange, a ReLU MLP
cat > gpt2.yaml <<'YAML'
bpc: 1
name: gpt_arange
dims: {B: 4, T: 24, C: 32, NH: 2, L: 2, V: 256}
inputs:
  tokens: {shape: [B, T], dtype: i32}
  targets: {shape: [B, T], dtype: i32}
params:
  wte: {shape: [V, C], init: normal(0.1)}
  wpe: {shape: [T, C], init: normal(0.1)}
  g: {shape: [C], init: ones}
  head: {shape: [C, V], init: normal(0.1)}
functions:
  block:
    args: [x]
    params:
      g1: {shape: [C], init: ones}
      wq: {shape: [C, C], init: normal(0.1)}
      wk: {shape: [C, C], init: normal(0.1)}
      wv: {shape: [C, C], init: normal(0.1)}
      wo: {shape: [C, C], init: normal(0.1)}
      w1: {shape: [C, 2 * C], init: normal(0.1)}
      w2: {shape: [2 * C, C], init: normal(0.1)}
    graph:
      h: rms_norm(x, g1)
      att: attention(h @ wq, h @ wk, h @ wv, heads=NH, causal=true)
      x1: x + att @ wo
      out: x1 + relu(rms_norm(x1, g1) @ w1) @ w2
    return: out
graph:
  x0: embedding(tokens, wte) + embedding(arange(T), wpe)
  xL: repeat(block, x0, times=L)
  logits: rms_norm(xL, g) @ head
  loss: cross_entropy(logits, targets)
loss: loss
train:
  optimizer: {type: adam, lr: 3e-3}
  steps: 40
  seed: 5
data:
  train: {format: text, path: t.txt, tokens: tokens, targets: targets}
generate: {tokens: tokens, logits: logits}
YAML
# a mean over time: every position reads every other one, so no cache
sed 's|^  x0: embedding(tokens, wte) + wpe .*|  x0: embedding(tokens, wte) + wpe - mean(embedding(tokens, wte), axis=1, keepdims=true)|' gpt.yaml > mixed.yaml

G="-D B=4 -D T=32 -D C=64 -D NH=4 -D L=2"
"$bpc" run gpt.yaml $G train --steps 40 --save p.safetensors --quiet > /dev/null 2>&1 || bad "train gpt"
"$bpc" run gpt2.yaml train --save p2.safetensors --quiet > /dev/null 2>&1 || bad "train gpt_arange"
"$bpc" run mixed.yaml $G train --steps 5 --save pm.safetensors --quiet > /dev/null 2>&1 || bad "train mixed"

long=$(printf 'the lord is my shepherd i shall not want he maketh me lie down') # 62 bytes > T

# same text with and without the cache: $1 label, $2 trainer command (a
# word list), the rest sample options
same() {
  local label=$1 cmd=$2
  shift 2
  $cmd sample "$@" > c.txt 2> c.err
  local rc1=$?
  $cmd sample "$@" --no-cache > u.txt 2> u.err
  local rc2=$?
  if [ $rc1 -ne 0 ] || [ $rc2 -ne 0 ]; then
    bad "$label: exit $rc1 / $rc2: $(cat c.err u.err | head -3)"
  elif ! grep -q "tokens/s (cached: " c.err || ! grep -q "tokens/s (uncached: 0 one-position steps" u.err; then
    bad "$label: not the cached and uncached paths: $(cat c.err u.err)"
  elif ! cmp -s c.txt u.txt; then
    bad "$label: texts differ: $(head -c 80 c.txt | od -c | head -2) vs $(head -c 80 u.txt | od -c | head -2)"
  else
    ok "$label: same text cached and uncached ($(wc -c < c.txt) bytes)"
  fi
}

JIT="$bpc run gpt.yaml $G"
same "jit short prompt, past T" "$JIT" --params p.safetensors --prompt "the lord" --tokens 60 --seed 3
grep -q "cached: 24 one-position steps, 36 whole windows" c.err && ok "8-byte prompt, 60 tokens, T = 32: 24 one-position steps, 36 windows" ||
  bad "step counts: $(cat c.err)"
same "jit greedy" "$JIT" --params p.safetensors --prompt "he " --tokens 40 --temperature 0
same "jit top-k" "$JIT" --params p.safetensors --prompt "i shall" --tokens 30 --top-k 5 --temperature 0.7 --seed 11
same "jit prompt longer than T" "$JIT" --params p.safetensors --prompt "$long" --tokens 20 --seed 4
same "jit no prompt" "$JIT" --params p.safetensors --tokens 10 --seed 9
same "jit f64" "$bpc run gpt.yaml $G --dtype f64" --params p.safetensors --prompt "the lord" --tokens 40 --seed 3
same "jit bf16" "$bpc run gpt.yaml $G --precision bf16" --params p.safetensors --prompt "the lord" --tokens 40 --seed 3
same "jit unfused" "$bpc run gpt.yaml $G --no-fuse" --params p.safetensors --prompt "the" --tokens 40 --seed 3
same "arange positions, separate q k v" "$bpc run gpt2.yaml" --params p2.safetensors --prompt "the lord" --tokens 40 --seed 2
same "arange, prompt longer than T" "$bpc run gpt2.yaml" --params p2.safetensors --prompt "$long" --tokens 10 --seed 2

# the compiled trainer: the same text as the JIT
if "$bpc" compile gpt.yaml $G -o gpt > cc.txt 2>&1; then
  same "compiled trainer" ./gpt --params p.safetensors --prompt "the lord" --tokens 60 --seed 3
  $JIT sample --params p.safetensors --prompt "the lord" --tokens 60 --seed 3 > j.txt 2> /dev/null
  cmp -s c.txt j.txt && ok "compiled trainer's text is the JIT's" || bad "compiled trainer's text differs from the JIT's"
  ./gpt info > i.txt; grep -q "^sample   cached" i.txt && ok "info: cached" || bad "info: $(grep sample i.txt)"
else
  bad "compile: $(tail -3 cc.txt)"
fi

# the fallback: said once, with the op's position; the text as before
"$bpc" run mixed.yaml $G sample --params pm.safetensors --prompt "the lord" --tokens 50 --seed 3 > m.txt 2> m.err
rc=$?
if [ $rc -eq 0 ] && [ "$(grep -c 'sample: uncached' m.err)" = 1 ] && grep -q "mixed.yaml:[0-9]*:[0-9]*: mean over the positions" m.err &&
  grep -q "tokens/s (uncached: 0 one-position steps, 50 whole windows)" m.err && [ "$(head -c 8 m.txt)" = "the lord" ] && [ "$(wc -c < m.txt)" -eq 58 ]; then
  ok "a mean over time falls back: $(head -1 m.err)"
else
  bad "fallback (rc $rc): $(cat m.err)"
fi
"$bpc" run mixed.yaml $G sample --params pm.safetensors --prompt "the lord" --tokens 50 --seed 3 --no-cache > m2.txt 2> /dev/null
cmp -s m.txt m2.txt && ok "fallback: --no-cache the same" || bad "fallback: --no-cache differs"
"$bpc" run mixed.yaml $G info > i.txt; grep -q "^sample   uncached: .*mean over the positions" i.txt && ok "info: uncached, why" || bad "info of the fallback: $(grep sample i.txt)"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
