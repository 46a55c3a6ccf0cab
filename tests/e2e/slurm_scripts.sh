#!/usr/bin/env bash
# The Slurm scripts without a cluster: they parse; p4d.sbatch carries exactly train.sbatch's
# launch/forward/requeue block (tested on a real Slurm by slurm_requeue); usage errors.
set -uo pipefail
fail=0
bad() { echo "FAIL: $*"; fail=1; }
s=$SRC_DIR/slurm
for f in "$s"/train.sbatch "$s"/p4d.sbatch "$s"/local-cluster.sh; do
  bash -n "$f" || bad "$f does not parse"
done
block() { sed -n '/^# --- launch, forward USR1, requeue/,$p' "$1" | tail -n +2; }
[[ -n "$(block "$s/train.sbatch")" ]] || bad "no shared block in train.sbatch"
diff <(block "$s/train.sbatch") <(block "$s/p4d.sbatch") || bad "p4d.sbatch's launch block drifted from train.sbatch's"
# the job file is required
out=$(bash "$s/train.sbatch" 2>&1); rc=$?
[[ $rc == 2 && $out == *"usage: sbatch slurm/train.sbatch JOB.yaml"* ]] || bad "train.sbatch without a job: rc $rc: $out"
out=$(bash "$s/p4d.sbatch" 2>&1); rc=$?
[[ $rc == 2 && $out == *"usage: sbatch slurm/p4d.sbatch JOB.yaml"* ]] || bad "p4d.sbatch without a job: rc $rc: $out"
out=$("$s/local-cluster.sh" frobnicate 2>&1); rc=$?
[[ $rc == 2 && $out == *"usage:"* ]] || bad "local-cluster.sh frobnicate: rc $rc: $out"
exit $fail
