#!/usr/bin/env bash
# A host of a 2 hosts x 2 ranks job dies (every process of it SIGKILLed, as a node that
# crashes) while training and, separately, in the middle of a checkpoint write: the job ends
# within 15 s with a non-zero status and a message naming the lost host; the previous
# checkpoint is intact (the interrupted one only a .tmp); running the job again resumes from
# it on 2 hosts and on 1 host (another node count, same global batch) and trains the same
# steps as an uninterrupted 1-rank run (losses within 1e-5).
source "$(dirname "$0")/lib/train_common.sh"
: "${BUILD_DIR:?}"
CLUSTER_TAG=nl
source "$(dirname "$0")/lib/cluster.sh"
W=$TEST_TMP/cluster_node_loss
rm -rf "$W"
mkdir -p "$W"
make_data "$W/data" 96 16
write_job "$W/job.yaml" "$W/unused" "$FIXTURES/model/llama" "$W/data"
common=(--set training.max_steps=30 --set training.save_steps=10 --set training.eval_steps=0
        --set distributed.timeout_s=20)
fail=0
bad() { echo "FAIL: $*"; fail=1; }

run_train 1 "$W/job.yaml" --set output_dir="$W/ref" "${common[@]}" > "$W/ref.log" 2>&1 ||
  { cat "$W/ref.log"; echo "FAIL: the 1-rank reference run"; exit 1; }
cluster_up 2 || { echo "FAIL: the simulated cluster did not come up"; exit 1; }
h1=$(cluster_host 1) h2=$(cluster_host 2)

# start NAME MPIRUN-ARGS...: 2 hosts x 2 ranks (B=1) in the background; status into NAME.rc
start() {
  local out=$W/$1
  shift
  (
    rc=0
    timeout 120 "$CLUSTER" --name "$cluster_name" mpirun --oversubscribe --bind-to none -n 4 \
      --map-by ppr:2:node "$@" "$SPECTRAIN" train "$W/job.yaml" --set output_dir="$out" \
      --set training.per_device_train_batch_size=1 "${common[@]}" > "$out.log" 2>&1 || rc=$?
    echo $rc > "$out.rc"
  ) &
}
# lost OUT T0: the job must end within 15 s of T0 (ms), non-zero, naming the lost host
lost() {
  local out=$W/$1 t0=$2
  wait_until 15 test -s "$out.rc" || { bad "$1: still running 15 s after losing $h2"; wait; return; }
  local dt=$(($(now_ms) - t0)) rc
  rc=$(cat "$out.rc")
  echo "$1: the job ended $dt ms after the host was lost (status $rc)"
  [[ $rc != 0 ]] || bad "$1: exited 0"
  # (grep -q would end the pipe early: under pipefail the first grep's SIGPIPE fails it)
  local named
  named=$(grep -v "^placement:" "$out.log" | grep "$h2" || true)
  [[ -n $named ]] || { cat "$out.log"; bad "$1: no message names $h2"; }
  sed -n 1,2p <<< "$named"
}
# resume OUT NP HOSTS B: the job again on NP ranks on HOSTS (mpirun --host), to the end
resume() {
  local out=$W/$1
  timeout 120 "$CLUSTER" --name "$cluster_name" mpirun --oversubscribe --bind-to none -n "$2" \
    --host "$3" "$SPECTRAIN" train "$W/job.yaml" --set output_dir="$out" \
    --set training.per_device_train_batch_size="$4" "${common[@]}" > "$out.resume.log" 2>&1 ||
    { cat "$out.resume.log"; bad "$1: the resumed run on $3 exited $?"; return; }
  grep -q "resumed from $out/ckpt-10.h5: step 10" "$out.resume.log" ||
    { cat "$out.resume.log"; bad "$1: did not resume from ckpt-10"; }
  compare_losses "$out/metrics.jsonl" "$W/ref/metrics.jsonl" 1e-5 "$1 + resumed on $3 vs 1 rank" || fail=1
  if ls "$out" | grep -q '\.tmp$'; then bad "$1: a .tmp checkpoint left after the resumed run: $(ls "$out")"; fi
}

# 1. while training (a step every ~0.1 s; ckpt-10 written)
start kill-step -x SPECTRAIN_TEST_STEP_DELAY_MS=100
wait_until 60 grep -q '"step":1[3-9],' "$W/kill-step/metrics.jsonl" 2> /dev/null ||
  { cat "$W/kill-step.log"; echo "FAIL: the job did not reach step 13"; exit 1; }
t0=$(now_ms)
cluster kill n2
lost kill-step "$t0"
[[ -f $W/kill-step/ckpt-10.h5 && ! -e $W/kill-step/ckpt-20.h5 ]] ||
  bad "kill-step: expected ckpt-10.h5 only: $(ls "$W/kill-step")"
resume kill-step 4 "$h1:2,$h2:2" 1

# 2. in the middle of writing ckpt-20: every rank pauses after its 3rd tensor (test hook)
start kill-ckpt -x SPECTRAIN_TEST_CKPT_KILL_STEP=20 -x SPECTRAIN_TEST_CKPT_PAUSE_AFTER_TENSORS=3 \
  -x SPECTRAIN_TEST_CKPT_PAUSE_S=60 -x SPECTRAIN_TEST_CKPT_PAUSE_MARK="$W/mark"
wait_until 60 test -e "$W/mark.3" || { cat "$W/kill-ckpt.log"; echo "FAIL: no rank paused in the save of step 20"; exit 1; }
t0=$(now_ms)
cluster kill n2
lost kill-ckpt "$t0"
[[ -f $W/kill-ckpt/ckpt-10.h5 && ! -e $W/kill-ckpt/ckpt-20.h5 && -e $W/kill-ckpt/ckpt-20.h5.tmp ]] ||
  bad "kill-ckpt: expected ckpt-10.h5 and ckpt-20.h5.tmp: $(ls "$W/kill-ckpt")"
resume kill-ckpt 2 "$h1:2" 2

exit $fail
