#!/usr/bin/env bash
# End to end through the real binaries: standalone trainers that need no
# LLVM, mlp_digits at >= 95% test accuracy, xor below 0.01 loss, and the
# same bits from `bpc run` (JIT) and the compiled trainer. Prints
# "N passed, M failed".
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bpc=${1:-$root/build/bpc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }

"$root/examples/digits/prepare.sh" >/dev/null || bad "digits data"
cd "$tmp"
if "$bpc" compile "$root/models/mlp_digits.yaml" -o mlp; then ok "compile mlp_digits"; else bad "compile mlp_digits"; fi
if ldd ./mlp | grep -qi llvm; then bad "trainer links LLVM"; else ok "trainer needs no LLVM"; fi
acc=$(./mlp train --quiet 2>/dev/null | awk '/^test/ { for (i = 1; i < NF; i++) if ($i == "acc") print $(i + 1) }')
if awk -v a="${acc:-0}" 'BEGIN { exit !(a >= 0.95) }'; then ok "mlp_digits test accuracy $acc >= 0.95"; else bad "mlp_digits test accuracy '$acc'"; fi

"$bpc" compile "$root/models/xor.yaml" -o xor || bad "compile xor"
loss=$(./xor --quiet --save aot.safetensors --seed 3 --steps 400 2>/dev/null | awk '/^train loss/ { print $3 }')
if awk -v l="${loss:-1}" 'BEGIN { exit !(l < 0.01) }'; then ok "xor loss $loss < 0.01"; else bad "xor loss '$loss'"; fi
"$bpc" run "$root/models/xor.yaml" --quiet --save jit.safetensors --seed 3 --steps 400 >/dev/null 2>&1
if cmp -s aot.safetensors jit.safetensors; then ok "bpc run and the trainer end with the same bits"; else bad "bpc run differs from the trainer"; fi

# resume: 150 + 250 steps equal 400 straight
./xor --quiet --save half.safetensors --seed 3 --steps 150 >/dev/null 2>&1
./xor --quiet --resume half.safetensors --save resumed.safetensors --steps 400 >/dev/null 2>&1
if cmp -s aot.safetensors resumed.safetensors; then ok "resume is bit-identical"; else bad "resume differs"; fi

# --profile: one line per kernel of the training program (forward, backward, the
# optimizer's one pass), whose times add up to no more than the updates' wall time
./xor --quiet --seed 3 --steps 400 --profile > prof.txt 2>&1
nk=$("$bpc" check "$root/models/xor.yaml" | awk '/^kernels \(/ { gsub(/[():]/, "", $2); print $2 }')
if awk -v nk="${nk:-0}" '
  /^profile:/ { for (i = 1; i <= NF; i++) { if ($i == "update") t = $(i + 1); if ($i == "wall") w = $(i - 2) } }
  /^  k[0-9]+ / { n++; s += $2; if ($0 ~ /one pass with k/) grouped = 1 }
  END { exit !(n > 0 && n < nk && grouped && s <= t + 0.01 && t <= w + 0.001) }' prof.txt; then
  ok "--profile lists the kernels ($nk, one optimizer pass)"
else
  bad "--profile: $(head -3 prof.txt)"
fi

# bad input: exit 1, nothing written
printf '0,0\n1\n' > bad.csv
./xor --quiet --data bad.csv --save never.safetensors >/dev/null 2>err.txt
rc=$?
if [ $rc -eq 1 ] && [ ! -e never.safetensors ] && grep -q "bad.csv" err.txt; then ok "bad csv: exit 1, file named, nothing written"; else bad "bad csv (rc $rc)"; fi

# a label out of range anywhere in the file stops training before step 1,
# naming the file and line, even when no batch of the run would draw it
cat > cls.yaml <<'YAML'
bpc: 1
name: cls
dims: {B: 2}
inputs: {x: {shape: [B, 3]}, y: {shape: [B], dtype: i32}}
params: {w: {shape: [3, 4], init: "normal(0.5)"}}
graph: {logits: x @ w, loss: "cross_entropy(logits, y)"}
loss: loss
train: {optimizer: {type: sgd, lr: 0.1}}
data: {train: {format: csv, path: cls.csv, header: true, columns: {x: "1:4", y: 0}}}
YAML
{ echo "y,a,b,c"; for i in $(seq 1 39); do echo "$((i % 4)),1,2,3"; done; echo "7,1,2,3"; } > cls.csv
"$bpc" run cls.yaml --steps 1 --save cls.safetensors --log cls.csv.log >/dev/null 2>err.txt
rc=$?
if [ $rc -eq 1 ] && grep -q "cls.csv:41 (input 'y'): label 7 out of range \[0, 4)" err.txt && [ ! -e cls.safetensors ] && [ ! -e cls.csv.log ]; then
  ok "label out of range found when the file loads"
