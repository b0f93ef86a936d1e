#!/usr/bin/env bash
# The whole test suite, as CI runs it (the README's test command).
# Formatting and lints in both workspaces, unit tests, end-to-end tests against the real dev
# SLURM cluster (started here if needed), then the interceptor's own suite.
set -Eeuo pipefail
trap 'echo "test.sh: command failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."
export TURINGWATCH_E2E=${TURINGWATCH_E2E:-1}
bash scripts/setup.sh
bash scripts/dev-cluster.sh start
bash scripts/check-layers.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Tests that stop shared daemons (slurmdbd, slurmctld), fill every CPU or measure latency run
# alone afterwards, so they cannot disturb the others nor be disturbed. The unit boot test and the
# in-server distributor test run a distributor as the units do (no --only-nodes): it places
# scraper jobs and steps on every busy node, other tests' nodes included.
serial=(accounting::a_slurmdbd_outage_is_backed_off_and_the_missed_window_imported
        outage::the_distributor_rides_out_a_slurmctld_outage
        distribute::every_job_on_a_packed_cluster_is_sampled_within_one_round
        load::slow_bodies_and_junk_credentials_cost_no_commit_and_leave_the_web_fast
        units::the_units_boot_and_each_role_works_as_shipped
        scrape::a_server_running_the_distributor_places_scrapers_and_cancels_them_on_sigterm
        export::remote_write_buffers_while_victoria_metrics_is_down_then_delivers
        export::remote_write_reaches_prometheus_and_jobs_view_needs_its_token)
skips=(); for t in "${serial[@]}"; do skips+=(--skip "$t"); done
cargo test --workspace -- --test-threads=2 "${skips[@]}"
for t in "${serial[@]}"; do cargo test --test e2e -- --exact "$t"; done
if [[ -f scripts/test-interceptor.sh ]]; then bash scripts/test-interceptor.sh; fi
# The fuzz targets: every kept corpus input replayed through its target, then the ingest
# pipeline (report -> checks -> store -> analysis) fuzzed for FUZZ_SECS (60) more seconds.
bash scripts/fuzz-check.sh
# The demo (scripts/run-dev.sh) shows the whole loop: jobs sampled, a period closed, mail with
# findings, within 15 minutes (with the debug build the tests made; TURINGWATCH_DEMO_CHECK=0 skips).
if [[ ${TURINGWATCH_DEMO_CHECK:-1} != 0 ]]; then TURINGWATCH_PROFILE=debug bash scripts/check-demo.sh; fi
echo "all test suites passed"
