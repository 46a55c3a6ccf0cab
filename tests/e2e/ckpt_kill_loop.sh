#!/usr/bin/env bash
# kill -9 at random points of checkpoint writes, in a loop (issue 18). One training (2 ranks,
# the tiny fixture model, a checkpoint every step, save_total_limit 3) is killed KILLS times
# and started again each time until it reaches its end. The points come from a fixed seed
# (SEED), drawn up front: which process (rank 0, rank 1, or the launcher mpirun), where in the
# save (before the file exists, after tensor k of the NT datasets, the .tmp complete, after
# the rename, after the pruning: the test hooks of docs/checkpoints.md stop the process there
# exactly; for the launcher the ranks pause there and mpirun is SIGKILLed), how many steps
# after the resume point, and what else the disk suffers meanwhile (a killed save's .tmp
# renamed to its checkpoint name, as a copy or a file system without atomic rename leaves
# it; the newest checkpoint truncated). After every kill:
#  - every process of the run is gone by itself within 30 s (ranks whose launcher died
#    included: they must not go on writing);
#  - the next start takes exactly the newest complete checkpoint (the highest step whose
#    file the test did not damage) and says so; every damaged newer file is named in a
#    warning and skipped (no torn file is ever taken);
#  - every .tmp left by a killed save is removed by the next start, with a line naming it.
# At the end: every loss any of the runs logged equals the uninterrupted run's loss of that
# step bit for bit (the same rank count resumes bit-identically), the final model is byte for
# byte the uninterrupted run's, and no .tmp is left.
source "$(dirname "$0")/lib/train_common.sh"
set +e
SEED=${CKPT_KILL_LOOP_SEED:-18}
KILLS=${CKPT_KILL_LOOP_KILLS:-20}
N=24 # steps of the run
W=$TEST_TMP/ckpt_kill_loop
rm -rf "$W"
mkdir -p "$W"
make_data "$W/data" 96 16
write_job "$W/job.yaml" "$W/out" "$FIXTURES/model/llama" "$W/data"
SETS=(--set training.max_steps=$N --set training.save_steps=1 --set training.eval_steps=0
  --set training.save_total_limit=3)
fail=0
t_start=$SECONDS
mp=
cleanup() { [[ -n $mp ]] && kill -9 "$mp" 2>/dev/null; wait 2>/dev/null; }
trap cleanup EXIT

# the uninterrupted run
run_train 2 "$W/job.yaml" "${SETS[@]}" --set output_dir="$W/ref" > "$W/ref.log" 2>&1 \
  || { echo "FAIL: the uninterrupted run failed"; cat "$W/ref.log"; exit 1; }
losses "$W/ref/metrics.jsonl" > "$W/ref.loss"
NT=$("$SPECTRAIN" inspect "$W/ref/ckpt-$N.h5" --tensors --json | $PY -c 'import json,sys; print(len(json.load(sys.stdin)["tensors"]))')
((NT > 10)) || { echo "FAIL: $NT datasets in a checkpoint?"; exit 1; }
t_ref=$((SECONDS - t_start))

# the plan: one line per kill, "d target point inject"
$PY - "$SEED" "$KILLS" "$NT" > "$W/plan" <<'PYEOF'
import random, sys
rng = random.Random(int(sys.argv[1]))
kills, nt = int(sys.argv[2]), int(sys.argv[3])
for _ in range(kills):
    target = rng.choice(["rank0", "rank1", "launcher"])
    kinds = ["create", "tensor", "tensor", "tensor", "closed"]
    if target != "rank1":
        kinds += ["renamed", "committed"]  # rank 0's steps of the commit
    point = rng.choice(kinds)
    if point == "tensor":
        point = "tensor:%d" % rng.randint(1, nt)
    inject = rng.choice(["none", "none", "tear", "truncate"])
    print(rng.randint(1, 3), target, point, inject, rng.randint(1, 99))
PYEOF

