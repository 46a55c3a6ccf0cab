#!/usr/bin/env bash
# Spectrum scan time: spectrain analyze at 1, 2, 4 ranks (1 BLAS thread per rank) against
# numpy svd(compute_uv=False) and torch.linalg.svdvals over the same matrices in one
# process with all cores (the Python tool's route). Prints times and ratios.
#   bench/bench_scan.sh [MODEL_DIR]   (default: generate /tmp/spectrain-bench/llama24x1024)
#   SOLVER=auto|cpu|gpu (default auto: cuSOLVER where every rank has a GPU), NPS="1 2 4" (the
#   rank counts; one rank per GPU on a GPU machine, e.g. NPS=1 on one GPU).
# Needs build/spectrain, python3 with numpy (and torch for that peer).
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-/tmp/spectrain-bench/llama24x1024}
PY=${PYTHON:-python3}
[[ -f $M/model.safetensors ]] || $PY bench/gen_bench_llama.py "$M"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=PASSIVE
MPIEXEC=${MPIEXEC:-mpiexec --oversubscribe --bind-to none}
cat "$M/model.safetensors" > /dev/null   # page cache warm for everyone
out=$(mktemp -d)
SOLVER=${SOLVER:-auto}
NPS=${NPS:-1 2 4}
declare -A T
for np in $NPS; do
  s=$(date +%s.%N)
  OPENBLAS_NUM_THREADS=1 $MPIEXEC -n $np build/spectrain analyze --model "$M" --model-name bench \
    --top-percent 25 --out "$out" --rescan --no-heatmap --quiet --solver "$SOLVER" | grep "scan took"
  T[$np]=$(echo "$(date +%s.%N) - $s" | bc)
  echo "spectrain np=$np --solver $SOLVER: ${T[$np]} s wall (process start to exit)"
done
peer() { # name -> total seconds (the peer's line goes to stderr; no tee: it would truncate a log file)
  local line
  line=$(env -u OPENBLAS_NUM_THREADS -u OMP_NUM_THREADS $PY bench/peer_scan.py "$M" "$1")
  echo "$line" >&2
  echo "$line" | sed -E 's/.*total ([0-9.]+) s/\1/'
}
TO=$(peer torch)
NP=$(peer numpy)
rm -rf "$out"
printf '\n%-28s %8s\n' "route" "seconds"
for np in $NPS; do printf '%-28s %8.2f\n' "spectrain $np rank(s) ($SOLVER)" "${T[$np]}"; done
printf '%-28s %8.2f\n' "numpy svd (all cores)" "$NP" "torch svdvals (all cores)" "$TO"
if [[ -n ${T[1]:-} && -n ${T[2]:-} ]]; then
  printf '\nscaling 1 -> 2 ranks: %.2fx; numpy / spectrain(2): %.2fx; torch / spectrain(2): %.2fx\n' \
    "$(echo "${T[1]} / ${T[2]}" | bc -l)" "$(echo "$NP / ${T[2]}" | bc -l)" "$(echo "$TO / ${T[2]}" | bc -l)"
else
  first=${NPS%% *}
  printf '\nnumpy / spectrain(%s): %.2fx; torch / spectrain(%s): %.2fx\n' "$first" \
    "$(echo "$NP / ${T[$first]}" | bc -l)" "$first" "$(echo "$TO / ${T[$first]}" | bc -l)"
fi
