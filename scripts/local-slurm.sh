#!/usr/bin/env bash
# local-slurm.sh - a real one-node Slurm on 127.0.0.1 for vaelab's tests (`just test` starts and
# stops it). Debian's slurmctld/slurmd/slurm-client and munge, started as root without systemd or
# cgroups; any local user may then submit. Adapted from the recipe in ../shared/slurm/.
#
#   local-slurm.sh start   install the packages if missing, write a config to $SLURM_LOCAL_DIR,
#                          start a private munged, slurmctld and slurmd, wait until the node is
#                          idle, print `export SLURM_CONF=...` on stdout. If already up, only prints.
#   local-slurm.sh stop    cancel this cluster's jobs, then stop exactly the daemons `start`
#                          recorded (pid + process start time); TERM, KILL after 15 s.
#   local-slurm.sh env     print the export line again.
#
#   SLURM_LOCAL_DIR        config, state, logs, pids (default /tmp/vaelab-slurm)
#   SLURM_LOCAL_PORT       slurmctld's port, slurmd's is the next (default 6917)
#   SLURM_LOCAL_MAX_ARRAY  MaxArraySize (default Slurm's 1001; the tests use 5 so that a plan of
#                          more runs is split into several arrays)
#
#   usage:  eval "$(sudo -E scripts/local-slurm.sh start)"; vaelab sweep ... --backend slurm
set -euo pipefail
D=${SLURM_LOCAL_DIR:-/tmp/vaelab-slurm}
P=${SLURM_LOCAL_PORT:-6917}
MAX_ARRAY=${SLURM_LOCAL_MAX_ARRAY:-1001}
export SLURM_CONF=$D/slurm.conf            # every Slurm command and daemon below reads this
DAEMONS="slurmd slurmctld munged"   # stop order

log() { echo "local-slurm: $*" >&2; }
env_line() { echo "export SLURM_CONF=$SLURM_CONF"; }

