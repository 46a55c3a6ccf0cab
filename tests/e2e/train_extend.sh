#!/usr/bin/env bash
# Extending a run (issue 18.4): a finished 4-step run resumed with training.max_steps 8 goes
# on from its step-4 checkpoint to step 8, says in one line what changed and what it does to
# the schedule, and trains steps 5..8 at the cosine schedule recomputed over 8 steps; the run
# length given as epochs works the same; with a constant schedule the line says nothing
# changes; a changed learning rate is still refused (exit 2, naming the key), and so is a
# length shorter than the checkpoint's step.
source "$(dirname "$0")/lib/train_common.sh"
set +e # exit statuses are checked one by one
W=$TEST_TMP/train_extend
rm -rf "$W"
mkdir -p "$W"
make_data "$W/data" 96 16
write_job "$W/job.yaml" "$W/out" "$FIXTURES/model/llama" "$W/data"
fail=0
run() { # NAME NP [args]: train, output in W/NAME.log, exit status returned
  local name=$1 np=$2
  shift 2
  $MPIEXEC -n "$np" "$SPECTRAIN" train "$W/job.yaml" "$@" > "$W/$name.log" 2>&1
}
lr_of() { # METRICS STEP: the lr of that step record
  $PY -c 'import json,sys
for l in open(sys.argv[1]):
    o = json.loads(l)
    if o.get("step") == int(sys.argv[2]) and "lr" in o: print(repr(o["lr"])); break' "$1" "$2"
}

run a 2 --set training.max_steps=4
rc=$?
[[ $rc == 0 && -f $W/out/ckpt-4.h5 ]] || { echo "FAIL: 4-step run: exit $rc"; cat "$W/a.log"; exit 1; }

run b 2 --set training.max_steps=8
rc=$?
[[ $rc == 0 ]] || { echo "FAIL: resume with max_steps 8: exit $rc"; cat "$W/b.log"; fail=1; }
grep -q "resumed from $W/out/ckpt-4.h5: step 4" "$W/b.log" || { echo "FAIL: did not resume from step 4:"; cat "$W/b.log"; fail=1; }
grep -q "resuming with training.max_steps 8 instead of the checkpoint's training.max_steps 4: it goes on from step 4 to step 8; the cosine schedule is recomputed over 8 steps instead of 4: step 5 trains at learning rate 0.00375 (the checkpoint's last step trained at " "$W/b.log" \
  || { echo "FAIL: no schedule line:"; cat "$W/b.log"; fail=1; }
(($(grep -c "resuming with" "$W/b.log") == 1)) || { echo "FAIL: the schedule line is not one line"; fail=1; }
grep -q "^step 8/8 " "$W/b.log" || { echo "FAIL: did not train to step 8"; fail=1; }
[[ -f $W/out/ckpt-8.h5 ]] || { echo "FAIL: no ckpt-8.h5"; fail=1; }
# cosine, warmup 2, 8 steps, peak 5e-3: step s (1-based) trains at 5e-3 * (1 + cos(pi (s-3)/6)) / 2
$PY - "$W/out/metrics.jsonl" <<'PYEOF' || fail=1
import json, math, sys
lr = {}
for l in open(sys.argv[1]):
    o = json.loads(l)
    if "lr" in o and "loss" in o: lr[o["step"]] = o["lr"]
want = {s: 5e-3 * (1 + math.cos(math.pi * (s - 3) / 6)) / 2 for s in range(5, 9)}
bad = [(s, lr.get(s), w) for s, w in want.items() if lr.get(s) is None or abs(lr[s] - w) > 1e-9]
if bad or sorted(s for s in lr if s > 4) != [5, 6, 7, 8]:
    sys.exit(f"FAIL: steps 5..8 lr {sorted(lr.items())} vs the schedule over 8 steps {want}")
PYEOF

# the run length as epochs (global batch 8 on 1 rank too): ceil(epochs x samples per step) steps
n=$(wc -l < "$W/data/train.jsonl")
ep=0.038
steps=$($PY -c "import math; print(math.ceil($ep * ($n // 8)))")
run c 1 --set training.max_steps=-1 --set training.num_train_epochs="$ep" --set training.per_device_train_batch_size=8
rc=$?
[[ $rc == 0 ]] || { echo "FAIL: resume with num_train_epochs $ep: exit $rc"; cat "$W/c.log"; fail=1; }
grep -q "resuming with training.num_train_epochs $ep ($steps steps) instead of the checkpoint's training.max_steps 8: it goes on from step 8 to step $steps" "$W/c.log" \
  || { echo "FAIL: epochs line:"; cat "$W/c.log"; fail=1; }
grep -q "^step $steps/$steps " "$W/c.log" || { echo "FAIL: did not train to step $steps"; fail=1; }

# refused as before: another learning rate; a length below the checkpoint's step
run d 2 --set training.max_steps=16 --set training.learning_rate=1e-3
rc=$?
[[ $rc == 2 ]] || { echo "FAIL: changed lr: exit $rc, expected 2"; cat "$W/d.log"; fail=1; }
grep -q "the job differs from the one the checkpoint was trained with in: training.learning_rate\. " "$W/d.log" \
  || { echo "FAIL: changed lr message:"; cat "$W/d.log"; fail=1; }
grep -q "max_steps" "$W/d.log" && { echo "FAIL: max_steps named as a difference:"; cat "$W/d.log"; fail=1; }
run e 2 --set training.max_steps=10
rc=$?
[[ $rc == 2 ]] || { echo "FAIL: max_steps below the checkpoint's step: exit $rc, expected 2"; cat "$W/e.log"; fail=1; }
grep -q "is at step $steps, past this job's 10 steps" "$W/e.log" || { echo "FAIL: shorter run message:"; cat "$W/e.log"; fail=1; }

# a constant schedule does not depend on the total
write_job "$W/const.yaml" "$W/out2" "$FIXTURES/model/llama" "$W/data"
sed -i 's/lr_scheduler_type: cosine/lr_scheduler_type: constant/' "$W/const.yaml"
$MPIEXEC -n 1 "$SPECTRAIN" train "$W/const.yaml" --set training.max_steps=2 > "$W/f.log" 2>&1 \
  || { echo "FAIL: constant run"; cat "$W/f.log"; fail=1; }
$MPIEXEC -n 1 "$SPECTRAIN" train "$W/const.yaml" --set training.max_steps=3 > "$W/g.log" 2>&1 \
  || { echo "FAIL: constant resume"; cat "$W/g.log"; fail=1; }
grep -q "it goes on from step 2 to step 3; the constant schedule does not depend on the total: the learning rate is what it would have been (0.005)" "$W/g.log" \
  || { echo "FAIL: constant line:"; cat "$W/g.log"; fail=1; }
((fail)) && exit 1
echo "ok: resuming with a longer run goes on with the schedule recomputed; other changes are refused"
