#!/usr/bin/env bash
# Builds and runs the example: xor compiled as a library, driven by main.c.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-$root/build}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$build/bpc" compile "$root/models/xor.yaml" --emit lib -o "$out/xor"
cc -O2 -I"$out" -I"$root/runtime/include" "$root/examples/capi/main.c" "$out/xor.o" "$build/libbpcrt.a" \
   -lcjson -lz -lm -lpthread ${BPC_LINK_EXTRA:-} -o "$out/xor_capi"
"$out/xor_capi"
