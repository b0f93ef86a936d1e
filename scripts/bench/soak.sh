#!/usr/bin/env bash
# Soak bench (issue #16): months of synthetic nodes in compressed time through a real store with
# the retention pass run daily; prints store size, raw / summary MB per node per day and the
# period-analysis time at days 30, 90 and 180. See actors/benches/soak.rs.
#   TW_SOAK_NODES (10) TW_SOAK_STEPS (10) TW_SOAK_DAYS (180) TW_SOAK_RAW_DAYS (config default)
#   TW_SOAK_SUMMARY_DAYS (60)
# SOAK_FAST=1 builds in the dev profile with the store's crates optimised (no release build of
# every dependency); otherwise `cargo bench` (release).
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
