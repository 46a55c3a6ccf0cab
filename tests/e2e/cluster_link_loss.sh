#!/usr/bin/env bash
# A host of a 2 hosts x 2 ranks job is cut off (its link down: its processes live on) while
# training and, separately, in the middle of a checkpoint write; and a rank stops answering
# (SIGSTOP: a hung process on a healthy host). Open MPI alone would wait for TCP to give up
# (many minutes). Here: mpirun ends within 15 s of the cut (its rsh session to the host ends,
# as ssh with ServerAliveInterval would), the cut-off ranks end by themselves within
# distributed.timeout_s (checkpoint_timeout_s in the write) + a few seconds, naming the ranks
# and host they lost; the stopped rank is named by the others and the job ends within
# timeout_s + 10 s. The previous checkpoint is intact and the job resumes from it on the
# host that is left.
source "$(dirname "$0")/lib/train_common.sh"
: "${BUILD_DIR:?}"
CLUSTER_TAG=ll
source "$(dirname "$0")/lib/cluster.sh"
W=$TEST_TMP/cluster_link_loss
rm -rf "$W"
mkdir -p "$W"
make_data "$W/data" 96 16
write_job "$W/job.yaml" "$W/unused" "$FIXTURES/model/llama" "$W/data"
TIMEOUT=8
common=(--set training.max_steps=30 --set training.save_steps=10 --set training.eval_steps=0
        --set distributed.timeout_s=$TIMEOUT --set distributed.checkpoint_timeout_s=$TIMEOUT)
train_extra=() # more `spectrain train` options for start
fail=0
bad() { echo "FAIL: $*"; fail=1; }

cluster_up 2 || { echo "FAIL: the simulated cluster did not come up"; exit 1; }
h1=$(cluster_host 1) h2=$(cluster_host 2)

# start NAME MPIRUN-ARGS...: 2 hosts x 2 ranks (B=1) in the background, every rank's output
# into NAME.out/1/rank.R/ (each host writes its own ranks': the cut-off host's too)
start() {
  local out=$W/$1
  shift
  (
    rc=0
    timeout 120 "$CLUSTER" --name "$cluster_name" mpirun --oversubscribe --bind-to none -n 4 \
      --map-by ppr:2:node --output-filename "$out.out" "$@" "$SPECTRAIN" train "$W/job.yaml" \
      --set output_dir="$out" --set training.per_device_train_batch_size=1 "${common[@]}" \
      "${train_extra[@]}" > "$out.log" 2>&1 || rc=$?
    echo $rc > "$out.rc"
  ) &
}
no_ranks_on() { [[ -z $(cluster_procs "$1" spectrain) ]]; }
# ended NAME T0 WITHIN: mpirun ended non-zero within WITHIN s of T0 (ms)
ended() {
  wait_until "$3" test -s "$W/$1.rc" || { bad "$1: mpirun still running $3 s after the fault"; return; }
  echo "$1: mpirun ended $(($(now_ms) - $2)) ms after the fault (status $(cat "$W/$1.rc"))"
  [[ $(cat "$W/$1.rc") != 0 ]] || bad "$1: exited 0"
}
# cut NAME: cut n2's link once ckpt-10 is written (or at once in a paused save); then
# mpirun must end, and n2's ranks end by themselves naming ranks 0, 1 on n1
cut() {
  local name=$1 t0
  t0=$(now_ms)
  cluster link n2 down
  ended "$name" "$t0" 15
  grep -q "$h2.*has not answered" "$W/$name.log" || bad "$name: the lost session does not name $h2"
  wait_until $((TIMEOUT + 10)) no_ranks_on 2 ||
    bad "$name: ranks still alive on the cut-off host $((TIMEOUT + 10)) s after the cut"
  echo "$name: the cut-off ranks ended $(($(now_ms) - t0)) ms after the cut"
  cat "$W/$name.out/1/rank.2/stderr" 2> /dev/null
  grep -qF "$2" "$W/$name.out/1/rank.2/stderr" 2> /dev/null ||
    bad "$name: rank 2 did not say what it lost: $(cat "$W/$name.out/1/rank.2/stderr" 2> /dev/null)"
  cluster link n2 up
}

