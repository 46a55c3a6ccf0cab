#!/usr/bin/env bash
# Hybrid sharding (sharding.strategy: hybrid) on one host, the shard groups set by
# sharding.shard_size: 4 ranks as 2 replicas x 2 shards train the same 10 steps as full
# sharding on 4 ranks (losses within 1e-6 relative) and as 1 rank (1e-5), on the full and on a
# Spectrum-style partial trainable set; each rank holds 1/2 of the parameter state instead of
# 1/4; the step records carry the replica all-reduce bytes and the per-link bytes of the
# theory (on one host nothing is inter-host); checkpoints are interchangeable: a hybrid
# checkpoint resumes under full sharding on 2 ranks and under hybrid 2 x 1 on 2 ranks, a full
# one under hybrid on 4, each equal to the uninterrupted run within 1e-6; a layout that does
# not fit, and shard_size without hybrid, are input errors (exit 2) named on every rank.
source "$(dirname "$0")/lib/train_common.sh"
W=$TEST_TMP/train_hybrid
rm -rf "$W"
mkdir -p "$W"
make_data "$W/data" 96 16
write_job "$W/job.yaml" "$W/unused" "$FIXTURES/model/llama" "$W/data"
cat > "$W/unfrozen.yaml" <<'YAML'
unfrozen_parameters:
- ^lm_head.weight$
- model.layers.1.self_attn.q_proj
- model.layers.1.mlp.down_proj
YAML
fail=0
HYB=(--set sharding.strategy=hybrid --set sharding.shard_size=2)

for set in all partial; do
  extra=()
  [[ $set == partial ]] && extra=(--set spectrum.unfrozen_parameters="$W/unfrozen.yaml")
  run_train 1 "$W/job.yaml" --set output_dir="$W/$set-np1" "${extra[@]}" > "$W/$set-np1.log" 2>&1 ||
    { cat "$W/$set-np1.log"; echo "FAIL: $set 1 rank"; exit 1; }
  run_train 4 "$W/job.yaml" --set output_dir="$W/$set-full" --set training.per_device_train_batch_size=1 \
    --set training.save_steps=5 "${extra[@]}" > "$W/$set-full.log" 2>&1 ||
    { cat "$W/$set-full.log"; echo "FAIL: $set full 4 ranks"; exit 1; }
  run_train 4 "$W/job.yaml" --set output_dir="$W/$set-hyb" --set training.per_device_train_batch_size=1 \
    --set training.save_steps=5 "${HYB[@]}" "${extra[@]}" > "$W/$set-hyb.log" 2>&1 ||
    { cat "$W/$set-hyb.log"; echo "FAIL: $set hybrid 4 ranks"; exit 1; }
  grep "sharding: hybrid\|link class\|-host" "$W/$set-hyb.log" | head -6
  compare_losses "$W/$set-hyb/metrics.jsonl" "$W/$set-full/metrics.jsonl" 1e-6 "$set: hybrid 2x2 vs full 4" || fail=1
  compare_losses "$W/$set-hyb/metrics.jsonl" "$W/$set-np1/metrics.jsonl" 1e-5 "$set: hybrid 2x2 vs 1 rank" || fail=1
  $PY - "$W/$set-hyb/metrics.jsonl" "$W/$set-full/metrics.jsonl" <<'PYEOF' || fail=1
import json, sys
def recs(p): return [json.loads(l) for l in open(p)]
ok = True
for path, strategy, replicas in ((sys.argv[1], "hybrid", 2), (sys.argv[2], "full", 1)):
    r = recs(path)
    th = next(x for x in r if x.get("event") == "comm_theory")
    steps = [x for x in r if "loss" in x]
    if th["strategy"] != strategy or th["replicas"] != replicas:
        print("FAIL:", path, "comm_theory", th); ok = False
    if th["inter_host_bytes"] != 0 or th["intra_host_bytes"] <= 0:
        print("FAIL: one host: the theory must be all intra-host", th); ok = False
    for s in steps:
        if s["inter_host_bytes"] != 0 or s["intra_host_bytes"] != th["intra_host_bytes"]:
            print("FAIL: step", s["step"], "link bytes", s["intra_host_bytes"], s["inter_host_bytes"],
                  "theory", th["intra_host_bytes"]); ok = False
        if s["replica_allreduce_bytes"] != th["replica_allreduce_bytes"] or \
           (replicas > 1) != (s["replica_allreduce_bytes"] > 0):
            print("FAIL: step", s["step"], "replica all-reduce", s["replica_allreduce_bytes"], th); ok = False
    if replicas > 1 and th["replica_allreduce_bytes"] * th["shard_size"] != th["reduce_scatter_bytes"]:
        print("FAIL: replica all-reduce bytes != reduce-scatter bytes / shard_size", th); ok = False
