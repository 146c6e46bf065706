#!/usr/bin/env bash
# The main job on the default model: validate it and show what bpc builds.
set -euo pipefail
BUILD=${1:-build}
echo "== bpc check models/mlp_digits.yaml"
"$BUILD/bpc" check models/mlp_digits.yaml
echo
echo "== bpc show models/gpt_poetry.yaml -D L=1 (first lines)"
"$BUILD/bpc" show models/gpt_poetry.yaml -D L=1 | head -40
