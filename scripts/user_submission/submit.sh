#!/bin/bash
# turingwatch user-mode template: your batch job, sampled by turingwatch on each of its nodes.
#
# Copy this file, put your own #SBATCH lines and your workload in the two CHANGE-THIS regions,
# and submit it with `sbatch submit.sh`. One scraper per node runs beside your work as an
# overlapping step (`srun --overlap`: it takes no CPU away from your tasks' allocation and
# costs well under 1 % of one core). Scrapers sample only THIS job and report to
#   - the site's turingwatch server, when TW_SERVER is set (e.g. http://head:8080), or
#   - a private server started here on the first node, whose store lands in $TW_DIR.
# Reports are authenticated with the cluster's MUNGE as you; a server accepts from you only
# samples of your own jobs. The private server imports only your own accounting, keeps its
# files to you (umask 077: store, spool, bundles, logs) and listens on a random port, written
# to $TW_DIR/port (mode 0600) for the scrapers; it trusts no identity header (the web pages
# answer 401/403 to everyone: read the bundle in $TW_DIR/results instead).

# ---- CHANGE-THIS: your resources ------------------------------------------------------------
#SBATCH --job-name=my-job
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=1G
#SBATCH --time=00:30:00
# ---------------------------------------------------------------------------------------------

set -u
umask 077                                        # everything turingwatch writes here is yours only
TURINGWATCH=${TURINGWATCH:-turingwatch}          # path of the binary, reachable from every node
TW_SERVER=${TW_SERVER:-}                         # site server URL; empty: a private one
TW_INTERVAL=${TW_INTERVAL:-20s}                  # time between samples
TW_PORT=${TW_PORT:-}                             # private server's port; empty: a random free one
TW_DIR=${TW_DIR:-${SLURM_SUBMIT_DIR:-$HOME}/turingwatch-$SLURM_JOB_ID}
mkdir -p "$TW_DIR"
chmod 700 "$TW_DIR"

tw_server_pid=
if [ -z "$TW_SERVER" ]; then
    # A private server on this (the first) node; scrapers on other nodes reach it by host name.
    tw_user=$(id -un)
    tw_start_server() {   # $1 = port; returns 0 once the server listens there
        cat > "$TW_DIR/turingwatch.toml" <<TOML
[store]
path = "$TW_DIR/turingwatch.redb"
[analysis]
results_dir = "$TW_DIR/results"
[accounting]
# Your own jobs only, and only recent ones: this server is yours.
user = "$tw_user"
first_window = "1day"
interval = "1m"
[web]
bind = "0.0.0.0:$1"
# This node is shared: anyone on it can reach the port, so no identity header is trusted from
# anywhere (the web pages answer 401/403); results come as the bundle in $TW_DIR/results.
trusted_proxies = []
[ingest]
service_users = []
[scrape]
spool_dir = "$TW_DIR/spool"
interval = "$TW_INTERVAL"
[mail]
transport = "file"
file_dir = "$TW_DIR/mail"
TOML
        "$TURINGWATCH" --config "$TW_DIR/turingwatch.toml" server > "$TW_DIR/server.log" 2>&1 &
        tw_server_pid=$!
        for _ in $(seq 100); do
            kill -0 "$tw_server_pid" 2>/dev/null || return 1
            (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
            sleep 0.1
        done
        return 1
    }
    tw_started=
    for _ in 1 2 3 4 5; do
        port=${TW_PORT:-$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 40000))}
        if tw_start_server "$port"; then tw_started=1; break; fi
        kill "$tw_server_pid" 2>/dev/null; wait "$tw_server_pid" 2>/dev/null
        [ -n "$TW_PORT" ] && break
    done
    if [ -z "$tw_started" ]; then
        echo "turingwatch: the private server did not start; see $TW_DIR/server.log" >&2
        tw_server_pid=
    fi
    TW_PORT=$port
    echo "$TW_PORT" > "$TW_DIR/port"                     # 0600 (umask): for your steps only
    export TURINGWATCH_CONFIG="$TW_DIR/turingwatch.toml"   # read by the scrapers
    TW_SERVER="http://$(hostname -s):$TW_PORT"
fi

# One scraper per node, for this job only; it reports until stopped.
# (Named tw-scraper: the accounting import leaves such steps out of your job's figures.)
srun --overlap --job-name=tw-scraper --nodes="$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 --cpus-per-task=1 --mem=64M \
    --kill-on-bad-exit=0 --output="$TW_DIR/scraper-%n.log" \
    bash -c "exec \"$TURINGWATCH\" scrape --forever \
        --job $SLURM_JOB_ID --node \"\$SLURMD_NODENAME\" --server \"$TW_SERVER\" \
        --interval $TW_INTERVAL --spool-dir \"$TW_DIR/spool\"" &
tw_scrapers_pid=$!

# ---- CHANGE-THIS: your workload (srun steps or plain commands); do not use a bare `wait` ----
srun python3 -c 'import time; t = time.time()
while time.time() - t < 30: pass'
workload_status=$?
# ---------------------------------------------------------------------------------------------

# Stop the scrapers with SIGTERM delivered to the step's tasks (each then sends what it has
# left; signalling srun itself would kill them), then the private server.
tw_step=$(squeue -h -s -j "$SLURM_JOB_ID" -o "%i %j" | awk '$2 == "tw-scraper" {print $1; exit}')
if [ -n "$tw_step" ]; then
    scancel --signal=TERM "$tw_step"
fi
wait "$tw_scrapers_pid" 2>/dev/null
if [ -n "$tw_server_pid" ]; then
    kill -TERM "$tw_server_pid"
    wait "$tw_server_pid"
fi
exit "$workload_status"
