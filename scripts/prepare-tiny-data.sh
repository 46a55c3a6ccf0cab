#!/usr/bin/env bash
# Writes the tiny job's training text: the King James Bible as plain UTF-8 text (4.3 MB),
# dumped from Debian's bible-kjv-text (its /usr/lib/bible.data is compressed in the
# package's own format; the `bible` reader from bible-kjv decompresses it). Idempotent.
#   scripts/prepare-tiny-data.sh [OUT_DIR]     (default out/tiny/data) -> OUT_DIR/kjv.txt
set -euo pipefail
out=${1:-out/tiny/data}
if [[ -s "$out/kjv.txt" ]]; then
  echo "prepare-tiny-data: $out/kjv.txt present"
  exit 0
fi
if ! command -v bible >/dev/null; then
  echo "prepare-tiny-data: the 'bible' program is missing: run scripts/install-deps.sh" >&2
  exit 2
fi
mkdir -p "$out"
# Every verse from Genesis 1:1 to Revelation 22:21, lines wrapped at 80 columns.
COLUMNS=80 bible -l80 gen1:1-rev22:21 > "$out/kjv.txt.tmp"
mv "$out/kjv.txt.tmp" "$out/kjv.txt"
echo "prepare-tiny-data: wrote $out/kjv.txt ($(wc -c < "$out/kjv.txt") bytes)"
