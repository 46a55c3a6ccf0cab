#!/usr/bin/env bash
# bf16 mixed precision over a real run (issue 15's check): the tiny job (jobs/tiny.yaml: the
# tiny-llama preset pretrained on the King James Bible) trained 200 steps in bf16 ends within
# 1 % of the same job's fp32 validation loss, and both learned (far below ln 256, the loss of
# a uniform guess over the byte vocabulary). Smaller batch and sequence than the real job so
# that the two runs take about a minute on 2 cores; jobs/tiny.yaml's own numbers are in
# docs/model.md#precision.
source "$(dirname "$0")/lib/train_common.sh"
W=$TEST_TMP/train_bf16_tiny
rm -rf "$W"
mkdir -p "$W"
if ! command -v bible >/dev/null; then
  echo "train_bf16_tiny: the 'bible' program (Debian bible-kjv) is missing: run scripts/install-deps.sh --test"
  exit 1
fi
bash "$SRC_DIR/scripts/prepare-tiny-data.sh" "$W/data" >/dev/null
fail=0
for p in fp32 bf16; do
  b=false
  [[ $p == bf16 ]] && b=true
  $MPIEXEC -n 1 "$SPECTRAIN" train "$SRC_DIR/jobs/tiny.yaml" --set output_dir="$W/$p" \
    --set model.path="$W/model" --set data.train="$W/data/kjv.txt" \
    --set training.max_steps=200 --set training.bf16=$b --set training.eval_steps=200 \
    --set training.eval_max_batches=8 --set training.save_steps=0 \
    --set training.per_device_train_batch_size=2 --set training.max_seq_length=128 \
    > "$W/$p.log" 2>&1 || { echo "FAIL: $p run exited $?"; tail -20 "$W/$p.log"; exit 1; }
done
grep -q "bf16 mixed precision" "$W/bf16.log" || { echo "FAIL: the bf16 run does not say it is bf16"; fail=1; }
$PY - "$W/fp32/metrics.jsonl" "$W/bf16/metrics.jsonl" <<'PYEOF' || fail=1
import json, math, sys
def last_val(p):
    v = [o for o in map(json.loads, open(p)) if "val_loss" in o]
    if not v or v[-1]["step"] != 200:
        sys.exit(f"{p}: no validation loss at step 200")
    return v[-1]["val_loss"]
f, b = last_val(sys.argv[1]), last_val(sys.argv[2])
rel = abs(b - f) / f
print(f"val loss after 200 steps: fp32 {f:.6f}, bf16 {b:.6f}, relative difference {rel:.2e} (limit 1e-2)")
bad = 0
if not (math.isfinite(f) and math.isfinite(b)): print("FAIL: non-finite loss"); bad = 1
if rel > 1e-2: print("FAIL: bf16 is more than 1 % from fp32"); bad = 1
if f == b: print("FAIL: bf16 and fp32 losses are identical: is bf16 in use?"); bad = 1
for name, x in (("fp32", f), ("bf16", b)):
    if not x < 0.6 * math.log(256): print(f"FAIL: {name} did not learn ({x} vs ln 256 = {math.log(256):.3f})"); bad = 1
sys.exit(bad)
PYEOF
[[ $fail == 0 ]] && echo "PASS"
exit "$fail"
