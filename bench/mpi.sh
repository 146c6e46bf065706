#!/usr/bin/env bash
# bench/mpi.sh [BUILD] [STEPS] — data-parallel on one machine (SPEC 6.7):
# gpt_poetry and GPT-2 small (bench/models/gpt.yaml) at the same global batch
# as 1 rank x 1 thread, 1 rank x 2 threads and 2 ranks x 1 thread (Open MPI,
# shared memory). For the 2-rank runs: the bytes each update sums over ranks,
# the time a blocking sum takes after the step (BPC_DP_OVERLAP=0: all of the
# communication, exposed) and the time the update still waits when the sums
# start from the backward's kernels (the exposed part); hidden = 1 - the one
# over the other. Step times are medians after warm-up (--timing). Run it on
# a quiet machine; numbers from a busy one mean nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
steps=${2:-30}
bpc=$build/bpc
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# label, dims (global batch B), sequences in the data file
models=("gpt_poetry|B=8 T=128 C=256 NH=4 L=4 V=256"
        "gpt2_small|B=4 T=64 C=768 NH=12 L=12 V=50257")

# A token stream as bench.py writes it: n sequences of T+1 random tokens.
make_data() {  # T V n path
  python3 - "$@" <<'PY'
import json, random, struct, sys
T, V, n, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
random.seed(0)
rows = [[random.randrange(V) for _ in range(T + 1)] for _ in range(n)]
toks = [x for r in rows for x in r[:-1]]
tgts = [x for r in rows for x in r[1:]]
nb = 4 * n * T
h = json.dumps({"tokens": {"dtype": "I32", "shape": [n, T], "data_offsets": [0, nb]},
                "targets": {"dtype": "I32", "shape": [n, T], "data_offsets": [nb, 2 * nb]}}).encode()
h += b" " * (-len(h) % 8)
open(path, "wb").write(struct.pack("<Q", len(h)) + h + struct.pack("<%di" % (2 * n * T), *toks, *tgts))
PY
}

field() { awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }'; }

printf "%-11s %-14s %10s %14s %12s %12s %8s\n" model config step_ms allreduce_MB comm_ms exposed_ms hidden
for m in "${models[@]}"; do
  name=${m%%|*} dims=${m#*|}
  declare -A d=()
  for kv in $dims; do d[${kv%%=*}]=${kv#*=}; done
  defs=() half=()
  for kv in $dims; do
    defs+=(-D "$kv")
    if [ "${kv%%=*}" = B ]; then half+=(-D "B=$((${kv#*=} / 2))"); else half+=(-D "$kv"); fi
  done
  data=$tmp/$name.safetensors
  make_data "${d[T]}" "${d[V]}" $((16 * d[B])) "$data"
  "$bpc" compile "$root/bench/models/gpt.yaml" "${defs[@]}" -o "$tmp/$name.1"
  "$bpc" compile "$root/bench/models/gpt.yaml" "${half[@]}" --mpi -o "$tmp/$name.2"
  run=(--data "$data" --steps "$steps" --timing --quiet --save "$tmp/out.safetensors")
  for th in 1 2; do
    ms=$("$tmp/$name.1" "${run[@]}" --threads $th | field median_ms)
    printf "%-11s %-14s %10.1f %14s %12s %12s %8s\n" "$name" "1 rank x $th" "$ms" - - - -
  done
  blk=$(BPC_DP_OVERLAP=0 mpirun --oversubscribe --bind-to core -np 2 "$tmp/$name.2" "${run[@]}" --threads 1)
  ovl=$(mpirun --oversubscribe --bind-to core -np 2 "$tmp/$name.2" "${run[@]}" --threads 1)
  bytes=$(echo "$ovl" | field allreduce_bytes)
  comm=$(echo "$blk" | field wait_median_ms)
  for v in "blocking|$blk" "overlapped|$ovl"; do
    out=${v#*|}
    printf "%-11s %-14s %10.1f %14.1f %12.2f %12.2f %8s\n" "$name" "2 x 1 ${v%%|*}" "$(echo "$out" | field median_ms)" \
      "$(awk -v b="$bytes" 'BEGIN { print b / 1048576 }')" "$comm" "$(echo "$out" | field wait_median_ms)" \
      "$(awk -v c="$comm" -v e="$(echo "$out" | field wait_median_ms)" 'BEGIN { printf "%.0f%%", (c > 0 ? 100 * (1 - e / c) : 0) }')"
  done
done
