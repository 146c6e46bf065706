#!/usr/bin/env bash
# Installs the Debian packages bpc builds and tests with, skipping those present.
set -euo pipefail
pkgs=(build-essential cmake llvm-19-dev clang-19 libyaml-dev libcjson-dev zlib1g-dev libutf8proc-dev libcriterion-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
