#!/usr/bin/env bash
# FSDP benchmark: tokens/s and bytes communicated per optimizer step at 1, 2 and 4 ranks for
# the same model and the same global batch, full training and 25 % trainable (the top block
# of tiny-llama's 4, as a Spectrum 25 % per-type selection picks one module of four per
# type). Bytes are the logical buffer sizes mpi/coll counts (a ring all-gather or
# reduce-scatter sends (N-1)/N of them per rank); they are compared with the schedule's
# theory and with the simple FSDP theory (2 gathers of every unit + 1 reduce-scatter of every
# trainable buffer per micro-step). Not a test: prints a table.
#   bench/bench_fsdp.sh [BUILD_DIR]       (default ./build; writes under out/bench-fsdp)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
BIN=${1:-build}/spectrain
W=out/bench-fsdp
STEPS=${STEPS:-8}
T=${T:-128}
GLOBAL=${GLOBAL:-8}
mkdir -p "$W"
MPIEXEC=${MPIEXEC:-mpiexec --oversubscribe --bind-to none}
[[ -s $W/model/config.json ]] || $BIN init --out "$W/model" --preset tiny-llama --seed 1 >/dev/null
if [[ ! -s $W/text.txt ]]; then
  if [[ -s out/tiny/data/kjv.txt ]]; then head -c 2000000 out/tiny/data/kjv.txt > "$W/text.txt"
  else for i in $(seq 20); do cat README.md docs/*.md; done > "$W/text.txt"; fi
fi
cat > "$W/top25.yaml" <<'YAML'
unfrozen_parameters:
- model.layers.3.
YAML
cat > "$W/job.yaml" <<YAML
output_dir: $W/run
model:
  path: $W/model
data:
  train: $W/text.txt
training:
  max_seq_length: $T
  gradient_accumulation_steps: 1
  max_steps: $STEPS
  learning_rate: 1.0e-3
  warmup_steps: 1
  logging_steps: 1
  eval_steps: 0
  save_steps: 0
  backend: cpu
YAML

row() { # np set-name extra-args...
  local np=$1 name=$2
  shift 2
  local out=$W/run-$name-np$np
  rm -rf "$out"
  $MPIEXEC -n "$np" "$BIN" train "$W/job.yaml" --set output_dir="$out" \
    --set training.per_device_train_batch_size=$((GLOBAL / np)) "$@" > "$out.log" 2>&1 ||
    { echo "run $name np$np failed:"; tail -5 "$out.log"; exit 1; }
  python3 - "$out/metrics.jsonl" "$np" "$name" <<'PYEOF'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
np_, name = int(sys.argv[2]), sys.argv[3]
th = next(r for r in recs if r.get("event") == "comm_theory")
steps = [r for r in recs if "loss" in r][1:]  # the first step warms up
tps = statistics.median(r["tokens_per_s"] for r in steps)
ag, rs = steps[-1]["allgather_bytes"], steps[-1]["reduce_scatter_bytes"]
mem = next(r for r in recs if r.get("event") == "memory_start")
po = sum(mem["ranks"][0][k] for k in ["param_frozen", "param_trainable", "master", "grad_shard", "optimizer"])
frac = th["trainable_params"] / (th["trainable_params"] + th["frozen_params"])
mib = lambda b: b / 2**20
print(f"| {name:5s} | {np_} | {frac*100:5.1f} % | {tps:8.0f} | {mib(ag):7.2f} | {mib(th['allgather_bytes']):7.2f} | {mib(th['simple_allgather_bytes']):7.2f} | "
      f"{mib(rs):7.2f} | {mib(th['reduce_scatter_bytes']):7.2f} | {mib(th['simple_reduce_scatter_bytes']):7.2f} | {mib(po):6.2f} |")
print(json.dumps({"name": name, "np": np_, "rs": rs, "tps": tps}), file=open(sys.argv[1] + ".summary", "w"))
PYEOF
}

echo "tiny-llama (4 blocks, width 256), T=$T, global batch $GLOBAL sequences, $STEPS steps, median tokens/s of steps 2..$STEPS"
echo "bytes per optimizer step in MiB (logical buffer sizes): measured / schedule theory / simple theory"
echo "| set   | ranks | trainable | tokens/s | gather | theory | simple | red-scat | theory | simple | param+opt MiB/rank |"
echo "|-------|---|-----------|----------|--------|--------|--------|---------|--------|--------|--------|"
for np in ${NPS:-1 2 4}; do row "$np" full; done
for np in ${NPS:-1 2 4}; do row "$np" top25 --set spectrum.unfrozen_parameters="$W/top25.yaml"; done
[[ -z ${NPS:-} ]] && python3 - "$W" <<'PYEOF'
import json, sys
w = sys.argv[1]
for np_ in (2, 4):
    f = json.load(open(f"{w}/run-full-np{np_}/metrics.jsonl.summary"))
    q = json.load(open(f"{w}/run-top25-np{np_}/metrics.jsonl.summary"))
    print(f"{np_} ranks: 25 % trainable moves {q['rs']/f['rs']:.3f}x the gradient bytes of full training (goal <= 0.3); "
          f"step speed {q['tps']/f['tps']:.2f}x")
PYEOF
