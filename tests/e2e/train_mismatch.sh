#!/usr/bin/env bash
# Ranks that read different inputs stop together with a clear error on EVERY rank, never a
# hang: (1) rank 1 reads a different job file; (2) rank 1 reads a different trainable set
# (same job, a relative unfrozen_parameters path resolved in a per-rank directory);
# (3) rank 1 cannot read its job file at all. A wrapper picks the input by
# OMPI_COMM_WORLD_RANK.
source "$(dirname "$0")/lib/train_common.sh"
W=$TEST_TMP/train_mismatch
rm -rf "$W"
mkdir -p "$W/r0" "$W/r1"
make_data "$W/data" 96 16
write_job "$W/a.yaml" "$W/out" "$FIXTURES/model/llama" "$W/data"
sed 's/learning_rate: 5.0e-3/learning_rate: 6.0e-3/' "$W/a.yaml" > "$W/b.yaml"
fail=0

# expect_error NAME RC PATTERN...: the run failed with exit 2 and every pattern is in its output
expect_error() {
  local name=$1 rc=$2
  shift 2
  [[ $rc == 2 ]] || { echo "FAIL: $name: exit status $rc, expected 2"; cat "$W/$name.log"; fail=1; }
  for p in "$@"; do
    grep -qF -- "$p" "$W/$name.log" || { echo "FAIL: $name: no '$p' in:"; cat "$W/$name.log"; fail=1; }
  done
}

cat > "$W/by_rank.sh" <<WRAP
#!/usr/bin/env bash
# usage: by_rank.sh JOB_RANK0 JOB_RANK1 [args...]
r=\${OMPI_COMM_WORLD_RANK:-0}
if [[ \$r == 0 ]]; then job=\$1; else job=\$2; fi
shift 2
cd "$W/r\$r" && exec "$SPECTRAIN" train "\$job" "\$@"
WRAP
chmod +x "$W/by_rank.sh"

rc=0
timeout 120 $MPIEXEC -n 2 "$W/by_rank.sh" "$W/a.yaml" "$W/b.yaml" > "$W/job.log" 2>&1 || rc=$?
expect_error job $rc "[rank 0] spectrain: error: ranks disagree on the job" \
  "[rank 1] spectrain: error: ranks disagree on the job" "rank 1 differs from rank 0"

printf 'unfrozen_parameters:\n- model.layers.1.mlp\n- ^lm_head.weight$\n' > "$W/r0/unfrozen.yaml"
printf 'unfrozen_parameters:\n- model.layers.1.mlp.gate_proj\n- model.layers.1.mlp.up_proj\n- ^lm_head.weight$\n' > "$W/r1/unfrozen.yaml"
rc=0
timeout 120 $MPIEXEC -n 2 "$W/by_rank.sh" "$W/a.yaml" "$W/a.yaml" \
  --set spectrum.unfrozen_parameters=unfrozen.yaml > "$W/plan.log" 2>&1 || rc=$?
expect_error plan $rc "[rank 0] spectrain: error: ranks disagree on the shard plan" \
  "[rank 1] spectrain: error: ranks disagree on the shard plan" \
  "tensor 'model.layers.1.mlp.down_proj.weight' is trainable on rank 0 but frozen on rank 1"

rc=0
timeout 120 $MPIEXEC -n 2 "$W/by_rank.sh" "$W/a.yaml" "$W/missing.yaml" > "$W/missing.log" 2>&1 || rc=$?
expect_error missing $rc "[rank 1] spectrain: error:" "missing.yaml" \
  "[rank 0] spectrain: error: another rank could not load its job file"
exit $fail