else
  bad "label out of range (rc $rc): $(cat err.txt)"
fi

# a NaN loss: the run still reports it truthfully, the JSON log stays valid JSON (null)
sed -i 's/^7,/1,/' cls.csv
sed 's/loss: "cross_entropy(logits, y)"/loss: "cross_entropy(logits, y) + sqrt(sum(w) - 100)"/' cls.yaml > nan.yaml
"$bpc" run nan.yaml --steps 3 --log nan.jsonl --save nan.safetensors > out.txt 2>&1
if grep -q "^train loss nan" out.txt && grep -q '"loss": null' nan.jsonl && ! grep -q "nothing to do" out.txt; then
  ok "NaN loss: reported as nan, null in JSONL"
else
  bad "NaN loss: $(cat out.txt) / $(head -1 nan.jsonl)"
fi

# clip_grad_norm: .inf (YAML 1.2) means no clipping: the same bits as none
sed 's/lr: 0.1}}/lr: 0.1}, clip_grad_norm: .inf}/' cls.yaml > inf.yaml
"$bpc" run cls.yaml --steps 5 --save noclip.safetensors >/dev/null 2>&1
"$bpc" run inf.yaml --steps 5 --save infclip.safetensors >/dev/null 2>&1
if cmp -s noclip.safetensors infclip.safetensors; then ok "clip_grad_norm .inf"; else bad "clip_grad_norm .inf"; fi

# batch_norm running stats under grad_accum: one update per micro-batch, as
# PyTorch's forward does. Micro-batch means 1 then 3: 0.9 * 0.1 * 1 + 0.1 * 3.
cat > bnacc.yaml <<'YAML'
bpc: 1
name: bnacc
dims: {B: 4}
inputs: {x: {shape: [B, 1]}, y: {shape: [B, 1]}}
params: {g: {shape: [1], init: ones}, be: {shape: [1], init: zeros}}
graph: {h: "batch_norm(x, g, be)", loss: "mse(h, y)"}
loss: loss
train: {optimizer: {type: sgd, lr: 0.1}, grad_accum: 2}
data: {train: {format: safetensors, path: bnacc.data.safetensors, shuffle: false}}
YAML
python3 -c '
import json, struct
x = [0, 2, 0, 2, 2, 4, 2, 4]
h = json.dumps({"x": {"dtype": "F64", "shape": [8, 1], "data_offsets": [0, 64]},
                "y": {"dtype": "F64", "shape": [8, 1], "data_offsets": [64, 128]}}).encode()
