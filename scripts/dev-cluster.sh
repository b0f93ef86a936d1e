#!/usr/bin/env bash
# A real SLURM cluster on this one host, for development and tests.
#
#   scripts/dev-cluster.sh start [--wipe]   install (apt) and start munge, MariaDB, slurmdbd,
#                                           slurmctld and one slurmd per emulated node; waits
#                                           until every node is idle. Idempotent.
#   scripts/dev-cluster.sh stop [--wipe]    cancel jobs, stop every daemon (--wipe: drop the
#                                           accounting database and saved state too)
#   scripts/dev-cluster.sh status           what runs, and sinfo
#
# Debian 12's slurm-wlm 22.05 with accounting in slurmdbd (MariaDB), jobacct_gather/linux, and
# cgroup v1 when the host has writable v1 controllers (else proctrack/linuxproc). Several
# emulated nodes (n1..nN) run as separate `slurmd -N nX` on distinct ports, so jobs can be
# placed on "different nodes" with --nodelist. No systemd is needed; works as root.
# Facts and pitfalls behind each step: the developers' SLURM-on-Debian notes (outside the repository,
# ../shared/reference/slurm-on-debian.md); the comments below give the ones each step depends on.
#
# Knobs (environment):
#   SLURM_DEV_NODES=3        number of emulated nodes
#   SLURM_DEV_USERS="alice bob"   Unix users created and given the `dev` account
#   SLURM_DEV_CGROUP=auto    auto | 0 (force proctrack/linuxproc)
#   SLURM_DEV_PROBE=1        end with one `srun -N<nodes> true` (warms the scheduler)
#   SLURM_DEV_JOBACCT=auto   auto | linux | cgroup: jobacct_gather plugin; auto = cgroup with
#                            cgroups (steps get cpuacct cgroups, whose CPU counters the scraper
#                            reads instead of every process's /proc files), else linux
set -Eeuo pipefail
trap 'echo "dev-cluster.sh: command failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

NODES=${SLURM_DEV_NODES:-3}
USERS=${SLURM_DEV_USERS:-alice bob}
CGROUP_MODE=${SLURM_DEV_CGROUP:-auto}
JOBACCT_MODE=${SLURM_DEV_JOBACCT:-auto}
PROBE=${SLURM_DEV_PROBE:-1}
PORT_BASE=${SLURM_DEV_PORT_BASE:-17001}
CLUSTER=dev
ACCOUNT=dev
DB_PASS=turingwatch-dev
LOCK=/run/turingwatch-dev-cluster.lock
LOGDIR=/var/log/slurm
HOST=$(hostname -s)

log() { printf '[dev-cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# A pid is alive when it exists, is not a zombie, and runs the expected program.
# (PID 1 here reaps late, so `kill -0` alone would call a killed daemon alive.)
alive() {
  local pidfile=$1 comm=$2 pid state
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/stat ]] || return 1
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $state != Z ]] || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm"* ]]
}

wait_for() { # wait_for SECONDS DESCRIPTION CMD...
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after ${secs}s waiting for $what"
    sleep 0.2
  done
}

