#!/usr/bin/env bash
# A job that asks for spectrum.top_percent (no YAML) runs the Spectrum scan inside `train`
# on 2 ranks, writes Spectrum's files into output_dir, records which YAML it used, trains
# exactly the modules that YAML names (checked against the numpy reference's YAML for the
# same model), and a second run reuses the cached scan. A tied model (Qwen3 fixture): the
# scan lists the tied lm_head as Spectrum does (byte-identical YAML with its `# lm_head
# layers` section), and training says once, on rank 0, that ^lm_head.weight$ is the
# embedding instead of warning on every rank that it matches nothing.
source "$(dirname "$0")/lib/train_common.sh"
W=$TEST_TMP/spectrum_train_select
rm -rf "$W"
mkdir -p "$W"
make_data "$W/data" 96 16
write_job "$W/job.yaml" "$W/out" "$FIXTURES/model/llama" "$W/data"
fail=0
run_train 2 "$W/job.yaml" --set training.max_steps=2 --set spectrum.top_percent=25 \
  --set spectrum.model_name=org/llama_fixture > "$W/log" 2>&1 || { echo "FAIL: train exited $?"; cat "$W/log"; exit 1; }
grep "Spectrum\|analyze\|trainable" "$W/log"
Y="$W/out/snr_results_org-llama-fixture_unfrozenparameters_25percent.yaml"
[[ -s $Y ]] || { echo "FAIL: no YAML $Y"; fail=1; }
grep -q "trainable set: .* from $Y (Spectrum scan, top 25%)" "$W/log" || { echo "FAIL: the log does not name the YAML used"; fail=1; }
# the checkpoint keeps the SNR table the selection came from (the scan's JSON, verbatim)
C=$(ls "$W"/out/ckpt-*.h5 | tail -n 1)
"$SPECTRAIN" inspect "$C" --json > "$W/inspect.json" || { echo "FAIL: inspect $C"; fail=1; }
grep -q '"has_snr_table": *true' "$W/inspect.json" || { echo "FAIL: $C has no SNR table"; fail=1; }
h5dump -d /meta/snr_json "$C" > "$W/snr_dump" 2>&1 || { echo "FAIL: h5dump /meta/snr_json"; fail=1; }
grep -q 'model.layers.1.mlp.down_proj' "$W/snr_dump" || { echo "FAIL: the stored SNR table lacks the modules"; fail=1; }
# the numpy reference's YAML for the same model is byte-identical
$PY "$FIXTURES/spectrum/spectrum_ref.py" "$FIXTURES/model/llama" org/llama_fixture "$W/ref" 25
cmp "$Y" "$W/ref/snr_results_org-llama-fixture_unfrozenparameters_25percent.yaml" || { echo "FAIL: YAML differs from the reference"; fail=1; }
run_train 1 "$W/job.yaml" --resume none --set training.max_steps=1 --set spectrum.top_percent=25 \
  --set spectrum.model_name=org/llama_fixture > "$W/log2" 2>&1 || { echo "FAIL: second train exited $?"; cat "$W/log2"; exit 1; }
grep -q "reusing the cached scan" "$W/log2" || { echo "FAIL: cache not reused"; cat "$W/log2"; fail=1; }
# tied embeddings
write_job "$W/tied.yaml" "$W/tied" "$FIXTURES/model/qwen3" "$W/data"
run_train 2 "$W/tied.yaml" --set training.max_steps=1 --set spectrum.top_percent=50 \
  --set spectrum.model_name=tied > "$W/tlog" 2>&1 || { echo "FAIL: tied train exited $?"; cat "$W/tlog"; exit 1; }
TY="$W/tied/snr_results_tied_unfrozenparameters_50percent.yaml"
$PY "$FIXTURES/spectrum/spectrum_ref.py" "$FIXTURES/model/qwen3" tied "$W/tref" 50
cmp "$TY" "$W/tref/snr_results_tied_unfrozenparameters_50percent.yaml" || { echo "FAIL: tied YAML differs from the reference"; diff "$TY" "$W/tref/snr_results_tied_unfrozenparameters_50percent.yaml"; fail=1; }
grep -q "^# lm_head layers" "$TY" || { echo "FAIL: no lm_head section in $TY"; fail=1; }
grep -q '"lm_head"' "$W/tied/model_snr_results/snr_results_tied.json" || { echo "FAIL: lm_head not in the results"; fail=1; }
if grep -q "lm_head.* matches no parameter" "$W/tlog"; then echo "FAIL: tied lm_head warned about"; fail=1; fi
n=$(grep -c "names the tied lm_head" "$W/tlog" || true)
[[ $n == 1 ]] || { echo "FAIL: the tied lm_head note appears $n times (expected once, rank 0)"; fail=1; }
rm -rf "$W"
exit $fail