# 1. while training
start cut-step -x SPECTRAIN_TEST_STEP_DELAY_MS=100
wait_until 60 grep -q '"step":1[3-9],' "$W/cut-step/metrics.jsonl" 2> /dev/null ||
  { cat "$W/cut-step.log"; echo "FAIL: the job did not reach step 13"; exit 1; }
cut cut-step "ranks 0, 1 on host $h1 did not answer"
[[ -f $W/cut-step/ckpt-10.h5 && ! -e $W/cut-step/ckpt-20.h5 ]] ||
  bad "cut-step: expected ckpt-10.h5 only: $(ls "$W/cut-step")"

# 2. in the middle of writing ckpt-20 (every rank pauses 1 s after its 3rd tensor, test hook):
# the write cannot complete; the watchdog ends the cut-off ranks
start cut-ckpt -x SPECTRAIN_TEST_CKPT_KILL_STEP=20 -x SPECTRAIN_TEST_CKPT_PAUSE_AFTER_TENSORS=3 \
  -x SPECTRAIN_TEST_CKPT_PAUSE_S=1 -x SPECTRAIN_TEST_CKPT_PAUSE_MARK="$W/mark"
wait_until 60 test -e "$W/mark.3" || { cat "$W/cut-ckpt.log"; echo "FAIL: no rank paused in the save of step 20"; exit 1; }
cut cut-ckpt "writing the checkpoint at step 20 has not finished after $TIMEOUT s (distributed.checkpoint_timeout_s)"
[[ -f $W/cut-ckpt/ckpt-10.h5 && ! -e $W/cut-ckpt/ckpt-20.h5 ]] ||
  bad "cut-ckpt: expected ckpt-10.h5 and no ckpt-20.h5: $(ls "$W/cut-ckpt")"
# resume on the host that is left (n2 is cut off again), 2 ranks, the same global batch
cluster link n2 down
timeout 120 "$CLUSTER" --name "$cluster_name" mpirun --oversubscribe --bind-to none -n 2 \
  --host "$h1:2" "$SPECTRAIN" train "$W/job.yaml" --set output_dir="$W/cut-ckpt" \
  --set training.per_device_train_batch_size=2 "${common[@]}" > "$W/cut-ckpt.resume.log" 2>&1 ||
  { cat "$W/cut-ckpt.resume.log"; bad "cut-ckpt: the resumed run on $h1 exited $?"; }
grep -q "resumed from $W/cut-ckpt/ckpt-10.h5: step 10" "$W/cut-ckpt.resume.log" ||
  bad "cut-ckpt: did not resume from ckpt-10"
cluster link n2 up

# 3. rank 3 stops (SIGSTOP) while training: the others name it and end the job
STOP_TIMEOUT=4
train_extra=(--set distributed.timeout_s=$STOP_TIMEOUT)
start stop-rank -x SPECTRAIN_TEST_STEP_DELAY_MS=100
wait_until 60 grep -q '"step":1[3-9],' "$W/stop-rank/metrics.jsonl" 2> /dev/null ||
  { cat "$W/stop-rank.log"; echo "FAIL: the job did not reach step 13"; exit 1; }
r3=$(for p in $(cluster_procs 2 spectrain); do
  tr '\0' '\n' < /proc/$p/environ | grep -qx 'OMPI_COMM_WORLD_RANK=3' && echo "$p"; done)
[[ -n $r3 ]] || { echo "FAIL: rank 3 not found on $h2"; exit 1; }
t0=$(now_ms)
kill -STOP $r3
ended stop-rank "$t0" $((STOP_TIMEOUT + 10))
grep -q "rank 3 on host $h2 did not answer" "$W/stop-rank.log" ||
  { cat "$W/stop-rank.log"; bad "stop-rank: no message names rank 3 on $h2"; }
grep "rank 3 on host" "$W/stop-rank.log" | head -1

exit $fail