hash_() { md5sum < "$1" | cut -d' ' -f1; }
newest_complete() { # the highest step of a ckpt-N.h5 in out/ the test did not damage, or 0
  local best=0 f s
  for f in "$W"/out/ckpt-*.h5; do
    [[ -e $f ]] || continue
    s=${f##*/ckpt-}
    s=${s%.h5}
    grep -qxF "$(hash_ "$f") $f" "$W/damaged" 2>/dev/null && continue
    ((s > best)) && best=$s
  done
  echo "$best"
}
: > "$W/damaged"
declare -A seen_target seen_kind
i=0
while read -r d target point inject pct; do
  i=$((i + 1))
  E=$(newest_complete)
  s=$((E + d))
  ((s > N)) && s=$N
  ls "$W"/out/*.h5.tmp 2> /dev/null > "$W/tmp.before"
  log=$W/run$i.log
  rm -f "$W"/mark.*
  hook=(SPECTRAIN_TEST_CKPT_KILL_STEP=$s)
  case $point in
    tensor:*) k=${point#tensor:}; [[ $target == launcher ]] && hook+=(SPECTRAIN_TEST_CKPT_PAUSE_AFTER_TENSORS=$k) || hook+=(SPECTRAIN_TEST_CKPT_KILL_AFTER_TENSORS=$k) ;;
    *) [[ $target == launcher ]] && hook+=(SPECTRAIN_TEST_CKPT_PAUSE_PHASE=$point) || hook+=(SPECTRAIN_TEST_CKPT_KILL_PHASE=$point) ;;
  esac
  [[ $target == rank0 ]] && hook+=(SPECTRAIN_TEST_CKPT_KILL_RANK=0)
  [[ $target == rank1 ]] && hook+=(SPECTRAIN_TEST_CKPT_KILL_RANK=1)
  [[ $target == launcher ]] && hook+=(SPECTRAIN_TEST_CKPT_PAUSE_MARK=$W/mark SPECTRAIN_TEST_CKPT_PAUSE_S=5)
  env "${hook[@]}" $MPIEXEC -n 2 "$SPECTRAIN" train "$W/job.yaml" "${SETS[@]}" < /dev/null > "$log" 2>&1 &
  mp=$!
  ranks=
  if [[ $target == launcher ]]; then
    for _ in $(seq 600); do
      ls "$W"/mark.* > /dev/null 2>&1 && break
      kill -0 "$mp" 2> /dev/null || break
      sleep 0.1
    done
    if ! ls "$W"/mark.* > /dev/null 2>&1; then
      echo "FAIL: kill $i: the save of step $s never reached $point"; tail -5 "$log"; fail=1
    fi
    ranks=$(ps -o pid= --ppid "$mp")
    kill -9 "$mp" 2> /dev/null
  fi
  wait "$mp" 2> /dev/null
  rc=$?
  mp=
  [[ $rc != 0 ]] || { echo "FAIL: kill $i ($target at $point of step $s): the run ended 0, not killed"; fail=1; }
  # every rank ends by itself (the launcher's ranks once they see it is gone)
  for _ in $(seq 300); do
    alive=
    for p in $ranks; do kill -0 "$p" 2> /dev/null && alive="$alive $p"; done
    [[ -z $alive ]] && break
    sleep 0.1
  done
  [[ -z $alive ]] || { echo "FAIL: kill $i: ranks$alive still run 30 s after their launcher was killed"; for p in $alive; do kill -9 "$p"; done; fail=1; }
  # what this start had to find: the newest complete checkpoint, every damaged newer file
  # skipped with a warning, every .tmp removed with a line
  if ((E > 0)); then
    grep -q "resumed from $W/out/ckpt-$E.h5: step $E," "$log" \
      || { echo "FAIL: kill $i: the start did not resume from ckpt-$E.h5, the newest complete checkpoint:"; grep "resumed\|warning" "$log"; fail=1; }
  else
    grep -q "resumed from" "$log" && { echo "FAIL: kill $i: resumed although no checkpoint is complete: $(grep resumed "$log")"; fail=1; }
  fi
  while read -r sum f; do
    [[ -e $f ]] || continue
    fs=${f##*/ckpt-}; fs=${fs%.h5}
    ((fs > E)) || continue
    [[ $(hash_ "$f") == "$sum" ]] || continue
    grep -q "warning: .*$f.*falling back to the checkpoint before it" "$log" \
      || { echo "FAIL: kill $i: the damaged $f was not reported and skipped:"; grep "warning\|resumed" "$log"; fail=1; }
  done < "$W/damaged"
  while read -r tf; do
    [[ -n $tf ]] || continue
    grep -qF "removed $tf: left by a checkpoint save that did not finish" "$log" \
      || { echo "FAIL: kill $i: $tf was not removed by the next start"; fail=1; }
  done < "$W/tmp.before"
  seen_target[$target]=1
  seen_kind[${point%%:*}]=1
  after=$(newest_complete)
  tmp=$(ls "$W"/out/*.h5.tmp 2> /dev/null | head -1)
  # damage for the next start
  what=
  # (a .tmp killed before its close, so it lacks something; one complete but not renamed
  # yet is no damage)
  if [[ $inject == tear && -n $tmp && $point =~ ^tensor: ]]; then
    ts=${tmp##*/ckpt-}; ts=${ts%.h5.tmp}
    if ((ts > after)); then
      mv "$tmp" "$W/out/ckpt-$ts.h5"
      echo "$(hash_ "$W/out/ckpt-$ts.h5") $W/out/ckpt-$ts.h5" >> "$W/damaged"
      what="; ckpt-$ts.h5.tmp renamed to ckpt-$ts.h5"
    fi
  elif [[ $inject == truncate ]] && ((after > 0)); then
    f=$W/out/ckpt-$after.h5
    truncate -s $(($(stat -c %s "$f") * pct / 100)) "$f"
    echo "$(hash_ "$f") $f" >> "$W/damaged"
    what="; ckpt-$after.h5 truncated to $pct %"
  fi
  echo "kill $i: $target at $point of step $s's save (resumed from step $E): newest complete ckpt-$after$what" | tee -a "$W/summary"
