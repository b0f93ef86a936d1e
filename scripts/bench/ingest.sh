#!/usr/bin/env bash
# Ingest throughput through a real release server: MUNGE-authenticated reports from simulated
# nodes over HTTP (actors/benches/ingest_load.rs says how). Prints one line:
#   ingest: <N> step-samples/s, <M> reports/s, p99 ack <P> ms
# and the latency of GET /api/report meanwhile. Needs munged and the dev cluster
# (scripts/dev-cluster.sh start). Knobs (environment): TW_NODES (1000), TW_STEPS (50),
# TW_SAMPLES (3), TW_SECS (60), TW_CONNS (32), TW_PORT (18870), TW_NODE_NAMES (n1,n2,n3).
# Usage: scripts/bench/ingest.sh [RUNS]
set -Eeuo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-1}
cargo build --release --bin turingwatch
export TW_BIN=${TW_BIN:-$PWD/target/release/turingwatch}
for ((i = 1; i <= runs; i++)); do
    echo "run $i: $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg)"
    cargo bench -q -p turingwatch --bench ingest_load
done
