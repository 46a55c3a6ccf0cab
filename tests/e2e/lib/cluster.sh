# Sourced by tests/e2e/cluster_*.sh: a simulated cluster of network namespaces for this test
# (tests/cluster/cluster.sh), removed on exit. Its name comes from the test's name and build
# folder, so two build trees or two tests never share one. Skipped (77) only where this
# machine refuses the namespaces (not root, no network/UTS namespaces); any later failure
# is a test failure.
: "${SRC_DIR:?}" "${TEST_TMP:?}"
CLUSTER=$SRC_DIR/tests/cluster/cluster.sh
# NAME: 2 letters of the test + 6 hex digits of the build's test folder
cluster_name=${CLUSTER_TAG:?set CLUSTER_TAG (2 letters) before sourcing}$(printf '%s' "$TEST_TMP" | md5sum | cut -c1-6)

cluster_skip_() { echo "SKIP: $*"; exit 77; }
if [[ $(id -u) -ne 0 ]]; then cluster_skip_ "the simulated cluster needs root (network namespaces)"; fi
for t in ip nsenter unshare; do
  command -v $t > /dev/null || { echo "FAIL: '$t' missing: scripts/install-deps.sh --test installs iproute2 and util-linux" >&2; exit 1; }
done
probe_ns=stc-$cluster_name-probe
if ! why=$(ip netns add "$probe_ns" 2>&1); then
  cluster_skip_ "this kernel refuses network namespaces (ip netns add: $why)"
fi
ip netns del "$probe_ns"
if ! why=$(unshare --uts true 2>&1); then
  cluster_skip_ "this kernel refuses UTS namespaces (unshare --uts: $why)"
fi

cluster() { "$CLUSTER" --name "$cluster_name" "$@"; }
cluster_cleanup_() {
  cluster down || true
  if [[ -n $(ip netns list | grep "^stc-$cluster_name-") ]]; then
    echo "FAIL: namespaces left behind: $(ip netns list | grep "^stc-$cluster_name-")" >&2
  fi
}
trap cluster_cleanup_ EXIT

# cluster_up N: N hosts (n1..nN) and the login host
cluster_up() { timeout 60 "$CLUSTER" --name "$cluster_name" up "$1"; }
# host name of node K
cluster_host() { echo "stc-$cluster_name-n$1"; }
# cluster_bytes K: "rx tx" bytes of node K's link
cluster_bytes() { cluster bytes "n$1"; }
# cluster_mpirun ARGS...: mpirun on the login host across the nodes (test defaults added)
cluster_mpirun() {
  "$CLUSTER" --name "$cluster_name" mpirun --oversubscribe --bind-to none "$@"
}
# cluster_procs K NAME: PIDs of the processes called NAME on node K
cluster_procs() {
  local p
  for p in $(ip netns pids "stc-$cluster_name-n$1" 2> /dev/null); do
    [[ $(cat /proc/$p/comm 2> /dev/null) == "$2" ]] && echo "$p"
  done
  return 0
}
# wait_until SECONDS CMD...: poll CMD every 0.1 s; 1 when it has not succeeded in time
wait_until() {
  local end=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS >= end)) && return 1
    sleep 0.1
  done
}
# now_ms: a monotonic-enough clock for bounds (milliseconds)
now_ms() { date +%s%3N; }
# cluster_slurm_up N: N hosts with Slurm on them (munged, slurmctld on the login host, a
# slurmd per node); skipped (77) where Slurm is not installed
cluster_slurm_up() {
  local t
  for t in munged munge slurmctld slurmd sbatch srun scontrol; do
    command -v $t > /dev/null ||
      cluster_skip_ "Slurm is not installed ('$t' missing; scripts/install-deps.sh --slurm)"
  done
  timeout 90 "$CLUSTER" --name "$cluster_name" up "$1" --slurm
}
# cluster_slurm CMD...: a Slurm command (sbatch, squeue, scontrol, ...) on the login host
cluster_slurm() { "$CLUSTER" --name "$cluster_name" slurm "$@"; }
