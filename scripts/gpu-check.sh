#!/usr/bin/env bash
# THE GPU check: the one script a session runs on a lent GPU machine (one H200, 16 cores, no
# network, a bare image with CUDA, cmake and a compiler; our working tree copied in). Stages,
# each with its own log and time limit; a failed stage is logged and the next one still runs:
#   deps     build dependencies: present, or unpacked from the carried .gpu-deps/ (made here
#            beforehand by scripts/gpu-bundle-deps.sh: Debian packages + alternative links;
#            nothing is ever overwritten: files that exist are kept); NCCL from the CUDA
#            toolkit, else from the image's pip package nvidia-nccl-cu13
#   build    cmake with CUDA (sm_90 only, to save time; ASan and fuzz targets off), -j$(nproc)
#   tests    ctest -L gpu (the GPU-labelled tests: kernel backends vs the CPU reference, NCCL,
#            SVD) plus every test whose name says gpu/cuda/nccl, except the equivalence
#   equiv    e2e.gpu_equivalence: the tiny fixture job, 1 rank, cpu vs cuda (fp32, bf16,
#            offload): losses within fp32 / bf16 tolerance
#   tiny     the tiny job (jobs/tiny.yaml) on backend cuda, 1 rank, 60 steps
#   bench    build/bench/bench_gpu: Llama-3-8B-shaped 8-block stack, tokens/s and MFU, full
#            and 25 % trainable, offload off and on
#   ctest    the rest of the suite, if time is left (CPU tests; informative)
# Writes $OUT/{summary.txt,deps-build.log,tests.log,equiv.log,tiny.log,bench.log,ctest.log}
# (7 files: the device tool returns at most 8). Exit status 0 when every stage that ran passed.
#   From the session (here):  scripts/gpu-bundle-deps.sh
#     then the device tool:   run(command: "scripts/gpu-check.sh", carry: [".gpu-deps"],
#                                 timeout_s: 600)
# Env: OUT (default out/gpu-check), GPU_CHECK_BUDGET_S (default 560: the tool's 600 s per
# command minus a margin), GPU_CHECK_ROOT (default /: where .gpu-deps is unpacked; tests).
set -uo pipefail
SELF=$(realpath "$0")
cd "$(dirname "$SELF")/.."
SRC=$PWD
OUT=${OUT:-$SRC/out/gpu-check}
mkdir -p "$OUT"
BUDGET=${GPU_CHECK_BUDGET_S:-560}
ROOT=${GPU_CHECK_ROOT:-/}
T0=$(date +%s)
SUM=$OUT/summary.txt
B=$SRC/build-gpu
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
left() { echo $((BUDGET - ($(date +%s) - T0))); }
note() { echo "$*" | tee -a "$SUM"; }
# stage NAME LOG MAX_S CMD...: runs CMD under min(MAX_S, time left - 15 s), appending to LOG
stage() {
  local name=$1 log=$2 max=$3
  shift 3
  local l=$(($(left) - 15))
  ((l < max)) && max=$l
  if ((max < 20)); then
    note "[skip] $name: out of time ($(left)s left)"
    return 2
  fi
  echo "==== $name (limit ${max}s) $(date -u +%T)" >> "$log"
  local s=$(date +%s)
  timeout --kill-after=10 "$max" "$@" >> "$log" 2>&1
  local rc=$?
  local d=$(($(date +%s) - s))
  if ((rc == 0)); then note "[ok]   $name (${d}s)"
  elif ((rc == 124 || rc == 137)); then note "[FAIL] $name: timed out after ${d}s (log: $(basename "$log"))"; FAILED=1
  else note "[FAIL] $name: exit $rc after ${d}s (log: $(basename "$log"))"; FAILED=1
  fi
  return $rc
}

