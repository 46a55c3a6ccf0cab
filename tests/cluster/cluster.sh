#!/usr/bin/env bash
# A simulated cluster on one Linux machine (root; iproute2, util-linux): N hosts as network
# namespaces with their own hostnames (UTS namespaces), joined by veth pairs on a bridge that
# lives in a namespace of its own, on the private test subnet 10.231.0.0/24. The disk is
# shared, as a cluster's shared file system. A login host runs mpirun; Open MPI's rsh
# launcher reaches the others through tests/cluster/rsh-agent.sh, as it would over ssh.
# Recipe and measurements: docs/slurm.md#several-hosts-on-one-machine-the-simulated-cluster.
#
#   cluster.sh [--name NAME] up N [--slurm]   hosts stc-NAME-n1..nN (10.231.0.1..N) + stc-NAME-login (.250);
#                                          --slurm: and a Slurm cluster on them (as `slurm start`)
#   cluster.sh [--name NAME] down          kill every process in them, remove all of it
#   cluster.sh [--name NAME] exec HOST CMD...   run CMD on HOST (n1, stc-NAME-n1, login)
#   cluster.sh [--name NAME] mpirun ARGS...     mpirun on the login host across the nodes
#   cluster.sh [--name NAME] bytes HOST    "rx_bytes tx_bytes" of HOST's link (eth0)
#   cluster.sh [--name NAME] kill HOST     SIGKILL every process of HOST (a node dies)
#   cluster.sh [--name NAME] link HOST up|down   cut or restore HOST's link
#   cluster.sh [--name NAME] hosts         the node host names, one a line
#   cluster.sh [--name NAME] slurm start|stop|status   munged + slurmctld on the login host, one
#                                          slurmd per node (state in /run/stc-NAME/slurm)
#   cluster.sh [--name NAME] slurm CMD...  a Slurm command (sbatch, squeue, scontrol, ...) on the
#                                          login host, pointed at this cluster's slurm.conf
#   cluster.sh rsh [SSH-OPTIONS] HOST CMD...   what rsh-agent.sh calls (ssh's interface)
# NAME defaults to $STC_NAME or "dev"; every name made starts with stc-NAME (namespaces
# stc-NAME-*, state in /run/stc-NAME), so clusters of different names never meet.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SUBNET=10.231.0
NAME=${STC_NAME:-dev}
usage() { sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "cluster.sh: $*" >&2; exit 2; }

if [[ ${1:-} == --name ]]; then NAME=${2:?--name needs a value}; shift 2; fi
[[ $NAME =~ ^[a-z0-9]{1,12}$ ]] || die "--name $NAME: expected 1-12 lowercase letters or digits"
P=stc-$NAME
STATE=/run/$P

host_of() { # n1 | stc-NAME-n1 | login -> stc-NAME-n1
  local h=$1
  [[ $h == "$P"-* ]] || h=$P-$h
  [[ -e /run/netns/$h && -e $STATE/uts-$h ]] || die "no host $1 in cluster $P (is it up?)"
  echo "$h"
}

# the node's namespaces: network, hostname, and a private mount namespace with the cluster's
# hosts file over /etc/hosts (nothing of the machine's own is changed)
in_host() {
  local h=$1
  shift
  exec nsenter --net="/run/netns/$h" --uts="$STATE/uts-$h" -- \
    unshare --mount --propagation private -- \
    sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$STATE/hosts" "$@"
}

cmd_down() {
  [[ -d $STATE ]] || [[ -n $(ip netns list | awk -v p="$P-" 'index($1, p) == 1') ]] || return 0
  local ns
  for ns in $(ip netns list | awk -v p="$P-" 'index($1, p) == 1 {print $1}'); do
    local pids
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [[ -n $pids ]] && kill -KILL $pids 2>/dev/null || true
  done
  # the killed processes must be gone before their namespaces go
  local i
  for i in $(seq 50); do
    local left=0
    for ns in $(ip netns list | awk -v p="$P-" 'index($1, p) == 1 {print $1}'); do
      [[ -n $(ip netns pids "$ns" 2>/dev/null) ]] && left=1
    done
    [[ $left == 0 ]] && break
    sleep 0.1
  done
  for ns in $(ip netns list | awk -v p="$P-" 'index($1, p) == 1 {print $1}'); do
    ip netns del "$ns" 2>/dev/null || true
  done
  if [[ -d $STATE ]]; then
    local f
    for f in "$STATE"/uts-*; do
      [[ -e $f ]] || continue
      umount "$f" 2>/dev/null || true
      rm -f "$f"
    done
    rm -rf "$STATE"
  fi
}

