#!/usr/bin/env bash
# A full disk (issue 18): output_dir on a small tmpfs, mounted in a private mount namespace
# (unshare -m: the machine's mounts do not change; skipped only where namespaces are
# refused). 2 ranks, the tiny fixture model.
#  1. the first checkpoint fits, the second does not: exit 1 at once, rank 0 names the .tmp
#     and ENOSPC (found by the space reservation, before anything is written), the .tmp is
#     removed, ckpt-2.h5 does not exist, ckpt-1.h5 is intact: resuming from it gives the
#     uninterrupted run's losses, bit for bit;
#  2. the same with the reservation off (a file system that cannot preallocate, or a disk
#     filled by someone else while the file is written): the write itself fails; exit 1 on
#     every rank without a hang (parallel HDF5 used to deadlock in its flush here), the rank
#     that failed names the tensor, the .tmp and ENOSPC, the .tmp is removed, ckpt-1.h5 is
#     intact;
#  3. the final checkpoint fits, the export of final/ does not: exit 1 naming
#     final/model.safetensors.tmp and ENOSPC and the `spectrain export` line that writes it
#     from the checkpoint; no partial file stays in final/; that export, run elsewhere, gives
#     the uninterrupted run's model byte for byte;
#  4. metrics.jsonl fills the disk: exit 1 on every rank within seconds (rank 1 used to wait
#     in the next step's collectives until distributed.timeout_s), naming the file and ENOSPC;
#  5. the log (standard output of a run without launcher) on a full disk: one warning on
#     stderr naming ENOSPC, the run goes on and ends 0.
source "$(dirname "$0")/lib/train_common.sh"
set +e
W=$TEST_TMP/ckpt_disk_full
rm -rf "$W"
mkdir -p "$W/disk"
if unshare -m --propagation private true 2>/dev/null; then NS=(unshare -m --propagation private)
elif unshare -rm --propagation private true 2>/dev/null; then NS=(unshare -rm --propagation private)
else echo "SKIP: mount namespaces are refused here (unshare -m and unshare -rm fail)"; exit 77; fi
make_data "$W/data" 96 16
write_job "$W/job.yaml" "$W/ref" "$FIXTURES/model/llama" "$W/data"
SETS=(--set training.eval_steps=0 --set training.save_total_limit=1)
fail=0

# uninterrupted references (outside the tmpfs): 4 steps saving every step, and 2 steps
run_train 2 "$W/job.yaml" "${SETS[@]}" --set training.max_steps=4 --set training.save_steps=1 \
  > "$W/ref.log" 2>&1 || { echo "FAIL: reference run"; cat "$W/ref.log"; exit 1; }
run_train 2 "$W/job.yaml" "${SETS[@]}" --set training.max_steps=2 --set output_dir="$W/ref2" \
  > "$W/ref2.log" 2>&1 || { echo "FAIL: reference run (2 steps)"; cat "$W/ref2.log"; exit 1; }
ckbytes=$(stat -c %s "$W/ref/ckpt-4.h5")

# Everything on the tmpfs happens inside one private mount namespace (the mounts vanish with
# it); the script reports by files under $W and its exit status.
cat > "$W/inner.sh" <<'INNER'
set +e
source "$SRC_DIR/tests/e2e/lib/train_common.sh"
set +e
D=$W/disk
mnt() { umount "$D" 2>/dev/null; mount -t tmpfs -o "size=$1" tmpfs "$D" || exit 3; }
# 1. room for about 1.6 checkpoints: the second save needs a second one before the first goes
mnt $((ckbytes * 16 / 10))
t0=$SECONDS
timeout 120 $MPIEXEC -n 2 "$SPECTRAIN" train "$W/job.yaml" "${SETS[@]}" --set output_dir="$D/out" \
  --set training.max_steps=4 --set training.save_steps=1 > "$W/c1.log" 2>&1
echo "$? $((SECONDS - t0))" > "$W/c1.rc"
ls -A "$D/out" > "$W/c1.ls"
cp "$D/out/ckpt-1.h5" "$W/c1-ckpt-1.h5" 2>/dev/null
# 2. the same without the reservation: the write fails in the middle
mnt $((ckbytes * 16 / 10))
t0=$SECONDS
SPECTRAIN_TEST_CKPT_NO_RESERVE=1 timeout 120 $MPIEXEC -x SPECTRAIN_TEST_CKPT_NO_RESERVE -n 2 \
  "$SPECTRAIN" train "$W/job.yaml" "${SETS[@]}" --set output_dir="$D/out" \
  --set training.max_steps=4 --set training.save_steps=1 > "$W/c2.log" 2>&1
