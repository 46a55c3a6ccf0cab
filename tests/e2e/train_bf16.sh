#!/usr/bin/env bash
# `spectrain train` with training.bf16 on the cpu kernels (docs/sharding.md "bf16"):
# - 1, 2 and 4 ranks agree (same global batch): per-step losses within 1e-4 relative;
# - bf16 vs fp32 on the same job: every step's loss within 1e-2 relative, but not equal;
# - the memory line: frozen parameter shards, trainable bf16 copies and gathered units in
#   half the fp32 run's bytes, an fp32 master next to them, everything measured == the
#   formula's prediction; all-gather bytes per step half of fp32's and == the theory;
# - offload cpu / cpu_trainable in bf16: bit-identical losses and exported weights;
# - checkpoints keep the fp32 master and optimizer state: resumed on the same ranks the
#   losses and final weights are bit-identical, resumed on 1 rank within 1e-4;
# - the export is in the model's own dtype: F32 for the F32 fixture, BF16 (torch_dtype
#   bfloat16) for the same model stored in bf16, which eval --bf16 reads back.
source "$(dirname "$0")/lib/train_common.sh"
W=$TEST_TMP/train_bf16
rm -rf "$W"
mkdir -p "$W"
make_data "$W/data" 96 16
fail=0
M=$FIXTURES/model/llama
write_job "$W/job.yaml" "$W/unused" "$M" "$W/data"
cat > "$W/unfrozen.yaml" <<'YAML'
unfrozen_parameters:
- ^lm_head.weight$
- model.layers.1.self_attn.q_proj
- model.layers.1.mlp.down_proj
YAML

B16=(--set training.bf16=true)

# ranks agree; bf16 is close to fp32 and not fp32
train_named bf16-np1 1 "${B16[@]}"
grep -q "bf16 mixed precision, bf16 products:" "$W/bf16-np1.log" ||
  { echo "FAIL: no bf16 line in the log"; head -5 "$W/bf16-np1.log"; fail=1; }
train_named bf16-np2 2 "${B16[@]}" --set training.per_device_train_batch_size=2 &&
  { compare_losses "$W/bf16-np2/metrics.jsonl" "$W/bf16-np1/metrics.jsonl" 1e-4 "bf16 np2 vs np1" || fail=1; }
train_named bf16-np4 4 "${B16[@]}" --set training.per_device_train_batch_size=1 &&
  { compare_losses "$W/bf16-np4/metrics.jsonl" "$W/bf16-np1/metrics.jsonl" 1e-4 "bf16 np4 vs np1" || fail=1; }
train_named fp32-np1 1
compare_losses "$W/bf16-np1/metrics.jsonl" "$W/fp32-np1/metrics.jsonl" 1e-2 "bf16 vs fp32" || fail=1
if diff -q <(losses "$W/bf16-np1/metrics.jsonl") <(losses "$W/fp32-np1/metrics.jsonl") >/dev/null; then
  echo "FAIL: bf16 losses are the fp32 ones"; fail=1
fi

# memory and traffic: a Spectrum-style partial set on 2 ranks, fp32 and bf16
P=(--set spectrum.unfrozen_parameters="$W/unfrozen.yaml" --set training.per_device_train_batch_size=2)
train_named part-fp32 2 "${P[@]}"
train_named part-bf16 2 "${P[@]}" "${B16[@]}"
$PY - "$W/part-fp32/metrics.jsonl" "$W/part-bf16/metrics.jsonl" "$PYLIB" <<'PYEOF' || fail=1
import sys
sys.path.insert(0, sys.argv[3])
import metrics
from metrics import check
f0, f1, fc, fs = metrics.records(sys.argv[1]); b0, b1, bc, bs = metrics.records(sys.argv[2])
exact = ["param_frozen", "param_trainable", "master", "grad_shard", "optimizer"]
for name, rec in (("fp32", f0), ("bf16", b0)):
    for r, row in enumerate(rec["ranks"]):
        for k in exact:
            check(row[k] == rec["predicted"][k], f"{name} rank {r} {k}: measured {row[k]} == predicted {rec['predicted'][k]}")
for name, rec in (("fp32", f1), ("bf16", b1)):
    for r, row in enumerate(rec["ranks"]):
        check(0 < row["gather"] <= rec["predicted"]["gather"], f"{name} rank {r} gather peak {row['gather']} <= predicted {rec['predicted']['gather']}")
P, Q = f0["predicted"], b0["predicted"]
check(P["param_frozen"] > 0 and 2 * Q["param_frozen"] == P["param_frozen"], f"frozen shards halved: {P['param_frozen']} -> {Q['param_frozen']}")
check(2 * Q["param_trainable"] == P["param_trainable"] and Q["master"] == P["param_trainable"] and P["master"] == 0,
      f"trainable: bf16 copy {Q['param_trainable']} + fp32 master {Q['master']} (fp32: {P['param_trainable']})")
