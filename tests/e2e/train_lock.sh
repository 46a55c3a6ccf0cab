#!/usr/bin/env bash
# One training per output_dir (issue 18.5): while run A trains (2 ranks), run B on the same
# folder (2 ranks) fails at once with exit 2, on every rank, naming the folder, the lock file
# and A's pid and host, and touches nothing there; after kill -9 of A's rank 0 (the lock holder)
# run C starts fine: the kernel dropped the lock with the process. C also removes the .tmp a
# killed save left (and nothing else), and a finished run leaves no lock file behind.
source "$(dirname "$0")/lib/train_common.sh"
set +e # exit statuses are checked one by one
W=$TEST_TMP/train_lock
rm -rf "$W"
mkdir -p "$W"
make_data "$W/data" 96 16
write_job "$W/job.yaml" "$W/out" "$FIXTURES/model/llama" "$W/data"
fail=0
apid=
cleanup() { [[ -n $apid ]] && kill -9 "$apid" 2>/dev/null; wait 2>/dev/null; }
trap cleanup EXIT

# A: a long run, slowed down (the stop hook's test delay) so it is still training below
SPECTRAIN_TEST_STEP_DELAY_MS=100 $MPIEXEC -n 2 "$SPECTRAIN" train "$W/job.yaml" \
  --set training.max_steps=100000 --set training.eval_steps=0 > "$W/a.log" 2>&1 &
apid=$!
for _ in $(seq 300); do
  grep -q "^step 2/" "$W/a.log" && break
  kill -0 "$apid" 2>/dev/null || break
  sleep 0.1
done
grep -q "^step 2/" "$W/a.log" || { echo "FAIL: run A did not start training:"; cat "$W/a.log"; exit 1; }
[[ -f $W/out/train.lock ]] || { echo "FAIL: no $W/out/train.lock while A trains"; fail=1; }
holder=$(sed -n 's/^pid \([0-9]*\) on host \([^,]*\),.*/\1 \2/p' "$W/out/train.lock")
read -r hpid hhost <<<"$holder"
[[ -n $hpid && $hhost == "$(hostname)" ]] || { echo "FAIL: lock file content: $(cat "$W/out/train.lock")"; fail=1; }
[[ $(ps -o comm= -p "$hpid" 2>/dev/null) == spectrain ]] \
  || { echo "FAIL: pid $hpid in the lock file is not a spectrain process"; fail=1; }

# B: refused at start, every rank, nothing written (its metrics would have been appended)
before=$(ls -l --time-style=+%s.%N "$W/out" | grep -v "^total\|train.lock\|metrics.jsonl")
t0=$SECONDS
$MPIEXEC -n 2 "$SPECTRAIN" train "$W/job.yaml" --set training.max_steps=3 > "$W/b.log" 2>&1
rc=$?
[[ $rc == 2 ]] || { echo "FAIL: run B: exit $rc, expected 2"; cat "$W/b.log"; fail=1; }
((SECONDS - t0 < 30)) || { echo "FAIL: run B took $((SECONDS - t0)) s to fail"; fail=1; }
for r in 0 1; do
  grep -q "\[rank $r\] spectrain: error: output_dir $W/out is in use by another training ($W/out/train.lock is locked by pid $hpid on host $hhost, training $W/job.yaml on 2 rank(s) since " "$W/b.log" \
    || { echo "FAIL: run B: rank $r does not name the folder, lock and holder:"; cat "$W/b.log"; fail=1; }
done
grep -q "give this job another output_dir" "$W/b.log" || { echo "FAIL: run B: no hint"; fail=1; }
grep -q "resumed\|^step \|Spectrum" "$W/b.log" && { echo "FAIL: run B went on:"; cat "$W/b.log"; fail=1; }
after=$(ls -l --time-style=+%s.%N "$W/out" | grep -v "^total\|train.lock\|metrics.jsonl")
[[ $before == "$after" ]] || { echo "FAIL: run B changed output_dir:"; diff <(echo "$before") <(echo "$after"); fail=1; }

# kill -9 the holder; A's launcher ends (it aborts the other rank)
kill -9 "$hpid"
for _ in $(seq 200); do kill -0 "$apid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$apid" 2>/dev/null && { echo "FAIL: run A's mpirun still runs after its rank 0 was killed"; kill -9 "$apid"; fail=1; }
wait "$apid" 2>/dev/null
apid=
[[ -f $W/out/train.lock ]] || { echo "FAIL: the killed run's lock file is gone (expected it left)"; fail=1; }

# C: starts although the killed run's lock file is there; cleans a killed save's .tmp only
: > "$W/out/ckpt-7.h5.tmp"
: > "$W/out/notes.tmp"
: > "$W/out/ckpt-+7.h5.tmp"
$MPIEXEC -n 2 "$SPECTRAIN" train "$W/job.yaml" --set training.max_steps=2 --resume none > "$W/c.log" 2>&1
rc=$?
[[ $rc == 0 ]] || { echo "FAIL: run C after kill -9 of A: exit $rc"; cat "$W/c.log"; fail=1; }
grep -q "removed $W/out/ckpt-7.h5.tmp: left by a checkpoint save that did not finish" "$W/c.log" \
  || { echo "FAIL: run C did not report removing ckpt-7.h5.tmp:"; cat "$W/c.log"; fail=1; }
[[ ! -e $W/out/ckpt-7.h5.tmp ]] || { echo "FAIL: ckpt-7.h5.tmp left"; fail=1; }
[[ -e $W/out/notes.tmp && -e $W/out/ckpt-+7.h5.tmp ]] || { echo "FAIL: C removed files that are not its own"; fail=1; }
[[ -f $W/out/ckpt-2.h5 && -f $W/out/final/model.safetensors ]] || { echo "FAIL: run C wrote no checkpoint/model"; fail=1; }
[[ ! -e $W/out/train.lock ]] || { echo "FAIL: a finished run left its lock file"; fail=1; }

# the same in one rank, and a job that fails early also releases the folder
$MPIEXEC -n 1 "$SPECTRAIN" train "$W/job.yaml" --set training.max_steps=3 --set training.learning_rate=1 > "$W/d.log" 2>&1
rc=$?
[[ $rc == 2 ]] || { echo "FAIL: run D (changed job): exit $rc, expected 2"; cat "$W/d.log"; fail=1; }
[[ ! -e $W/out/train.lock ]] || { echo "FAIL: a refused run left its lock file"; fail=1; }
((fail)) && exit 1
echo "ok: a second training on one output_dir is refused on every rank; a killed one's lock does not stay"