stop_pid() { # stop_pid PIDFILE COMM
  local pidfile=$1 comm=$2 pid
  alive "$pidfile" "$comm" || { rm -f "$pidfile"; return 0; }
  pid=$(<"$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do alive "$pidfile" "$comm" || break; sleep 0.2; done
  alive "$pidfile" "$comm" && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

install_packages() {
  local pkgs=(munge mariadb-server slurmctld slurmd slurmdbd slurm-client)
  local missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]} == 0)) && return 0
  log "installing ${missing[*]}"
  # Package scripts must not try to start services (there is no init system to do it).
  if [[ ! -x /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get -o DPkg::Lock::Timeout=300 update -qq && \
         apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
}

use_cgroups() {
  [[ $CGROUP_MODE == 0 ]] && return 1
  [[ $(stat -fc %T /sys/fs/cgroup 2>/dev/null) != cgroup2fs ]] && [[ -w /sys/fs/cgroup/memory ]] && [[ -d /sys/fs/cgroup/cpuset ]]
}

write_configs() { # prints "changed" when slurm.conf/cgroup.conf changed
  local topo mem_total node_mem proctrack task
  topo=$(slurmd -C 2>/dev/null | head -1)
  local cpus sockets cores threads boards
  cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$topo"); cpus=${cpus:-$(nproc)}
  boards=$(sed -n 's/.*Boards=\([0-9]*\).*/\1/p' <<<"$topo"); boards=${boards:-1}
  sockets=$(sed -n 's/.*SocketsPerBoard=\([0-9]*\).*/\1/p' <<<"$topo"); sockets=${sockets:-1}
  cores=$(sed -n 's/.*CoresPerSocket=\([0-9]*\).*/\1/p' <<<"$topo"); cores=${cores:-$cpus}
  threads=$(sed -n 's/.*ThreadsPerCore=\([0-9]*\).*/\1/p' <<<"$topo"); threads=${threads:-1}
  mem_total=$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)
  # 97 % of RAM split over the nodes, so drift never drains a node with "Low RealMemory".
  node_mem=${SLURM_DEV_NODE_MEM:-$((mem_total * 97 / 100 / NODES))}
  local jobacct=jobacct_gather/linux
  if use_cgroups; then proctrack=proctrack/cgroup; task=task/cgroup,task/affinity
    [[ $JOBACCT_MODE == linux || ! -w /sys/fs/cgroup/cpuacct ]] || jobacct=jobacct_gather/cgroup
  else proctrack=proctrack/linuxproc; task=task/affinity; fi
  local last_port=$((PORT_BASE + NODES - 1)) ports nodes
  if ((NODES == 1)); then nodes=n1; ports=$PORT_BASE; else nodes="n[1-$NODES]"; ports="$PORT_BASE-$last_port"; fi
  mkdir -p /etc/slurm
  local new=/etc/slurm/slurm.conf.new
  cat >"$new" <<EOF
# Written by turingwatch scripts/dev-cluster.sh — a single-host development cluster.
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ReturnToService=2
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd-%n.pid
SlurmdSpoolDir=/var/lib/slurm/slurmd/%n
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd-%n.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=$proctrack
TaskPlugin=$task
PrologFlags=Contain
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=$jobacct
JobAcctGatherFrequency=task=1
SchedulerParameters=batch_sched_delay=0
KillWait=5
InactiveLimit=120
MailProg=/bin/true
NodeName=$nodes NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$ports CPUs=$cpus Boards=$boards SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$node_mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  cat >/etc/slurm/cgroup.conf.new <<EOF
CgroupPlugin=autodetect
ConstrainCores=yes
ConstrainRAMSpace=yes
EOF
  local changed=""
  for f in slurm.conf cgroup.conf; do
    if ! cmp -s "/etc/slurm/$f.new" "/etc/slurm/$f"; then mv "/etc/slurm/$f.new" "/etc/slurm/$f"; changed=changed
    else rm -f "/etc/slurm/$f.new"; fi
  done
  cat >/etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
PidFile=/run/slurm/slurmdbd.pid
LogFile=$LOGDIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
  chown slurm:slurm /etc/slurm/slurmdbd.conf && chmod 600 /etc/slurm/slurmdbd.conf
  echo "$changed"
}

make_dirs() {
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge /etc/munge
  install -d -o mysql -g mysql /run/mysqld
  install -d -o slurm -g slurm /run/slurm /var/lib/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd "$LOGDIR"
  for i in $(seq "$NODES"); do install -d -o slurm -g slurm "/var/lib/slurm/slurmd/n$i"; done
  grep -qE "[[:space:]]$HOST([[:space:]]|\$)" /etc/hosts || echo "127.0.0.1 $HOST" >>/etc/hosts
}

start_munge() {
  [[ -s /etc/munge/munge.key ]] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; }
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  alive /run/munge/munged.pid munged && return 0
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged 9>&-
  wait_for 10 munge bash -c 'munge -n | unmunge'
}