done < "$W/plan"

# the last start runs to the end
E=$(newest_complete)
ls "$W"/out/*.h5.tmp 2> /dev/null > "$W/tmp.before"
run_train 2 "$W/job.yaml" "${SETS[@]}" > "$W/last.log" 2>&1 || { echo "FAIL: the last start failed"; cat "$W/last.log"; fail=1; }
((E > 0)) && ! grep -q "resumed from $W/out/ckpt-$E.h5: step $E," "$W/last.log" && { echo "FAIL: the last start did not resume from ckpt-$E.h5"; fail=1; }
while read -r tf; do
  [[ -n $tf ]] && ! grep -qF "removed $tf:" "$W/last.log" && { echo "FAIL: $tf not removed by the last start"; fail=1; }
done < "$W/tmp.before"
cmp -s "$W/ref/final/model.safetensors" "$W/out/final/model.safetensors" \
  || { echo "FAIL: the final model differs from the uninterrupted run's"; fail=1; }
ls "$W"/out/*.tmp > /dev/null 2>&1 && { echo "FAIL: .tmp files left: $(ls "$W"/out/*.tmp)"; fail=1; }
# every loss logged by any start equals the uninterrupted run's of that step
$PY - "$W/ref.loss" "$W/out/metrics.jsonl" <<'PYEOF' || fail=1
import json, sys
ref = dict(l.split() for l in open(sys.argv[1]))
got = [(str(o["step"]), repr(o["loss"])) for o in map(json.loads, open(sys.argv[2])) if "loss" in o]
bad = [(s, l, ref.get(s)) for s, l in got if ref.get(s) != l]
for s, l, r in bad[:10]: print(f"FAIL: step {s}: loss {l}, uninterrupted {r}")
print(f"{len(got)} step losses logged by the starts ({len(set(s for s, _ in got))} distinct steps), {len(bad)} differ from the uninterrupted run")
sys.exit(1 if bad or len(set(s for s, _ in got)) != len(ref) else 0)
PYEOF
for t in rank0 rank1 launcher; do [[ -n ${seen_target[$t]:-} ]] || { echo "FAIL: the plan never kills $t"; fail=1; }; done
for k in create tensor closed renamed committed; do [[ -n ${seen_kind[$k]:-} ]] || echo "note: the plan never stops at $k"; done
echo "$i kills in $((SECONDS - t_start)) s (uninterrupted run $t_ref s), seed $SEED, $NT datasets per save"
((fail)) && exit 1
echo "ok: after every kill the newest complete checkpoint resumed, damaged files were skipped with a warning, leftovers removed; the end is the uninterrupted run's, bit for bit"
