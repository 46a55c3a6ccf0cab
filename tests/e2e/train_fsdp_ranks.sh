#!/usr/bin/env bash
# `spectrain train` on 1, 2 and 4 ranks computes the same training: per-step losses of 10
# steps match 1 rank within 1e-5 relative (same global batch of 4: B=4; B=2 x 2 ranks;
# B=1 x 4 ranks; B=1 x 2 accumulation steps x 2 ranks), for an untied Llama and a tied Qwen3,
# with everything trainable and with a Spectrum-style partial set; `offload: cpu` (and
# `cpu_trainable` on the partial set) gives bit-identical losses and exported weights; parameter + optimizer memory per rank at 4 ranks
# is at most 0.3x of 1 rank.
source "$(dirname "$0")/lib/train_common.sh"
W=$TEST_TMP/train_fsdp_ranks
rm -rf "$W"
mkdir -p "$W"
make_data "$W/data" 96 16
fail=0

cat > "$W/unfrozen.yaml" <<'YAML'
unfrozen_parameters:
- ^lm_head.weight$
- ^model.embed_tokens.weight$
# only block 1's attention query and MLP down projection, as a Spectrum scan might pick
- model.layers.1.self_attn.q_proj
- model.layers.1.mlp.down_proj
YAML

for model in llama qwen3; do
  write_job "$W/$model.yaml" "$W/unused" "$FIXTURES/model/$model" "$W/data"
  for spec in "1 4 1" "2 2 1" "4 1 1" "2 1 2"; do
    read -r np b a <<< "$spec"
    out=$W/$model-np$np-b$b-a$a
    run_train "$np" "$W/$model.yaml" --set output_dir="$out" \
      --set training.per_device_train_batch_size="$b" \
      --set training.gradient_accumulation_steps="$a" > "$out.log" 2>&1 ||
      { echo "FAIL: $model np$np b$b a$a exited $?"; cat "$out.log"; fail=1; continue; }
    [[ $np == 1 ]] && continue
    compare_losses "$out/metrics.jsonl" "$W/$model-np1-b4-a1/metrics.jsonl" 1e-5 \
      "$model np$np b$b a$a vs np1" || fail=1
  done
done

# a Spectrum-style partial trainable set (llama: embedding, lm_head and two matrices of block
# 1; block 0 runs forward only)
for spec in "1 4" "2 2" "4 1"; do
  read -r np b <<< "$spec"
  out=$W/partial-np$np
  run_train "$np" "$W/llama.yaml" --set output_dir="$out" \
    --set spectrum.unfrozen_parameters="$W/unfrozen.yaml" \
    --set training.per_device_train_batch_size="$b" > "$out.log" 2>&1 ||
    { echo "FAIL: partial np$np exited"; cat "$out.log"; fail=1; continue; }
  grep -q "trainable set: 4 of" "$out.log" || { echo "FAIL: partial set not applied"; cat "$out.log"; fail=1; }
  [[ $np == 1 ]] && continue
  compare_losses "$out/metrics.jsonl" "$W/partial-np1/metrics.jsonl" 1e-5 "partial np$np vs np1" || fail=1
done
# frozen tensors leave training unchanged (exported bytes equal the input's)
$PY - "$W/partial-np2/final/model.safetensors" "$FIXTURES/model/llama/model.safetensors" <<'PYEOF' || fail=1
import json, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
    return {k: b[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]] for k, v in h.items() if k != "__metadata__"}
a, b = load(sys.argv[1]), load(sys.argv[2])
frozen_same = all(a[k] == b[k] for k in a if "layers.0." in k or "norm" in k and "layers.1" not in k)
trained_moved = a["model.layers.1.mlp.down_proj.weight"] != b["model.layers.1.mlp.down_proj.weight"]
untouched = a["model.layers.1.mlp.up_proj.weight"] == b["model.layers.1.mlp.up_proj.weight"]
print("partial export: frozen unchanged", frozen_same, "trained changed", trained_moved, "frozen up_proj unchanged", untouched)
sys.exit(0 if frozen_same and trained_moved and untouched else 1)
PYEOF

