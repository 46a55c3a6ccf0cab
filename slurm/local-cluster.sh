#!/usr/bin/env bash
# A one-machine Slurm cluster (munged, slurmctld, slurmd) for trying the sbatch scripts and
# for the test suite. Runs as root on Debian 12 with nothing started before (no systemd).
#
#   slurm/local-cluster.sh start  [--dir DIR] [--ports auto|CTLD,SLURMD]
#   slurm/local-cluster.sh status [--dir DIR]
#   slurm/local-cluster.sh stop   [--dir DIR]
#   slurm/local-cluster.sh env    [--dir DIR]   prints: export SLURM_CONF=DIR/etc/slurm.conf
#
# Everything an instance owns lives under DIR (default /var/lib/spectrain-slurm, or
# $SPECTRAIN_SLURM_DIR): its slurm.conf (etc/), munge key and socket (munge/), controller
# state (state/), slurmd spool (spool/), logs (log/) and the PIDs it started (run/pids).
# The instance uses its own munge socket and its own ports (default 6817,6818; `auto` picks
# free ones), so two instances, or one next to a system Slurm, do not collide. The Slurm
# commands find the instance through SLURM_CONF:  eval "$(slurm/local-cluster.sh env)".
#
# `stop` cancels this instance's jobs, then ends exactly the PIDs that `start` recorded.
# Packages: scripts/install-deps.sh --slurm (slurmctld slurmd slurm-client munge).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

die() { echo "local-cluster: error: $*" >&2; exit 1; }
say() { echo "local-cluster: $*"; }

cmd=${1:-}
[[ -n "$cmd" ]] && shift
dir=${SPECTRAIN_SLURM_DIR:-/var/lib/spectrain-slurm}
ports=6817,6818
while (($#)); do
  case "$1" in
    --dir) dir=${2:?--dir needs a directory}; shift 2 ;;
    --ports) ports=${2:?--ports needs auto or CTLD,SLURMD}; shift 2 ;;
    *) die "unknown option '$1' (expected --dir DIR or --ports auto|CTLD,SLURMD)" ;;
  esac
done
case "$cmd" in start | stop | status | env) ;;
  *) echo "usage: $0 start|stop|status|env [--dir DIR] [--ports auto|CTLD,SLURMD]" >&2; exit 2 ;;
esac
mkdir -p "$dir" && dir=$(cd "$dir" && pwd)
conf=$dir/etc/slurm.conf
pidfile=$dir/run/pids
export SLURM_CONF=$conf

# --- helpers -------------------------------------------------------------------------------
# PID of the recorded daemon NAME if that process is still alive and still runs NAME (its
# command line names it; just after launch it is still setsid/setpriv on the way to exec).
live_pid() {
  local name=$1 pid
  [[ -f "$pidfile" ]] || return 1
  pid=$(awk -v n="$name" '$1 == n {print $2}' "$pidfile")
  [[ -n "$pid" && -r /proc/$pid/cmdline ]] || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qx "\(.*/\)\?$name" || return 1
  echo "$pid"
}

# 0 while the recorded process NAME exists (any command name: just after launch it may still
# be setsid or setpriv, before they exec the daemon).
started_alive() {
  local pid
  pid=$(awk -v n="$1" '$1 == n {print $2}' "$pidfile" 2>/dev/null)
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
    [[ "$(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null)" != Z ]]
}

