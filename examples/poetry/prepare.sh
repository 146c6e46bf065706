#!/usr/bin/env bash
# Writes psalms.txt: the 150 Psalms of the King James Bible (public domain)
# from Debian's bible-kjv package, one verse per line without its reference.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ -s "$here/psalms.txt" ] && exit 0
if ! command -v bible >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get install -y -qq bible-kjv >/dev/null 2>&1 || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq bible-kjv >/dev/null; }
fi
bible -f psa1:1-psa150:6 | sed -E 's/^Psa[0-9]+:[0-9]+ //' > "$here/psalms.txt.tmp"
mv "$here/psalms.txt.tmp" "$here/psalms.txt"
echo "psalms.txt: $(wc -c < "$here/psalms.txt") bytes"