h += b" " * (-len(h) % 8)
open("bnacc.data.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + struct.pack("<16d", *x, *[0] * 8))' 2>/dev/null
"$bpc" run bnacc.yaml --steps 1 --dtype f64 --save bnacc.safetensors >/dev/null 2>&1
rm_=$(python3 -c '
import json, struct, sys
b = open("bnacc.safetensors", "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
t = h["state.h.running_mean"]; o = 8 + n + t["data_offsets"][0]
print(struct.unpack("<" + ("d" if t["dtype"] == "F64" else "f"), b[o:o + (8 if t["dtype"] == "F64" else 4)])[0])' 2>/dev/null)
if awk -v r="${rm_:-0}" 'BEGIN { exit !(r > 0.38999 && r < 0.39001) }'; then
  ok "batch_norm running mean per micro-batch ($rm_)"
else
  bad "batch_norm running mean under grad_accum: '$rm_', want 0.39"
fi

# usage and environment errors: clean exits, nothing written
"$bpc" help run > help.txt 2>&1 && grep -q "bpc run MODEL.yaml" help.txt && ok "bpc help run" || bad "bpc help run"
"$bpc" compile cls.yaml -o never --cpu bogus >/dev/null 2>err.txt
rc=$?
if [ $rc -eq 1 ] && [ ! -e never ] && grep -q "bogus" err.txt; then ok "--cpu bogus: exit 1"; else bad "--cpu bogus (rc $rc)"; fi
printf 'bpc: 1\nname: huge\ndims: {N: 1048576, M: 524288}\ninputs: {x: {shape: [2, N]}}\nparams: {w: {shape: [N, M]}}\ngraph: {loss: sum(x @ w)}\nloss: loss\n' > huge.yaml
# under ASan an impossible malloc aborts unless told to return NULL, as libc does
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}allocator_may_return_null=1" "$bpc" grad huge.yaml --inputs none.safetensors -o never.safetensors >/dev/null 2>err.txt
rc=$?
if [ $rc -eq 1 ] && grep -q "out of memory" err.txt && [ ! -e never.safetensors ]; then ok "a model too large for memory: exit 1"; else bad "huge model (rc $rc): $(head -c 300 err.txt)"; fi
{ printf 'bpc: 1\nname: long\ninputs: {x: {shape: [3]}}\ngraph:\n  loss: sum(x'; for i in $(seq 1 50000); do printf ' + x'; done; printf ')\nloss: loss\n'; } > long.yaml
if "$bpc" check long.yaml >/dev/null 2>&1; then ok "a 50,000-term expression"; else bad "a 50,000-term expression"; fi

# a C program driving the model through --emit lib (examples/capi)
if out=$(BUILD=$(dirname "$bpc") "$root/examples/capi/run.sh" 2>&1) && echo "$out" | grep -q "step 500"; then
  ok "examples/capi trains xor through --emit lib"
else
  bad "examples/capi: $out"
fi

# a CNN (conv2d, batch_norm, max_pool, dropout) on the same digits
if "$bpc" compile "$root/models/cnn_digits.yaml" -o cnn; then
  acc=$(./cnn train --quiet 2>/dev/null | awk '/^test/ { for (i = 1; i < NF; i++) if ($i == "acc") print $(i + 1) }')
  if awk -v a="${acc:-0}" 'BEGIN { exit !(a >= 0.95) }'; then ok "cnn_digits test accuracy $acc >= 0.95"; else bad "cnn_digits test accuracy '$acc'"; fi
else
  bad "compile cnn_digits"
fi

# loss falls: the first vs the last logged train loss of a brief run
falls() {  # name, trainer, steps, extra args...
  local name=$1 bin=$2 steps=$3
  shift 3
  "./$bin" --quiet --steps "$steps" --log "$bin.csv" --save "$bin.safetensors" "$@" >/dev/null 2>&1
  local first last
  first=$(awk -F, '$1 == "train" { print $3; exit }' "$bin.csv" 2>/dev/null)
  last=$(awk -F, '$1 == "train" { l = $3 } END { print l }' "$bin.csv" 2>/dev/null)
  if awk -v f="${first:-0}" -v l="${last:-9}" 'BEGIN { exit !(l < 0.7 * f) }'; then ok "$name: loss falls $first -> $last"; else bad "$name: loss '$first' -> '$last'"; fi
}
"$bpc" compile "$root/examples/vanishing/relu_bn.yaml" -o relu_bn && falls "vanishing relu_bn" relu_bn 60
if [ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; then
  "$bpc" compile "$root/models/fashion_mlp.yaml" -o fmlp && falls "fashion_mlp" fmlp 60
  "$bpc" compile "$root/models/fashion_cnn.yaml" -o fcnn && falls "fashion_cnn" fcnn 40
else
  bad "fashion-mnist data"
fi

# the poetry model, shrunk, trains briefly on the Psalms and its loss falls
if "$root/examples/poetry/prepare.sh" >/dev/null 2>&1 &&
   "$bpc" compile "$root/models/gpt_poetry.yaml" -D B=4 -D T=32 -D C=32 -D NH=2 -D L=1 -o gpt >/dev/null; then
  ./gpt --quiet --steps 120 --log poetry.csv --save poetry.safetensors >/dev/null 2>&1
  first=$(awk -F, '$1 == "train" { print $3; exit }' poetry.csv)
  last=$(awk -F, '$1 == "train" { l = $3 } END { print l }' poetry.csv)
  if awk -v f="${first:-0}" -v l="${last:-9}" 'BEGIN { exit !(l < f - 1) }'; then
    ok "gpt_poetry (small) loss falls: $first -> $last"
  else
    bad "gpt_poetry loss did not fall: '$first' -> '$last'"
  fi
  ./gpt sample --params poetry.safetensors --prompt "The LORD " --tokens 40 --seed 1 > sample.txt 2>/dev/null
  if [ "$(head -c 9 sample.txt)" = "The LORD " ] && [ "$(wc -c < sample.txt)" -ge 49 ]; then
    ok "gpt_poetry samples"
  else
    bad "gpt_poetry sample"
  fi
else
  bad "poetry: data or compile"
fi

echo "e2e: $pass passed, $fail failed"
[ $fail -eq 0 ]
