#!/usr/bin/env bash
# Hybrid sharding across two simulated hosts (tests/cluster/cluster.sh; 2 hosts x 2 ranks):
# sharding.strategy hybrid (shard groups = the ranks of one host, found by host name) trains
# the same 10 steps as full sharding (losses within 1e-6 relative) and as 1 rank (1e-5); the
# trainer's per-link figures say hybrid sends no unit all-gather or reduce-scatter between the
# hosts, only the reduced gradient shards; and the hosts' veth byte counters agree: hybrid
# sends fewer bytes between the hosts than full, and what each host sent during a run is
# within [0.5, 1.25] x the inter-host bytes the trainer printed for it, plus the
# checkpoint's and export's files and 512 KiB of launch traffic. Unequal rank counts per
# host (3 + 1) are an input error on every rank.
source "$(dirname "$0")/lib/train_common.sh"
: "${BUILD_DIR:?}"
CLUSTER_TAG=hyb
source "$(dirname "$0")/lib/cluster.sh"
W=$TEST_TMP/cluster_hybrid
rm -rf "$W"
mkdir -p "$W"
make_data "$W/data" 96 16
write_job "$W/job.yaml" "$W/unused" "$FIXTURES/model/llama" "$W/data"
fail=0

run_train 1 "$W/job.yaml" --set output_dir="$W/np1" > "$W/np1.log" 2>&1 ||
  { cat "$W/np1.log"; echo "FAIL: the 1-rank reference run"; exit 1; }
cluster_up 2 || { echo "FAIL: the simulated cluster did not come up"; exit 1; }

# run NAME [--set ...]: 2 hosts x 2 ranks; NAME.bytes gets "tx1 tx2" of the run
run() {
  local name=$1
  shift
  read -r rx1 tx1 <<< "$(cluster_bytes 1)"
  read -r rx2 tx2 <<< "$(cluster_bytes 2)"
  local t0=$SECONDS
  timeout 120 "$CLUSTER" --name "$cluster_name" mpirun --oversubscribe --bind-to none -n 4 \
    --map-by ppr:2:node "$SPECTRAIN" train "$W/job.yaml" --set output_dir="$W/$name" \
    --set training.per_device_train_batch_size=1 "$@" > "$W/$name.log" 2>&1 ||
    { cat "$W/$name.log"; echo "FAIL: $name on 2 hosts x 2 ranks exited $?"; exit 1; }
  read -r rx1b tx1b <<< "$(cluster_bytes 1)"
  read -r rx2b tx2b <<< "$(cluster_bytes 2)"
  echo "$((tx1b - tx1)) $((tx2b - tx2))" > "$W/$name.bytes"
  echo "$name: $((SECONDS - t0)) s, sent by n1 $((tx1b - tx1)) B, by n2 $((tx2b - tx2)) B"
  grep "sharding:\|link class\|  intra-host\|  inter-host" "$W/$name.log" || true
}
run full
run hybrid --set sharding.strategy=hybrid

compare_losses "$W/hybrid/metrics.jsonl" "$W/full/metrics.jsonl" 1e-6 "hybrid vs full, 2 hosts x 2 ranks" || fail=1
compare_losses "$W/hybrid/metrics.jsonl" "$W/np1/metrics.jsonl" 1e-5 "hybrid 2 hosts x 2 ranks vs 1 rank" || fail=1

$PY - "$W" <<'PYEOF' || fail=1
import json, os, sys
W = sys.argv[1]
ok = True
res = {}
for name in ("full", "hybrid"):
    out = os.path.join(W, name)
    recs = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    th = next(r for r in recs if r.get("event") == "comm_theory")
    tot = next(r for r in recs if r.get("event") == "comm_total")
    tx = list(map(int, open(os.path.join(W, name + ".bytes")).read().split()))
    files = sum(os.path.getsize(os.path.join(d, f)) for d in (out, os.path.join(out, "final"))
                for f in os.listdir(d) if f.endswith((".h5", ".safetensors")))
    printed = tot["inter_host_bytes_per_host"]
    print(f"{name}: theory per rank per step intra {th['intra_host_bytes']} inter {th['inter_host_bytes']}; "
          f"printed inter-host per host {printed}, veth tx {tx}, files {files}")
    for h in range(2):
        lo, hi = 0.5 * printed[h], 1.25 * printed[h] + files + 512 * 1024
        print(f"  n{h + 1}: sent {tx[h]} = {tx[h] / printed[h]:.2f} x the printed {printed[h]}; bounds [{lo:.0f}, {hi:.0f}]")
        if not lo <= tx[h] <= hi:
            print(f"FAIL: {name} n{h + 1} outside the bounds"); ok = False
    res[name] = (th, tot, sum(tx))
thf, thh = res["full"][0], res["hybrid"][0]
if thh["strategy"] != "hybrid" or thh["shard_size"] != 2 or thh["replicas"] != 2:
    print("FAIL: hybrid's groups", thh); ok = False
# hybrid: the all-gathers and reduce-scatters stay on the host; only the gradient shards cross
if not thh["inter_host_bytes"] < thf["inter_host_bytes"]:
    print("FAIL: hybrid's theory sends no less between hosts"); ok = False
if not res["hybrid"][2] < res["full"][2]:
    print(f"FAIL: hybrid sent {res['hybrid'][2]} bytes between the hosts, full {res['full'][2]}"); ok = False
print(f"between the hosts: full {res['full'][2]} B, hybrid {res['hybrid'][2]} B "
      f"({res['hybrid'][2] / res['full'][2]:.2f} x)")
sys.exit(0 if ok else 1)
PYEOF

# 3 ranks on n1, 1 on n2: the same input error on every rank
timeout 60 "$CLUSTER" --name "$cluster_name" mpirun --oversubscribe --bind-to none -n 4 \
  --host "$(cluster_host 1):3,$(cluster_host 2):1" "$SPECTRAIN" train "$W/job.yaml" \
  --set output_dir="$W/uneven" --set training.per_device_train_batch_size=1 \
  --set sharding.strategy=hybrid > "$W/uneven.log" 2>&1 && rc=0 || rc=$?
n=$(grep -c "the hosts run different numbers of ranks" "$W/uneven.log" || true)
if [[ $rc != 2 || $n != 4 ]]; then
  cat "$W/uneven.log"; echo "FAIL: 3 + 1 ranks: exit $rc, named on $n of 4 ranks"; fail=1
fi
exit $fail
