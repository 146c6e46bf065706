#!/usr/bin/env bash
# Data-parallel training under Open MPI (SPEC 6.7), 2 and 4 ranks on
# loopback: N ranks with batch B end where one process with batch N*B ends
# (within f32 rounding), repeats give the same bits, every rank holds the
# same params, a trainer without --mpi refuses to be one of several ranks,
# a killed rank ends the job within seconds, SIGINT saves once and exits 130,
# a checkpoint resumes with any N. Skips (exit 77) without mpirun or a bpc
# built with Open MPI. Prints "N passed, M failed".
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bpc=${1:-$root/build/bpc}
command -v mpirun >/dev/null || { echo "skip: no mpirun (apt-get install openmpi-bin libopenmpi-dev)"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
pass=0 fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
# Open MPI refuses root without these; 4 ranks on 2 cores need --oversubscribe.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpi() { timeout 60 mpirun --oversubscribe -np "$@"; }

# tests/ckpt_diff.py: the largest relative difference between two checkpoints' params.
near() { awk -v d="${1:-1}" -v t="$2" 'BEGIN { exit !(d <= t) }'; }

# A small byte-level GPT (no batch_norm) on this repository's reference text.
gpt="$root/models/gpt_poetry.yaml" data="$root/docs/REFERENCE.md"
dims=(-D T=32 -D C=64 -D L=2)
if "$bpc" compile "$gpt" "${dims[@]}" -D B=8 -o one8 && "$bpc" compile "$gpt" "${dims[@]}" -D B=4 --mpi -o dp4 &&
   "$bpc" compile "$gpt" "${dims[@]}" -D B=2 --mpi -o dp2; then
  ok "compile --mpi"
else
  bad "compile --mpi"; echo "0 passed, $((fail)) failed"; exit 1
fi
if ldd ./one8 | grep -q libmpi; then bad "a trainer without --mpi links MPI"; else ok "a trainer without --mpi needs no MPI"; fi
run=(--data "$data" --steps 20 --threads 1 --quiet)
./one8 "${run[@]}" --save one8.safetensors >/dev/null 2>&1
./one8 "${run[@]}" --seed 5 --save seed5.safetensors >/dev/null 2>&1
mpi 2 ./dp4 "${run[@]}" --save n2.safetensors >/dev/null 2>n2.err
d2=$(python3 "$root/tests/ckpt_diff.py" one8.safetensors n2.safetensors)
dseed=$(python3 "$root/tests/ckpt_diff.py" one8.safetensors seed5.safetensors)
# Adam amplifies rounding in small gradients: 6e-6 after one step, ~4e-4 after 20; another seed differs by ~60
if near "$d2" 2e-3 && ! near "$dseed" 1; then ok "2 ranks x B=4 = 1 x B=8 after 20 steps (max rel diff $d2; another seed $dseed)"; else bad "2 ranks vs 1 process: $d2 (seed $dseed) $(head -3 n2.err)"; fi
BPC_DP_SAVE_ALL=1 mpi 4 ./dp2 "${run[@]}" --save n4.safetensors >/dev/null 2>n4.err
d4=$(python3 "$root/tests/ckpt_diff.py" one8.safetensors n4.safetensors)
if near "$d4" 2e-3; then ok "4 ranks x B=2 = 1 x B=8 after 20 steps (max rel diff $d4)"; else bad "4 ranks vs 1 process: $d4 $(head -3 n4.err)"; fi
same=1
for r in 1 2 3; do cmp -s n4.safetensors "n4.safetensors.rank$r" || same=0; done
if [ $same = 1 ]; then ok "the 4 ranks hold the same bits (params and optimizer state)"; else bad "the ranks' checkpoints differ"; fi
mpi 4 ./dp2 "${run[@]}" --save n4b.safetensors >/dev/null 2>&1
if cmp -s n4.safetensors n4b.safetensors; then ok "4 ranks: a repeat gives the same bits"; else bad "4 ranks: a repeat differs"; fi
BPC_DP_OVERLAP=0 mpi 4 ./dp2 "${run[@]}" --save n4c.safetensors >/dev/null 2>&1
if cmp -s n4.safetensors n4c.safetensors; then ok "overlapped and blocking sums give the same bits"; else bad "overlap changes the bits"; fi

# resume: 2 ranks to step 10 then to 20 equals 2 ranks straight to 20; the
# same checkpoint resumes on 4 ranks (the same trainer: a model's hash
# follows its batch dim, not the rank count)
mpi 2 ./dp4 "${run[@]}" --steps 10 --save half.safetensors >/dev/null 2>&1
mpi 2 ./dp4 "${run[@]}" --resume half.safetensors --save res2.safetensors >/dev/null 2>&1
if cmp -s n2.safetensors res2.safetensors; then ok "2 ranks: resume is bit-identical"; else bad "2 ranks: resume differs"; fi
if mpi 4 ./dp4 "${run[@]}" --resume half.safetensors --save res4.safetensors > res4.out 2>&1 &&
   grep -q '"step":"20"\|"step": *"20"' res4.safetensors; then
  ok "a 2-rank checkpoint resumes on 4 ranks"
else
  bad "resume on 4 ranks: $(head -3 res4.out)"
fi

# a finite set with grad_accum and eval: 2 ranks x B=4 = 1 x B=8, eval sharded
cat > cls.yaml <<'YAML'
bpc: 1
name: cls
dims: {B: 8}
inputs: {x: {shape: [B, 3]}, y: {shape: [B], dtype: i32}}
params: {w: {shape: [3, 4], init: "normal(0.5)"}, b: {shape: [4], init: zeros}}
graph: {logits: "x @ w + b", loss: "cross_entropy(logits, y)", acc: "accuracy(logits, y)"}
loss: loss
metrics: [acc]
train: {optimizer: {type: sgd, lr: 0.1, momentum: 0.9}, grad_accum: 2, epochs: 3, seed: 7}
data: {train: {format: csv, path: cls.csv, header: true, columns: {x: "1:4", y: 0}, val_fraction: 0.25}}
YAML
{ echo "y,a,b,c"; for i in $(seq 1 101); do echo "$((i % 4)),$((i % 7)),$((i % 5)),$((i % 3))"; done; } > cls.csv
"$bpc" compile cls.yaml -o cls8 && "$bpc" compile cls.yaml -D B=4 --mpi -o cls4
./cls8 --threads 1 --save c8.safetensors > c8.out 2>&1
mpi 2 ./cls4 --threads 1 --save c4.safetensors > c4.out 2>&1
dc=$(python3 "$root/tests/ckpt_diff.py" c8.safetensors c4.safetensors)
v8=$(awk '/^val/ { print $3 }' c8.out) v4=$(awk '/^val/ { print $3 }' c4.out)
if near "$dc" 1e-5 && [ -n "$v8" ] && near "$(awk -v a="$v8" -v b="$v4" 'BEGIN { d = a - b; print d < 0 ? -d : d }')" 1e-5 &&
   [ "$(grep -c '^val' c4.out)" = 1 ]; then
  ok "csv, grad_accum 2, 3 epochs: 2 ranks = 1 process (diff $dc; val loss $v8 vs $v4, printed once)"
else
  bad "csv on 2 ranks: diff $dc, val $v8 vs $v4: $(head -3 c4.out)"
fi

# 3 ranks: the mean over ranks divides by a count that is not a power of two
# (SGD, unlike Adam, moves with the gradient's scale, so a wrong mean shows)
"$bpc" compile cls.yaml -D B=12 -o cls12 && ./cls12 --threads 1 --save c12.safetensors > c12.out 2>&1
mpi 3 ./cls4 --threads 1 --save c43.safetensors > c43.out 2>&1
d3=$(python3 "$root/tests/ckpt_diff.py" c12.safetensors c43.safetensors)
if near "$d3" 1e-5; then ok "csv on 3 ranks x B=4 = 1 x B=12 (diff $d3)"; else bad "csv on 3 ranks: diff $d3: $(head -3 c43.out)"; fi

# a trainer without --mpi refuses to be one of several ranks
mpi 2 ./one8 "${run[@]}" > refuse.out 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "built without --mpi, but it was started as one of 2 ranks" refuse.out; then
  ok "a trainer without --mpi refuses to run as one of 2 ranks"
else
  bad "no refusal (rc $rc): $(head -3 refuse.out)"
fi

# bad data: every rank stops, the job exits non-zero naming the rank and the file
sed 's/^1,1,1,1$/9,1,1,1/' cls.csv > badcls.csv
mpi 2 ./cls4 --threads 1 --data badcls.csv --save never.safetensors > badd.out 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "rank 0 of 2: badcls.csv" badd.out && [ ! -e never.safetensors ]; then
  ok "bad data: exit $rc, the rank and the file named, nothing written"
else
  bad "bad data (rc $rc): $(head -3 badd.out)"
fi

# the ranks of the job started last by mpirun (pid $1)
ranks_of() { pgrep -P "$1" -f "$2"; }
long=(--data "$data" --steps 100000 --threads 1 --quiet --checkpoint-every 50)
# SIGKILL of one rank: the job ends within seconds, non-zero, naming the rank
mpirun --oversubscribe -np 2 ./dp4 "${long[@]}" --save kill.safetensors > kill.out 2>&1 &
job=$!
sleep 2
victim=$(ranks_of $job dp4 | tail -1)
t0=$(date +%s.%N)
[ -n "$victim" ] && kill -9 "$victim"
wait $job
rc=$?
secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
torn=0
for f in kill*.safetensors; do [ -e "$f" ] && ! python3 "$root/tests/ckpt_diff.py" "$f" "$f" >/dev/null 2>&1 && torn=1; done
if [ -n "$victim" ] && [ $rc -ne 0 ] && near "$secs" 10 && grep -q "rank [01]" kill.out && [ $torn = 0 ]; then
  ok "a rank killed with SIGKILL: the job exits $rc after $secs s, naming the rank; no torn checkpoint"
else
  bad "kill (victim '$victim', rc $rc, $secs s, torn $torn): $(head -5 kill.out)"
fi

# SIGINT to the ranks: one checkpoint (rank 0), every rank exits 130; it resumes on 1 rank
mpirun --oversubscribe -np 2 ./dp4 --data "$data" --steps 100000 --threads 1 --quiet --save int.safetensors > int.out 2>&1 &
job=$!
sleep 2
for p in $(ranks_of $job dp4); do kill -INT "$p"; done
wait $job
rc=$?
step=$(sed -n 's/^interrupted at step \([0-9]*\).*/\1/p' int.out)
if [ $rc -eq 130 ] && [ "$(grep -c '^interrupted at step' int.out)" = 1 ] && [ -n "$step" ] &&
   mpi 1 ./dp4 --data "$data" --threads 1 --quiet --resume int.safetensors --steps $((step + 2)) --save int2.safetensors >/dev/null 2>&1; then
  ok "SIGINT: rank 0 saved once at step $step, exit 130; resumed on 1 rank"
else
  bad "SIGINT (rc $rc): $(head -5 int.out)"
fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
