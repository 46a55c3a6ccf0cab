#!/usr/bin/env bash
# `spectrain check`: a good job passes (exit 0, counts printed); a bad key, a bad value and a
# bad token file exit 2 with the file, line/key and a hint on stderr; 2 ranks agree.
set -uo pipefail
t="$TEST_TMP/check_job"
rm -rf "$t" && mkdir -p "$t"
fail=0
head -c 20000 "$SRC_DIR/README.md" > "$t/train.txt"
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
exit $fail
