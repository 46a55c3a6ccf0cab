#!/usr/bin/env bash
# spectrain import end to end on tests/fixtures/gguf (made by make_fixtures.py with gguf-py
# and transformers):
#   - tiny-llama.gguf (5 blocks, every matrix another ggml type: F32, F16, BF16, Q8_0, Q4_0,
#     Q4_1, Q5_0, Q5_1, Q2_K..Q6_K; q/k rows permuted as llama.cpp writes them): `spectrain
#     eval` of the imported directory gives the loss transformers computes after loading the
#     .gguf itself (1e-5 relative), on 1 and 2 ranks; --dtype bf16 and --no-tokenizer;
#   - tiny-qwen2.gguf and tiny-qwen3.gguf: the same for those architectures;
#   - its tokenizer: `spectrain tokenize` with the imported tokenizer.json gives the ids of
#     transformers' GGUF tokenizer;
#   - vocabulary-only GGUFs of the Llama 3 and Qwen2 fixture tokenizers (--tokenizer-only):
#     SFT records and SQuAD tokenized with the imported files are byte for byte what
#     prepare_sft_jsonl.py wrote with the original tokenizers (tests/fixtures/tokenizer/sft);
#   - errors, exit 2 and the file and what is wrong named: an existing model without --force,
#     a missing file, a truncated file, another architecture, an unknown pre-tokenizer, a
#     missing tensor, a vocabulary-only file imported as a model.
set -euo pipefail
F=$FIXTURES/gguf
W=$TEST_TMP/gguf_import.$$
rm -rf "$W"; mkdir -p "$W"
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

"$SPECTRAIN" import --help | grep -q "MODEL.gguf OUT_DIR" || fail "import --help"
"$SPECTRAIN" import "$F/tiny-llama.gguf" "$W/m" > "$W/log" || { cat "$W/log"; fail "import"; }
cat "$W/log"
grep -q "5 layers" "$W/log" && grep -q "Q2_K x1" "$W/log" && grep -q -- "-> F32" "$W/log" || fail "import log"
for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do
  [[ -s $W/m/$f ]] || fail "no $f"
done
"$SPECTRAIN" inspect "$W/m" > "$W/inspect" || fail "inspect of the imported model"

loss_ok() { # JSON-from-eval TOL [EXPECTED.json]
  "$PY" - "${3:-$F/expected.json}" "$1" "$2" <<'PYEOF'
import json, sys
ref = json.load(open(sys.argv[1])); got = json.loads(sys.argv[2]); tol = float(sys.argv[3])
ok = abs(got["loss"] - ref["loss"]) <= tol * ref["loss"] and got["tokens"] == ref["tokens"]
print("ok  " if ok else "FAIL", "loss", got["loss"], "transformers", ref["loss"], "tokens", got["tokens"])
sys.exit(0 if ok else 1)
PYEOF
}
out=$("$SPECTRAIN" eval --model "$W/m" --data "$F/tiny-eval.jsonl" --seq-len 64 --batch 2 --json | tail -n 1)
loss_ok "$out" 1e-5 || fail "loss of the imported model differs from transformers' GGUF loading"
# shellcheck disable=SC2086
out=$($MPIEXEC -n 2 "$SPECTRAIN" eval --model "$W/m" --data "$F/tiny-eval.jsonl" --seq-len 64 --batch 1 --json | tail -n 1)
loss_ok "$out" 1e-5 || fail "2 ranks"

# qwen2 (q/k/v biases, tied embeddings) and qwen3 (q/k norms, head_dim 32 != 64/4): no q/k
# permutation in these files
for a in qwen2 qwen3; do
  "$SPECTRAIN" import "$F/tiny-$a.gguf" "$W/$a" > "$W/log" || { cat "$W/log"; fail "$a: import"; }
  grep -q "\"model_type\": \"$a\"" "$W/$a/config.json" || fail "$a: model_type"
  out=$("$SPECTRAIN" eval --model "$W/$a" --data "$F/tiny-$a-eval.jsonl" --seq-len 64 --batch 2 --json | tail -n 1)
  loss_ok "$out" 1e-5 "$F/expected-$a.json" || fail "$a: loss differs from transformers' GGUF loading"
done
grep -q '"tie_word_embeddings": true' "$W/qwen2/config.json" || fail "qwen2: tied"
grep -q '"head_dim": 32' "$W/qwen3/config.json" || fail "qwen3: head_dim"

# the tokenizer: transformers' GGUF tokenizer's ids
"$SPECTRAIN" tokenize "$F/tiny-texts.jsonl" "$W/texts.jsonl" --tokenizer "$W/m" > /dev/null
"$PY" - "$F/expected.json" "$W/texts.jsonl" <<'PYEOF' || fail "tokenizer ids"
import json, sys
want = json.load(open(sys.argv[1]))["ids"]
got = [json.loads(l)["input_ids"] for l in open(sys.argv[2])]
for w, g in zip(want, got):
    if w != g:
        print("FAIL ids", g, "want", w); sys.exit(1)
sys.exit(0 if len(want) == len(got) else 1)
PYEOF

