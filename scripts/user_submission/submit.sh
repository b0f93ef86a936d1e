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
# samples of your own jobs.

# ---- CHANGE-THIS: your resources ------------------------------------------------------------
#SBATCH --job-name=my-job
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=1G
#SBATCH --time=00:30:00
# ---------------------------------------------------------------------------------------------

set -u
TURINGWATCH=${TURINGWATCH:-turingwatch}          # path of the binary, reachable from every node
TW_SERVER=${TW_SERVER:-}                         # site server URL; empty: a private one
TW_INTERVAL=${TW_INTERVAL:-20s}                  # time between samples
TW_PORT=${TW_PORT:-$((20000 + SLURM_JOB_ID % 10000))}
TW_DIR=${TW_DIR:-${SLURM_SUBMIT_DIR:-$HOME}/turingwatch-$SLURM_JOB_ID}
mkdir -p "$TW_DIR"

tw_server_pid=
if [ -z "$TW_SERVER" ]; then
    # A private server on this (the first) node; scrapers on other nodes reach it by host name.
    cat > "$TW_DIR/turingwatch.toml" <<TOML
[store]
path = "$TW_DIR/turingwatch.redb"
[web]
bind = "0.0.0.0:$TW_PORT"
# This node is shared: anyone on it can reach the port, so no identity header is trusted from
# anywhere (the web pages answer 401/403); results come as the bundle in $TW_DIR.
trusted_proxies = []
[ingest]
service_users = []
[scrape]
spool_dir = "$TW_DIR/spool"
interval = "$TW_INTERVAL"
TOML
    export TURINGWATCH_CONFIG="$TW_DIR/turingwatch.toml"   # read by the server and the scrapers
    "$TURINGWATCH" server > "$TW_DIR/server.log" 2>&1 &
    tw_server_pid=$!
    TW_SERVER="http://$(hostname -s):$TW_PORT"
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$TW_PORT") 2>/dev/null && break
        sleep 0.2
    done
fi

# One scraper per node, for this job only; it reports until stopped.
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
