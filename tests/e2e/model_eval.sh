#!/usr/bin/env bash
# spectrain eval on the fixture models against Hugging Face's loss computed by
# tests/fixtures/model/gen_model_fixtures.py (eval_ref.json): jsonl records with -100
# labels, an llm.c .bin stream cut into windows (short last batch), --max-tokens, and the
# same on 2 ranks (batches split, sums reduced). Also: bad token ids are input errors.
# --bf16 against HF under bf16 autocast on the bf16-rounded weights
# (gen_bf16_fixtures.py: eval_ref_bf16.json) within 3e-3 relative, and on the llama
# fixture saved in BF16 (llama-bf16) bit-identical to the F32 file rounded on reading.
set -euo pipefail
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
fail=0
check() { # model data-file ref-key command... (REF=eval_ref_bf16.json TOL=3e-3 for bf16)
  local m=$1 data=$2 key=$3
  shift 3
  local dir="$FIXTURES/model/$m" out
  if ! out=$("$@" --model "$dir" --data "$dir/$data" --json); then
    echo "FAIL: $m $key: spectrain eval failed"
    fail=1
    return
  fi
  "$PY" - "$dir/${REF:-eval_ref.json}" "$key" "$out" "$m" "${TOL:-1e-5}" <<'PYEOF' || fail=1
import json, math, sys
ref = json.load(open(sys.argv[1]))[sys.argv[2]]
got = json.loads(sys.argv[3])
tol = float(sys.argv[5])
ok = (abs(got["loss"] - ref["loss"]) <= tol * abs(ref["loss"]) and got["tokens"] == ref["tokens"]
      and abs(got["perplexity"] - math.exp(ref["loss"])) <= 10 * tol * math.exp(ref["loss"]))
print("ok  " if ok else "FAIL", sys.argv[4], sys.argv[2], sys.argv[1].rsplit("/", 1)[-1], "got",
      got, "want", ref)
sys.exit(0 if ok else 1)
PYEOF
}
for m in llama qwen3; do
  check $m eval.jsonl jsonl "$SPECTRAIN" eval --seq-len 16 --batch 2
  check $m eval.bin bin_T8 "$SPECTRAIN" eval --seq-len 8 --batch 2
  check $m eval.bin bin_T8_max10 "$SPECTRAIN" eval --seq-len 8 --batch 1 --max-tokens 10
  # shellcheck disable=SC2086
  check $m eval.bin bin_T8 $MPIEXEC -n 2 "$SPECTRAIN" eval --seq-len 8 --batch 1
done
for m in llama qwen3; do
  REF=eval_ref_bf16.json TOL=3e-3 check $m eval.jsonl jsonl "$SPECTRAIN" eval --bf16 --seq-len 16 --batch 2
  REF=eval_ref_bf16.json TOL=3e-3 check $m eval.bin bin_T8 "$SPECTRAIN" eval --bf16 --seq-len 8 --batch 2
  # shellcheck disable=SC2086
  REF=eval_ref_bf16.json TOL=3e-3 check $m eval.bin bin_T8 $MPIEXEC -n 2 "$SPECTRAIN" eval --bf16 --seq-len 8 --batch 1
done
# the BF16 file as stored == the F32 file rounded on reading (same bits, same loss)
a=$("$SPECTRAIN" eval --bf16 --model "$FIXTURES/model/llama" --data "$FIXTURES/model/llama/eval.bin" --seq-len 8 --json)
b=$("$SPECTRAIN" eval --bf16 --model "$FIXTURES/model/llama-bf16" --data "$FIXTURES/model/llama/eval.bin" --seq-len 8 --json)
if [ "$a" != "$b" ]; then
  echo "FAIL: eval --bf16 of llama-bf16 (BF16 file) $b != of llama (F32 file) $a"
  fail=1
else
  echo "ok   eval --bf16: BF16 file and F32 file agree exactly: $a"
fi
# a text file holds byte ids >= the fixture's vocabulary (96): input error, exit 2
printf 'hello world\n' >"$TEST_TMP/model_eval_text.txt"
set +e
err=$("$SPECTRAIN" eval --model "$FIXTURES/model/llama" --data "$TEST_TMP/model_eval_text.txt" 2>&1)
rc=$?
set -e
if [ $rc -ne 2 ] || ! grep -q "vocabulary size 96" <<<"$err"; then
  echo "FAIL: out-of-vocabulary data: rc $rc: $err"
  fail=1
fi
exit $fail