# parameter state per rank: 1/2 of the model (hybrid 2x2) vs 1/4 (full on 4)
def state(p):
    m = next(x for x in recs(p) if x.get("event") == "memory_start")["predicted"]
    return sum(m[k] for k in ("param_frozen", "param_trainable", "grad_shard", "optimizer"))
ratio = state(sys.argv[1]) / state(sys.argv[2])
print(f"parameter state per rank, hybrid 2x2 / full 4: {ratio:.3f}")
if not 1.7 <= ratio <= 2.0: print("FAIL: expected about 2x"); ok = False
sys.exit(0 if ok else 1)
PYEOF
done

# checkpoints interchangeable (the "all" runs wrote ckpt-5 under both strategies)
resume() { # NAME CKPT NP B [--set ...]: steps 6..10 from CKPT, compared with the full run
  local name=$1 ck=$2 np=$3 b=$4
  shift 4
  run_train "$np" "$W/job.yaml" --set output_dir="$W/$name" --set checkpoint.resume="$ck" \
    --set training.per_device_train_batch_size="$b" "$@" > "$W/$name.log" 2>&1 ||
    { cat "$W/$name.log"; echo "FAIL: $name exited"; fail=1; return; }
  grep -q "resumed from $ck: step 5" "$W/$name.log" || { echo "FAIL: $name did not resume"; fail=1; }
  $PY - "$W/$name/metrics.jsonl" "$W/all-full/metrics.jsonl" "$name" <<'PYEOF' || fail=1
import json, sys
def L(p): return {o["step"]: o["loss"] for o in map(json.loads, open(p)) if "loss" in o}
a, b = L(sys.argv[1]), L(sys.argv[2])
if sorted(a) != list(range(6, 11)): sys.exit(f"{sys.argv[3]}: steps {sorted(a)}")
worst = max(abs(a[s] - b[s]) / abs(b[s]) for s in a)
print(f"{sys.argv[3]}: steps 6-10, max rel diff to the uninterrupted full run {worst:.2e}")
sys.exit(0 if worst <= 1e-6 else 1)
PYEOF
}
resume hyb-to-full-np2 "$W/all-hyb/ckpt-5.h5" 2 2
resume hyb-to-hyb2x1-np2 "$W/all-hyb/ckpt-5.h5" 2 2 --set sharding.strategy=hybrid --set sharding.shard_size=1
resume full-to-hyb-np4 "$W/all-full/ckpt-5.h5" 4 1 "${HYB[@]}"

# layouts that do not fit: input errors on every rank, before training
run_train 4 "$W/job.yaml" --set output_dir="$W/bad" --set sharding.strategy=hybrid \
  --set sharding.shard_size=3 > "$W/bad.log" 2>&1 && rc=0 || rc=$?
n=$(grep -c "every host must run a multiple of 3 ranks" "$W/bad.log" || true)
if [[ $rc != 2 || $n != 4 ]]; then cat "$W/bad.log"; echo "FAIL: shard_size 3 of 4: exit $rc, named on $n of 4 ranks"; fail=1; fi
run_train 1 "$W/job.yaml" --set output_dir="$W/bad2" --set sharding.shard_size=2 > "$W/bad2.log" 2>&1 && rc=0 || rc=$?
if [[ $rc != 2 ]] || ! grep -q "applies to sharding.strategy hybrid only" "$W/bad2.log"; then
  cat "$W/bad2.log"; echo "FAIL: shard_size without hybrid: exit $rc"; fail=1
fi
exit $fail