# Start time of a process (field 22 of /proc/PID/stat); pid + start time never name a reused pid.
starttime() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }
alive() {   # alive NAME: is the process recorded for NAME still the one we started?
  local pid st
  read -r pid st 2>/dev/null <"$D/pids/$1" || return 1
  [ -n "$st" ] && [ "$(starttime "$pid")" = "$st" ]
}
run() {     # run NAME CMD...: start CMD detached, in the foreground mode of the daemon, record its pid
  local name=$1; shift
  setsid "$@" </dev/null >>"$D/log/$name.out" 2>&1 &   # no job control: setsid execs in place, $! is the daemon
  echo "$! $(starttime $!)" >"$D/pids/$name"
}
wait_for() { # wait_for WHAT CMD...: poll CMD for up to 60 s, give up at once if one of our daemons died;
             # on failure show the logs and stop everything started so far
  local what=$1 end=$((SECONDS + 60)) f; shift
  until "$@" >/dev/null 2>&1; do
    for f in "$D"/pids/*; do alive "${f##*/}" || { log "${f##*/} exited"; end=0; }; done
    if [ "$SECONDS" -ge "$end" ]; then
      log "$what did not come up; last log lines:"; tail -n 15 "$D"/log/*.log "$D"/log/*.out >&2 || true
      stop; exit 1
    fi
    sleep 0.2
  done
}
node_idle() { [ "$(timeout 3 sinfo -h -N -o %T 2>/dev/null)" = idle ]; }

install_packages() {
  local need="slurmctld slurmd sbatch munged" pkgs="slurmctld slurmd slurm-client munge"
  local c; for c in $need; do command -v "$c" >/dev/null || { log "installing $pkgs"
    # shellcheck disable=SC2086  # $pkgs is a list
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
    return; }; done
}

write_config() {
  # The node is this machine as slurmd sees it (CPUs and RealMemory from `slurmd -C`).
  local hw cpus mem bind=""
  hw=$(slurmd -C 2>/dev/null | head -1)
  cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$hw"); mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
  cpus=${cpus:-$(nproc)}; mem=${mem:-$(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo)}
  # NoInAddrAny makes the daemons bind to the address `hostname` resolves to: use it only when that
  # is loopback, otherwise they would bind elsewhere and be unreachable on 127.0.0.1.
  if getent ahostsv4 "$(hostname)" | awk '{print $1; exit}' | grep -q '^127\.'; then
    bind="CommunicationParameters=NoCtldInAddrAny,NoInAddrAny"
  else log "note: $(hostname) does not resolve to 127.x, so the daemons listen on all interfaces (munge-authenticated)"; fi
  cat >"$SLURM_CONF" <<EOF
# written by local-slurm.sh
ClusterName=local
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$P
SlurmdPort=$((P+1))
$bind
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job waits this + 1 s before it may start again (Slurm's guard against
# the last attempt's late messages; default 120 s), so the requeue tests wait 11 s, not 2 min
AuthInfo=socket=$D/munge/socket,cred_expire=10
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
# no cgroups: processes tracked through /proc
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
# one line per finished job (JobState=COMPLETED|FAILED|CANCELLED|..., ExitCode=...)
JobCompType=jobcomp/filetxt
JobCompLoc=$D/log/jobcomp.txt
# no accounting: sacct is off, as on many small clusters; vaelab reads squeue and its own files
AccountingStorageType=accounting_storage/none
MaxArraySize=$MAX_ARRAY
# every CPU schedulable, memory not a consumable (a job without --mem does not take the node)
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# schedule new submissions at once (default waits up to 3 s)
SchedulerParameters=batch_sched_delay=0
# finished jobs stay visible to scontrol/squeue --states=all for an hour (default 300 s)
MinJobAge=3600
ReturnToService=2
MailProg=/bin/true
MpiDefault=none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  [ "$(id -u)" = 0 ] || { log "needs root (e.g. sudo -E $0 start)"; exit 1; }
  if alive munged && alive slurmctld && alive slurmd; then log "already running"; env_line; return; fi
  stop                              # whatever a previous, half-finished start left (only our pids)
  local t0=$SECONDS
  install_packages
  mkdir -p "$D"/{state,spool,log,run,pids,munge}
  chmod 755 "$D" "$D/munge"         # munge's socket must be reachable by job owners
  # Private munge key and daemon: independent of /etc/munge and of any system munged.
  [ -s "$D/munge/munge.key" ] || (umask 077; head -c 1024 /dev/urandom >"$D/munge/munge.key")
  write_config
  local t1=$SECONDS
  run munged munged -F --key-file="$D/munge/munge.key" --socket="$D/munge/socket" \
      --pid-file="$D/run/munged.pid" --log-file="$D/log/munged.log" --seed-file="$D/munge/seed"
  wait_for munged munge -S "$D/munge/socket" -n
  run slurmctld slurmctld -D
  run slurmd slurmd -D -N localhost
  wait_for "the node" node_idle
  log "up in $((SECONDS - t1)) s (install + config $((t1 - t0)) s); logs in $D/log"
  env_line
}

stop() {
  local name pid st
  if alive slurmctld; then          # cancel this cluster's jobs so no job processes outlive it
    timeout 10 scancel --partition=debug 2>/dev/null || true
    for _ in $(seq 200); do
      [ -z "$(timeout 5 squeue -h -t PD,R,CG,CF,S -o %i 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  for name in $DAEMONS; do
    alive "$name" || { rm -f "$D/pids/$name"; continue; }
    read -r pid st <"$D/pids/$name"
    kill "$pid"
    for _ in $(seq 75); do alive "$name" || break; sleep 0.2; done
    alive "$name" && { log "$name ($pid) ignored TERM, sending KILL"; kill -9 "$pid"; }
    rm -f "$D/pids/$name"
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) env_line ;;
  *) echo "usage: $0 start|stop|env   (see the header of this file)" >&2; exit 2 ;;
esac
