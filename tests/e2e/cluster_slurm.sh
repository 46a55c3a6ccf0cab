#!/usr/bin/env bash
# Multi-node Slurm on the simulated cluster (tests/cluster/cluster.sh up 2 --slurm: munged and
# slurmctld on the login host, one slurmd per host, NodeAddr = the host's address):
#  A. `sbatch --nodes=2 slurm/train.sbatch`: srun starts 2 ranks on each host, the trainer's
#     node-local ranks are 0 and 1 on each (from SLURM_LOCALID), the ranks' traffic crosses
#     the hosts' links; USR1 to the batch shell (as --signal=B:USR1@SECONDS before the time
#     limit) -> every rank stops after the same step and checkpoints -> exit 75 -> the script
#     requeues the job -> it starts again on 2 nodes, resumes from that checkpoint and
#     finishes;
#  B. `slurm/p4d.sbatch` (CPU backend: its EFA/NCCL settings inert; 4 tasks on 2 nodes, no
#     GPUs): the same on 2 nodes, but the second host is drained while it runs and the
#     requeued job resized to 1 node (scontrol update NumNodes=1 NumTasks=4), so it starts
#     on the one host left: 4 ranks there, local ranks 0..3, resumed from the checkpoint
#     written on 2 hosts.
# Both end with every step's loss within 1e-5 of an uninterrupted 1-rank run. Skipped only
# where the kernel refuses namespaces or Slurm is not installed.
source "$(dirname "$0")/lib/train_common.sh"
: "${BUILD_DIR:?}"
CLUSTER_TAG=sl
source "$(dirname "$0")/lib/cluster.sh"
W=$TEST_TMP/cluster_slurm
rm -rf "$W"
mkdir -p "$W"
steps=20
make_data "$W/data" 96 16
write_job "$W/job.yaml" "$W/unused" "$FIXTURES/model/llama" "$W/data"
common=(--set training.max_steps=$steps --set training.eval_steps=0 --set distributed.timeout_s=60)
fail=0
bad() { echo "FAIL: $*"; fail=1; }
die_() { echo "FAIL: $*" >&2; [[ -d $W/slurm-logs ]] || cp -r "/run/stc-$cluster_name/slurm/log" "$W/slurm-logs" 2> /dev/null
  tail -n 15 "$W"/slurm-logs/slurmctld.log >&2 2> /dev/null; exit 1; }

run_train 1 "$W/job.yaml" --set output_dir="$W/ref" "${common[@]}" > "$W/ref.log" 2>&1 ||
  { cat "$W/ref.log"; echo "FAIL: the 1-rank reference run"; exit 1; }
t0=$SECONDS
cluster_slurm_up 2 || die_ "the simulated cluster with Slurm did not come up"
echo "cluster + Slurm up in $((SECONDS - t0)) s"
h1=$(cluster_host 1) h2=$(cluster_host 2)

