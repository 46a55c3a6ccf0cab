#!/usr/bin/env bash
# Preemption on a real (one-machine) Slurm, through slurm/train.sbatch on 2 tasks:
#  A. a tiny training job runs to the end: COMPLETED, not requeued, outputs written;
#  B. the same job, signalled with USR1 (as `--signal=B:USR1@SECONDS` would before the time
#     limit) while it trains: the batch shell forwards it, every rank stops after the same
#     step, writes a checkpoint, exits 75; the script requeues the job; once released from
#     Slurm's requeue hold it resumes from the checkpoint and finishes with exactly the final
#     loss and weights of A (same rank count: bit-identical on the CPU).
set -euo pipefail
source "$(dirname "$0")/lib/slurm.sh"
work=$TEST_TMP/slurm_requeue
rm -rf "$work" && mkdir -p "$work"
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3
model=$FIXTURES/model/llama
steps=40
# Checkpoints (issue 6) give `train` its --resume option; without them only the stop, exit 75
# and requeue halves can be checked, and the test ends as skipped.
have_ckpt=0
"$SPECTRAIN" train --help | grep -q -- "--resume" && have_ckpt=1

write_job() { # NAME: a job file whose output_dir is $work/NAME
  cat >"$work/$1.yaml" <<JOB
output_dir: $work/$1
model:
  path: $model
data:
  train: $model/eval.bin
training:
  max_seq_length: 8
  per_device_train_batch_size: 2
  per_device_eval_batch_size: 2
  gradient_accumulation_steps: 1
  max_steps: $steps
  learning_rate: 1.0e-2
  warmup_steps: 2
  logging_steps: 1
  save_steps: 1000
  backend: cpu
JOB
}
# --time must leave more than train.sbatch's --signal=B:USR1@300 margin: with --time=5 the
# warning signal is due at once and reaches whichever run slurmctld's periodic limit check
# finds (the flaky "restart got SIGUSR1 and exited 138" failure).
submit() { # NAME [env...]: sbatch train.sbatch on 2 tasks; prints the job id
  local name=$1
  shift
  (cd "$work" && env "$@" SPECTRAIN="$SPECTRAIN" sbatch --parsable --ntasks=2 --nodes=1 \
    --ntasks-per-node=2 --time=30 --output="$work/$name.out" "$SRC_DIR/slurm/train.sbatch" \
    "$work/$name.yaml")
}
final_loss() { # OUTPUT_DIR: loss of step $steps from metrics.jsonl (full precision)
  "$PY" - "$1/metrics.jsonl" "$steps" <<'PYEOF'
import json, sys
loss = [json.loads(l)["loss"] for l in open(sys.argv[1])
        if l.strip() and json.loads(l).get("step") == int(sys.argv[2]) and "loss" in json.loads(l)]
print(repr(loss[-1]) if loss else "missing")
PYEOF
}

# --- A: uninterrupted ----------------------------------------------------------------------
write_job a
a=$(submit a)
st=$(wait_job_state "$a" "COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL" 120) || true
cat "$work/a.out"
[[ $st == COMPLETED ]] || fail "job A: $st"
[[ $(job_field "$a" Restarts) == 0 ]] || fail "job A was requeued"
grep -q "exited with 0 (finished): not requeueing" "$work/a.out" || fail "job A: no 'finished' line"
grep -q "^step $steps/$steps " "$work/a.out" || fail "job A: no step $steps"
[[ -s $work/a/final/model.safetensors ]] || fail "job A: no final model"
loss_a=$(final_loss "$work/a")
[[ $loss_a != missing ]] || fail "job A: no loss for step $steps in metrics.jsonl"

# --- C: cancelled while training (SIGTERM): checkpointed, but never requeued ---------------
write_job c
c=$(submit c SPECTRAIN_TEST_STEP_DELAY_MS=60)
wait_job_state "$c" RUNNING 60 >/dev/null
wait_file_grep "$work/c.out" "^step 3/$steps " 60
scancel "$c"
wait_file_grep "$work/c.out" "got SIGTERM" 30
wait_file_grep "$work/c.out" "stopped early and checkpointed after SIGTERM: not requeueing" 30
sleep 2
[[ $(job_field "$c" JobState) == CANCELLED ]] || fail "job C: $(job_field "$c" JobState), expected CANCELLED"
[[ $(job_field "$c" Restarts) == 0 ]] || fail "job C (cancelled) was requeued"
grep -q "requeueing job" "$work/c.out" && fail "job C (cancelled) asked for a requeue"

