#!/bin/sh
# Two fuzzers, under ASan and UBSan; fails on any crash or mismatch.
# 1. The front end (yaml.c, parse.c, load.c) with libFuzzer. Seeds:
#    models/*.yaml and tests/bad/*.yaml.
# 2. The differential fuzzer (fuzz_diff.c): random models from the op
#    registry, generated code against the interpreter in f64. A mismatch
#    leaves fuzz_diff-SEED.yaml in build-fuzz/ and prints the seed.
# By default each run is reproducible: a fixed seed and a fixed number of runs
# (FUZZ_RUNS, FUZZ_DIFF_RUNS), with FUZZ_SECONDS only as a cap (for each of
# the two), so CI replays the same inputs every time and a red run is a bug
# anyone can replay. To hunt for new bugs, take a random seed and a longer time:
#   FUZZ_SEED=0 FUZZ_RUNS=-1 FUZZ_SECONDS=600 tests/fuzz/run.sh
#   FUZZ_DIFF_FIRST=100000 FUZZ_DIFF_RUNS=100000 FUZZ_SECONDS=600 tests/fuzz/run.sh
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build="$root/build-fuzz"
# The library is instrumented for coverage too, or the fuzzer is blind.
cmake -S "$root" -B "$build" -DBPC_FUZZ=ON -DBPC_TESTS=OFF -DBPC_SANITIZE=ON \
  -DCMAKE_C_COMPILER=clang-19 -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link" >/dev/null
cmake --build "$build" -j"$(nproc)" --target fuzz_load fuzz_diff
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
cp "$root"/models/*.yaml "$root"/tests/bad/*.yaml "$corpus"/ 2>/dev/null || true
cd "$build"
# libFuzzer exits non-zero and writes crash-* here when it finds a crash.
./fuzz_load -seed="${FUZZ_SEED:-1}" -runs="${FUZZ_RUNS:-400000}" \
  -max_total_time="${FUZZ_SECONDS:-60}" -max_len=4096 -timeout=5 \
  -print_final_stats=1 "$corpus"
./fuzz_diff --first "${FUZZ_DIFF_FIRST:-1}" --count "${FUZZ_DIFF_RUNS:-2000}" \
  --seconds "${FUZZ_SECONDS:-60}" --out "$build"
