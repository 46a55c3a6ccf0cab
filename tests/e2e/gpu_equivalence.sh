#!/usr/bin/env bash
# One rank, the same tiny job on the CPU backend and on the CUDA backend: the per-step
# training losses agree within fp32 tolerance (bf16: false), within bf16 tolerance
# (bf16: true, against the CPU's fp32 and its bf16 mixed precision; also with offload: the
# bf16 shards go through the host), and with `offload: cpu` on the GPU (shards and AdamW on
# the host) within fp32 tolerance. Skips (77) where there is no GPU.
source "$(dirname "$0")/lib/train_common.sh"
probe=$BUILD_DIR/tests/unit_gpu_probe
if [[ -x $probe ]]; then
  "$probe" >/dev/null 2>&1
  rc=$?
  [[ $rc == 77 ]] && { echo "SKIP: no GPU"; exit 77; }
  ((rc == 0)) || { echo "FAIL: $probe exited $rc"; exit 1; }
elif ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  echo "SKIP: no GPU (no probe binary, nvidia-smi lists none)"
  exit 77
fi
W=$TEST_TMP/gpu_equivalence
rm -rf "$W"
mkdir -p "$W"
make_data "$W/data" 96 16
write_job "$W/job.yaml" "$W/out" "$FIXTURES/model/llama" "$W/data"
steps=(--set training.max_steps=12 --set training.eval_steps=0 --set training.logging_steps=1)
fail=0
run() { # name extra --set ...
  local name=$1
  shift
  run_train 1 "$W/job.yaml" --set output_dir="$W/$name" "${steps[@]}" "$@" > "$W/$name.log" 2>&1 ||
    { echo "FAIL: $name: train exited $?"; tail -20 "$W/$name.log"; fail=1; return 1; }
  grep -m1 -i "backend" "$W/$name.log" || true
}
run cpu --set training.backend=cpu || exit 1
# fp32 on the GPU: cuBLAS fp32 products and the CUDA kernels reorder sums, nothing else
if run cuda-fp32 --set training.backend=cuda --set training.bf16=false; then
  compare_losses "$W/cuda-fp32/metrics.jsonl" "$W/cpu/metrics.jsonl" 1e-3 "cuda fp32 vs cpu" || fail=1
fi
# bf16 mixed precision (8-bit mantissa operands, fp32 accumulation): about 1e-2 relative of
# fp32, and close to the same contract on the CPU (docs/model.md "Precision")
if run cpu-bf16 --set training.backend=cpu --set training.bf16=true &&
  run cuda-bf16 --set training.backend=cuda --set training.bf16=true; then
  compare_losses "$W/cuda-bf16/metrics.jsonl" "$W/cpu/metrics.jsonl" 3e-2 "cuda bf16 vs cpu" || fail=1
  compare_losses "$W/cuda-bf16/metrics.jsonl" "$W/cpu-bf16/metrics.jsonl" 1e-2 "cuda bf16 vs cpu bf16" || fail=1
  if run cuda-bf16-offload --set training.backend=cuda --set training.bf16=true --set sharding.offload=cpu; then
    compare_losses "$W/cuda-bf16-offload/metrics.jsonl" "$W/cuda-bf16/metrics.jsonl" 1e-5 \
      "cuda bf16 offload vs cuda bf16" || fail=1
  fi
fi
# offload on the GPU: the same numbers (AdamW on the host is the CPU reference's AdamW)
if run cuda-offload --set training.backend=cuda --set training.bf16=false --set sharding.offload=cpu; then
  compare_losses "$W/cuda-offload/metrics.jsonl" "$W/cpu/metrics.jsonl" 1e-3 "cuda offload vs cpu" || fail=1
fi
exit $fail
