#!/usr/bin/env bash
# Hybrid vs full sharding on the simulated cluster (tests/cluster/cluster.sh), 2 hosts x 2
# ranks, with the inter-host links shaped slower than the intra-host ones (tc netem on every
# host's eth0: RATE, DELAY; tbf with RATE only where the kernel lacks netem; ranks of one host talk over its loopback, unshaped): step time
# and bytes per optimizer step per link class, full vs hybrid, prefetch 1 vs 0, for full
# training and the top block trainable (25 %). Bytes: the trainer's theory per rank
# (intra-host / inter-host, comm_theory) and what each host's veth sent per step, measured
# as the difference of a STEPS-step run and a 2-step run (so launch, checkpoint and export
# traffic cancel). Needs root (namespaces). Not a test: prints a table.
#   bench/bench_cluster.sh [BUILD_DIR]   (default ./build; writes under out/bench-cluster)
#   RATE=200mbit DELAY=1ms STEPS=8 T=128 GLOBAL=8   (RATE=none: links unshaped)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
BIN=$(cd "${1:-build}" && pwd)/spectrain
W=$(pwd)/out/bench-cluster
STEPS=${STEPS:-8}
T=${T:-128}
GLOBAL=${GLOBAL:-8}
RATE=${RATE:-200mbit}
DELAY=${DELAY:-1ms}
NAME=${STC_BENCH_NAME:-hybbench}
C="tests/cluster/cluster.sh --name $NAME"
mkdir -p "$W"
[[ -s $W/model/config.json ]] || $BIN init --out "$W/model" --preset tiny-llama --seed 1 >/dev/null
if [[ ! -s $W/text.txt ]]; then
  if [[ -s out/tiny/data/kjv.txt ]]; then head -c 2000000 out/tiny/data/kjv.txt > "$W/text.txt"
  else for i in $(seq 20); do cat README.md docs/*.md; done > "$W/text.txt"; fi
fi
printf 'unfrozen_parameters:\n- model.layers.3.\n' > "$W/top25.yaml"
cat > "$W/job.yaml" <<YAML
output_dir: $W/run
model:
  path: $W/model
data:
  train: $W/text.txt
training:
  max_seq_length: $T
  per_device_train_batch_size: $((GLOBAL / 4))
  learning_rate: 1.0e-3
  warmup_steps: 1
  logging_steps: 1
  eval_steps: 0
  save_steps: 0
  backend: cpu
YAML

$C up 2 > /dev/null
trap '$C down' EXIT
# netem (rate + delay) where the kernel has it, else tbf (rate only: some kernels, such as
# the development VMs', are built without sch_netem)
SHAPE="netem rate $RATE delay $DELAY"
for h in n1 n2; do
  [[ $RATE == none ]] && { SHAPE="none (RATE=none)"; continue; }
  if ! ip netns exec "stc-$NAME-$h" tc qdisc add dev eth0 root netem rate "$RATE" delay "$DELAY" 2> /dev/null; then
    ip netns exec "stc-$NAME-$h" tc qdisc add dev eth0 root tbf rate "$RATE" burst 64kb latency 100ms
    SHAPE="tbf rate $RATE (no netem in this kernel: no added delay)"
  fi
done
tx() { local a b; read -r _ a <<< "$($C bytes n1)"; read -r _ b <<< "$($C bytes n2)"; echo $((a + b)); }

run() { # NAME STEPS args...: prints the hosts' tx bytes of the run
  local name=$1 steps=$2
  shift 2
  local out=$W/run-${name// /-}-s$steps
  rm -rf "$out"
  local t0
  t0=$(tx)
  $C mpirun --oversubscribe --bind-to none -n 4 --map-by ppr:2:node \
    -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS -x OMP_WAIT_POLICY \
    "$BIN" train "$W/job.yaml" --set output_dir="$out" --set training.max_steps="$steps" "$@" \
    > "$out.log" 2>&1 || { echo "run $name failed:" >&2; tail -5 "$out.log" >&2; exit 1; }
  echo $(($(tx) - t0))
}

row() { # NAME args...
  local name=$1
  shift
  local b2 bn
  b2=$(run "$name" 2 "$@")
  bn=$(run "$name" "$STEPS" "$@")
  python3 - "$W/run-${name// /-}-s$STEPS/metrics.jsonl" "$name" "$b2" "$bn" "$STEPS" "$((GLOBAL * T))" <<'PYEOF'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
name, b2, bn, steps, tok = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
th = next(r for r in recs if r.get("event") == "comm_theory")
st = [r for r in recs if "loss" in r][1:]  # the first step warms up
tps = statistics.median(r["tokens_per_s"] for r in st)
kib = lambda b: b / 1024
veth = (bn - b2) / (steps - 2)
# theory per host and step: 2 ranks per host
print(f"| {name} | {tok / tps:.2f} | {tps:.0f} | {kib(th['intra_host_bytes']):.0f} | {kib(th['inter_host_bytes']):.0f} | "
      f"{kib(2 * th['inter_host_bytes']):.0f} | {kib(veth / 2):.0f} | {st[-1]['loss']:.4f} |")
PYEOF
}

echo "tiny-llama (4 blocks, width 256), T=$T, global batch $GLOBAL, 2 hosts x 2 ranks, inter-host links shaped: $SHAPE"
echo "| run | s/step | tokens/s | theory intra KiB/rank | theory inter KiB/rank | theory inter KiB/host | veth KiB/host | loss at step $STEPS |"
echo "|---|---|---|---|---|---|---|---|"
for set in full top25; do
  extra=()
  [[ $set == top25 ]] && extra=(--set spectrum.unfrozen_parameters="$W/top25.yaml")
  for strat in full hybrid; do
    for pf in 1 0; do
      row "$set $strat prefetch $pf" --set sharding.strategy=$strat --set sharding.prefetch=$pf "${extra[@]}"
    done
  done
done