log_tails() {
  local f
  for f in "$dir"/log/*; do
    [[ -f "$f" ]] || continue
    echo "---- last lines of $f" >&2
    tail -n 15 "$f" >&2
  done
}

# Wait up to SECONDS for COMMAND to succeed; the daemon NAME must stay alive meanwhile.
wait_for() {
  local seconds=$1 name=$2 what=$3
  shift 3
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ! started_alive "$name"; then
      log_tails
      stop_all >/dev/null 2>&1 || true
      die "$name exited while waiting for $what (logs above, all in $dir/log)"
    fi
    if ((SECONDS >= deadline)); then
      log_tails
      stop_all >/dev/null 2>&1 || true
      die "no $what after ${seconds}s (logs above, all in $dir/log)"
    fi
    sleep 0.5
  done
}

# Ports in use on this machine (any TCP state), from /proc: no iproute2 needed.
used_ports() {
  awk 'NR > 1 {split($2, a, ":"); print strtonum("0x" a[2])}' /proc/net/tcp /proc/net/tcp6 \
    2>/dev/null | sort -un
}

pick_ports() {
  local used c s i
  used=" $(used_ports | tr '\n' ' ') "
  for ((i = 0; i < 200; i++)); do
    c=$((20000 + RANDOM % 20000))
    s=$((c + 1))
    [[ "$used" == *" $c "* || "$used" == *" $s "* ]] && continue
    echo "$c,$s"
    return 0
  done
  die "found no two free adjacent TCP ports in 20000-40000"
}

idle() { [[ "$(sinfo -h -o %T 2>/dev/null)" == idle* ]]; }
munge_ok() { munge -n -S "$dir/munge/munge.socket" | unmunge -S "$dir/munge/munge.socket"; }

# Start NAME in the foreground of its own session; record its PID (setsid execs in place).
launch() {
  local name=$1
  shift
  setsid "$@" </dev/null >>"$dir/log/$name.out" 2>&1 &
  echo "$name $!" >>"$pidfile"
}

stop_all() {
  local name pid i
  [[ -f "$pidfile" ]] || { say "nothing recorded in $pidfile: not running"; return 0; }
  if live_pid slurmctld >/dev/null; then
    # Jobs first, through Slurm, so their processes end with them.
    local jobs
    jobs=$(squeue -h -o %i 2>/dev/null || true)
    if [[ -n "$jobs" ]]; then
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      for ((i = 0; i < 20; i++)); do
        [[ -z "$(squeue -h -t R,CG -o %i 2>/dev/null)" ]] && break
        sleep 0.5
      done
    fi
  fi
  for name in slurmd slurmctld munged; do
    pid=$(live_pid "$name") || continue
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do
      live_pid "$name" >/dev/null || break
      sleep 0.25
    done
    if live_pid "$name" >/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      say "$name (pid $pid) ignored SIGTERM for 10 s: killed"
    fi
    say "stopped $name (pid $pid)"
  done
  rm -f "$pidfile"
}

# --- commands ------------------------------------------------------------------------------
start() {
  [[ $(id -u) -eq 0 ]] || die "must run as root (munged runs as the munge user, the Slurm daemons as root)"
  local t
  for t in munged munge unmunge slurmctld slurmd sinfo scontrol sbatch srun; do
    command -v "$t" >/dev/null ||
      die "'$t' is not installed: run scripts/install-deps.sh --slurm (or --test)"
  done
  id munge >/dev/null 2>&1 || die "no 'munge' user: the munge package is not installed correctly"
  if live_pid slurmctld >/dev/null && live_pid slurmd >/dev/null && live_pid munged >/dev/null; then
    say "already running in $dir"
    wait_for 30 slurmd "node idle in sinfo" idle
    return 0
  fi
  if [[ -f "$pidfile" ]]; then stop_all; fi

  local node cpus ctld_port slurmd_port
  node=$(hostname -s)
  # nproc honours OMP_NUM_THREADS (set to 1 by the test suite): ask for the CPUs themselves.
  cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
  # The daemons are given 127.0.0.1 explicitly, but Slurm still looks its own name up.
  if ! getent hosts "$node" >/dev/null; then
    if echo "127.0.0.1 $node" >>/etc/hosts 2>/dev/null; then
      say "added '127.0.0.1 $node' to /etc/hosts (the node name must resolve)"
    else
      say "warning: '$node' does not resolve and /etc/hosts is not writable"
    fi
  fi
  [[ "$ports" == auto ]] && ports=$(pick_ports)
  [[ "$ports" =~ ^([0-9]+),([0-9]+)$ ]] || die "--ports: expected auto or CTLD,SLURMD, found '$ports'"
  ctld_port=${BASH_REMATCH[1]}
  slurmd_port=${BASH_REMATCH[2]}

  mkdir -p "$dir"/{etc,state,spool,log,run,tmp}
  chmod 1777 "$dir/tmp"
  chmod 755 "$dir"
  # munge refuses a key or socket directory that others can write, and clients must reach
  # the socket (execute permission for all); the key itself is readable by munge only.
  install -d -o munge -g munge -m 755 "$dir/munge"
  if [[ ! -s "$dir/munge/munge.key" ]]; then
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  fi
  chown munge:munge "$dir/munge/munge.key"
  chmod 400 "$dir/munge/munge.key"
  rm -f "$dir/munge/munge.socket" "$dir/munge/munge.socket.lock" "$pidfile"

  sed -e "s|@CLUSTER@|spectrain|g" -e "s|@NODE@|$node|g" -e "s|@CPUS@|$cpus|g" \
      -e "s|@DIR@|$dir|g" -e "s|@CTLD_PORT@|$ctld_port|g" -e "s|@SLURMD_PORT@|$slurmd_port|g" \
      -e "s|@PARTITION@|local|g" -e "s|@FIRST_JOB_ID@|$((1000 + RANDOM * 30))|g" \
      "$here/slurm.conf.in" >"$conf"
  if grep -v '^#' "$conf" | grep -q '@[A-Z_]*@'; then
    die "unfilled placeholder in $conf: $(grep -v '^#' "$conf" | grep -o '@[A-Z_]*@' | head -1)"
  fi

  launch munged setpriv --reuid=munge --regid=munge --init-groups \
    munged -F --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" \
    --seed-file="$dir/munge/munged.seed"
  wait_for 15 munged "munge credential round trip" munge_ok
  launch slurmctld slurmctld -D -f "$conf"
  wait_for 30 slurmctld "answer from slurmctld (scontrol ping)" scontrol ping
  launch slurmd slurmd -D -f "$conf" -N "$node"
  wait_for 30 slurmd "node idle in sinfo" idle
  say "running in $dir: node $node, $cpus CPUs, partition 'local', ports $ctld_port,$slurmd_port"
  say "pids: $(tr '\n' ' ' <"$pidfile")"
  say "use it with: export SLURM_CONF=$conf"
}

status() {
  local name pid rc=0
  for name in munged slurmctld slurmd; do
    if pid=$(live_pid "$name"); then
      say "$name running (pid $pid)"
    else
      say "$name not running"
      rc=1
    fi
  done
  if ((rc == 0)); then sinfo; fi
  return $rc
}

case "$cmd" in
  start) start ;;
  stop) stop_all ;;
  status) status ;;
  env) echo "export SLURM_CONF=$conf" ;;
esac
