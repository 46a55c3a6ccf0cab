#!/usr/bin/env bash
# A real (one-machine) Slurm: sbatch a 2-task job that runs spectrain under
# `srun --mpi=pmix`, and checks rank placement both under srun (local rank from
# SLURM_LOCALID) and under mpirun inside the allocation (where every rank inherits the batch
# shell's SLURM_LOCALID=0, so Open MPI's local rank must be used instead).
set -euo pipefail
source "$(dirname "$0")/lib/slurm.sh"
work=$TEST_TMP/slurm_jobs
rm -rf "$work" && mkdir -p "$work"
placement=$BUILD_DIR/tests/mpi_placement
[[ -x $placement ]] || fail "$placement not built"

cat >"$work/job.sbatch" <<JOB
#!/bin/bash
#SBATCH --ntasks=2 --time=2 --output=$work/job-%j.out
set -e
echo "batch: SLURM_NTASKS=\$SLURM_NTASKS SLURM_LOCALID=\$SLURM_LOCALID"
srun --mpi=pmix "$SPECTRAIN" version
SPECTRAIN_EXPECT_LOCAL_SOURCE=SLURM_LOCALID srun --mpi=pmix "$placement"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \\
  SPECTRAIN_EXPECT_LOCAL_SOURCE=OMPI_COMM_WORLD_LOCAL_RANK mpirun -n 2 "$placement"
echo "batch: done"
JOB
id=$(sbatch --parsable "$work/job.sbatch")
# (sbatch --wait polls only every ~10 s: poll the state ourselves)
state=$(wait_job_state "$id" "COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY" 90)
out=$work/job-$id.out
cat "$out"
[[ $state == COMPLETED ]] || fail "job $id: $state"
[[ $(job_field "$id" ExitCode) == 0:0 ]] || fail "job $id exit code $(job_field "$id" ExitCode)"
want_version=$("$SPECTRAIN" --version)
[[ $(grep -c "^$want_version\$" "$out") -eq 2 ]] || fail "expected '$want_version' from 2 tasks"
for r in 0 1; do
  grep -q "^placement: rank $r of 2, local rank $r from SLURM_LOCALID" "$out" ||
    fail "srun: rank $r did not take local rank $r from SLURM_LOCALID"
  grep -q "^placement: rank $r of 2, local rank $r from OMPI_COMM_WORLD_LOCAL_RANK (SLURM_PROCID=0 SLURM_LOCALID=0)" "$out" ||
    fail "mpirun in the allocation: rank $r did not take local rank $r from Open MPI"
done
[[ $(grep -c '^ok: ' "$out") -eq 4 ]] || fail "expected 4 passing placement checks"
grep -q "^batch: done" "$out" || fail "the batch script did not finish"
# The templates' #SBATCH lines are valid for this Slurm (--test-only: checked, not queued);
# p4d's GPU request is dropped: this node has none.
sbatch --test-only "$SRC_DIR/slurm/train.sbatch" job.yaml 2>&1 | grep -q "to start at" ||
  fail "sbatch --test-only rejects slurm/train.sbatch"
sbatch --test-only --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --gpus-per-node=0 \
  "$SRC_DIR/slurm/p4d.sbatch" job.yaml 2>&1 | grep -q "to start at" ||
  fail "sbatch --test-only rejects slurm/p4d.sbatch"
slurm_test_failed=0
echo "PASS"