echo "$? $((SECONDS - t0))" > "$W/c2.rc"
ls -A "$D/out" > "$W/c2.ls"
cp "$D/out/ckpt-1.h5" "$W/c2-ckpt-1.h5" 2>/dev/null
# 3. the final checkpoint fits (with its reservation), the model export (1/3 of it) does not
mnt $((ckbytes * 125 / 100))
timeout 120 $MPIEXEC -n 2 "$SPECTRAIN" train "$W/job.yaml" "${SETS[@]}" --set output_dir="$D/out" \
  --set training.max_steps=2 > "$W/c3.log" 2>&1
echo "$?" > "$W/c3.rc"
{ ls -A "$D/out"; ls -A "$D/out/final" 2>/dev/null | sed 's|^|final/|'; } > "$W/c3.ls"
cp "$D/out/ckpt-2.h5" "$W/c3-ckpt-2.h5" 2>/dev/null
# 4. metrics.jsonl fills the disk: 64 KiB, 48 KiB of it taken
mnt 64k
mkdir -p "$D/out" && head -c 49152 /dev/zero > "$D/filler"
t0=$SECONDS
timeout 120 $MPIEXEC -n 2 "$SPECTRAIN" train "$W/job.yaml" "${SETS[@]}" --set output_dir="$D/out" \
  --set training.max_steps=400 --set training.save_steps=0 > "$W/c4.log" 2>&1
echo "$? $((SECONDS - t0))" > "$W/c4.rc"
# 5. the log of a run without launcher on a full disk (stdout there, stderr outside)
mnt 64k
head -c 61440 /dev/zero > "$D/filler"
"$SPECTRAIN" train "$W/job.yaml" "${SETS[@]}" --set output_dir="$W/c5" --set training.max_steps=30 \
  --set training.save_steps=0 > "$D/c5.out" 2> "$W/c5.err"
echo "$?" > "$W/c5.rc"
exit 0 # the tmpfs goes with the namespace
INNER
export W ckbytes
SETS_S="${SETS[*]}"
SETS="$SETS_S" "${NS[@]}" bash -c 'SETS=($SETS); source "$W/inner.sh"' || { echo "FAIL: the namespace script failed ($?)"; exit 1; }
mountpoint -q "$W/disk" && { echo "FAIL: the tmpfs is visible outside the namespace"; fail=1; }

# 1.
read -r rc secs < "$W/c1.rc"
[[ $rc == 1 ]] || { echo "FAIL: 1: exit $rc, expected 1"; cat "$W/c1.log"; fail=1; }
grep -q "\[rank 0\] spectrain: error: checkpoint of step 2 not written ($W/disk/out/ckpt-2.h5.tmp removed; the checkpoints already in $W/disk/out are unchanged): $W/disk/out/ckpt-2.h5.tmp: cannot allocate the .* it needs: No space left on device (ENOSPC; the file system has .* free). Free space or move output_dir" "$W/c1.log" \
  || { echo "FAIL: 1: rank 0 does not name the file and ENOSPC:"; cat "$W/c1.log"; fail=1; }
grep -q "\[rank 1\] spectrain: error: .*another rank failed" "$W/c1.log" || { echo "FAIL: 1: rank 1 did not end with an error"; fail=1; }
[[ $(tr '\n' ' ' < "$W/c1.ls") == "ckpt-1.h5 metrics.jsonl " ]] \
  || { echo "FAIL: 1: output_dir holds: $(cat "$W/c1.ls") (expected ckpt-1.h5 and metrics.jsonl only)"; fail=1; }
mkdir -p "$W/r1" && cp "$W/c1-ckpt-1.h5" "$W/r1/ckpt-1.h5"
run_train 2 "$W/job.yaml" "${SETS[@]}" --set output_dir="$W/r1" --set training.max_steps=4 \
  --set training.save_steps=1 > "$W/r1.log" 2>&1 || { echo "FAIL: 1: resuming from ckpt-1.h5 failed"; cat "$W/r1.log"; fail=1; }
grep -q "resumed from $W/r1/ckpt-1.h5: step 1" "$W/r1.log" || { echo "FAIL: 1: did not resume from ckpt-1.h5"; fail=1; }
losses "$W/ref/metrics.jsonl" | awk '$1 > 1' > "$W/ref.loss"
losses "$W/r1/metrics.jsonl" > "$W/r1.loss"
cmp -s "$W/ref.loss" "$W/r1.loss" || { echo "FAIL: 1: losses after resuming differ:"; paste "$W/ref.loss" "$W/r1.loss"; fail=1; }
cmp -s "$W/ref/final/model.safetensors" "$W/r1/final/model.safetensors" \
  || { echo "FAIL: 1: the resumed run's model is not the uninterrupted one's"; fail=1; }

