#!/usr/bin/env bash
# spectrain analyze against the numpy reference (tests/fixtures/spectrum, made by
# gen_spectrum_fixtures.py): SNR within rtol 1e-4, identical selection, byte-identical YAML
# at N = 10, 25, 50, on 1, 2 and 4 ranks; tied embeddings (the lm_head module) and Spectrum's
# degenerate cases (all-zero, single-element, k-D, NaN/Inf weights: NaN named, never
# selected) on 1 and 2 ranks; the ScaLAPACK grid path (forced by a small --rank-mem-limit)
# at 2 and 4 ranks; the cache; the heatmap renders.
set -euo pipefail
F="$FIXTURES/spectrum"
T="$TEST_TMP/spectrum_analyze.$$"
rm -rf "$T"; mkdir -p "$T"
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3
fail=0
run() { echo "+ $*"; "$@"; }

for np in 1 2 4; do
  for model in tiny-llama bert-like tiny-moe; do
    [[ $model != tiny-llama && $np == 4 ]] && continue
    out="$T/$model.np$np"
    run $MPIEXEC -n $np "$SPECTRAIN" analyze --model "$F/$model" --model-name $model \
      --top-percent 10 25 50 --out "$out" --no-heatmap > "$out.log"
    $PY "$F/compare.py" "$F/expected/$model" "$out" $model 10 25 50 || fail=1
  done
  [[ $np == 4 ]] && continue
  for model in tiny-tied tiny-tied-stored; do
    out="$T/$model.np$np"
    run $MPIEXEC -n $np "$SPECTRAIN" analyze --model "$F/$model" --model-name $model \
      --top-percent 10 25 50 100 --out "$out" --no-heatmap > "$out.log"
    $PY "$F/compare.py" "$F/expected/$model" "$out" $model 10 25 50 100 || fail=1
  done
  grep -q "^# lm_head layers" "$T/tiny-tied.np$np/snr_results_tiny-tied_unfrozenparameters_50percent.yaml" ||
    { echo "FAIL: the tied model's YAML has no lm_head section"; fail=1; }
  out="$T/degenerate.np$np"
  run $MPIEXEC -n $np "$SPECTRAIN" analyze --model "$F/degenerate" --model-name degenerate \
    --top-percent 50 100 --out "$out" > "$out.log" 2> "$out.err"
  $PY "$F/compare.py" "$F/expected/degenerate" "$out" degenerate 50 100 || fail=1
  # every non-finite weight is named with its first bad element, by the rank that read it
  for want in "'model.embed_tokens.weight': element \[4, 5\] (BF16) is NaN" \
      "'nan_matrix.weight': element \[1, 2\] (F32) is NaN" \
      "'inf_matrix_f16.weight': element \[0, 2\] (F16) is +Inf" \
      "'model.layers.5.input_layernorm.weight': element \[0\] (F16) is -Inf"; do
    grep -q "$want" "$out.err" || { echo "FAIL: np $np: no warning matching: $want"; cat "$out.err"; fail=1; }
  done
  grep -q "11 module(s) have SNR NaN" "$out.log" || { echo "FAIL: no NaN summary"; fail=1; }
done

# Grid path: down_proj (32 x 48) does not fit 16100 bytes on one rank, fits a 2-rank grid.
for np in 2 4; do
  out="$T/grid.np$np"
  run $MPIEXEC -n $np "$SPECTRAIN" analyze --model "$F/tiny-llama" --model-name org/tiny_llama \
    --types mlp.down_proj,self_attn.q_proj --top-percent 50 --rank-mem-limit 16100 --out "$out" | tee "$out.log"
  grep -q "12 on 2-rank ScaLAPACK grids" "$out.log" || { echo "grid path not taken at np $np"; fail=1; }
  $PY "$F/compare.py" "$F/expected/types" "$out" org-tiny-llama 50 || fail=1
done
# 4 ranks, 16K: embedding and lm_head need a 3-rank grid, gate/up fit 2: one group of 3, one rank alone.
out="$T/grid3.np4"
run $MPIEXEC -n 4 "$SPECTRAIN" analyze --model "$F/tiny-llama" --model-name tiny-llama \
  --top-percent 10 25 50 --rank-mem-limit 16K --out "$out" | tee "$out.log"
grep -q "on 3-rank ScaLAPACK grids" "$out.log" || { echo "3-rank grid not taken"; fail=1; }
$PY "$F/compare.py" "$F/expected/tiny-llama" "$out" tiny-llama 10 25 50 || fail=1
# ... and a clear error when even all ranks cannot hold it
set +e
"$SPECTRAIN" analyze --model "$F/tiny-llama" --model-name x --top-percent 10 --rank-mem-limit 16K \
  --out "$T/err" 2> "$T/err.txt"
rc=$?
set -e
[[ $rc == 2 ]] && grep -q "rank-mem-limit" "$T/err.txt" || { echo "expected exit 2 naming --rank-mem-limit, got $rc"; cat "$T/err.txt"; fail=1; }

# Cache: a second run with another N reuses the scan; a changed model file is rescanned.
mkdir -p "$T/m"; cp "$F/tiny-llama/model.safetensors" "$T/m/"
out="$T/cache"
run "$SPECTRAIN" analyze --model "$T/m" --model-name tiny-llama --top-percent 50 --out "$out" > "$T/c1.log"
grep -q "scanning" "$T/c1.log" || fail=1
run $MPIEXEC -n 2 "$SPECTRAIN" analyze --model "$T/m" --model-name tiny-llama --top-percent 10 25 --out "$out" > "$T/c2.log"
grep -q "reusing the cached scan" "$T/c2.log" || { echo "cache not reused"; cat "$T/c2.log"; fail=1; }
$PY "$F/compare.py" "$F/expected/tiny-llama" "$out" tiny-llama 10 25 50 || fail=1
touch -d '2020-01-01' "$T/m/model.safetensors"
run "$SPECTRAIN" analyze --model "$T/m" --model-name tiny-llama --top-percent 10 --out "$out" > "$T/c3.log"
grep -q "scanning" "$T/c3.log" || { echo "changed model not rescanned"; fail=1; }
# the results JSON stays Spectrum's (no extra keys): compare.py checked the module list

# Heatmap: valid SVG that renders to a non-blank PNG.
svg="$out/snr_heatmap_tiny-llama_50percent.svg"
[[ -s $svg ]] || { echo "no heatmap"; fail=1; }
if command -v rsvg-convert > /dev/null; then
  rsvg-convert -o "$T/heat.png" "$svg"
  $PY - "$T/heat.png" <<'PY' || fail=1
import struct, sys, zlib
d = open(sys.argv[1], "rb").read()
assert d[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
i, idat, w, h = 8, b"", 0, 0
while i < len(d):
    n, = struct.unpack(">I", d[i:i + 4]); typ = d[i + 4:i + 8]; body = d[i + 8:i + 8 + n]
    if typ == b"IHDR": w, h = struct.unpack(">II", body[:8])
    if typ == b"IDAT": idat += body
    i += 12 + n
px = zlib.decompress(idat)
distinct = len(set(px))
print(f"heatmap PNG {w}x{h}, {distinct} distinct byte values")
assert w > 200 and h > 200 and distinct > 40, "PNG looks blank"
PY
else
  echo "rsvg-convert missing (scripts/install-deps.sh --test installs librsvg2-bin): render check skipped"
fi

rm -rf "$T"
exit $fail
