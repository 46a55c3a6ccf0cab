#!/usr/bin/env bash
# Non-finite numbers never train silently, and never reach a checkpoint or an export:
#  1. a model holding NaN / Inf (BF16 embedding, F16 matrix, F32 norm) is refused at load by
#     train (1 and 2 ranks: every rank exits 2, none hangs) and by eval, naming tensor and index;
#  2. a learning rate that blows the weights up (finite after step 1, NaN loss at step 2) with a
#     checkpoint every step stops with exit 1 at step 2: the newest checkpoint is step 1, it
#     exports (every value finite), and eval of that export says the forward pass overflows;
#  3. a learning rate that makes the update itself NaN (step 1) refuses the checkpoint: exit 1,
#     no checkpoint file, no final export;
#  4. training.on_nonfinite: skip skips the NaN steps (parameters unchanged), says so, counts
#     them in the metrics and exports a finite model.
source "$(dirname "$0")/lib/train_common.sh"
W=$TEST_TMP/train_nonfinite
rm -rf "$W"
mkdir -p "$W"
make_data "$W/data" 96 16
fail=0
say() { echo "FAIL: $*"; fail=1; }

# convert SRC DST DTYPE [TENSOR ELEM KIND]: a copy of model dir SRC with its F32 tensors stored
# as DTYPE (BF16 by truncation, F16 via struct 'e'), and one element set to NaN, +Inf or -Inf
convert() {
  $PY - "$@" <<'PYEOF'
import json, os, shutil, struct, sys
src, dst, dtype = sys.argv[1:4]
bad = sys.argv[4:7]
os.makedirs(dst, exist_ok=True)
shutil.copy(os.path.join(src, "config.json"), dst)
raw = open(os.path.join(src, "model.safetensors"), "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
meta = hdr.pop("__metadata__", {"format": "pt"})
es = {"F32": 4, "BF16": 2, "F16": 2}[dtype]
bits = {"F32": {"fmt": "<I", "v": {"nan": 0x7fc00000, "+inf": 0x7f800000, "-inf": 0xff800000}},
        "BF16": {"fmt": "<H", "v": {"nan": 0x7fc0, "+inf": 0x7f80, "-inf": 0xff80}},
        "F16": {"fmt": "<H", "v": {"nan": 0x7e00, "+inf": 0x7c00, "-inf": 0xfc00}}}[dtype]
out, data, at = {"__metadata__": meta}, [], 0
for name in sorted(hdr, key=lambda k: hdr[k]["data_offsets"][0]):
    e = hdr[name]
    b, end = e["data_offsets"]
    vals = struct.unpack(f"<{(end - b) // 4}f", raw[8 + n + b:8 + n + end])
    if dtype == "F32":
        buf = bytearray(struct.pack(f"<{len(vals)}f", *vals))
    elif dtype == "F16":
        buf = bytearray(struct.pack(f"<{len(vals)}e", *vals))
    else:
        buf = bytearray(b"".join(struct.pack("<I", x)[2:] for x in struct.unpack(f"<{len(vals)}I", raw[8 + n + b:8 + n + end])))
    if bad and bad[0] == name:
        struct.pack_into(bits["fmt"], buf, int(bad[1]) * es, bits["v"][bad[2]])
    out[name] = {"dtype": dtype, "shape": e["shape"], "data_offsets": [at, at + len(buf)]}
    data.append(bytes(buf))
    at += len(buf)
h = json.dumps(out).encode()
h += b" " * (-len(h) % 8)
with open(os.path.join(dst, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(data))
PYEOF
}

M=$FIXTURES/model/llama
# ---- 1. refused at load -------------------------------------------------------------------
convert "$M" "$W/bf16_emb" BF16 model.embed_tokens.weight $((95 * 32 + 31)) nan
convert "$M" "$W/f16_mat" F16 model.layers.1.mlp.down_proj.weight $((64 + 5)) +inf
convert "$M" "$W/f32_norm" F32 model.norm.weight 7 -inf
convert "$M" "$W/bf16_ok" BF16
for np in 1 2; do
  for m in bf16_emb f16_mat f32_norm; do
    write_job "$W/$m.yaml" "$W/out_$m" "$W/$m" "$W/data"
    rc=0
    timeout 120 $MPIEXEC -n $np "$SPECTRAIN" train "$W/$m.yaml" > "$W/$m.$np.log" 2>&1 || rc=$?
    [[ $rc == 2 ]] || { say "train $m on $np rank(s): exit $rc, expected 2"; cat "$W/$m.$np.log"; }
    [[ -e $W/out_$m/final ]] && say "train $m: exported a model"
  done
  grep -q "model.embed_tokens.weight' holds NaN at index \[95, 31\] (element 3071 of 3072, stored as BF16)" "$W/bf16_emb.$np.log" ||
    { say "bf16 embedding ($np): not named"; cat "$W/bf16_emb.$np.log"; }
  grep -q "model.layers.1.mlp.down_proj.weight' holds +Inf at index \[1, 5\].*stored as F16" "$W/f16_mat.$np.log" ||
    { say "f16 matrix ($np): not named"; cat "$W/f16_mat.$np.log"; }
  grep -q "model.norm.weight' holds -Inf at index \[7\]" "$W/f32_norm.$np.log" ||
    { say "f32 norm ($np): not named"; cat "$W/f32_norm.$np.log"; }
done
# on 2 ranks the embedding's last row is rank 1's: rank 0 says another rank failed
grep -q "another rank failed" "$W/bf16_emb.2.log" || say "2 ranks: rank 0 did not report rank 1's failure"
rc=0
"$SPECTRAIN" eval --model "$W/f16_mat" --data "$M/eval.jsonl" --seq-len 16 > "$W/eval_bad.log" 2>&1 || rc=$?
[[ $rc == 2 ]] && grep -q "down_proj.weight' holds +Inf at index \[1, 5\]" "$W/eval_bad.log" ||
  { say "eval of an Inf model: exit $rc"; cat "$W/eval_bad.log"; }
"$SPECTRAIN" eval --model "$W/bf16_ok" --data "$M/eval.jsonl" --seq-len 16 > "$W/eval_ok.log" 2>&1 ||
  { say "eval of the clean BF16 copy failed"; cat "$W/eval_ok.log"; }

# ---- 2. the weights blow up: stop at the NaN loss, the last good checkpoint stays -------------
write_job "$W/job.yaml" "$W/out" "$M" "$W/data"
blow=(--set training.learning_rate=1e30 --set training.warmup_steps=0
      --set training.lr_scheduler_type=constant --set training.save_steps=1)
rc=0
run_train 1 "$W/job.yaml" "${blow[@]}" > "$W/blow.log" 2>&1 || rc=$?
[[ $rc == 1 ]] || { say "lr 1e30: exit $rc, expected 1"; cat "$W/blow.log"; }
grep -q "step 2/10: the training loss is NaN: stopping" "$W/blow.log" || { say "lr 1e30: no clear error"; cat "$W/blow.log"; }
ls "$W/out"/ckpt-*.h5 > "$W/ckpts" 2>/dev/null || true
[[ $(cat "$W/ckpts") == "$W/out/ckpt-1.h5" ]] || { say "lr 1e30: checkpoints: $(cat "$W/ckpts")"; }
[[ -e $W/out/final ]] && say "lr 1e30: exported a final model"
"$SPECTRAIN" export "$W/out/ckpt-1.h5" --out "$W/exp1" > "$W/exp1.log" 2>&1 ||
  { say "the newest checkpoint does not export"; cat "$W/exp1.log"; }
rc=0
"$SPECTRAIN" eval --model "$W/exp1" --data "$M/eval.jsonl" --seq-len 16 > "$W/eval_exp1.log" 2>&1 || rc=$?
[[ $rc == 1 ]] && grep -q "forward pass overflows" "$W/eval_exp1.log" ||
  { say "eval of the blown-up (finite) model: exit $rc"; cat "$W/eval_exp1.log"; }

# ---- 3. the update itself is NaN: no checkpoint is written -------------------------------------
rm -rf "$W/out"
rc=0
run_train 1 "$W/job.yaml" "${blow[@]}" --set training.learning_rate=1e39 > "$W/nan.log" 2>&1 || rc=$?
[[ $rc == 1 ]] || { say "lr 1e39: exit $rc, expected 1"; cat "$W/nan.log"; }
grep -q "step 1: /params/.* holds NaN at index .*: refusing to write a checkpoint" "$W/nan.log" ||
  { say "lr 1e39: refusal not named"; cat "$W/nan.log"; }
compgen -G "$W/out/ckpt-*" > /dev/null && say "lr 1e39: a checkpoint file was left: $(ls "$W/out")"
[[ -e $W/out/final ]] && say "lr 1e39: exported a final model"

# ---- 4. on_nonfinite: skip ------------------------------------------------------------------
rm -rf "$W/out"
run_train 1 "$W/job.yaml" "${blow[@]}" --set training.save_steps=0 --set training.max_steps=4 \
  --set training.on_nonfinite=skip > "$W/skip.log" 2>&1 || { say "skip: exit $?"; cat "$W/skip.log"; }
[[ $(grep -c "step skipped (parameters and optimizer state unchanged" "$W/skip.log") == 3 ]] ||
  { say "skip: expected 3 skipped steps"; cat "$W/skip.log"; }
$PY - "$W/out/metrics.jsonl" <<'PYEOF' || fail=1
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
assert [r.get("skipped_steps", 0) for r in recs] == [0, 1, 2, 3], recs
assert recs[0]["loss"] is not None and all(r["loss"] is None for r in recs[1:]), recs
PYEOF
"$SPECTRAIN" export "$W/out/ckpt-4.h5" --out "$W/exp4" > "$W/exp4.log" 2>&1 ||
  { say "skip: the final checkpoint does not export"; cat "$W/exp4.log"; }
[[ -s $W/out/final/model.safetensors ]] || say "skip: no final export"
exit $fail
