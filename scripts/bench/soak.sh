#!/usr/bin/env bash
# Soak bench (issue #16): months of a cluster in compressed time through a real store, with the
# server's daily passes (prune_reports_seen, apply_retention with job retention) on a synthetic
# clock; prints the store size, the rows of every growing table and the period-analysis time (and
# peak RSS) at days 30, 90 and 180. See actors/benches/soak.rs. Two modes:
#   direct (default for <= 10 nodes): samples every 20 s straight into the store, the bytes per
#     node per day figure.   TW_SOAK_STEPS (10)
#   ingest (default above 10 nodes, e.g. TW_SOAK_NODES=1000): jobs through Store::upsert_jobs as
#     the accounting import writes them (running, then ended), samples as ScraperReports through
#     Store::store_reports (group commit, plausibility checks, reports_seen).
#     TW_SOAK_JOBS (3 a node a day) TW_SOAK_STEPS (1) TW_SOAK_USERS (200) TW_SOAK_INTERVAL (600 s)
#     TW_SOAK_REPORT_SECS (14400 s of samples a report) TW_SOAK_GROUP (64 reports a commit)
#   Both: TW_SOAK_MODE (direct|ingest) TW_SOAK_NODES (10) TW_SOAK_DAYS (180)
#     TW_SOAK_RAW_DAYS (config default, 42) TW_SOAK_SUMMARY_DAYS (60) TW_SOAK_JOB_DAYS (= summary)
#   The 60-day defaults put every window inside 180 days, so the table rows must be flat after day 60.
# SOAK_FAST=1 builds in the dev profile with the store's crates optimised (no release build of
# every dependency); otherwise `cargo bench` (release).
#   TW_SOAK_NODES=1000 SOAK_FAST=1 scripts/bench/soak.sh    # ~15 min on 2 cores
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ "${SOAK_FAST:-0}" == 1 ]]; then
    exec cargo bench --profile dev -p turingwatch --bench soak \
        --config 'profile.dev.package.turingwatch.opt-level=3' \
        --config 'profile.dev.package.redb.opt-level=3' \
        --config 'profile.dev.package.miniz_oxide.opt-level=3' \
        --config 'profile.dev.package.turingwatch.debug-assertions=false' \
        --config 'profile.dev.package.turingwatch.overflow-checks=false'
fi
exec cargo bench -p turingwatch --bench soak
