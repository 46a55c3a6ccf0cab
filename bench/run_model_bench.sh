#!/usr/bin/env bash
# Single-rank CPU training speed: spectrain (bench_model) against PyTorch 2.x + transformers
# from PyPI (bench/peer_torch_model.py) on the identical Llama model, batch and sequence
# length, with the same thread count, in fp32 and in bf16 (spectrain: training.bf16 on the
# cpu backend; PyTorch: torch.autocast("cpu", dtype=torch.bfloat16)), full training and the
# top 25 % of blocks trainable, on two shapes:
#   default  bench_model's default: 8 blocks of width 256, MLP 704, 8 heads / 4 KV heads,
#            vocabulary 256, 4 x 256 tokens
#   smollm   SmolLM2-135M's block shape: 4 blocks of width 576, MLP 1536, 9 heads / 3 KV
#            heads, vocabulary 49,152, tied embeddings, 4 x 256 tokens
# alternating spectrain and PyTorch ROUNDS times in one run. Each side's fastest step counts
# (and, separately, its least CPU time per step): these machines are shared and noisy, and
# the minimum is what the code can do. The same run measures the GEMM roofline (GFLOP/s of
# one ROOFLINE^3 product): fp32 through spectrain's gemm (OpenBLAS sgemm) and torch.matmul,
# bf16 through torch.matmul and through spectrain's bf16 gemm where this build has one.
# Where this build's cpu backend refuses training.bf16, the spectrain bf16 rows say "not
# supported by this build".
#
#   bench/run_model_bench.sh                      both shapes, fp32 and bf16
#   SHAPES=default PRECISIONS=fp32 bench/run_model_bench.sh [extra options for both sides]
# Environment: THREADS (2), ROUNDS (2), SHAPES ("default smollm"), PRECISIONS ("fp32 bf16"),
#   ROOFLINE (2048; 0 skips it), STEPS (timed steps per mode; default 5, smollm 3),
#   SPECTRAIN_BENCH_VENV: an existing venv with torch >= 2 and transformers to use (e.g.
#   /work/pyenv); otherwise the bench makes its own with `python3 -m venv` under
#   SPECTRAIN_BENCH_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/spectrain-bench) and installs
#   torch and transformers from PyPI into it with pip (about 3 GB, once).
# OpenBLAS picks its kernels for this CPU unless OPENBLAS_CORETYPE is set (some machines set
# it globally, e.g. to Haswell, which disables AVX-512); bench_model prints the choice.
# Needs: a build (scripts/build.sh), python3 with the venv module (Debian: python3-venv,
# `scripts/install-deps.sh --bench`), and network access to PyPI for the first venv.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
SHAPES=${SHAPES:-default smollm}
PRECISIONS=${PRECISIONS:-fp32 bf16}
ROOFLINE=${ROOFLINE:-2048}
BIN=build/bench/bench_model
[ -x "$BIN" ] || { echo "run_model_bench: build first: scripts/build.sh" >&2; exit 2; }

# The peer: PyTorch 2.x + transformers from PyPI, in a venv of the bench's own unless one
# is named. Debian's python3-torch (1.13) is not the peer: a newcomer installs torch from PyPI.
if [ -n "${SPECTRAIN_BENCH_VENV:-}" ]; then
  VENV=$SPECTRAIN_BENCH_VENV
  [ -x "$VENV/bin/python" ] || {
    echo "run_model_bench: SPECTRAIN_BENCH_VENV=$VENV has no bin/python (expected a venv with" \
      "torch >= 2 and transformers; unset it to let the bench make one)" >&2
    exit 2
  }
else
  CACHE=${SPECTRAIN_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spectrain-bench}
  VENV=$CACHE/venv
  if [ ! -f "$VENV/.spectrain-complete" ]; then
    echo "run_model_bench: making the peer's venv in $VENV (torch + transformers from PyPI," \
      "about 3 GB; once: later runs reuse it)"
    python3 -m venv --help >/dev/null 2>&1 || {
      echo "run_model_bench: python3 has no venv module (Debian: apt-get install python3-venv," \
        "or scripts/install-deps.sh --bench)" >&2
      exit 2
    }
    rm -rf "$VENV"
    mkdir -p "$CACHE"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet "torch>=2" transformers
    touch "$VENV/.spectrain-complete"
  fi
fi
PY=$VENV/bin/python
"$PY" - <<'EOF' || exit 2
import sys
try:
    import torch, transformers
except ImportError as e:
    sys.exit("run_model_bench: %s: %s (expected torch >= 2 and transformers)" % (sys.executable, e))
if int(torch.__version__.split(".")[0]) < 2:
    sys.exit("run_model_bench: %s has torch %s; the peer is PyTorch 2.x from PyPI"
             % (sys.executable, torch.__version__))
EOF

export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "run_model_bench: $(date -u +%FT%TZ), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 |
  sed 's/^ //'), $(nproc) CPUs, $THREADS threads, load:$(cut -d' ' -f1-3 /proc/loadavg)"

shape_args() {
  case "$1" in
    default) echo "" ;;
    smollm) echo "--layers 4 --hidden 576 --ffn 1536 --heads 9 --kv-heads 3 --vocab 49152 --tied" ;;
    *) echo "run_model_bench: SHAPES: unknown shape '$1' (expected default or smollm)" >&2; exit 2 ;;
  esac
}

