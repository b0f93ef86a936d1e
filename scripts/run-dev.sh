#!/usr/bin/env bash
# Sets up a fresh machine and runs the turingwatch server against the dev SLURM cluster:
# installs packages, starts the cluster (scripts/dev-cluster.sh), builds, writes dev/turingwatch.toml
# (short accounting interval, mail to files, web on 127.0.0.1:8080) and runs `turingwatch server`.
# Stop with Ctrl-C. Submit jobs meanwhile, e.g.  runuser -u alice -- sbatch --wrap 'sleep 30'
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/dev-cluster.sh start
cargo build --release --bin turingwatch
mkdir -p dev
if [[ ! -f dev/turingwatch.toml ]]; then
  cat >dev/turingwatch.toml <<'TOML'
# Development configuration written by scripts/run-dev.sh (edit freely; it is not overwritten).
[store]
path = "dev/turingwatch.db"
[accounting]
interval = "1m"
first_window = "1day"
[scrape]
spool_dir = "dev/spool"
server_url = "http://127.0.0.1:8080"
[analysis]
period = "1day"
results_dir = "dev/analysis_result"
[mail]
transport = "file"
file_dir = "dev/mail-out"
[web]
bind = "127.0.0.1:8080"
admins = ["root"]
TOML
fi
echo "turingwatch server on http://127.0.0.1:8080 (config dev/turingwatch.toml); Ctrl-C stops it"
exec target/release/turingwatch server --config dev/turingwatch.toml
