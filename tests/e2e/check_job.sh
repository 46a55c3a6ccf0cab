#!/usr/bin/env bash
# `spectrain check`: a good job passes (exit 0, counts printed); a bad key, a bad value and a
# bad token file exit 2 with the file, line/key and a hint on stderr; 2 ranks agree.
set -uo pipefail
t="$TEST_TMP/check_job"
rm -rf "$t" && mkdir -p "$t"
fail=0
cat "$SRC_DIR"/README.md "$SRC_DIR"/docs/*.md | head -c 20000 > "$t/train.txt"
cat > "$t/job.yaml" <<YAML
output_dir: $t/out
model: {path: $t/model}
data:
  train: $t/train.txt
  validation_split: 0.1
training:
  max_seq_length: 64
YAML
out=$("$SPECTRAIN" check "$t/job.yaml" 2>&1); rc=$?
[[ $rc == 0 ]] || { echo "good job: exit $rc: $out"; fail=1; }
grep -q "validation: .* samples" <<<"$out" || { echo "no counts: $out"; fail=1; }

printf '  learning_rat: 1\n' >> "$t/job.yaml"
out=$("$SPECTRAIN" check "$t/job.yaml" 2>&1 >/dev/null); rc=$?
[[ $rc == 2 ]] || { echo "unknown key: exit $rc"; fail=1; }
grep -q "job.yaml:8: unknown key 'training.learning_rat' (did you mean 'training.learning_rate'?)" <<<"$out" \
  || { echo "unknown key message: $out"; fail=1; }

out=$("$SPECTRAIN" check "$t/job.yaml" --set training.max_steps=x 2>&1); rc=$?
[[ $rc == 2 ]] || { echo "--set before file error: exit $rc"; fail=1; }

head -n 7 "$t/job.yaml" > "$t/job2.yaml"
out=$("$SPECTRAIN" check "$t/job2.yaml" --set training.max_steps=x 2>&1); rc=$?
[[ $rc == 2 ]] || { echo "bad --set: exit $rc"; fail=1; }
grep -q "training.max_steps.*expected an integer >= -1, found 'x'" <<<"$out" || { echo "bad --set message: $out"; fail=1; }

out=$("$SPECTRAIN" check "$t/job2.yaml" --vocab-size 100 2>&1); rc=$?
[[ $rc == 2 ]] || { echo "vocab: exit $rc"; fail=1; }
grep -q "train.txt: token .* expected an id below the vocabulary size 100" <<<"$out" || { echo "vocab message: $out"; fail=1; }

out=$($MPIEXEC -n 2 "$SPECTRAIN" check "$t/job2.yaml" --set training.max_steps=3 2>&1); rc=$?
[[ $rc == 0 ]] || { echo "2 ranks: exit $rc: $out"; fail=1; }

# the generated reference is what docs/job-file.md holds
"$SPECTRAIN" check --print-job-reference | cmp -s - "$SRC_DIR/docs/job-file.md" \
  || { echo "docs/job-file.md is out of step: spectrain check --print-job-reference > docs/job-file.md"; fail=1; }
# the tiny job on its real text (skipped where the bible-kjv reader is not installed)
if command -v bible >/dev/null; then
  "$SRC_DIR/scripts/prepare-tiny-data.sh" "$t/tiny" >/dev/null || { echo "prepare-tiny-data failed"; fail=1; }
  bytes=$(wc -c < "$t/tiny/kjv.txt")
  (( bytes > 4000000 )) || { echo "kjv.txt has only $bytes bytes"; fail=1; }
  out=$("$SPECTRAIN" check "$SRC_DIR/jobs/tiny.yaml" --vocab-size 256 --set "data.train=$t/tiny/kjv.txt" 2>&1); rc=$?
  [[ $rc == 0 ]] || { echo "tiny job: exit $rc: $out"; fail=1; }
  n=$(( (bytes - 1) / 256 )); nval=$(python3 -c "print(round(0.02 * $n))" 2>/dev/null || echo "?")
  grep -q "train: $(( n - nval )) samples of 256 tokens" <<<"$out" || { echo "tiny job counts ($n, $nval): $out"; fail=1; }
  grep -q "validation: $nval samples" <<<"$out" || { echo "tiny job validation: $out"; fail=1; }
else
  echo "bible (bible-kjv) not installed: tiny-job data check skipped"
fi
exit $fail
