#!/usr/bin/env bash
# model.init_preset: `spectrain train` on 2 ranks writes the preset's random model into an
# empty model.path (as `spectrain init` would, bit for bit), trains one step, and leaves an
# existing model alone on the next run.
set -uo pipefail
t="$TEST_TMP/init_preset"
rm -rf "$t" && mkdir -p "$t"
fail=0
cat "$SRC_DIR"/README.md "$SRC_DIR"/docs/*.md | head -c 30000 > "$t/train.txt"
cat > "$t/job.yaml" <<YAML
output_dir: $t/run
model:
  path: $t/model
  init_preset: tiny-llama
  init_seed: 3
data:
  train: $t/train.txt
training:
  max_seq_length: 32
  per_device_train_batch_size: 1
  max_steps: 1
  logging_steps: 1
  save_steps: 0
checkpoint:
  resume: none
YAML
out=$($MPIEXEC -n 2 "$SPECTRAIN" train "$t/job.yaml" 2>&1); rc=$?
[[ $rc == 0 ]] || { echo "train with init_preset: exit $rc: $out"; exit 1; }
[[ -f "$t/model/config.json" && -f "$t/model/model.safetensors" ]] || { echo "no model written"; fail=1; }
"$SPECTRAIN" init --preset tiny-llama --seed 3 --out "$t/ref" >/dev/null || fail=1
cmp -s "$t/model/model.safetensors" "$t/ref/model.safetensors" || { echo "model differs from spectrain init's"; fail=1; }
before=$(stat -c %Y.%s "$t/model/model.safetensors")
sleep 1
out=$($MPIEXEC -n 2 "$SPECTRAIN" train "$t/job.yaml" --set output_dir="$t/run2" 2>&1); rc=$?
[[ $rc == 0 ]] || { echo "second run: exit $rc: $out"; fail=1; }
[[ "$(stat -c %Y.%s "$t/model/model.safetensors")" == "$before" ]] || { echo "existing model rewritten"; fail=1; }
# an unknown preset is a job-file error before anything runs
out=$("$SPECTRAIN" train "$t/job.yaml" --set model.init_preset=tiny-lama 2>&1); rc=$?
[[ $rc == 2 ]] || { echo "bad preset: exit $rc"; fail=1; }
grep -q "model.init_preset: expected one of .*tiny-llama.*found 'tiny-lama'" <<<"$out" || { echo "bad preset message: $out"; fail=1; }
exit $fail
