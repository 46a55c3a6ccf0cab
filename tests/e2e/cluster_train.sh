#!/usr/bin/env bash
# Training across two simulated hosts (tests/cluster/cluster.sh: network namespaces with
# their own host names, veths on a bridge; Open MPI's rsh launcher, TCP only on the test
# subnet): 2 hosts x 2 ranks compute the same 10 steps as 1 rank (losses within 1e-5
# relative); the ranks' traffic really crosses the hosts' links, and as much of it as the
# communication the trainer reports implies (every host must receive at least half of each
# gathered and reduced buffer: the other host's half); the node-local ranks are 0 and 1 on
# each host, from Open MPI's OMPI_COMM_WORLD_LOCAL_RANK.
source "$(dirname "$0")/lib/train_common.sh"
: "${BUILD_DIR:?}"
CLUSTER_TAG=ct
source "$(dirname "$0")/lib/cluster.sh"
W=$TEST_TMP/cluster_train
rm -rf "$W"
mkdir -p "$W"
make_data "$W/data" 96 16
write_job "$W/job.yaml" "$W/unused" "$FIXTURES/model/llama" "$W/data"
fail=0

run_train 1 "$W/job.yaml" --set output_dir="$W/np1" > "$W/np1.log" 2>&1 ||
  { cat "$W/np1.log"; echo "FAIL: the 1-rank reference run"; exit 1; }

cluster_up 2 || { echo "FAIL: the simulated cluster did not come up"; exit 1; }
# placement alone, by slot (0 1 | 2 3) and round-robin (0 2 | 1 3)
for map in ppr:2:node node; do
  timeout 60 "$CLUSTER" --name "$cluster_name" mpirun --oversubscribe --bind-to none -n 4 \
    --map-by $map -x SPECTRAIN_EXPECT_HOSTS=2 -x SPECTRAIN_EXPECT_LOCAL_SOURCE=OMPI_COMM_WORLD_LOCAL_RANK \
    "$BUILD_DIR/tests/mpi_placement" > "$W/placement-$map.log" 2>&1 ||
    { cat "$W/placement-$map.log"; echo "FAIL: mpi_placement on 2 hosts, --map-by $map"; fail=1; }
done
read -r rx1 tx1 <<< "$(cluster_bytes 1)"
read -r rx2 tx2 <<< "$(cluster_bytes 2)"
t0=$SECONDS
timeout 120 "$CLUSTER" --name "$cluster_name" mpirun --oversubscribe --bind-to none -n 4 \
  --map-by ppr:2:node "$SPECTRAIN" train "$W/job.yaml" --set output_dir="$W/hosts2" \
  --set training.per_device_train_batch_size=1 > "$W/hosts2.log" 2>&1 ||
  { cat "$W/hosts2.log"; echo "FAIL: 2 hosts x 2 ranks exited $?"; exit 1; }
echo "2 hosts x 2 ranks: $((SECONDS - t0)) s"
read -r rx1b tx1b <<< "$(cluster_bytes 1)"
read -r rx2b tx2b <<< "$(cluster_bytes 2)"
grep "placement:\|communication" "$W/hosts2.log"

compare_losses "$W/hosts2/metrics.jsonl" "$W/np1/metrics.jsonl" 1e-5 "2 hosts x 2 ranks vs 1 rank" || fail=1

$PY - "$W/hosts2" "$(cluster_host 1)" "$(cluster_host 2)" \
  $((rx1b - rx1)) $((tx1b - tx1)) $((rx2b - rx2)) $((tx2b - tx2)) <<'PYEOF' || fail=1
import json, os, sys
out, h1, h2 = sys.argv[1:4]
rx1, tx1, rx2, tx2 = map(int, sys.argv[4:8])
recs = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
ok = True
pl = next(r for r in recs if r.get("event") == "placement")
got = [(r["host"], r["local_rank"]) for r in pl["ranks"]]
want = [(h1, 0), (h1, 1), (h2, 0), (h2, 1)]
print("placement:", got, "from", pl["local_rank_source"])
if got != want or pl["hosts"] != 2 or pl["local_rank_source"] != "OMPI_COMM_WORLD_LOCAL_RANK":
    print("FAIL: placement", pl, "expected", want); ok = False
tot = next(r for r in recs if r.get("event") == "comm_total")
ag, rs, ar = tot["allgather_bytes"], tot["reduce_scatter_bytes"], tot["allreduce_bytes"]
steps = [r for r in recs if "loss" in r]
if sum(r["allgather_bytes"] + r["reduce_scatter_bytes"] for r in steps) > ag + rs:
    print("FAIL: the steps moved more than the run in all", tot); ok = False
# the checkpoint's MPI-IO and the launch also cross the links
files = sum(os.path.getsize(os.path.join(d, f)) for d in (out, os.path.join(out, "final"))
            for f in os.listdir(d) if f.endswith((".h5", ".safetensors")))
lo, hi = 0.5 * (ag + rs), 1.25 * (ag + rs + ar) + files + 512 * 1024
for name, v in (("n1 rx", rx1), ("n1 tx", tx1), ("n2 rx", rx2), ("n2 tx", tx2)):
    print(f"{name}: {v} bytes on the link = {v / (ag + rs):.2f} x the collectives' "
          f"{ag + rs} (all-gather {ag}, reduce-scatter {rs}); bounds [{lo:.0f}, {hi:.0f}]")
    if not lo <= v <= hi:
        print(f"FAIL: {name} outside the bounds"); ok = False
sys.exit(0 if ok else 1)
PYEOF
exit $fail