# ---- deps --------------------------------------------------------------------------------
deps_missing() {
  local miss=()
  for m in scalapack-openmpi yaml-0.1 jansson openblas lapacke; do
    pkg-config --exists "$m" 2>/dev/null || miss+=("$m")
  done
  command -v mpicc >/dev/null || miss+=(mpicc)
  command -v mpiexec >/dev/null || miss+=(mpiexec)
  command -v h5pcc >/dev/null || [[ -e /usr/lib/x86_64-linux-gnu/pkgconfig/hdf5-openmpi.pc ]] || miss+=(hdf5-openmpi)
  echo "${miss[*]}"
}
deps_unpack() {
  local d=$SRC/.gpu-deps tmp
  [[ -d $d/debs ]] || { echo "no .gpu-deps/debs: run scripts/gpu-bundle-deps.sh here and carry .gpu-deps"; return 1; }
  tmp=$(mktemp -d)
  for f in "$d"/debs/*.deb; do
    if command -v dpkg-deb >/dev/null; then dpkg-deb -x "$f" "$tmp" || return 1
    else # no dpkg-deb: a .deb is an ar archive holding data.tar.{xz,zst,gz}
      local m
      m=$(ar t "$f" | grep '^data.tar') || return 1
      local z=gzip
      case $m in *.xz) z=xz ;; *.zst) z=zstd ;; esac
      (cd "$tmp" && ar p "$f" "$m" | tar -x -f - -I "$z") || return 1
    fi
  done
  # copy in without replacing anything that exists (the image's own files win); keep the
  # image's directory symlinks (merged /usr)
  mkdir -p "$ROOT"
  tar -C "$tmp" -cf - . | tar -C "$ROOT" -xf - --skip-old-files --keep-directory-symlink || return 1
  rm -rf "$tmp"
  local n=0
  while read -r link target; do
    [[ -e $ROOT$link || -L $ROOT$link ]] && continue
    mkdir -p "$(dirname "$ROOT$link")"
    ln -s "$target" "$ROOT$link" && n=$((n + 1))
  done < "$d/links.txt"
  echo "unpacked $(ls "$d"/debs/*.deb | wc -l) packages into $ROOT, made $n alternative links"
  if [[ $ROOT == / ]]; then
    echo /usr/lib/x86_64-linux-gnu > /etc/ld.so.conf.d/spectrain-gpu-deps.conf
    ldconfig
  fi
}
deps() {
  local miss
  miss=$(deps_missing)
  if [[ -z $miss && $ROOT == / ]]; then echo "build dependencies present"; return 0; fi
  echo "missing: $miss; unpacking .gpu-deps"
  deps_unpack || return 1
  export PKG_CONFIG_PATH=/usr/lib/x86_64-linux-gnu/pkgconfig:/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
  [[ $ROOT == / ]] || return 0
  miss=$(deps_missing)
  [[ -z $miss ]] || { echo "still missing after unpacking: $miss"; return 1; }
  echo "build dependencies present now"
}
# NCCL: CMake looks in the CUDA toolkit and /usr; a GPU image may have it only as the pip
# package nvidia-nccl-cu13 (include/ + lib/libnccl.so.2, next to PyTorch): use that then, for
# the build (NCCL_ARGS) and at run time (LD_LIBRARY_PATH; every stage re-enters this script).
NCCL_ARGS=()
NCCL_FROM=""
if [[ -n ${GPU_CHECK_NCCL_FROM_PIP:-} ]] ||
   ! ls /usr/local/cuda/include/nccl.h /usr/include/nccl.h >/dev/null 2>&1; then
  for p in python3 /opt/torch/.venv/bin/python3 /usr/bin/python3; do
    d=$("$p" -c 'import nvidia.nccl as m; print(list(m.__path__)[0])' 2>/dev/null) || continue
    l=$(ls "$d"/lib/libnccl.so* 2>/dev/null | head -1)
    if [[ -f $d/include/nccl.h && -n $l ]]; then
      NCCL_ARGS=(-DNCCL_INCLUDE_DIR="$d/include" -DNCCL_LIBRARY="$l")
      NCCL_FROM="pip package at $d"
      export LD_LIBRARY_PATH=$d/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
      break
    fi
  done
fi
# Stage bodies run as `SELF --stage FUNCTION` under timeout(1) (which cannot run a function).
CT=(ctest --test-dir "$B" --output-on-failure --timeout 240)
build() {
  local cfg
  [[ -n $NCCL_FROM ]] && echo "NCCL from the $NCCL_FROM"
  cfg=$(cmake -S "$SRC" -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DSPECTRAIN_ASAN_TESTS=OFF -DSPECTRAIN_FUZZ=OFF -DSPECTRAIN_CUDA=ON "${NCCL_ARGS[@]}" 2>&1)
  local rc=$?
  echo "$cfg"
  ((rc == 0)) || return 1
  grep -q "spectrain: CUDA backend ON" <<< "$cfg" ||
    { echo "CMake configured without the CUDA backend (nvcc or NCCL not found): no GPU build"; return 1; }
  cmake --build "$B" -j"$(nproc)"
}

gpu_tests() {
  local rc=0
  echo "tests labelled gpu: $("${CT[@]}" -N -L gpu 2>/dev/null | grep -c 'Test *#')"
  "${CT[@]}" -j4 -L gpu -E 'gpu_equivalence' || rc=1
  # named like GPU tests but not labelled (-LE gpu: no test runs twice)
  "${CT[@]}" -j4 -R 'gpu|cuda|nccl|kernel_backends|svd' -LE gpu -E 'gpu_equivalence' || rc=1
  return $rc
}

tiny() {
  local w=$SRC/out/gpu-tiny
  mkdir -p "$w/data"
  if [[ -s $SRC/out/tiny/data/kjv.txt ]]; then cp "$SRC/out/tiny/data/kjv.txt" "$w/data/"
  elif [[ -s $SRC/.gpu-deps/kjv.txt ]]; then cp "$SRC/.gpu-deps/kjv.txt" "$w/data/"
  else echo "no kjv.txt (carry .gpu-deps): training on the repository's own text instead"
       for i in $(seq 20); do cat "$SRC"/README.md "$SRC"/docs/*.md; done > "$w/data/kjv.txt"
  fi
  rm -rf "$w/run"
  "$B/spectrain" train "$SRC/jobs/tiny.yaml" --set output_dir="$w/run" --set model.path="$w/model" \
    --set data.train="$w/data/kjv.txt" --set training.backend=cuda --set training.max_steps=60 \
    --set training.save_steps=0 --set training.eval_steps=30
}

bench() {
  local rc=0
  for m in full top25 top25-offload-tr top25-offload full-offload; do
    OMP_NUM_THREADS=$(($(nproc) - 1)) "$B/bench/bench_gpu" --only "$m" || rc=1
  done
  awk '$1 == "RESULT" { tps[$2] = $6; if ($8 != "nan") mfu[$2] = $8 }
    END {
      if (tps["full"] && tps["full-offload"]) printf "offload / no offload, full training: %.2f\n", tps["full-offload"] / tps["full"]
      if (tps["top25"] && tps["top25-offload"]) printf "offload (cpu) / no offload, 25 %% trainable: %.2f (target >= 0.60)\n", tps["top25-offload"] / tps["top25"]
      if (tps["top25"] && tps["top25-offload-tr"]) printf "offload (cpu_trainable) / no offload, 25 %% trainable: %.2f (target >= 0.60)\n", tps["top25-offload-tr"] / tps["top25"]
      if ("full" in mfu) printf "MFU(6N) full training without offload: %.1f %% (target >= 40 %%)\n", 100 * mfu["full"]
    }' "$OUT/bench.log"
  return $rc
}

if [[ ${1:-} == --stage ]]; then
  shift
  "$@"
  exit $?
fi

: > "$SUM"
note "gpu-check $(date -u +%FT%TZ) on $(hostname), budget ${BUDGET}s, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/  gpu: /' | tee -a "$SUM"
echo "  nccl: ${NCCL_FROM:-the CUDA toolkit or /usr}" | tee -a "$SUM"
echo "  cpus: $(nproc), nvcc: $(nvcc --version 2>/dev/null | tail -1 || echo missing), cmake: $(cmake --version 2>/dev/null | head -1 || echo missing)" | tee -a "$SUM"
py=/usr/bin/python3
[[ -x $py ]] || py=$(command -v python3 || echo none)
echo "  tests' python: $py $($py --version 2>&1 | cut -d' ' -f2), numpy: $($py -c 'import numpy; print(numpy.__version__)' 2>/dev/null || echo 'MISSING (the numpy-reference tests, e.g. spectrum_analyze*, fail or skip)')" | tee -a "$SUM"
FAILED=0

LOG=$OUT/deps-build.log
: > "$LOG"
echo "==== deps $(date -u +%T)" >> "$LOG"
if deps >> "$LOG" 2>&1; then note "[ok]   deps ($(tail -1 "$LOG"))"
else note "[FAIL] deps: $(tail -1 "$LOG")"; FAILED=1
fi
export PKG_CONFIG_PATH=/usr/lib/x86_64-linux-gnu/pkgconfig:/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
[[ $ROOT == / ]] || { note "GPU_CHECK_ROOT=$ROOT: unpack test only, stopping"; exit $FAILED; }

# ---- build ---------------------------------------------------------------------------------
BUILT=0
stage build "$LOG" 300 "$SELF" --stage build && BUILT=1
grep -E "spectrain: CUDA backend" "$LOG" | tail -1 | sed 's/^/  /' | tee -a "$SUM"

if ((BUILT)); then
  # ---- the GPU tests ---------------------------------------------------------------------
  stage tests "$OUT/tests.log" 150 "$SELF" --stage gpu_tests
  grep -E "tests passed|Test +#.*(Passed|\*\*\*)" "$OUT/tests.log" | sed -E 's/^ *[0-9]+\/[0-9]+ //; s/^/  /' >> "$SUM"

  # ---- 1-rank equivalence cpu vs cuda ------------------------------------------------------
  stage equiv "$OUT/equiv.log" 150 "${CT[@]}" -V -R '^e2e\.gpu_equivalence$'
  grep -E "max rel diff|FAIL|SKIP|tests passed|Test +#" "$OUT/equiv.log" | sed 's/^/  /' | tee -a "$SUM"

  # ---- the tiny job on the GPU -------------------------------------------------------------
  stage tiny "$OUT/tiny.log" 120 "$SELF" --stage tiny
  grep -E "^step (10|30|60)/|backend|tok/s" "$OUT/tiny.log" | tail -5 | sed 's/^/  /' >> "$SUM"

  # ---- the benchmark ------------------------------------------------------------------------
  # one process per mode: a mode that runs out of memory (an abort) does not take the others
  # with it; the ratios are computed from the RESULT lines
  stage bench "$OUT/bench.log" 270 "$SELF" --stage bench
  grep -E "^\| [a-z]|offload .* no offload|MFU\(6N\) full|SKIP|WARNING|bench_gpu: .*backend" "$OUT/bench.log" |
    awk '!/^\| mode|bench_gpu: / || !seen[$2]++' | sed 's/^/  /' >> "$SUM"

  # ---- the rest of the suite, with what time is left -----------------------------------------
  stage ctest "$OUT/ctest.log" 600 "${CT[@]}" -j8 -E 'gpu|cuda|nccl|kernel_backends|svd'
  grep -E "tests passed|tests failed|\(Failed\)|\(Timeout\)" "$OUT/ctest.log" | head -20 | sed 's/^/  /' >> "$SUM"
else
  note "[skip] tests, equiv, tiny, bench, ctest: no build"
fi
# keep every log under the tool's 16 MiB per file
for f in "$OUT"/*.log; do
  [[ $(stat -c %s "$f") -gt 8000000 ]] && { tail -c 8000000 "$f" > "$f.t" && mv "$f.t" "$f"; }
done
note "gpu-check done in $(($(date +%s) - T0))s: $([[ $FAILED == 0 ]] && echo 'every stage passed' || echo 'FAILURES above')"
exit $FAILED