cmd_up() {
  local n=${1:-}
  [[ $n =~ ^[1-9][0-9]?$ ]] && ((n <= 32)) || die "up N: N must be 1..32 hosts, got '${1:-}'"
  [[ $(id -u) == 0 ]] || die "up needs root (network and UTS namespaces)"
  for t in ip nsenter unshare; do command -v $t > /dev/null || die "up needs $t (iproute2, util-linux)"; done
  cmd_down
  mkdir -p "$STATE"
  local br=$P-br
  ip netns add "$br"
  ip -n "$br" link add br0 type bridge
  ip -n "$br" link set br0 up
  printf '127.0.0.1 localhost\n' > "$STATE/hosts"
  : > "$STATE/hostfile"
  local k hosts=() addrs=()
  for k in $(seq "$n") login; do
    local h=$P-n$k addr=$SUBNET.$k
    [[ $k == login ]] && { h=$P-login; addr=$SUBNET.250; }
    hosts+=("$h") addrs+=("$addr")
    ip netns add "$h"
    ip -n "$h" link set lo up
    ip link add eth0 netns "$h" type veth peer name "v-${h#"$P"-}" netns "$br"
    ip -n "$br" link set "v-${h#"$P"-}" master br0 up
    ip -n "$h" addr add "$addr/24" dev eth0
    ip -n "$h" link set eth0 up
    touch "$STATE/uts-$h"
    unshare --uts="$STATE/uts-$h" hostname "$h"
    printf '%s %s\n' "$addr" "$h" >> "$STATE/hosts"
    [[ $k == login ]] || printf '%s\n' "$h" >> "$STATE/hostfile"
  done
  echo "$n" > "$STATE/n"
  # wait for the links (DAD, bridge forwarding) so the first connection does not stall
  for k in $(seq "$n"); do
    local ok=0 i
    for i in $(seq 50); do
      # a refused connection to an unused port proves the route both ways (no ping needed)
      local said
      said=$(ip netns exec "$P-login" timeout 1 bash -c "exec 3<> /dev/tcp/$SUBNET.$k/9" 2>&1 || true)
      if [[ $said == *refused* ]]; then ok=1; break; fi
      sleep 0.1
    done
    [[ $ok == 1 ]] || { cmd_down; echo "cluster.sh: host n$k unreachable after up" >&2; exit 1; }
  done
}

cmd_bytes() {
  local h
  h=$(host_of "$1")
  ip netns exec "$h" sh -c 'echo "$(cat /sys/class/net/eth0/statistics/rx_bytes)" \
    "$(cat /sys/class/net/eth0/statistics/tx_bytes)"'
}

# ssh's interface: [options] HOST COMMAND...; the command is a shell string, run there.
# Like ssh with ServerAliveInterval/ServerAliveCountMax, the session ends (status 255) when
# HOST has not answered from here 3 times in a row (a probe every 0.5 s, 1 s each: about
# 4.5 s after its link is cut): that is how mpirun learns that a host is lost, as it would
# through ssh on a real cluster (the command on HOST lives on).
cmd_rsh() {
  while [[ ${1:-} == -* ]]; do
    case $1 in -[lpioFJ]) shift 2 ;; *) shift ;; esac
  done
  local h
  h=$(host_of "${1:?rsh: no host}")
  shift
  local addr
  addr=$(awk -v h="$h" '$2 == h {print $1}' "$STATE/hosts")
  exec 3<&0
  (in_host "$h" sh -c "$*" <&3) &
  local pid=$! miss=0 tick=0 said
  exec 3<&-
  while kill -0 "$pid" 2> /dev/null; do
    sleep 0.1
    ((++tick % 5)) && continue
    said=$(timeout 1 bash -c "exec 3<> /dev/tcp/$addr/9" 2>&1 || true)
    if [[ $said == *refused* ]]; then miss=0; else miss=$((miss + 1)); fi
    if ((miss >= 3)); then
      echo "rsh-agent: $h ($addr) has not answered 3 probes: connection lost" >&2
      exit 255
    fi
  done
  wait "$pid"
}