# --- B: USR1 while training, requeue, resume -----------------------------------------------
write_job b
b=$(submit b SPECTRAIN_TEST_STEP_DELAY_MS=60)
wait_job_state "$b" RUNNING 60 >/dev/null
wait_file_grep "$work/b.out" "^step 5/$steps " 60
# What --signal=B:USR1@SECONDS does near the time limit, now: USR1 to the batch shell only.
scancel --signal=USR1 --batch "$b"
wait_file_grep "$work/b.out" "requeueing job $b" 60
grep -q "got SIGUSR1" "$work/b.out" || fail "job B: the batch shell did not see USR1"
stop_step=$(sed -n 's/^stop requested: stopping after step \([0-9]*\)$/\1/p' "$work/b.out" | head -1)
[[ -n $stop_step ]] || fail "job B: no agreed stop"
((stop_step >= 5 && stop_step < steps)) || fail "job B stopped after step $stop_step"
grep -q "stopped early and checkpointed (exit 75): requeueing job $b" "$work/b.out" ||
  fail "job B: spectrain did not exit with 75 after the stop"
if ((!have_ckpt)); then
  echo "SKIP: the stop, exit 75 and requeue work; train writes no checkpoints yet (issue 6)"
  scancel "$b" || true
  slurm_test_failed=0
  exit 77
fi
ls "$work"/b/ckpt-*.h5 >/dev/null 2>&1 || fail "job B: no checkpoint in $work/b after the stop"
# The requeued job waits in Slurm's requeue hold (BeginTime = requeue + cred_expire, 10 s in
# the test cluster's slurm.conf) and then starts by itself. Forcing it earlier (StartTime=now)
# races the node's revoked credential ("Job credential revoked") on a loaded machine.
wait_job_state "$b" PENDING 60 >/dev/null
[[ $(job_field "$b" Restarts) == 1 ]] || fail "job B: Restarts=$(job_field "$b" Restarts)"
st=$(wait_job_state "$b" "COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL" 120) || true
cat "$work/b.out"
[[ $st == COMPLETED ]] || fail "job B after requeue: $st"
grep -q "job $b (restart 1)" "$work/b.out" || fail "job B: the restarted run did not start"
# The restarted run trains only the remaining steps: its first step is stop_step + 1.
first_after=$(awk '/\(restart 1\)/ {r = 1} r && /^step [0-9]+\// {sub("/.*", "", $2); print $2; exit}' "$work/b.out")
[[ $first_after == $((stop_step + 1)) ]] ||
  fail "job B resumed at step '$first_after', expected $((stop_step + 1)) (resume from the checkpoint)"
loss_b=$(final_loss "$work/b")
echo "final loss: uninterrupted $loss_a, stopped after step $stop_step + resumed $loss_b"
[[ $loss_a == "$loss_b" ]] || fail "final loss differs: $loss_a vs $loss_b"
cmp "$work/a/final/model.safetensors" "$work/b/final/model.safetensors" ||
  fail "final weights differ between the uninterrupted and the resumed run"
grep -q "exited with 0 (finished): not requeueing" "$work/b.out" || fail "job B: no 'finished' line"

# --- C again: resume by hand = submit the same job again -----------------------------------
ls "$work"/c/ckpt-*.h5 >/dev/null 2>&1 || fail "job C: no checkpoint after SIGTERM"
c2=$(submit c)
st=$(wait_job_state "$c2" "COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL" 120) || true
[[ $st == COMPLETED ]] || { cat "$work/c.out"; fail "job C resubmitted: $st"; }
grep -q "^resumed from $work/c/ckpt-" "$work/c.out" || fail "job C resubmitted: did not resume"
loss_c=$(final_loss "$work/c")
[[ $loss_a == "$loss_c" ]] || fail "job C: cancelled + resubmitted final loss $loss_c vs $loss_a"
slurm_test_failed=0
echo PASS
