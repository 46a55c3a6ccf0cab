# Sourced by tests/e2e/slurm_*.sh: a private one-machine Slurm cluster for this test
# (slurm/local-cluster.sh with its own directory and free ports, so parallel tests and a
# system Slurm do not collide), stopped by PID on exit; helpers with bounded waits.
# Needs root (the daemons run as root, munged as munge); skipped (77) otherwise.
if [[ $(id -u) -ne 0 ]]; then
  echo "SKIP: the Slurm test cluster needs root"
  exit 77
fi
for t in munged slurmctld slurmd sbatch; do
  command -v "$t" >/dev/null || {
    echo "FAIL: '$t' is not installed: run scripts/install-deps.sh --test" >&2
    exit 1
  }
done
: "${SRC_DIR:?}" "${BUILD_DIR:?}" "${TEST_TMP:?}"
# The cluster directory lives under /tmp: munge needs every directory above its socket to be
# searchable by the munge user, which a checkout under /root is not.
slurm_cluster_dir=$(mktemp -d /tmp/spectrain-slurm.XXXXXX)
chmod 755 "$slurm_cluster_dir"
slurm_test_failed=1

slurm_cleanup_() {
  if ((slurm_test_failed)); then
    for f in "$slurm_cluster_dir"/log/*; do
      [[ -f $f ]] && { echo "---- $f (last 20 lines)"; tail -n 20 "$f"; }
    done
  fi
  "$SRC_DIR"/slurm/local-cluster.sh stop --dir "$slurm_cluster_dir" || true
  rm -rf "$slurm_cluster_dir"
}
trap slurm_cleanup_ EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

timeout 90 "$SRC_DIR"/slurm/local-cluster.sh start --dir "$slurm_cluster_dir" --ports auto ||
  fail "the local Slurm cluster did not start"
export SLURM_CONF=$slurm_cluster_dir/etc/slurm.conf

# One field (e.g. JobState, Restarts, ExitCode) of `scontrol show job`.
job_field() {
  scontrol -o show job "$1" 2>/dev/null | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k {print $2}'
}

# Wait up to SECONDS until job N's state is one of STATES (|-separated regex); echo it.
wait_job_state() {
  local id=$1 states=$2 seconds=$3 deadline=$((SECONDS + $3)) st
  while :; do
    st=$(job_field "$id" JobState)
    [[ "$st" =~ ^($states)$ ]] && { echo "$st"; return 0; }
    ((SECONDS >= deadline)) && fail "job $id: state '$st' after ${seconds}s, expected $states"
    sleep 0.5
  done
}

# Wait up to SECONDS until FILE contains PATTERN (grep -E).
wait_file_grep() {
  local file=$1 pattern=$2 seconds=$3 deadline=$((SECONDS + $3))
  until grep -Eq "$pattern" "$file" 2>/dev/null; do
    ((SECONDS >= deadline)) && {
      [[ -f $file ]] && { echo "---- $file"; cat "$file"; }
      fail "no '$pattern' in $file after ${seconds}s"
    }
    sleep 0.5
  done
}
