#!/usr/bin/env bash
# spectrain report: the HTML of an output directory holds the loss, throughput and memory
# charts and the SNR heatmap; headless Chromium renders it to a PNG that is not blank.
# Also: resumed runs (a step logged twice, wall time restarting) and bad inputs.
set -euo pipefail
: "${SPECTRAIN:?}" "${TEST_TMP:?}" "${FIXTURES:?}"
here=$(cd "$(dirname "$0")" && pwd)
T="$TEST_TMP/report_render.$$"
rm -rf "$T" && mkdir -p "$T/run"
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v chromium >/dev/null || fail "chromium is not installed: run scripts/install-deps.sh --test"

# A run of 6 steps that was stopped after step 4 and resumed from step 3: steps 3 and 4 are
# logged twice (the second line wins) and wall time restarts from 0.
cat > "$T/run/metrics.jsonl" <<'JSON'
{"event":"memory_start","step":0,"predicted":{"param_trainable":1000,"optimizer":2000},"ranks":[{"param_trainable":1000,"optimizer":2000,"peak_rss":5000000},{"param_trainable":1000,"optimizer":2000,"peak_rss":5100000}]}
{"event":"comm_theory","step":0,"ranks":2,"trainable_params":250,"frozen_params":750}
{"step":1,"loss":5.0,"lr":0.001,"tokens_per_s":1000,"elapsed_s":1.0}
{"step":2,"loss":4.5,"lr":0.001,"tokens_per_s":1100,"elapsed_s":2.0,"val_loss":4.6}
{"step":3,"loss":9.9,"lr":0.001,"tokens_per_s":1200,"elapsed_s":3.0}
{"step":4,"loss":9.9,"lr":0.001,"tokens_per_s":1200,"elapsed_s":4.0,"val_loss":9.9}
{"event":"memory_start","step":2,"predicted":{"param_trainable":1000,"optimizer":2000},"ranks":[{"param_trainable":1000,"optimizer":2000,"peak_rss":5000000},{"param_trainable":1000,"optimizer":2000,"peak_rss":5100000}]}
{"step":3,"loss":4.0,"lr":0.001,"tokens_per_s":1300,"elapsed_s":1.0}
{"step":4,"loss":3.5,"lr":0.001,"tokens_per_s":1400,"elapsed_s":2.0,"val_loss":3.7}
{"step":5,"loss":3.2,"lr":0.001,"tokens_per_s":1500,"elapsed_s":3.0}
{"step":6,"loss":3.0,"lr":0.001,"tokens_per_s":1600,"elapsed_s":4.0,"val_loss":3.1}
{"event":"memory_end","step":6,"predicted":{"param_trainable":1000,"optimizer":2000},"ranks":[{"param_trainable":1000,"optimizer":3000,"peak_rss":7000000},{"param_trainable":1000,"optimizer":2000,"peak_rss":7100000}]}
JSON
# a real heatmap, as a training run's Spectrum scan leaves it
"$SPECTRAIN" analyze --model "$FIXTURES/spectrum/tiny-llama" --model-name tiny-llama \
  --top-percent 25 --out "$T/run" > "$T/analyze.log" 2>&1 || { cat "$T/analyze.log"; fail "analyze"; }
ls "$T"/run/snr_heatmap_*.svg >/dev/null || fail "analyze wrote no heatmap"

"$SPECTRAIN" report "$T/run" || fail "report exited $?"
html="$T/run/report.html"
[[ -s $html ]] || fail "no report.html"
n_svg=$(grep -c "<svg" "$html" || true)
((n_svg >= 5)) || fail "expected >= 5 inline SVGs (3 charts, memory, heatmap), found $n_svg"
for want in "Loss against step" "Loss against wall time" "Throughput" "bytes by category" \
            "SNR by layer and module type" "validation loss (first &rarr; last)</th><td>4.6000 &rarr; 3.1000" \
            "6 (last step 6)" "trainable parameters</th><td>250 of 1000 (25.0 %)" "2.93 KiB"; do
  grep -qF "$want" "$html" || fail "report lacks '$want'"
done
# the superseded lines of steps 3 and 4 (loss 9.9) are not plotted or summarised
# (their loss 9.9 would stretch the loss axis, whose top tick is 5.0 without them), and
# wall time continues across the restart (the last step at 4 + 4 = 8 s)
[[ $(grep -c 'y="34.0" text-anchor="end">5.0</text>' "$html") == 2 ]] ||
  fail "loss axes do not end at 5.0: superseded step lines leaked into the report"
grep -q 'x="744.0" y="290.0" text-anchor="middle">8</text>' "$html" ||
  fail "wall time does not continue across the restart"
# no external assets: one file a user can mail around
grep -qE '<(script|link|img)[ >]' "$html" && fail "report references external assets"

# Render headless and check the picture is not blank.
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
  --user-data-dir="$T/chrome" --window-size=1100,2400 --screenshot="$T/report.png" \
  "file://$html" > "$T/chromium.log" 2>&1 || { cat "$T/chromium.log"; fail "chromium failed"; }
python3 "$here/lib/png_check.py" "$T/report.png" 0.02 50 || fail "rendered report looks blank"

# Bad inputs: exit 2 with a message naming the file (and the line).
set +e
"$SPECTRAIN" report "$T/nothing-here" 2> "$T/err1"; rc=$?
set -e
((rc == 2)) || fail "missing output dir: exit $rc, want 2"
grep -q "nothing-here/metrics.jsonl" "$T/err1" || fail "message does not name metrics.jsonl: $(cat "$T/err1")"
mkdir -p "$T/bad" && printf '{"step":1,"loss":2}\n{oops\n' > "$T/bad/metrics.jsonl"
set +e
"$SPECTRAIN" report "$T/bad" 2> "$T/err2"; rc=$?
set -e
((rc == 2)) || fail "malformed metrics: exit $rc, want 2"
grep -q "metrics.jsonl:2:" "$T/err2" || fail "message does not name line 2: $(cat "$T/err2")"
echo "ok: report rendered and checked"