check(Q["grad_shard"] == P["grad_shard"] and Q["optimizer"] == P["optimizer"], "gradients and AdamW state stay fp32")
check(2 * Q["gather"] == P["gather"], f"gathered units halved: {P['gather']} -> {Q['gather']}")
g0 = [r["gather"] for r in f1["ranks"]]; g1 = [r["gather"] for r in b1["ranks"]]
check(all(2 * b == a for a, b in zip(g0, g1)), f"measured gather peaks halved: {g0} -> {g1}")
check(2 * bc["allgather_bytes"] == fc["allgather_bytes"], f"all-gather bytes per step halved: {fc['allgather_bytes']} -> {bc['allgather_bytes']}")
check(bc["reduce_scatter_bytes"] == fc["reduce_scatter_bytes"], "reduce-scatter bytes (fp32 gradients) unchanged")
check(all(s["allgather_bytes"] == bc["allgather_bytes"] and s["reduce_scatter_bytes"] == bc["reduce_scatter_bytes"] for s in bs),
      "bf16: every step moved the theory's bytes")
sys.exit(0 if metrics.ok else 1)
PYEOF
grep -A12 "memory per rank (after loading" "$W/part-bf16.log" | head -13

# offload: the same computation
for off in cpu cpu_trainable; do
  train_named "part-bf16-$off" 2 "${P[@]}" "${B16[@]}" --set sharding.offload=$off || continue
  diff <(losses "$W/part-bf16-$off/metrics.jsonl") <(losses "$W/part-bf16/metrics.jsonl") ||
    { echo "FAIL: bf16 offload $off losses differ"; fail=1; }
  cmp "$W/part-bf16-$off/final/model.safetensors" "$W/part-bf16/final/model.safetensors" ||
    { echo "FAIL: bf16 offload $off exported weights differ"; fail=1; }
done

# checkpoints: run A saves at step 5 (of 10); B resumes from it on 2 ranks, C on 1 rank
train_named ck-a 2 "${B16[@]}" --set training.per_device_train_batch_size=2 --set training.save_steps=5
for name in ck-b ck-c; do mkdir -p "$W/$name" && cp "$W/ck-a/ckpt-5.h5" "$W/$name/"; done
from6() { losses "$1" | awk '$1 >= 6'; }
if train_named ck-b 2 "${B16[@]}" --set training.per_device_train_batch_size=2 --set training.save_steps=5; then
  grep -q "resumed from $W/ck-b/ckpt-5.h5: step 5" "$W/ck-b.log" || { echo "FAIL: ck-b did not resume"; fail=1; }
  diff <(from6 "$W/ck-a/metrics.jsonl") <(from6 "$W/ck-b/metrics.jsonl") ||
    { echo "FAIL: bf16 resume on the same ranks: losses differ"; fail=1; }
  cmp "$W/ck-a/final/model.safetensors" "$W/ck-b/final/model.safetensors" ||
    { echo "FAIL: bf16 resume on the same ranks: final weights differ"; fail=1; }
fi
if train_named ck-c 1 "${B16[@]}" --set training.per_device_train_batch_size=2 \
    --set training.gradient_accumulation_steps=2 --set training.save_steps=5; then
  grep -q "resumed from $W/ck-c/ckpt-5.h5: step 5" "$W/ck-c.log" || { echo "FAIL: ck-c did not resume"; fail=1; }
  $PY - <(from6 "$W/ck-a/metrics.jsonl") <(from6 "$W/ck-c/metrics.jsonl") <<'PYEOF' || fail=1
import sys
a = [l.split() for l in open(sys.argv[1])]; b = [l.split() for l in open(sys.argv[2])]
ok = len(a) == len(b) == 5 and all(x[0] == y[0] and abs(float(x[1]) - float(y[1])) <= 1e-4 * abs(float(x[1])) for x, y in zip(a, b))
print("bf16 resumed on 1 rank from a 2-rank checkpoint:", "ok" if ok else "FAIL", a, b)
sys.exit(0 if ok else 1)
PYEOF
fi
"$SPECTRAIN" export "$W/ck-a/ckpt-10.h5" --out "$W/ck-a-exp" > /dev/null ||
  { echo "FAIL: export of the bf16 run's checkpoint"; fail=1; }
cmp "$W/ck-a-exp/model.safetensors" "$W/ck-a/final/model.safetensors" ||
  { echo "FAIL: the exported checkpoint is not the final model"; fail=1; }

# the export keeps the model's dtype
train_named m16 1 "${B16[@]}" --set model.path="$FIXTURES/model/llama-bf16" --set training.max_steps=3
$PY - "$W/bf16-np1/final" "$W/m16/final" <<'PYEOF' || fail=1
import json, struct, sys
def dtypes(d):
    b = open(d + "/model.safetensors", "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return {v["dtype"] for v in h.values()}, json.load(open(d + "/config.json")).get("torch_dtype")
a, b = dtypes(sys.argv[1]), dtypes(sys.argv[2])
ok = a == ({"F32"}, "float32") and b == ({"BF16"}, "bfloat16")
print("export dtypes: F32 model ->", a, "; BF16 model ->", b, "ok" if ok else "FAIL")
sys.exit(0 if ok else 1)
PYEOF
"$SPECTRAIN" eval --bf16 --model "$W/m16/final" --data "$W/data/val.jsonl" --seq-len 16 --json > "$W/m16.eval" ||
  { echo "FAIL: eval --bf16 of the bf16 export"; fail=1; }
exit $fail
