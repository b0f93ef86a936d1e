#!/usr/bin/env bash
# The demo: sets up a fresh machine and runs the whole turingwatch loop against the dev SLURM
# cluster. Installs packages, starts the cluster (scripts/dev-cluster.sh), builds, writes
# dev/turingwatch.toml and runs `turingwatch server` with the distributor inside it, 2-minute
# periods and mail written to files. Once the server answers it submits three demo jobs
# (scripts/demo-jobs.sh: alice wastes CPUs, alice wastes memory, bob uses what he asked for),
# which the scrapers sample while they run; when they end, their period closes and each user's
# report mail appears in dev/mail-out/ (about 5 minutes after the server starts).
#   scripts/run-dev.sh              demo: server in the foreground, Ctrl-C stops it
#   DEMO_JOBS=0 scripts/run-dev.sh  the same without the demo jobs
# What to look at, and when: README.md, "The demo".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/dev-cluster.sh start
# TURINGWATCH_PROFILE=debug reuses the test suite's build (scripts/check-demo.sh in CI).
profile=${TURINGWATCH_PROFILE:-release}
if [[ $profile == release ]]; then cargo build --release --bin turingwatch; else cargo build --bin turingwatch; fi
mkdir -p dev
umask 022
if [[ ! -f dev/turingwatch.toml ]]; then
  cat >dev/turingwatch.toml <<'TOML'
# Development configuration written by scripts/run-dev.sh (edit freely; it is not overwritten).
# Short everything, so the whole loop (accounting, scraping, a closed period, mail) fits in
# minutes; production keeps the defaults of config/turingwatch.example.toml.
[store]
path = "dev/turingwatch.db"
[accounting]
interval = "30s"
first_window = "1h"
[scrape]
interval = "10s"
report_every = "20s"
time_per_node = "5m"
spool_dir = "dev/spool"
server_url = "http://127.0.0.1:8080"
[distributor]
in_server = true
round_interval = "30s"
allocation_timeout = "1m"
backoff_initial = "30s"
[analysis]
period = "2m"
close_grace = "1m"
results_dir = "dev/analysis_result"
timezone = "UTC"
[findings]
min_runtime = "1m"
[mail]
transport = "file"
file_dir = "dev/mail-out"
domain = "example.org"
rate_limit = "2s"
rate_jitter = "0s"
web_base_url = "http://127.0.0.1:8080"
[web]
bind = "127.0.0.1:8080"
admins = ["root"]
TOML
fi
if [[ ${DEMO_JOBS:-1} != 0 ]]; then
  # Submitted once the server answers, so their whole run is sampled.
  (
    for _ in $(seq 120); do curl -fsS -o /dev/null http://127.0.0.1:8080/healthz 2>/dev/null && break; sleep 1; done
    bash scripts/demo-jobs.sh
  ) &
fi
echo "turingwatch server on http://127.0.0.1:8080 (config dev/turingwatch.toml); Ctrl-C stops it"
exec "target/$profile/turingwatch" server --config dev/turingwatch.toml