# The roofline first (the shapes do not change it): spectrain's gemm per precision, then
# torch.matmul in fp32 and bf16.
if [ "$ROOFLINE" -gt 0 ]; then
  echo "== GEMM roofline, ${ROOFLINE}^3 (load:$(cut -d' ' -f1-3 /proc/loadavg))"
  for p in $PRECISIONS; do
    "$BIN" --steps 0 --precision "$p" --roofline "$ROOFLINE" | tee -a "$out" | grep -v '^RESULT'
  done
  "$PY" bench/peer_torch_model.py --threads "$THREADS" --steps 0 --roofline "$ROOFLINE" |
    tee -a "$out" | grep -v '^RESULT'
fi
for shape in $SHAPES; do
  sa=$(shape_args "$shape")
  steps=${STEPS:-$([ "$shape" = smollm ] && echo 3 || echo 5)}
  for r in $(seq "$ROUNDS"); do
    echo "== $shape, round $r (load:$(cut -d' ' -f1-3 /proc/loadavg))"
    for p in $PRECISIONS; do
      # shellcheck disable=SC2086
      "$BIN" $sa --steps "$steps" --precision "$p" --roofline 0 "$@" |
        sed "s/^RESULT/RESULT $shape/" | tee -a "$out" | grep -v '^RESULT'
      # shellcheck disable=SC2086
      "$PY" bench/peer_torch_model.py --threads "$THREADS" $sa --steps "$steps" --precision "$p" "$@" |
        sed "s/^RESULT/RESULT $shape/" | tee -a "$out" | grep -v '^RESULT'
    done
  done
done
echo "load at the end:$(cut -d' ' -f1-3 /proc/loadavg)"

awk -v shapes="$SHAPES" -v precs="$PRECISIONS" '
  $1 != "RESULT" { next }
  $2 == "gemm" { k = $3 "/" $4; if ($6 > gw[k]) { gw[k] = $6; gn[k] = $5 } if ($7 > gc[k]) gc[k] = $7; next }
  $2 == "unsupported" { uns["roofline/" $3] = 1; next }
  $3 == "unsupported" { uns[$2 "/" $4] = 1; next }
  {
    k = $2 "/" $3 "/" $4 "/" $5   # shape/side/precision/mode
    if (!(k in step) || $9 < step[k]) { step[k] = $9; tok[k] = $10 }
    if (!(k in cpu) || $12 < cpu[k]) cpu[k] = $12
  }
  END {
    ns = split(shapes, S, " "); np = split(precs, P, " ")
    for (i = 1; i <= ns; i++) {
      s = S[i]
      printf "\n%s shape: fastest step of all rounds, least CPU time per step; ratios > 1: spectrain faster\n", s
      printf "  %-10s %12s %12s %10s %10s %12s %12s\n", "", "tokens/s", "", "CPU ms/step", "", "speed-up", ""
      printf "  %-10s %12s %12s %10s %10s %12s %12s\n", "", "spectrain", "PyTorch", "spectrain", "PyTorch", "by wall", "by CPU time"
      for (j = 1; j <= np; j++) for (m = 1; m <= 2; m++) {
        p = P[j]; mode = m == 1 ? "full" : "top"; lab = p " " (m == 1 ? "full" : "top25")
        ks = s "/spectrain/" p "/" mode; kt = s "/torch/" p "/" mode
        if ((s "/" p) in uns || !(ks in step)) {
          if (kt in step)
            printf "  %-10s %12s %12.0f %10s %10.1f   spectrain: not supported by this build\n", lab, "-", tok[kt], "-", cpu[kt]
          continue
        }
        if (!(kt in step)) { printf "  %-10s %12.0f %12s %10.1f %10s\n", lab, tok[ks], "-", cpu[ks], "-"; continue }
        printf "  %-10s %12.0f %12.0f %10.1f %10.1f %11.2fx %11.2fx\n", lab, tok[ks], tok[kt], cpu[ks], cpu[kt],
          step[kt] / step[ks], cpu[kt] / cpu[ks]
      }
      for (j = 1; j <= np; j++) {
        p = P[j]; ks = s "/spectrain/" p "/"; kt = s "/torch/" p "/"
        if ((ks "top") in step && (ks "full") in step && (kt "top") in step && (kt "full") in step)
          printf "  top25 / full step (%s, CPU time): spectrain %.2f, PyTorch %.2f\n", p,
            cpu[ks "top"] / cpu[ks "full"], cpu[kt "top"] / cpu[kt "full"]
      }
    }
    printf "\nGEMM roofline (GFLOP/s of one N^3 product, by wall time / per CPU-second):\n"
    for (j = 1; j <= np; j++) for (side = 1; side <= 2; side++) {
      p = P[j]; who = side == 1 ? "spectrain" : "PyTorch"; k = (side == 1 ? "spectrain" : "torch") "/" p
      if (k in gw) printf "  %-4s %-9s %5d^3: %7.1f / %7.1f\n", p, who, gn[k], gw[k], gc[k]
      else if (side == 1 && ("roofline/" p) in uns) printf "  %-4s %-9s: not supported by this build\n", p, who
    }
  }' "$out"
