#!/usr/bin/env bash
# Single-rank training on a tiny model lowers the loss (train and validation), writes the
# metrics file with the documented fields and the progress lines, and exports a Hugging Face
# directory whose tensors have the input model's names, shapes and dtype.
source "$(dirname "$0")/lib/train_common.sh"
W=$TEST_TMP/train_single
rm -rf "$W"
mkdir -p "$W"
make_data "$W/data" 96 16
write_job "$W/job.yaml" "$W/out" "$FIXTURES/model/llama" "$W/data"
fail=0
run_train 1 "$W/job.yaml" --set training.max_steps=40 --set training.learning_rate=1e-2 \
  --set training.eval_steps=10 --set training.logging_steps=5 > "$W/log" 2>&1 ||
  { echo "FAIL: train exited $?"; cat "$W/log"; exit 1; }
cat "$W/log"
grep -Eq '^step 5/40 \| loss [0-9.]+ \| lr [0-9.e+-]+ \| grad_norm [0-9.]+ \| [0-9]+ tok/s \| elapsed [0-9:]+ \| eta [0-9:?]+ \| peak_mem ' "$W/log" ||
  { echo "FAIL: progress line format"; fail=1; }
grep -q "peak RSS" "$W/log" || { echo "FAIL: no peak RSS at the end"; fail=1; }
$PY - "$W/out/metrics.jsonl" <<'PYEOF' || fail=1
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
steps = [r for r in recs if "loss" in r]
need = {"step", "loss", "lr", "grad_norm", "tokens_per_s"}
assert all(need <= r.keys() for r in steps), "missing fields"
assert [r["step"] for r in steps] == [5, 10, 15, 20, 25, 30, 35, 40], [r["step"] for r in steps]
vals = [r["val_loss"] for r in steps if "val_loss" in r]
assert len(vals) == 4, vals
first, last = steps[0]["loss"], sum(r["loss"] for r in steps[-4:]) / 4
print(f"train loss {first:.4f} -> {last:.4f}; val loss {vals[0]:.4f} -> {vals[-1]:.4f}")
assert last < 0.85 * first, "training loss did not fall clearly"
assert vals[-1] < 0.9 * vals[0], "validation loss did not fall clearly"
mem = [r for r in recs if r.get("event") in ("memory_start", "memory_end")]
assert len(mem) == 2 and mem[1]["ranks"][0]["peak_rss"] > 0
PYEOF
$PY - "$W/out/final" "$FIXTURES/model/llama" <<'PYEOF' || fail=1
import json, struct, sys
def header(p):
    f = open(p + "/model.safetensors", "rb"); n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
    return {k: (v["dtype"], v["shape"]) for k, v in h.items() if k != "__metadata__"}
a, b = header(sys.argv[1]), header(sys.argv[2])
assert a == b, f"exported tensors differ: {set(map(str, a.items())) ^ set(map(str, b.items()))}"
ca, cb = json.load(open(sys.argv[1] + "/config.json")), json.load(open(sys.argv[2] + "/config.json"))
for k in ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size", "model_type"]:
    assert ca[k] == cb[k], k
print("export:", len(a), "tensors as in the input model")
PYEOF
exit $fail
