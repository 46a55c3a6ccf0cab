#!/usr/bin/env bash
# Tokenizer speed: spectrain's tokenizer.json BPE (bench_tokenizer, OpenMP threads) against
# Hugging Face tokenizers' encode_batch (rayon threads, RAYON_NUM_THREADS) on the same
# documents and the same thread count, for the fixture families (GPT-2, Llama 3, Qwen2
# with NFC, SmolLM2's real 49k vocabulary): tokens/s of each and the ratio; both sides'
# ids are hashed and must agree. Then the whole route, records to JSONL on one thread:
# `spectrain tokenize` against scripts/prepare_sft_jsonl.py (transformers).
#   bench/bench_tokenize.sh            (THREADS="1 2", REPEATS=3)
# Needs build/ (bench_tokenizer, spectrain) and PYTHON (default /work/pyenv/bin/python) with
# tokenizers and transformers.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-/work/pyenv/bin/python}
THREADS=${THREADS:-1 2}
REPEATS=${REPEATS:-3}
F=tests/fixtures/tokenizer
W=$(mktemp -d /tmp/spectrain-bench-tokenize.XXXXXX)
trap 'rm -rf "$W"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=PASSIVE
gzip -dc $F/corpus.jsonl.gz > "$W/corpus.jsonl"
mkdir -p "$W/smollm2"
gzip -dc $F/smollm2/tokenizer.json.gz > "$W/smollm2/tokenizer.json"
cp $F/smollm2/tokenizer_config.json "$W/smollm2/"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "corpus: $(wc -l < "$W/corpus.jsonl") documents, $(stat -c %s "$W/corpus.jsonl") bytes of JSONL, x$REPEATS"
printf '\n%-8s %7s %14s %14s %8s %12s %12s\n' family threads "spectrain tok/s" "tokenizers tok/s" ratio "cpu s (sp)" "cpu s (hf)"
field() { echo "$1" | awk -v k="$2" '{for (i = 1; i < NF; i++) if ($i == k) print $(i + 1)}'; }
for fam in gpt2 llama3 qwen2 smollm2; do
  tj=$F/$fam/tokenizer.json
  [[ $fam == smollm2 ]] && tj=$W/smollm2/tokenizer.json
  for th in $THREADS; do
    a=$(OMP_NUM_THREADS=$th build/bench/bench_tokenizer "$tj" "$W/corpus.jsonl" "$th" "$REPEATS")
    b=$(RAYON_NUM_THREADS=$th TOKENIZERS_PARALLELISM=true $PY bench/peer_tokenizer.py "$tj" "$W/corpus.jsonl" "$REPEATS")
    [[ $(field "$a" hash) == $(field "$b" hash) ]] || { echo "$fam: ids differ: $a / $b" >&2; exit 1; }
    sa=$(echo "$(field "$a" tokens) / $(field "$a" wall)" | bc -l)
    sb=$(echo "$(field "$b" tokens) / $(field "$b" wall)" | bc -l)
    printf '%-8s %7s %14.0f %14.0f %7.2fx %12.2f %12.2f\n' $fam $th "$sa" "$sb" "$(echo "$sa / $sb" | bc -l)" \
      "$(field "$a" cpu)" "$(field "$b" cpu)"
  done
done
# the whole route on one thread: text and prompt/completion records to JSONL
$PY - "$W/corpus.jsonl" "$W/records.jsonl" <<'PYEOF'
import json, sys
docs = [json.loads(l)["text"] for l in open(sys.argv[1])]
with open(sys.argv[2], "w") as f:
    for i, d in enumerate(docs):
        r = {"text": d} if i % 2 else {"prompt": d[: len(d) // 2], "completion": d[len(d) // 2:]}
        f.write(json.dumps(r) + "\n")
PYEOF
s=$(date +%s.%N)
build/spectrain tokenize "$W/records.jsonl" "$W/sp.jsonl" --tokenizer $F/llama3 --no-chat --threads 1 > /dev/null
ts=$(echo "$(date +%s.%N) - $s" | bc)
s=$(date +%s.%N)
$PY scripts/prepare_sft_jsonl.py --tokenizer $F/llama3 --no-chat "$W/records.jsonl" "$W/hf.jsonl" > /dev/null
th=$(echo "$(date +%s.%N) - $s" | bc)
cmp -s "$W/sp.jsonl" "$W/hf.jsonl" || { echo "records: outputs differ" >&2; exit 1; }
printf '\nrecords -> JSONL (llama3, --no-chat, 1 thread, process start to exit): spectrain tokenize %.2f s, prepare_sft_jsonl.py %.2f s: %.1fx; identical output\n' \
  "$ts" "$th" "$(echo "$th / $ts" | bc -l)"
