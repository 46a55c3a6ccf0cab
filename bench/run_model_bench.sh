#!/usr/bin/env bash
# Single-rank CPU training speed: spectrain (bench_model) against PyTorch + transformers
# (bench/peer_torch_model.py) on the identical Llama model, batch and sequence length, with
# the same thread count, alternating ROUNDS times in one run. Each side's fastest step
# counts (and, separately, its least CPU time per step): these machines are shared and
# noisy, and the minimum is what the code can do. Prints both sides and the ratios.
#   THREADS=2 ROUNDS=2 bench/run_model_bench.sh [shape options for both, e.g. --layers 8]
# OpenBLAS picks its kernels for this CPU unless OPENBLAS_CORETYPE is set (some machines
# set it globally, e.g. to Haswell, which disables AVX-512); the script prints the choice.
# Needs: a build (scripts/build.sh) and python3 with torch + transformers.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
PY=${PYTHON:-python3}
BIN=build/bench/bench_model
[ -x "$BIN" ] || { echo "build first: scripts/build.sh" >&2; exit 2; }
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS OMP_WAIT_POLICY=PASSIVE
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq "$ROUNDS"); do
  echo "== round $r ($THREADS threads)"
  "$BIN" "$@" | tee -a "$out" | grep -v '^RESULT'
  "$PY" bench/peer_torch_model.py --threads "$THREADS" "$@" | tee -a "$out" | grep -v '^RESULT'
done
awk '
  $1 == "RESULT" && $2 == "sgemm" { if ($3 > sg) sg = $3; if ($4 > sgc) sgc = $4 }
  $1 == "RESULT" && $2 != "sgemm" {
    k = $2 "/" $3
    if (!(k in step) || $7 < step[k]) { step[k] = $7; tok[k] = $8; fwd[k] = $4; bwd[k] = $5; opt[k] = $6; gf[k] = $9 }
    if (!(k in cpu) || $10 < cpu[k]) { cpu[k] = $10; gfc[k] = ($7 > 0 ? $9 * $7 / $10 : 0) }
  }
  END {
    printf "\nfastest step of all rounds (ms): %-6s %8s %8s %8s %8s %10s %9s\n", "", "fwd", "bwd", "opt", "step", "tokens/s", "cpu ms"
    n = split("spectrain/full torch/full spectrain/top torch/top", ks, " ")
    for (i = 1; i <= n; i++) { k = ks[i]; if (k in step)
      printf "  %-36s %8.1f %8.1f %8.1f %8.1f %10.0f %9.1f\n", k, fwd[k], bwd[k], opt[k], step[k], tok[k], cpu[k] }
    printf "\nsgemm: %.1f GFLOP/s; spectrain full: %.1f GFLOP/s (%.0f%%), top: %.1f GFLOP/s (%.0f%%) by wall time\n",
      sg, gf["spectrain/full"], 100 * gf["spectrain/full"] / sg, gf["spectrain/top"], 100 * gf["spectrain/top"] / sg
    printf "per CPU-second: sgemm %.1f; spectrain full %.1f (%.0f%%), top %.1f (%.0f%%)\n",
      sgc, gfc["spectrain/full"], 100 * gfc["spectrain/full"] / sgc, gfc["spectrain/top"], 100 * gfc["spectrain/top"] / sgc
    printf "speed vs PyTorch (tokens/s ratio, >1 = faster): full %.2fx, top-trainable %.2fx\n",
      step["torch/full"] / step["spectrain/full"], step["torch/top"] / step["spectrain/top"]
    printf "same by CPU time per step (less sensitive to other load):   full %.2fx, top-trainable %.2fx\n",
      cpu["torch/full"] / cpu["spectrain/full"], cpu["torch/top"] / cpu["spectrain/top"]
    printf "top-trainable step / full step: spectrain %.2f, PyTorch %.2f (goal <= 0.60)\n",
      step["spectrain/top"] / step["spectrain/full"], step["torch/top"] / step["torch/full"]
    printf "  by CPU time per step:          spectrain %.2f, PyTorch %.2f\n",
      cpu["spectrain/top"] / cpu["spectrain/full"], cpu["torch/top"] / cpu["torch/full"]
  }' "$out"
