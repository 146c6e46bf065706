#!/usr/bin/env bash
# tests/format.sh — every C source and header in the repository is formatted
# as .clang-format says (clang-format 19, installed by scripts/install-deps.sh).
# Fails naming each file that differs and the command that fixes it.
# Run from the repository root (ctest does). `make format` rewrites the files.
set -euo pipefail
CF=${CLANG_FORMAT:-clang-format-19}
command -v "$CF" >/dev/null || { echo "format: $CF not found (scripts/install-deps.sh installs it)" >&2; exit 1; }
[ -f .clang-format ] || { echo "format: run from the repository root" >&2; exit 1; }
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find compiler runtime tests bench examples -name '*.[ch]')
bad=0
for f in $files; do
  if ! "$CF" --style=file --dry-run --Werror "$f" >/dev/null 2>&1; then
    echo "format: $f is not formatted ($CF -i $f, or make format)" >&2
    bad=1
  fi
done
[ $bad = 0 ] && echo "format: $(echo "$files" | wc -w) files formatted"
exit $bad
