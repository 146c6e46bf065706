#!/bin/sh
# Fuzzes the front end (yaml.c, parse.c, load.c) with libFuzzer under ASan and
# UBSan. Seeds: models/*.yaml and tests/bad/*.yaml. Fails on any crash.
# By default the run is reproducible: a fixed seed and a fixed number of runs
# (FUZZ_RUNS), with FUZZ_SECONDS only as a cap, so CI replays the same inputs
# every time and a red run is a bug anyone can replay. To hunt for new bugs,
# take a random seed and a longer time:
#   FUZZ_SEED=0 FUZZ_RUNS=-1 FUZZ_SECONDS=600 tests/fuzz/run.sh
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build="$root/build-fuzz"
# The library is instrumented for coverage too, or the fuzzer is blind.
cmake -S "$root" -B "$build" -DBPC_FUZZ=ON -DBPC_TESTS=OFF -DBPC_SANITIZE=ON \
  -DCMAKE_C_COMPILER=clang-19 -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link" >/dev/null
cmake --build "$build" -j"$(nproc)" --target fuzz_load
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
cp "$root"/models/*.yaml "$root"/tests/bad/*.yaml "$corpus"/ 2>/dev/null || true
cd "$build"
# libFuzzer exits non-zero and writes crash-* here when it finds a crash.
./fuzz_load -seed="${FUZZ_SEED:-1}" -runs="${FUZZ_RUNS:-400000}" \
  -max_total_time="${FUZZ_SECONDS:-60}" -max_len=4096 -timeout=5 \
  -print_final_stats=1 "$corpus"
