#!/usr/bin/env bash
# spectrain analyze with cuSOLVER (needs a GPU: skips with 77 where unit_gpu_probe does).
# A model made here with numpy (F32 and BF16; wide 300 x 700 and tall 700 x 300 matrices, so
# both layouts of the GPU path run, 256 x 256, a 64-wide embedding and lm_head, 1-D norms;
# signal planted at different strengths per layer) against the numpy reference
# (spectrum_ref.py): SNR rtol 1e-4, byte-identical YAML, for --solver auto (the >= 256
# matrices on the GPU), --solver gpu (every 2-D matrix on it), --solver cpu, on 1 and 2
# ranks; the grid path for matrices "too big for the GPU" (SPECTRAIN_TEST_GPU_MAX_ELEMS);
# the tiny fixtures with --solver gpu.
set -euo pipefail
probe="$BUILD_DIR/tests/unit_gpu_probe"
if [[ ! -x $probe ]]; then echo "SKIP: $probe not built"; exit 77; fi
set +e
"$probe" > /dev/null 2>&1
prc=$?
set -e
if [[ $prc == 77 ]]; then echo "SKIP: no GPU"; exit 77; fi
[[ $prc == 0 ]] || { echo "FAIL: unit_gpu_probe exited $prc"; exit 1; }

F="$FIXTURES/spectrum"
T="$TEST_TMP/spectrum_analyze_gpu.$$"
rm -rf "$T"; mkdir -p "$T/model"
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3
fail=0
run() { echo "+ $*"; "$@"; }

$PY - "$T/model/model.safetensors" <<'PY'
import json, struct, sys
import numpy as np
rng = np.random.default_rng(7)
def planted(rows, cols, strength, rank=4):
    w = rng.standard_normal((rows, cols)) / np.sqrt(cols)
    for _ in range(rank):
        u, v = rng.standard_normal(rows), rng.standard_normal(cols)
        w += strength * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v))
    return w.astype(np.float32)
t = {}
for l in range(3):
    s = [0.5, 3.0, 1.5][l]
    t[f"model.layers.{l}.mlp.down_proj.weight"] = ("F32", planted(300, 700, s))
    t[f"model.layers.{l}.mlp.up_proj.weight"] = ("BF16", planted(700, 300, 2 * s))
    t[f"model.layers.{l}.self_attn.q_proj.weight"] = ("F32", planted(256, 256, 3 - s))
    t[f"model.layers.{l}.input_layernorm.weight"] = ("F32", np.ones(300, np.float32))
t["model.embed_tokens.weight"] = ("BF16", planted(1000, 64, 2.0))
t["lm_head.weight"] = ("F32", planted(64, 1000, 1.0))
header, blobs, off = {}, [], 0
for name in sorted(t):
    dt, a = t[name]
    if dt == "BF16":  # round to nearest even, as torch does
        u = a.view(np.uint32).astype(np.uint64)
        raw = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2").tobytes()
    else:
        raw = a.astype("<f4").tobytes()
    header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
    blobs.append(raw)
    off += len(raw)
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
PY
$PY "$F/spectrum_ref.py" "$T/model" gpu-model "$T/expected" 10 34 50

check() { # name log count-on-gpu [grid-text]
  grep -q "$3 by cuSOLVER on GPUs" "$2" || { echo "FAIL: $1: expected '$3 by cuSOLVER on GPUs'"; cat "$2"; fail=1; }
  if [[ -n ${4:-} ]]; then grep -q "$4" "$2" || { echo "FAIL: $1: expected '$4'"; fail=1; }; fi
}
# auto: 9 matrices with both sides >= 256 on the GPU (embedding and lm_head are 64 wide)
for np in 1 2; do
  out="$T/auto.np$np"
  run $MPIEXEC -n $np "$SPECTRAIN" analyze --model "$T/model" --model-name gpu-model \
    --top-percent 10 34 50 --out "$out" --no-heatmap > "$out.log" 2>&1 || { cat "$out.log"; fail=1; }
  check auto.np$np "$out.log" 9
  $PY "$F/compare.py" "$T/expected" "$out" gpu-model 10 34 50 || fail=1
done
# gpu: every 2-D matrix (11)
out="$T/gpu.np2"
run $MPIEXEC -n 2 "$SPECTRAIN" analyze --model "$T/model" --model-name gpu-model --solver gpu \
  --top-percent 10 34 50 --out "$out" --no-heatmap > "$out.log" 2>&1 || { cat "$out.log"; fail=1; }
check gpu.np2 "$out.log" 11
$PY "$F/compare.py" "$T/expected" "$out" gpu-model 10 34 50 || fail=1
# cpu: none on the GPU
out="$T/cpu.np1"
run "$SPECTRAIN" analyze --model "$T/model" --model-name gpu-model --solver cpu \
  --top-percent 10 34 50 --out "$out" --no-heatmap > "$out.log" 2>&1 || { cat "$out.log"; fail=1; }
if grep -q "cuSOLVER" "$out.log"; then echo "FAIL: --solver cpu used the GPU"; fail=1; fi
$PY "$F/compare.py" "$T/expected" "$out" gpu-model 10 34 50 || fail=1
# "GPU" of 100000 elements: 300 x 700 and 700 x 300 go to 2-rank grids, 256 x 256 stays
out="$T/grid.np2"
export SPECTRAIN_TEST_GPU_MAX_ELEMS=100000
run $MPIEXEC -n 2 -x SPECTRAIN_TEST_GPU_MAX_ELEMS "$SPECTRAIN" \
  analyze --model "$T/model" --model-name gpu-model --top-percent 10 34 50 --out "$out" \
  --no-heatmap > "$out.log" 2>&1 || { cat "$out.log"; fail=1; }
unset SPECTRAIN_TEST_GPU_MAX_ELEMS
check grid.np2 "$out.log" 3 "6 on 2-rank ScaLAPACK grids"
$PY "$F/compare.py" "$T/expected" "$out" gpu-model 10 34 50 || fail=1
# the committed tiny fixtures, every matrix on the GPU
for model in tiny-llama tiny-moe; do
  out="$T/$model"
  run "$SPECTRAIN" analyze --model "$F/$model" --model-name $model --solver gpu \
    --top-percent 10 25 50 --out "$out" --no-heatmap > "$out.log" 2>&1 || { cat "$out.log"; fail=1; }
  grep -q "by cuSOLVER on GPUs" "$out.log" || { echo "FAIL: $model: GPU not used"; fail=1; }
  $PY "$F/compare.py" "$F/expected/$model" "$out" $model 10 25 50 || fail=1
done
[[ $fail == 0 ]] && rm -rf "$T"
exit $fail