# offload: cpu is exactly the same computation
out=$W/llama-offload
run_train 2 "$W/llama.yaml" --set output_dir="$out" --set training.per_device_train_batch_size=2 \
  --set sharding.offload=cpu > "$out.log" 2>&1 || { echo "FAIL: offload run"; cat "$out.log"; fail=1; }
grep -q "offload cpu" "$out.log" || { echo "FAIL: offload not on"; fail=1; }
if ! diff <(losses "$out/metrics.jsonl") <(losses "$W/llama-np2-b2-a1/metrics.jsonl"); then
  echo "FAIL: offload losses differ"; fail=1
fi
cmp "$out/final/model.safetensors" "$W/llama-np2-b2-a1/final/model.safetensors" ||
  { echo "FAIL: offload exported weights differ"; fail=1; }
# offload: cpu_trainable (only the trainable state on the host) on the partial set: the same
out=$W/partial-offload-trainable
run_train 2 "$W/llama.yaml" --set output_dir="$out" --set training.per_device_train_batch_size=2 \
  --set spectrum.unfrozen_parameters="$W/unfrozen.yaml" --set sharding.offload=cpu_trainable \
  > "$out.log" 2>&1 || { echo "FAIL: cpu_trainable run"; cat "$out.log"; fail=1; }
grep -q "offload cpu_trainable" "$out.log" || { echo "FAIL: cpu_trainable not on"; fail=1; }
diff <(losses "$out/metrics.jsonl") <(losses "$W/partial-np2/metrics.jsonl") ||
  { echo "FAIL: cpu_trainable losses differ"; fail=1; }
cmp "$out/final/model.safetensors" "$W/partial-np2/final/model.safetensors" ||
  { echo "FAIL: cpu_trainable exported weights differ"; fail=1; }

# memory: parameter shards + master + gradient shards + optimizer state, per rank
$PY - "$W/llama-np1-b4-a1/metrics.jsonl" "$W/llama-np4-b1-a1/metrics.jsonl" <<'PYEOF' || fail=1
import json, sys
keys = ["param_frozen", "param_trainable", "master", "grad_shard", "optimizer"]
def ranks(p):
    for l in open(p):
        o = json.loads(l)
        if o.get("event") == "memory_start":
            return [sum(r[k] for k in keys) for r in o["ranks"]], sum(o["predicted"][k] for k in keys)
one, pred1 = ranks(sys.argv[1]); four, pred4 = ranks(sys.argv[2])
print(f"param+optimizer bytes per rank: 1 rank {one}, 4 ranks {four} (ratio {max(four)/one[0]:.3f}); predicted {pred1}, {pred4}")
ok = len(four) == 4 and max(four) <= 0.3 * one[0] and one[0] == pred1 and all(x == pred4 for x in four)
sys.exit(0 if ok else 1)
PYEOF

# bytes each step moved == the schedule's theory (accumulation, partial set, tied model)
$PY - "$W/llama-np2-b1-a2/metrics.jsonl" "$W/partial-np4/metrics.jsonl" "$W/qwen3-np4-b1-a1/metrics.jsonl" <<'PYEOF' || fail=1
import json, sys
ok = True
for p in sys.argv[1:]:
    recs = [json.loads(l) for l in open(p)]
    th = next(r for r in recs if r.get("event") == "comm_theory")
    for r in recs:
        if "loss" not in r: continue
        for k in ("allgather_bytes", "reduce_scatter_bytes"):
            if r[k] != th[k]:
                print(f"{p}: step {r['step']}: {k} {r[k]} != theory {th[k]}"); ok = False
    print(p.split("/")[-2], "bytes/step: all-gather", th["allgather_bytes"], "reduce-scatter", th["reduce_scatter_bytes"], "(simple theory", th["simple_allgather_bytes"], th["simple_reduce_scatter_bytes"], ")")
sys.exit(0 if ok else 1)
PYEOF

exit $fail