start_mariadb() {
  if ! alive /run/mysqld/mysqld.pid mariadbd; then
    [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    cat >/etc/mysql/mariadb.conf.d/60-slurmdbd.cnf <<EOF
[mysqld]
innodb_buffer_pool_size=1024M
innodb_lock_wait_timeout=900
EOF
    log "starting mariadbd"
    setsid /usr/sbin/mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid \
      --socket=/run/mysqld/mysqld.sock --log-error=$LOGDIR/mariadb.log 9>&- </dev/null >/dev/null 2>&1 &
    wait_for 60 mariadb mariadb -e 'select 1'
  fi
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
}

start_slurmdbd() {
  alive /run/slurm/slurmdbd.pid slurmdbd && return 0
  log "starting slurmdbd"
  /usr/sbin/slurmdbd 9>&-
  wait_for 60 slurmdbd sacctmgr -n list cluster
}

setup_accounts() {
  sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
  sacctmgr -n -P list account "$ACCOUNT" format=account | grep -qx "$ACCOUNT" \
    || sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description=dev organization=dev >/dev/null
  local u
  for u in root $USERS; do
    id "$u" >/dev/null 2>&1 || useradd -m -s /bin/bash "$u"
    sacctmgr -n -P list assoc cluster="$CLUSTER" user="$u" account="$ACCOUNT" format=user | grep -qx "$u" \
      || sacctmgr -i add user "$u" account="$ACCOUNT" cluster="$CLUSTER" >/dev/null
  done
  # The service user the systemd units run as (systemd/README.md, step 1), with its association:
  # tests run the server and distributor as it, whatever ran before them.
  id turingwatch >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin turingwatch
  sacctmgr -n -P list assoc cluster="$CLUSTER" user=turingwatch account="$ACCOUNT" format=user | grep -qx turingwatch \
    || sacctmgr -i add user turingwatch account="$ACCOUNT" cluster="$CLUSTER" >/dev/null
}

slurm_daemons_running() {
  alive /run/slurm/slurmctld.pid slurmctld || return 1
  local i
  for i in $(seq "$NODES"); do alive "/run/slurm/slurmd-n$i.pid" slurmd || return 1; done
}

stop_slurm_daemons() {
  local f
  for f in /run/slurm/slurmd-*.pid /run/slurm/slurmd.pid; do [[ -e $f ]] && stop_pid "$f" slurmd; done
  stop_pid /run/slurm/slurmctld.pid slurmctld
}

start_slurmctld() {
  alive /run/slurm/slurmctld.pid slurmctld && return 0
  # Saved state from another cluster name makes slurmctld fatal; it is only scheduling state.
  if [[ -f /var/lib/slurm/slurmctld/clustername ]] && [[ $(cat /var/lib/slurm/slurmctld/clustername) != "$CLUSTER" ]]; then
    rm -rf /var/lib/slurm/slurmctld/*
  fi
  log "starting slurmctld"
  /usr/sbin/slurmctld 9>&-
  wait_for 30 slurmctld scontrol ping
}

remove_dead_sockets() { # sockets of steps whose slurmstepd is gone confuse listpids
  local listening sock
  listening=$(awk 'NR>1 {print $8}' /proc/net/unix | sort -u)
  for sock in /var/lib/slurm/slurmd/*/*_*.*; do
    [[ -S $sock ]] || continue
    grep -qxF "$sock" <<<"$listening" || rm -f "$sock"
  done
}

start_slurmds() {
  local i started=()
  remove_dead_sockets
  for i in $(seq "$NODES"); do
    alive "/run/slurm/slurmd-n$i.pid" slurmd && continue
    log "starting slurmd n$i"
    /usr/sbin/slurmd -N "n$i" 9>&-
    started+=("n$i")
  done
  for n in "${started[@]}"; do
    wait_for 30 "slurmd $n registration" bash -c "scontrol show node $n | grep -q 'SlurmdStartTime=[0-9]'"
  done
}

cancel_phantom_jobs() { # jobs recovered as running whose processes died with the daemons
  local job nodes node ok
  while read -r job nodes; do
    [[ -n $job ]] || continue
    ok=0
    for node in $(scontrol show hostnames "$nodes"); do
      scontrol listpids "$job" "$node" 2>/dev/null | awk 'NR>1 && $1 ~ /^[0-9]+$/' | grep -q . && ok=1
    done
    if ((ok == 0)); then log "cancelling phantom job $job (no processes left on $nodes)"; scancel "$job" || true; fi
  done < <(squeue -h -t R -o '%A %N' 2>/dev/null)
  # Jobs whose launch failed while the daemons died are requeued and held forever: drop them.
  while read -r job reason; do
    [[ -n $job ]] || continue
    log "cancelling job $job ($reason)"
    scancel "$job" || true
  done < <(squeue -h -t PD -o '%A %r' 2>/dev/null | grep -i 'launch failed requeued held' || true)
}

wait_idle() {
  local deadline=$((SECONDS + 60)) states
  while :; do
    states=$(sinfo -h -N -o '%N %t' 2>/dev/null | sort -u)
    if [[ $(grep -c . <<<"$states") -ge $NODES ]] && ! grep -vqE ' (idle|mix|alloc)$' <<<"$states"; then return 0; fi
    # A node left down by an unclean stop comes back when told to.
    # (grep finds nothing while nodes are only completing: that is not an error under pipefail.)
    { grep -E ' (down|drain|drng|fail)\*?$' <<<"$states" || true; } | awk '{print $1}' | while read -r n; do
      scontrol update nodename="$n" state=resume 2>/dev/null || true
    done
    ((SECONDS < deadline)) || die "nodes not idle after 60s: $(tr '\n' ' ' <<<"$states")"
    sleep 0.3
  done
}

cmd_start() {
  local wipe=${1:-}
  [[ $(id -u) == 0 ]] || die "run as root"
  install_packages
  exec 9>"$LOCK"
  flock -w 300 9 || die "another dev-cluster.sh holds $LOCK"
  [[ $wipe == --wipe ]] && { flock -u 9; cmd_stop --wipe; flock -w 300 9; }
  make_dirs
  local changed
  changed=$(write_configs)
  if [[ -n $changed ]] && { alive /run/slurm/slurmctld.pid slurmctld || compgen -G '/run/slurm/slurmd*.pid' >/dev/null; }; then
    log "configuration changed: restarting the slurm daemons"
    stop_slurm_daemons
  fi
  start_munge
  start_mariadb
  start_slurmdbd
  setup_accounts
  local fresh=0
  slurm_daemons_running || fresh=1
  start_slurmctld
  start_slurmds
  ((fresh)) && cancel_phantom_jobs
  wait_idle
  if [[ $PROBE == 1 ]] && ((fresh)); then
    timeout 60 srun -N "$NODES" -J slurm-dev-probe true || log "probe srun failed (continuing)"
    wait_idle
  fi
  log "cluster '$CLUSTER' up: $(sinfo -h -o '%P %a %D %t %N' | tr '\n' ' ')"
}

kill_job_processes() {
  local f pid
  for f in /sys/fs/cgroup/{freezer,memory,cpuset}/slurm_*/uid_*/job_*/cgroup.procs \
           /sys/fs/cgroup/{freezer,memory,cpuset}/slurm_*/uid_*/job_*/*/cgroup.procs; do
    [[ -r $f ]] || continue
    while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done <"$f"
  done
}

cmd_stop() {
  local wipe=${1:-}
  exec 9>"$LOCK"
  flock -w 120 9 || die "another dev-cluster.sh holds $LOCK"
  if alive /run/slurm/slurmctld.pid slurmctld; then
    local jobs; jobs=$(squeue -h -o %A 2>/dev/null || true)
    if [[ -n $jobs ]]; then
      log "cancelling jobs: $(tr '\n' ' ' <<<"$jobs")"
      scancel $jobs 2>/dev/null || true
      for _ in $(seq 50); do [[ -z $(squeue -h -o %A 2>/dev/null) ]] && break; sleep 0.2; done
    fi
  fi
  stop_slurm_daemons
  kill_job_processes
  remove_dead_sockets
  stop_pid /run/slurm/slurmdbd.pid slurmdbd
  if [[ $wipe == --wipe ]] && alive /run/mysqld/mysqld.pid mariadbd; then
    mariadb -e 'DROP DATABASE IF EXISTS slurm_acct_db' || true
  fi
  stop_pid /run/mysqld/mysqld.pid mariadbd
  stop_pid /run/munge/munged.pid munged
  if [[ $wipe == --wipe ]]; then
    rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd/*/* "$LOGDIR"/slurm*.log
  fi
  log "stopped${wipe:+ (wiped)}"
}

cmd_status() {
  local rc=0 i
  check() { if alive "$1" "$2"; then echo "$3: running (pid $(<"$1"))"; else echo "$3: stopped"; rc=1; fi; }
  check /run/munge/munged.pid munged munged
  check /run/mysqld/mysqld.pid mariadbd mariadbd
  check /run/slurm/slurmdbd.pid slurmdbd slurmdbd
  check /run/slurm/slurmctld.pid slurmctld slurmctld
  for i in $(seq "$NODES"); do check "/run/slurm/slurmd-n$i.pid" slurmd "slurmd n$i"; done
  ((rc == 0)) && sinfo -N -o '%N %P %t %c %m'
  return $rc
}

case ${1:-} in
  start) cmd_start "${2:-}" ;;
  stop) cmd_stop "${2:-}" ;;
  status) cmd_status ;;
  *) echo "usage: $0 start [--wipe] | stop [--wipe] | status" >&2; exit 2 ;;
esac
