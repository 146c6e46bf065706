#!/usr/bin/env bash
# The memory budget (SPEC 6.8) through the real binary: `--max-memory SIZE`
# parsing, the impossible budget's error naming the minimum, and for models
# with awkward graphs (a GPT, an MLP, a CNN with batch_norm and dropout, a
# graph of residuals, a shared weight and values read many times) the
# checkpoint after a few steps byte-for-byte the same with a budget as
# without, with the arena `bpc check` reports within the budget. Prints
# "N passed, M failed".
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bpc=$(realpath "${1:-$root/build/bpc}")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
cd "$tmp"

# --- SIZE: bytes, K, M, G (powers of 1024); anything else is a usage error
"$bpc" check "$root/models/xor.yaml" --max-memory 1G > g.txt 2>&1 && grep -q "max-memory 1073741824 bytes" g.txt &&
  ok "--max-memory 1G is 1073741824 bytes" || bad "--max-memory 1G: $(tail -2 g.txt)"
"$bpc" check "$root/models/xor.yaml" --max-memory 1.5M > k.txt 2>&1 && grep -q "max-memory 1572864 bytes" k.txt &&
  ok "--max-memory 1.5M is 1572864 bytes" || bad "--max-memory 1.5M: $(tail -2 k.txt)"
for s in 10X 1.5 -3 0 M 12MB; do
  "$bpc" check "$root/models/xor.yaml" --max-memory "$s" > e.txt 2>&1
  rc=$?
  if [ $rc -eq 2 ] && grep -q "max-memory takes a size.*got '$s'" e.txt; then ok "--max-memory $s: usage error"; else bad "--max-memory $s (rc $rc): $(head -1 e.txt)"; fi
done
"$bpc" compile "$root/models/xor.yaml" -o x --max-memory > e.txt 2>&1
[ $? -eq 2 ] && ok "--max-memory without a value: usage error" || bad "--max-memory without a value"
"$bpc" show "$root/models/xor.yaml" --max-memory 1M > e.txt 2>&1
[ $? -eq 2 ] && grep -q "not show" e.txt && ok "show refuses --max-memory" || bad "show --max-memory"

# The smallest arena bpc can plan ($2...: model and -D options): from the
# error a one-byte budget gives, which must name it and exit 1.
minimum() {
  "$bpc" check "$@" --max-memory 1 > min.out 2> min.err
  local rc=$?
  local m
  m=$(sed -n "s/.*smallest arena of this model's training step, \([0-9]*\) bytes.*/\1/p" min.err)
  if [ $rc -ne 1 ] || [ -z "$m" ]; then echo 0; return; fi
  echo "$m"
}
unbudgeted() { "$bpc" check "$@" --max-memory 1G | sed -n 's/^  arena \([0-9]*\) bytes.*/\1/p'; }
arena_with() { "$bpc" check "$@" | sed -n 's/.* bytes ([^)]*) without the budget, \([0-9]*\) bytes.*/\1/p'; }

# train NAME STEPS DATA MODEL-ARGS...: the same bits without a budget, with one
# halfway to the minimum, and at the minimum (each arena as check reports it
# within its budget). A model whose backward reads every kept value at once
# (a one-layer MLP) has nothing to gain: its minimum is the plain arena.
train() {
  local name=$1 steps=$2 data=$3
  shift 3
  local min full budgets
  min=$(minimum "$@")
  full=$(unbudgeted "$@")
  if [ "$min" -le 0 ] || [ -z "$full" ] || [ "$min" -gt "$full" ]; then
    bad "$name: minimum '$min', unbudgeted arena '$full' ($(head -c 300 min.err))"
    return
  fi
  grep -q "no budget reduces" min.err && ok "$name: a budget below $min bytes is an error naming the minimum" ||
    bad "$name: error text: $(cat min.err)"
  budgets="$(( (min + full) / 2 )) $min"
  [ "$min" -eq "$full" ] && budgets=$min
  "$bpc" run "$@" --data "$data" --steps "$steps" --quiet --save "$name.none.safetensors" > /dev/null 2>&1 || bad "$name: run without a budget"
  for b in $budgets; do
    local a
    a=$(arena_with "$@" --max-memory "$b")
    if [ -n "$a" ] && [ "$a" -le "$b" ]; then ok "$name: arena $a <= budget $b (without: $full)"; else bad "$name: arena '$a' for budget $b"; fi
    "$bpc" run "$@" --max-memory "$b" --data "$data" --steps "$steps" --quiet --save "$name.$b.safetensors" > /dev/null 2>&1
    if cmp -s "$name.none.safetensors" "$name.$b.safetensors"; then ok "$name: $steps steps within $b bytes: the same bits"; else bad "$name: budget $b changes the bits"; fi
  done
  [ "$min" -eq "$full" ] && return
  "$bpc" check "$@" --max-memory "$min" > plan.txt
  grep -q "^  recomputed in the backward ([1-9]" plan.txt && grep -q "^  kept from the forward" plan.txt &&
    grep -q "extra FLOPs per step: [1-9]" plan.txt && grep -q "fixed, not reducible" plan.txt &&
    grep -q "\[recomputed\]" plan.txt &&
    ok "$name: check lists kept and recomputed values and the extra FLOPs" || bad "$name: check's plan: $(tail -5 plan.txt)"
}