# --- Slurm on the simulated hosts ------------------------------------------------------------
# munged and slurmctld on the login host, `slurmd -N stc-NAME-nK` on each node (NodeAddr =
# its address), all sharing one munge key and socket (a file-system socket: every namespace
# reaches it). Everything lives under $STATE/slurm: slurm.conf, munge key and socket, the
# controller's state, each slurmd's spool, logs, the PIDs started. Its own ClusterName, ports
# and directories, in its own network namespaces: a Slurm of the machine (or another cluster)
# never meets it.
SL=$STATE/slurm
SLURM_CTLD_PORT=6917
SLURM_SLURMD_PORT=6918
# the CPUs every simulated host declares (SlurmdParameters=config_overrides: believed, not
# counted, since every host sees all of the machine's cores)
SLURM_NODE_CPUS=${STC_SLURM_CPUS:-4}

sl_env() { export SLURM_CONF=$SL/etc/slurm.conf; unset SLURM_JOB_ID SLURM_JOBID; }
# run a Slurm client on the login host (returns its status)
sl_client() { (sl_env; in_host "$P-login" "$@"); }
sl_pid() { awk -v n="$1" '$1 == n {print $2}' "$SL/pids" 2> /dev/null; }
sl_alive() { local p; p=$(sl_pid "$1"); [[ -n $p ]] && kill -0 "$p" 2> /dev/null &&
  [[ $(awk '{print $3}' "/proc/$p/stat" 2> /dev/null) != Z ]]; }