# an existing model is kept unless --force; --dtype bf16; --no-tokenizer
if "$SPECTRAIN" import "$F/tiny-llama.gguf" "$W/m" 2> "$W/err"; then fail "overwrote without --force"; else rc=$?; fi
[[ $rc == 2 ]] && grep -q "already holds a model" "$W/err" || { cat "$W/err"; fail "existing model: rc $rc"; }
"$SPECTRAIN" import "$F/tiny-llama.gguf" "$W/m" --force --dtype bf16 --no-tokenizer > /dev/null
grep -q '"torch_dtype": "bfloat16"' "$W/m/config.json" || fail "--dtype bf16"
head -c 4000 "$W/m/model.safetensors" | grep -aq '"dtype":"BF16"' || fail "--dtype bf16: safetensors not BF16"
"$SPECTRAIN" import "$F/tiny-llama.gguf" "$W/nt" --no-tokenizer > /dev/null
[[ ! -e $W/nt/tokenizer.json ]] || fail "--no-tokenizer wrote tokenizer.json"

# vocabulary-only GGUFs: the imported tokenizers tokenize as the originals
T=$FIXTURES/tokenizer
for fam in llama3 qwen2; do
  "$SPECTRAIN" import --tokenizer-only "$F/vocab-$fam.gguf" "$W/v-$fam" > /dev/null || fail "$fam: import"
  [[ ! -e $W/v-$fam/config.json ]] || fail "$fam: --tokenizer-only wrote config.json"
  "$SPECTRAIN" tokenize "$T/sft/records.jsonl" "$W/$fam.jsonl" --tokenizer "$W/v-$fam" > /dev/null
  cmp "$W/$fam.jsonl" "$T/sft/$fam.jsonl" || fail "$fam: records differ from prepare_sft_jsonl.py's"
  "$SPECTRAIN" tokenize "$T/sft/squad.json" "$W/$fam.sq.jsonl" --squad --tokenizer "$W/v-$fam" > /dev/null
  cmp "$W/$fam.sq.jsonl" "$T/sft/$fam.squad.jsonl" || fail "$fam: SQuAD differs"
  echo "ok   $fam: imported tokenizer gives prepare_sft_jsonl.py's bytes"
done

# errors: exit 2, the file and the problem named
bad() { # WHAT EXPECTED-MESSAGE ARGS...
  local what=$1 msg=$2 rc=0
  shift 2
  "$SPECTRAIN" import "$@" 2> "$W/err" > /dev/null || rc=$?
  [[ $rc == 2 ]] && grep -qF -- "$msg" "$W/err" || { cat "$W/err"; fail "$what: rc $rc, want 2 and '$msg'"; }
  echo "ok   $what: $(head -n 1 "$W/err")"
}
bad "missing file" "no such file" "$W/none.gguf" "$W/x"
head -c 5000 "$F/tiny-llama.gguf" > "$W/trunc.gguf"
bad "truncated" "trunc.gguf: truncated" "$W/trunc.gguf" "$W/x"
head -c 900000 "$F/tiny-llama.gguf" > "$W/trunc2.gguf"
bad "truncated data" "run past the end of the file" "$W/trunc2.gguf" "$W/x"
"$PY" - "$F/tiny-llama.gguf" "$W" <<'PYEOF'
import sys
b = open(sys.argv[1], "rb").read()
def w(name, x):
    assert x != b
    open(sys.argv[2] + "/" + name, "wb").write(x)
w("arch.gguf", b.replace(b"llama", b"gemma"))
w("pre.gguf", b.replace(b"gpt-2", b"gpt-X"))
assert b.count(b"\x04\x00\x00\x00\x00\x00\x00\x00gpt2") == 1
w("spm.gguf", b.replace(b"\x04\x00\x00\x00\x00\x00\x00\x00gpt2", b"\x04\x00\x00\x00\x00\x00\x00\x00spm1"))
w("tensor.gguf", b.replace(b"blk.4.ffn_down.weight", b"blk.4.ffn_dowX.weight"))
PYEOF
bad "architecture" "general.architecture is 'gemma'" "$W/arch.gguf" "$W/x"
bad "pre-tokenizer" "tokenizer.ggml.pre is 'gpt-X'" "$W/pre.gguf" "$W/x"
bad "another tokenizer model" "tokenizer.ggml.model is 'spm1'; spectrain converts byte-level BPE" "$W/spm.gguf" "$W/x"
"$SPECTRAIN" import "$W/spm.gguf" "$W/spm" --no-tokenizer > /dev/null || fail "--no-tokenizer on a file with another tokenizer"
bad "missing tensor" "no tensor 'blk.4.ffn_down.weight'" "$W/tensor.gguf" "$W/x"
[[ ! -e $W/x/config.json ]] || fail "a failed import left config.json"
bad "vocabulary-only as a model" "missing metadata key 'llama.block_count'" "$F/vocab-qwen2.gguf" "$W/x"
bad "bad --dtype" "--dtype" "$F/tiny-llama.gguf" "$W/x" --dtype f64
echo "e2e.gguf_import: ok"