# data: a text for the GPT; random csv rows for the others
cat "$root"/docs/*.md > text.txt
awk 'BEGIN { srand(7); for (i = 0; i < 400; i++) { for (j = 0; j < 64; j++) printf "%d,", int(rand() * 17); print int(rand() * 10) } }' > digits.csv
awk 'BEGIN { srand(11); for (i = 0; i < 256; i++) { for (j = 0; j < 32; j++) printf "%.4f,", rand() * 2 - 1; print int(rand() * 4) } }' > awk.csv
cat > awkward.yaml <<'YAML'
bpc: 1
name: awkward
doc: residuals, one weight used twice, values read many times, dropout, norms
dims: {B: 16, D: 32}
inputs: {x: {shape: [B, D]}, y: {shape: [B], dtype: i32}}
params:
  w: {shape: [D, D], init: "normal(0.2)"}
  g: {shape: [D], init: ones}
  b: {shape: [D], init: zeros}
  wo: {shape: [D, 4], init: "normal(0.2)"}
graph:
  h1: tanh(x @ w)
  r1: layer_norm(h1 + x, g, b)
  h2: sigmoid(r1 @ w) * h1
  r2: rms_norm(h2 + r1 + h1, g)
  s: softmax(r2 * h1)
  d: dropout(s + r2, 0.2)
  e: exp(-square(d)) * d + h1 * r1
  logits: (e + h2) @ wo
  loss: cross_entropy(logits, y) + 0.01 * mean(square(h1))
loss: loss
train: {optimizer: {type: adam, lr: 0.01}, seed: 5}
data:
  train: {format: csv, path: awk.csv, columns: {x: "0:32", y: 32}}
YAML
cat > cnn2.yaml <<'YAML'
bpc: 1
name: cnn2
doc: two conv2d + batch_norm layers, a residual around the second, dropout
dims: {B: 16, F: 8}
inputs: {x: {shape: [B, 64]}, y: {shape: [B], dtype: i32}}
params:
  k1: {shape: [3, 3, 1, F], init: he_normal}
  g1: {shape: [F], init: ones}
  e1: {shape: [F], init: zeros}
  k2: {shape: [3, 3, F, F], init: he_normal}
  g2: {shape: [F], init: ones}
  e2: {shape: [F], init: zeros}
  w: {shape: [4 * 4 * F, 10], init: xavier_uniform}
  b: {shape: [10], init: zeros}
graph:
  img: reshape(x, [B, 8, 8, 1])
  h1: relu(batch_norm(conv2d(img, k1, padding=1), g1, e1))
  h2: relu(batch_norm(conv2d(h1, k2, padding=1), g2, e2)) + h1
  p: max_pool2d(h2, 2)
  f: dropout(reshape(p, [B, 4 * 4 * F]), 0.1)
  logits: linear(f, w, b)
  loss: cross_entropy(logits, y)
loss: loss
train: {optimizer: {type: sgd, lr: 0.05, momentum: 0.9}}
data:
  train: {format: csv, path: digits.csv, columns: {x: "0:64", y: 64}, scale: {x: 0.0625}}
YAML

train gpt 4 text.txt "$root/models/gpt_poetry.yaml" -D B=4 -D T=32 -D C=64 -D L=2
for m in mlp_digits cnn_digits; do  # their test sets: the same random rows
  sed 's#\.\./data/digits/[a-z]*\.csv#digits.csv#g' "$root/models/$m.yaml" > "$m.yaml"
done
train mlp 6 digits.csv mlp_digits.yaml
train cnn 4 digits.csv cnn_digits.yaml -D B=16
train cnn2 4 digits.csv cnn2.yaml
train awkward 6 awk.csv awkward.yaml

# The GPT unfused (one kernel per node) and in f64 at their own minimums
# (the error of `bpc run` with a one-byte budget names it): the same bits.
gpt=("$root/models/gpt_poetry.yaml" -D B=4 -D T=32 -D C=64 -D L=2)
for opt in --no-fuse "--dtype f64"; do
  # shellcheck disable=SC2086
  "$bpc" run "${gpt[@]}" $opt --max-memory 1 --data text.txt --steps 3 --quiet > /dev/null 2> e.txt
  m=$(sed -n "s/.*smallest arena of this model's training step, \([0-9]*\) bytes.*/\1/p" e.txt)
  # shellcheck disable=SC2086
  "$bpc" run "${gpt[@]}" $opt --data text.txt --steps 3 --quiet --save o1.safetensors > /dev/null 2>&1
  # shellcheck disable=SC2086
  "$bpc" run "${gpt[@]}" $opt --max-memory "${m:-1}" --data text.txt --steps 3 --quiet --save o2.safetensors > /dev/null 2>&1
  if [ -n "$m" ] && cmp -s o1.safetensors o2.safetensors; then ok "gpt $opt within $m bytes: the same bits"; else bad "gpt $opt (minimum '$m')"; fi
  rm -f o1.safetensors o2.safetensors
done

# The compiled trainer at the minimum: the same bits as `bpc run`, its arena as check's.
min=$(minimum awkward.yaml)
"$bpc" compile awkward.yaml -o awk --max-memory "$min" || bad "compile --max-memory"
./awk train --data awk.csv --steps 6 --quiet --save aot.safetensors > /dev/null 2>&1
if cmp -s aot.safetensors "awkward.$min.safetensors"; then ok "compiled trainer within $min bytes: the same bits as bpc run"; else bad "compiled trainer differs"; fi
arena=$(./awk info | sed -n 's/^program  train: arena \([0-9]*\) bytes.*/\1/p')
if [ -n "$arena" ] && [ "$arena" -le "$min" ]; then ok "trainer info: train arena $arena <= $min"; else bad "trainer info arena '$arena'"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