# 2.
read -r rc secs < "$W/c2.rc"
[[ $rc == 1 ]] || { echo "FAIL: 2: exit $rc, expected 1 (124: a hang)"; cat "$W/c2.log"; fail=1; }
((secs < 60)) || { echo "FAIL: 2: took $secs s"; fail=1; }
grep -q "spectrain: error: .*$W/disk/out/ckpt-2.h5.tmp: writing /[a-z/]*/model\.[a-z0-9_.]* failed: No space left on device (ENOSPC; the file system has .* free)" "$W/c2.log" \
  || { echo "FAIL: 2: no rank names the tensor, the file and ENOSPC:"; cat "$W/c2.log"; fail=1; }
grep -q "\[rank 0\] spectrain: error: checkpoint of step 2 not written ($W/disk/out/ckpt-2.h5.tmp removed" "$W/c2.log" \
  || { echo "FAIL: 2: rank 0 does not say the .tmp is removed:"; cat "$W/c2.log"; fail=1; }
[[ $(tr '\n' ' ' < "$W/c2.ls") == "ckpt-1.h5 metrics.jsonl " ]] \
  || { echo "FAIL: 2: output_dir holds: $(cat "$W/c2.ls")"; fail=1; }
out=$("$SPECTRAIN" export "$W/c2-ckpt-1.h5" --out "$W/e2" 2>&1) || { echo "FAIL: 2: ckpt-1.h5 does not export: $out"; fail=1; }

# 3.
rc=$(cat "$W/c3.rc")
[[ $rc == 1 ]] || { echo "FAIL: 3: exit $rc, expected 1"; cat "$W/c3.log"; fail=1; }
grep -q "\[rank 0\] spectrain: error: $W/disk/out/final/model.safetensors.tmp: write failed: No space left on device (ENOSPC; .*The trained model is in the final checkpoint $W/disk/out/ckpt-2.h5: \`spectrain export $W/disk/out/ckpt-2.h5 --out $W/disk/out/final\` writes it once there is room" "$W/c3.log" \
  || { echo "FAIL: 3: the export error does not name the file, ENOSPC and the way out:"; cat "$W/c3.log"; fail=1; }
[[ $(tr '\n' ' ' < "$W/c3.ls") == "ckpt-2.h5 final metrics.jsonl " ]] \
  || { echo "FAIL: 3: output_dir holds: $(cat "$W/c3.ls") (expected ckpt-2.h5, an empty final/, metrics.jsonl)"; fail=1; }
"$SPECTRAIN" export "$W/c3-ckpt-2.h5" --out "$W/e3" > "$W/e3.log" 2>&1 || { echo "FAIL: 3: the export from the checkpoint failed"; cat "$W/e3.log"; fail=1; }
cmp -s "$W/e3/model.safetensors" "$W/ref2/final/model.safetensors" \
  || { echo "FAIL: 3: the model exported from the checkpoint is not the uninterrupted run's"; fail=1; }

# 4.
read -r rc secs < "$W/c4.rc"
[[ $rc == 1 ]] || { echo "FAIL: 4: exit $rc, expected 1 (124: a hang)"; tail -20 "$W/c4.log"; fail=1; }
((secs < 60)) || { echo "FAIL: 4: took $secs s (distributed.timeout_s is 300)"; fail=1; }
grep -q "\[rank 0\] spectrain: error: $W/disk/out/metrics.jsonl: cannot write the metrics: No space left on device (ENOSPC; the file system has 0 B free); training stops here" "$W/c4.log" \
  || { echo "FAIL: 4: rank 0 does not name the metrics file and ENOSPC:"; grep -v "^step" "$W/c4.log"; fail=1; }
grep -q "\[rank 1\] spectrain: error: another rank failed while writing the metrics" "$W/c4.log" \
  || { echo "FAIL: 4: rank 1 did not stop with rank 0"; grep -v "^step" "$W/c4.log"; fail=1; }

# 5.
rc=$(cat "$W/c5.rc")
[[ $rc == 0 ]] || { echo "FAIL: 5: exit $rc, expected 0"; cat "$W/c5.err"; fail=1; }
[[ $(grep -c "spectrain: warning: cannot write the log to standard output: No space left on device" "$W/c5.err") == 1 ]] \
  || { echo "FAIL: 5: not one warning about the log:"; cat "$W/c5.err"; fail=1; }
[[ -f $W/c5/final/model.safetensors ]] || { echo "FAIL: 5: the run did not finish its model"; fail=1; }

((fail)) && exit 1
echo "ok: a full disk fails loudly (exit 1, file and ENOSPC named, no .tmp left, the previous checkpoint resumes bit for bit); the log's is a warning"
