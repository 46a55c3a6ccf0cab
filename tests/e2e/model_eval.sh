#!/usr/bin/env bash
# spectrain eval on the fixture models against Hugging Face's loss computed by
# tests/fixtures/model/gen_model_fixtures.py (eval_ref.json): jsonl records with -100
# labels, an llm.c .bin stream cut into windows (short last batch), --max-tokens, and the
# same on 2 ranks (batches split, sums reduced). Also: bad token ids are input errors.
set -euo pipefail
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
fail=0
check() { # model data-file ref-key command...
  local m=$1 data=$2 key=$3
  shift 3
  local dir="$FIXTURES/model/$m" out
  if ! out=$("$@" --model "$dir" --data "$dir/$data" --json); then
    echo "FAIL: $m $key: spectrain eval failed"
    fail=1
    return
  fi
  "$PY" - "$dir/eval_ref.json" "$key" "$out" "$m" <<'PYEOF' || fail=1
import json, math, sys
ref = json.load(open(sys.argv[1]))[sys.argv[2]]
got = json.loads(sys.argv[3])
ok = (abs(got["loss"] - ref["loss"]) <= 1e-5 * abs(ref["loss"]) and got["tokens"] == ref["tokens"]
      and abs(got["perplexity"] - math.exp(ref["loss"])) <= 1e-4 * math.exp(ref["loss"]))
print("ok  " if ok else "FAIL", sys.argv[4], sys.argv[2], "got", got, "want", ref)
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
