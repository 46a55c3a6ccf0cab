#!/usr/bin/env bash
# A job that asks for spectrum.top_percent (no YAML) runs the Spectrum scan inside `train`
# on 2 ranks, writes Spectrum's files into output_dir, records which YAML it used, trains
# exactly the modules that YAML names (checked against the numpy reference's YAML for the
# same model), and a second run reuses the cached scan.
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
rm -rf "$W"
exit $fail