job_field() { cluster_slurm scontrol -o show job "$1" 2> /dev/null | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k {print $2}'; }
wait_state() { # JOB STATES SECONDS: until JobState matches STATES (regex); prints it
  local end=$((SECONDS + $3)) st
  while :; do
    st=$(job_field "$1" JobState)
    [[ $st =~ ^($2)$ ]] && { echo "$st"; return 0; }
    ((SECONDS >= end)) && { echo "${st:-none}"; return 1; }
    sleep 0.5
  done
}
wait_grep() { # FILE PATTERN SECONDS
  wait_until "$3" grep -Eq "$2" "$1" 2> /dev/null || { cat "$1" >&2 2> /dev/null; die_ "no '$2' in $1 after $3 s"; }
}
# submit NAME SCRIPT SBATCH-OPTIONS...: the job in $W/NAME (output_dir), log $W/NAME.out; job id
# (Open MPI: root allowed; yield when idle, as cluster.sh mpirun does: every simulated host
# believes it owns the machine's cores)
submit() {
  local name=$1 script=$2
  shift 2
  (cd "$W" && cluster_slurm env SPECTRAIN="$SPECTRAIN" SPECTRAIN_TEST_STEP_DELAY_MS=150 \
    OMPI_MCA_mpi_yield_when_idle=1 sbatch --parsable --time=30 --output="$W/$name.out" "$@" \
    "$SRC_DIR/slurm/$script" "$W/job.yaml" --set output_dir="$W/$name" \
    --set training.per_device_train_batch_size=1 "${common[@]}")
}
# usr1 JOB NAME: once step 4 is logged, USR1 to the batch shell; waits for the requeue;
# prints the step the ranks agreed to stop after
usr1() {
  wait_grep "$W/$2.out" "^step 4/$steps " 90
  cluster_slurm scancel --signal=USR1 --batch "$1"
  wait_grep "$W/$2.out" "requeueing job $1" 60
  grep -q "got SIGUSR1" "$W/$2.out" || die_ "$2: the batch shell did not see USR1"
  grep -q "stopped early and checkpointed (exit 75): requeueing job $1" "$W/$2.out" ||
    die_ "$2: spectrain did not exit with 75 after USR1"
  local s
  s=$(sed -n 's/^stop requested: stopping after step \([0-9]*\)$/\1/p' "$W/$2.out" | head -1)
  [[ -n $s ]] && ((s >= 4 && s < steps)) || die_ "$2: no agreed stop after step 4..$((steps - 1)) (got '$s')"
  [[ -f $W/$2/ckpt-$s.h5 ]] || die_ "$2: no checkpoint ckpt-$s.h5 after the stop: $(ls "$W/$2")"
  echo "$s"
}
# finish JOB NAME STOP: the requeued job runs again (restart 1), resumes after STOP, completes
finish() {
  local st
  st=$(wait_state "$1" "PENDING|CONFIGURING|RUNNING|COMPLETING|COMPLETED" 30) || die_ "$2: state $st after the requeue"
  st=$(wait_state "$1" "COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY" 150) ||
    { cat "$W/$2.out"; die_ "$2: not finished 150 s after the requeue (state $st)"; }
  [[ $st == COMPLETED ]] || { cat "$W/$2.out"; die_ "$2: $st after the requeue"; }
  [[ $(job_field "$1" Restarts) == 1 ]] || bad "$2: Restarts=$(job_field "$1" Restarts), expected 1"
  grep -q "job $1 (restart 1)" "$W/$2.out" || bad "$2: the restarted run did not start"
  grep -q "^resumed from $W/$2/ckpt-$3.h5: step $3" "$W/$2.out" || { cat "$W/$2.out"; bad "$2: did not resume from ckpt-$3"; }
  grep -q "exited with 0 (finished): not requeueing" "$W/$2.out" || bad "$2: no 'finished' line"
  compare_losses "$W/$2/metrics.jsonl" "$W/ref/metrics.jsonl" 1e-5 "$2 (stopped after step $3, requeued) vs 1 rank" || fail=1
}
# placements NAME: the trainer's placement lines, one per run
placements() { grep "^placement:" "$W/$1.out"; }
# local_source NAME: every run's node-local ranks came from SLURM_LOCALID
local_source() {
  local n
  n=$(grep -c "local rank 0 (SLURM_LOCALID)" "$W/$1.out" || true)
  [[ $n == 2 ]] || bad "$1: expected 2 runs taking the node-local rank from SLURM_LOCALID, found $n"
  grep -q "Slurm says task" "$W/$1.out" && bad "$1: the ranks saw Slurm's task numbering disagree with MPI's"
  return 0
}
two_hosts="placement: 2 hosts, 4 ranks [rank:local rank]: $h1 [0:0 1:1], $h2 [2:0 3:1]"

# --- A: train.sbatch on 2 nodes, USR1, requeued, resumed on 2 nodes ------------------------
read -r rx1 tx1 <<< "$(cluster_bytes 1)"
read -r rx2 tx2 <<< "$(cluster_bytes 2)"
t0=$SECONDS
a=$(submit a train.sbatch --nodes=2 --ntasks-per-node=2) || die_ "sbatch train.sbatch"
stop_a=$(usr1 "$a" a) || exit 1
t_stop=$SECONDS
finish "$a" a "$stop_a"
echo "A: train.sbatch on 2 nodes: stopped after step $stop_a, requeued, resumed, finished in" \
  "$((SECONDS - t0)) s ($((SECONDS - t_stop)) s from the requeue; Slurm holds it 10 s)"
grep "exited .* s after SIGUSR1\|checkpoint (stop)" "$W/a.out" | head -2
[[ $(placements a | sort -u) == "$two_hosts" && $(placements a | wc -l) == 2 ]] ||
  { placements a; bad "A: expected both runs at: $two_hosts"; }
local_source a
read -r rx1b tx1b <<< "$(cluster_bytes 1)"
read -r rx2b tx2b <<< "$(cluster_bytes 2)"
$PY - "$W/a/metrics.jsonl" $((rx1b - rx1)) $((tx1b - tx1)) $((rx2b - rx2)) $((tx2b - tx2)) <<'PYEOF' || fail=1
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
# every host receives and sends at least the other host's half of each gathered and reduced
# buffer: the ranks' collectives cross the links, not just Slurm's messages
coll = sum(r["allgather_bytes"] + r["reduce_scatter_bytes"] for r in recs if "loss" in r)
ok = coll > 0
for name, v in zip(("n1 rx", "n1 tx", "n2 rx", "n2 tx"), map(int, sys.argv[2:6])):
    print(f"A: {name} {v} bytes on the link = {v / coll:.2f} x the steps' collectives ({coll} bytes)")
    ok &= v >= 0.5 * coll
sys.exit(0 if ok else print("FAIL: A: a host's link carried less than half of the collectives") or 1)
PYEOF

# --- B: p4d.sbatch on 2 nodes, USR1, a host drained, resumed on 1 node ----------------------
# p4d.sbatch asks for 8 tasks with 8 GPUs and 12 CPUs each per node: here 4 tasks on 2 nodes
# of 4 CPUs (at most 4 a node, so that the job fits on one node later), no GPUs
t0=$SECONDS
b=$(submit b p4d.sbatch --nodes=2 --ntasks=4 --ntasks-per-node=4 --cpus-per-task=1 \
  --gpus-per-node=0) || die_ "sbatch p4d.sbatch"
wait_grep "$W/b.out" "^placement:" 90
# the host goes out of service while the job runs (DRAINING): the requeued job may not use it
cluster_slurm scontrol update nodename="$h2" state=drain reason="cluster_slurm: taken out" ||
  die_ "could not drain $h2"
stop_b=$(usr1 "$b" b) || exit 1
# requeued and held (BeginTime, 10 s): Slurm 22.05 brings it back asking 2 nodes x 4 tasks
# (nodes x --ntasks-per-node); resized to the 4 tasks on the 1 node left, it starts there
st=$(wait_state "$b" PENDING 30) || die_ "b: state $st after the requeue, expected PENDING"
cluster_slurm scontrol update jobid="$b" NumNodes=1 NumTasks=4 || die_ "could not resize job $b"
finish "$b" b "$stop_b"
echo "B: p4d.sbatch on 2 nodes, stopped after step $stop_b, requeued, resumed on 1 node, finished in $((SECONDS - t0)) s"
one_host="placement: 1 host, 4 ranks [rank:local rank]: $h1 [0:0 1:1 2:2 3:3]"
mapfile -t pb < <(placements b)
[[ ${#pb[@]} == 2 && ${pb[0]} == "$two_hosts" && ${pb[1]} == "$one_host" ]] ||
  { placements b; bad "B: expected the first run at: $two_hosts; the resumed one at: $one_host"; }
local_source b
grep -q "job $b (restart 1) on $h1:" "$W/b.out" || bad "B: the restart did not run on $h1 alone"
exit $fail
