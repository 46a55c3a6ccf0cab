#!/usr/bin/env bash
# sharding.reduce_dtype: bf16 (docs/sharding.md "bf16"): gradients reduce-scattered in bf16.
# - 1, 2 and 4 ranks (same global batch), fp32 and bf16 parameters: every step's loss within
#   1e-2 relative of the fp32-reduce run, and not equal to it (the gradients really round);
# - reduce-scatter bytes per step half of fp32's and equal to the theory on every step; the
#   gradient buffers' peak within the formula; the rest of the memory line unchanged;
# - hybrid (2 x 2 on one host): the cross-replica all-reduce is bf16 too (half the bytes),
#   losses within 1e-2 of fp32 reduce;
# - offload cpu: the same losses as without offload (bit for bit);
# - a checkpoint written with reduce_dtype bf16 resumes with fp32 (a run-only key);
# - a bad value names the key and the choices.
source "$(dirname "$0")/lib/train_common.sh"
W=$TEST_TMP/train_reduce_bf16
rm -rf "$W"
mkdir -p "$W"
make_data "$W/data" 96 16
fail=0
write_job "$W/job.yaml" "$W/unused" "$FIXTURES/model/llama" "$W/data"

R16=(--set sharding.reduce_dtype=bf16)
B=(--set training.per_device_train_batch_size=2)

train_named f32-np2 2 "${B[@]}"
train_named r16-np1 1 "${R16[@]}"
train_named r16-np2 2 "${R16[@]}" "${B[@]}"
train_named r16-np4 4 "${R16[@]}" --set training.per_device_train_batch_size=1
for n in np1 np2 np4; do
  compare_losses "$W/r16-$n/metrics.jsonl" "$W/f32-np2/metrics.jsonl" 1e-2 "reduce bf16 $n vs fp32 reduce" || fail=1
done
if diff -q <(losses "$W/r16-np2/metrics.jsonl") <(losses "$W/f32-np2/metrics.jsonl") >/dev/null; then
  echo "FAIL: reduce_dtype bf16 gives the fp32 losses"; fail=1
fi
train_named b16-r16-np2 2 "${R16[@]}" "${B[@]}" --set training.bf16=true
train_named b16-np2 2 "${B[@]}" --set training.bf16=true
compare_losses "$W/b16-r16-np2/metrics.jsonl" "$W/b16-np2/metrics.jsonl" 1e-2 "bf16 params: reduce bf16 vs fp32" || fail=1

$PY - "$W/f32-np2/metrics.jsonl" "$W/r16-np2/metrics.jsonl" "$PYLIB" <<'PYEOF' || fail=1
import sys
sys.path.insert(0, sys.argv[3])
import metrics
from metrics import check
f0, f1, fc, fs = metrics.records(sys.argv[1]); b0, b1, bc, bs = metrics.records(sys.argv[2])
check(2 * bc["reduce_scatter_bytes"] == fc["reduce_scatter_bytes"] > 0,
      f"reduce-scatter bytes per step halved: {fc['reduce_scatter_bytes']} -> {bc['reduce_scatter_bytes']}")
check(bc["allgather_bytes"] == fc["allgather_bytes"], "all-gather bytes unchanged")
check(all(s["reduce_scatter_bytes"] == bc["reduce_scatter_bytes"] for s in bs), "every step moved the theory's reduce-scatter bytes")
for k in ["param_frozen", "param_trainable", "master", "grad_shard", "optimizer"]:
    check(b0["predicted"][k] == f0["predicted"][k], f"{k} unchanged ({f0['predicted'][k]})")
for r, row in enumerate(b1["ranks"]):
    check(0 < row["grad_full"] <= b1["predicted"]["grad_full"], f"rank {r} gradient buffers peak {row['grad_full']} <= predicted {b1['predicted']['grad_full']}")
sys.exit(0 if metrics.ok else 1)
PYEOF

# hybrid, 2 shard groups of 2 on this host: the replica all-reduce moves bf16 too
H=(--set sharding.strategy=hybrid --set sharding.shard_size=2 --set training.per_device_train_batch_size=1)
train_named hyb-f32 4 "${H[@]}"
train_named hyb-r16 4 "${H[@]}" "${R16[@]}"
compare_losses "$W/hyb-r16/metrics.jsonl" "$W/hyb-f32/metrics.jsonl" 1e-2 "hybrid: reduce bf16 vs fp32" || fail=1
$PY - "$W/hyb-f32/metrics.jsonl" "$W/hyb-r16/metrics.jsonl" <<'PYEOF' || fail=1
import json, sys
def total(p):
    return next(x for x in map(json.loads, open(p)) if x.get("event") == "comm_total")
a, b = total(sys.argv[1]), total(sys.argv[2])
keys = [k for k in a if "replica" in k and k.endswith("bytes") and isinstance(a[k], int)]
ok = bool(keys) and all(a[k] > 0 and 2 * b[k] == a[k] for k in keys)
print(("ok   " if ok else "FAIL ") + "replica all-reduce bytes halved: " + ", ".join(f"{k} {a[k]} -> {b[k]}" for k in keys))
sys.exit(0 if ok else 1)
PYEOF

# offload: the same computation
train_named r16-off 2 "${R16[@]}" "${B[@]}" --set sharding.offload=cpu &&
  { diff <(losses "$W/r16-off/metrics.jsonl") <(losses "$W/r16-np2/metrics.jsonl") ||
    { echo "FAIL: reduce bf16 with offload cpu: losses differ"; fail=1; }; }

# resume across the key: written with bf16 reduce, continued with fp32
train_named ck 2 "${R16[@]}" "${B[@]}" --set training.save_steps=5
mkdir -p "$W/ck2" && cp "$W/ck/ckpt-5.h5" "$W/ck2/"
train_named ck2 2 "${B[@]}" --set training.save_steps=5 &&
  { grep -q "resumed from $W/ck2/ckpt-5.h5: step 5" "$W/ck2.log" ||
    { echo "FAIL: a bf16-reduce checkpoint did not resume with fp32 reduce"; fail=1; }; }

# bad value
if run_train 1 "$W/job.yaml" --set output_dir="$W/bad" --set sharding.reduce_dtype=fp16 > "$W/bad.log" 2>&1; then
  echo "FAIL: reduce_dtype fp16 accepted"; fail=1
elif ! grep -q "sharding.reduce_dtype" "$W/bad.log" || ! grep -q "fp32" "$W/bad.log"; then
  echo "FAIL: the error does not name the key and the choices:"; cat "$W/bad.log"; fail=1
fi
[[ $fail == 0 ]] && echo "PASS"
exit "$fail"
