#!/usr/bin/env bash
# A simulated cluster on one Linux machine (root; iproute2, util-linux): N hosts as network
# namespaces with their own hostnames (UTS namespaces), joined by veth pairs on a bridge that
# lives in a namespace of its own, on the private test subnet 10.231.0.0/24. The disk is
# shared, as a cluster's shared file system. A login host runs mpirun; Open MPI's rsh
# launcher reaches the others through tests/cluster/rsh-agent.sh, as it would over ssh.
# Recipe and measurements: docs/slurm.md#a-simulated-cluster-on-one-machine.
#
#   cluster.sh [--name NAME] up N          hosts stc-NAME-n1..nN (10.231.0.1..N) + stc-NAME-login (.250)
#   cluster.sh [--name NAME] down          kill every process in them, remove all of it
#   cluster.sh [--name NAME] exec HOST CMD...   run CMD on HOST (n1, stc-NAME-n1, login)
#   cluster.sh [--name NAME] mpirun ARGS...     mpirun on the login host across the nodes
#   cluster.sh [--name NAME] bytes HOST    "rx_bytes tx_bytes" of HOST's link (eth0)
#   cluster.sh [--name NAME] kill HOST     SIGKILL every process of HOST (a node dies)
#   cluster.sh [--name NAME] link HOST up|down   cut or restore HOST's link
#   cluster.sh [--name NAME] hosts         the node host names, one a line
#   cluster.sh rsh [SSH-OPTIONS] HOST CMD...   what rsh-agent.sh calls (ssh's interface)
# NAME defaults to $STC_NAME or "dev"; every name made starts with stc-NAME (namespaces
# stc-NAME-*, state in /run/stc-NAME), so clusters of different names never meet.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SUBNET=10.231.0
NAME=${STC_NAME:-dev}
usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
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

# ssh's interface: [options] HOST COMMAND...; the command is a shell string, run there
cmd_rsh() {
  while [[ ${1:-} == -* ]]; do
    case $1 in -[lpioFJ]) shift 2 ;; *) shift ;; esac
  done
  local h
  h=$(host_of "${1:?rsh: no host}")
  shift
  in_host "$h" sh -c "$*"
}

cmd=${1:-}
shift || true
case $cmd in
  up) cmd_up "$@" ;;
  down) cmd_down ;;
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