sl_launch() { # NAME HOST CMD...: CMD on HOST, in the background, its PID recorded as NAME
  local name=$1 h=$2
  shift 2
  (sl_env; in_host "$h" setsid "$@" < /dev/null >> "$SL/log/$name.out" 2>&1) &
  echo "$name $!" >> "$SL/pids"
}
sl_tails() {
  local f
  for f in "$SL"/log/*; do [[ -f $f ]] && { echo "---- last lines of $f" >&2; tail -n 12 "$f" >&2; }; done
}
sl_wait() { # SECONDS DAEMON WHAT CMD...: until CMD succeeds, DAEMON alive meanwhile
  local secs=$1 end=$((SECONDS + $1)) d=$2 what=$3
  shift 3
  until "$@" > /dev/null 2>&1; do
    if ! sl_alive "$d"; then sl_tails; cmd_slurm_stop > /dev/null 2>&1 || true
      die "slurm: $d exited while waiting for $what (logs above, all in $SL/log)"; fi
    if ((SECONDS >= end)); then sl_tails; cmd_slurm_stop > /dev/null 2>&1 || true
      die "slurm: no $what after ${secs}s (logs above, all in $SL/log)"; fi
    sleep 0.3
  done
}
sl_munge_ok() { munge -n -S "$SL/munge/munge.socket" | unmunge -S "$SL/munge/munge.socket"; }
sl_all_idle() { # every node idle
  local st
  st=$(sl_client sinfo -h -N -o %t) || return 1
  [[ -n $st ]] && [[ -z $(grep -v '^idle$' <<< "$st") ]]
}

cmd_slurm_start() {
  [[ -f $STATE/n ]] || die "slurm start: cluster $P is not up (cluster.sh up N first)"
  local t
  for t in munged munge unmunge slurmctld slurmd sinfo scontrol sbatch srun; do
    command -v $t > /dev/null || die "slurm needs '$t': scripts/install-deps.sh --slurm"
  done
  id munge > /dev/null 2>&1 || die "slurm: no 'munge' user (the munge package is not installed correctly)"
  [[ -f $SL/pids ]] && cmd_slurm_stop > /dev/null
  local n k nodes=()
  n=$(cat "$STATE/n")
  for k in $(seq "$n"); do nodes+=("$P-n$k"); done
  rm -rf "$SL"
  mkdir -p "$SL"/{etc,state,spool,log,run,tmp}
  chmod 755 "$STATE" "$SL"
  chmod 1777 "$SL/tmp"
  # munge refuses a key or socket folder others can write; the key is munge's alone
  install -d -o munge -g munge -m 755 "$SL/munge"
  dd if=/dev/urandom of="$SL/munge/munge.key" bs=1024 count=1 status=none
  chown munge:munge "$SL/munge/munge.key"
  chmod 400 "$SL/munge/munge.key"
  for k in "${nodes[@]}"; do mkdir -p "$SL/spool/$k" "$SL/tmp/$k"; done
  chmod 1777 "$SL"/tmp/*
  # slurm/slurm.conf.in (the one-machine cluster's settings, explained there), with this
  # cluster's controller, nodes and per-node folders (%n: the node's name)
  local list
  list=$(IFS=,; echo "${nodes[*]}")
  sed -e "s|@CLUSTER@|stc${NAME}|g" -e "s|@DIR@|$SL|g" -e "s|@CTLD_PORT@|$SLURM_CTLD_PORT|g" \
    -e "s|@SLURMD_PORT@|$SLURM_SLURMD_PORT|g" -e "s|@FIRST_JOB_ID@|$((1000 + RANDOM * 30))|g" \
    -e "s|^SlurmctldHost=.*|SlurmctldHost=$P-login($SUBNET.250)|" \
    -e "s|^SlurmdSpoolDir=.*|SlurmdSpoolDir=$SL/spool/%n|" \
    -e "s|^SlurmdPidFile=.*|SlurmdPidFile=$SL/run/slurmd-%n.pid|" \
    -e "s|^SlurmdLogFile=.*|SlurmdLogFile=$SL/log/slurmd-%n.log|" \
    -e "s|^TmpFS=.*|TmpFS=$SL/tmp/%n|" \
    -e '/^NodeName=/d' -e '/^PartitionName=/d' "$HERE/../../slurm/slurm.conf.in" > "$SL/etc/slurm.conf"
  {
    echo "# the simulated hosts (cluster.sh): each declares $SLURM_NODE_CPUS CPUs, believed as"
    echo "# configured (every host sees all of the machine's cores)"
    echo "SlurmdParameters=config_overrides"
    echo "# look at pending jobs every 2 s (defaults: 60 s, backfill 30 s): a requeued job starts"
    echo "# about when its hold (cred_expire) ends, not up to half a minute later"
    echo "SchedulerParameters=sched_interval=2,bf_interval=2"
    for k in $(seq "$n"); do
      echo "NodeName=$P-n$k NodeAddr=$SUBNET.$k CPUs=$SLURM_NODE_CPUS State=UNKNOWN"
    done
    echo "PartitionName=stc Nodes=$list Default=YES MaxTime=INFINITE State=UP"
  } >> "$SL/etc/slurm.conf"
  if grep -v '^#' "$SL/etc/slurm.conf" | grep -q '@[A-Z_]*@'; then
    die "slurm: unfilled placeholder in $SL/etc/slurm.conf"
  fi
  : > "$SL/pids"
  sl_launch munged "$P-login" setpriv --reuid=munge --regid=munge --init-groups \
    munged -F --socket="$SL/munge/munge.socket" --key-file="$SL/munge/munge.key" \
    --pid-file="$SL/munge/munged.pid" --log-file="$SL/log/munged.log" --seed-file="$SL/munge/munged.seed"
  sl_wait 15 munged "munge credential round trip" sl_munge_ok
  sl_launch slurmctld "$P-login" slurmctld -D -f "$SL/etc/slurm.conf"
  sl_wait 30 slurmctld "answer from slurmctld (scontrol ping)" sl_client scontrol ping
  for k in "${nodes[@]}"; do sl_launch "slurmd-$k" "$k" slurmd -D -f "$SL/etc/slurm.conf" -N "$k"; done
  sl_wait 60 slurmctld "idle nodes in sinfo" sl_all_idle
  echo "cluster.sh: Slurm cluster stc$NAME up: ${nodes[*]} ($SLURM_NODE_CPUS CPUs each), partition stc;" \
    "slurmctld on $P-login:$SLURM_CTLD_PORT; state, logs in $SL"
}

cmd_slurm_stop() {
  [[ -f $SL/pids ]] || return 0
  local name pid i jobs
  if sl_alive slurmctld; then
    # the jobs first, through Slurm, so their processes end with them
    jobs=$(sl_client squeue -h -o %i 2> /dev/null || true)
    if [[ -n $jobs ]]; then
      # shellcheck disable=SC2086
      sl_client scancel $jobs 2> /dev/null || true
      for ((i = 0; i < 40; i++)); do
        [[ -z $(sl_client squeue -h -t R,CG -o %i 2> /dev/null) ]] && break
        sleep 0.25
      done
    fi
  fi
  for name in $(awk '$1 ~ /^slurmd-/ {print $1}' "$SL/pids") slurmctld munged; do
    pid=$(sl_pid "$name")
    [[ -n $pid ]] || continue
    kill -TERM "$pid" 2> /dev/null || true
    for ((i = 0; i < 40; i++)); do sl_alive "$name" || break; sleep 0.25; done
    sl_alive "$name" && { kill -KILL "$pid" 2> /dev/null || true; echo "cluster.sh: $name ignored SIGTERM for 10 s: killed" >&2; }
  done
  rm -f "$SL/pids"
}

cmd_slurm_status() {
  [[ -f $SL/pids ]] || { echo "Slurm is not running on cluster $P"; return 1; }
  local name rc=0
  for name in $(awk '{print $1}' "$SL/pids"); do
    if sl_alive "$name"; then echo "$name: running (pid $(sl_pid "$name"))"; else echo "$name: not running"; rc=1; fi
  done
  ((rc == 0)) && sl_client sinfo -N
  return $rc
}

cmd_slurm() {
  case ${1:-} in
    start) cmd_slurm_start ;;
    stop) cmd_slurm_stop ;;
    status) cmd_slurm_status ;;
    "") die "slurm start|stop|status, or slurm CMD... (a Slurm command on the login host)" ;;
    *) [[ -f $SL/pids ]] || die "Slurm is not running on cluster $P (slurm start)"
      sl_env; in_host "$(host_of login)" "$@" ;;
  esac
}

cmd=${1:-}
shift || true
case $cmd in
  up) slurm=0
    [[ ${2:-} == --slurm ]] && slurm=1
    [[ $# -le $((1 + slurm)) ]] || die "up N [--slurm]"
    cmd_up "${1:-}"
    if ((slurm)); then cmd_slurm_start; fi ;;
  down) cmd_slurm_stop; cmd_down ;;
  slurm) cmd_slurm "$@" ;;
  exec) h=$(host_of "${1:?exec HOST CMD...}"); shift; in_host "$h" "$@" ;;
  rsh) cmd_rsh "$@" ;;
  mpirun)
    h=$(host_of login)
    export STC_NAME=$NAME # for rsh-agent.sh, in mpirun and in the orteds it starts
    in_host "$h" mpirun --hostfile "$STATE/hostfile" --mca plm_rsh_agent "$HERE/rsh-agent.sh" \
      --mca mpi_yield_when_idle 1 --mca btl tcp,self --mca btl_tcp_if_include $SUBNET.0/24 --mca oob_tcp_if_include $SUBNET.0/24 \
      "$@" ;;
  bytes) cmd_bytes "${1:?bytes HOST}" ;;
  kill) h=$(host_of "${1:?kill HOST}"); pids=$(ip netns pids "$h"); [[ -z $pids ]] || kill -KILL $pids ;;
  link) h=$(host_of "${1:?link HOST up|down}"); [[ ${2:-} == up || ${2:-} == down ]] || die "link HOST up|down"
    ip -n "$h" link set eth0 "$2" ;;
  hosts) [[ -f $STATE/hostfile ]] || die "cluster $P is not up"; cat "$STATE/hostfile" ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
