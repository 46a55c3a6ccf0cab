#!/usr/bin/env bash
# Writes the main job's second domain: Python's documentation (reStructuredText sources
# from Debian's python3.11-doc, PSF licence) as plain text, split by document into a
# training file and a held-out validation file (every 10th document, in sorted order, so
# the split is the same on every machine). Idempotent.
#   scripts/prepare-finetune-data.sh [OUT_DIR]  (default out/tiny/data)
#     -> OUT_DIR/pydoc-train.txt, OUT_DIR/pydoc-val.txt
set -euo pipefail
out=${1:-out/tiny/data}
src=/usr/share/doc/python3.11/html/_sources
if [[ -s "$out/pydoc-train.txt" && -s "$out/pydoc-val.txt" ]]; then
  echo "prepare-finetune-data: $out/pydoc-{train,val}.txt present"
  exit 0
fi
if [[ ! -d $src ]]; then
  echo "prepare-finetune-data: $src is missing: run scripts/install-deps.sh (python3.11-doc)" >&2
  exit 2
fi
mkdir -p "$out"
: > "$out/pydoc-train.txt.tmp"
: > "$out/pydoc-val.txt.tmp"
i=0
# The tutorial, the how-tos and the language reference: prose about code (about 1.4 MB).
while IFS= read -r f; do
  if ((i % 10 == 9)); then cat "$f" >> "$out/pydoc-val.txt.tmp"; else cat "$f" >> "$out/pydoc-train.txt.tmp"; fi
  i=$((i + 1))
done < <(find "$src/tutorial" "$src/howto" "$src/reference" -name '*.rst.txt' | LC_ALL=C sort)
mv "$out/pydoc-train.txt.tmp" "$out/pydoc-train.txt"
mv "$out/pydoc-val.txt.tmp" "$out/pydoc-val.txt"
echo "prepare-finetune-data: wrote $out/pydoc-train.txt ($(wc -c < "$out/pydoc-train.txt") bytes)," \
     "$out/pydoc-val.txt ($(wc -c < "$out/pydoc-val.txt") bytes) from $i documents"
