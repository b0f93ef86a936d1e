#!/usr/bin/env bash
# The fuzz targets in CI: every kept corpus input replayed through its target (a regression of
# anything once found fails here), then `ingest_pipeline` (report -> checks -> store -> job page
# and period analysis) fuzzed for FUZZ_SECS more seconds from its corpus. New inputs found go to
# a scratch copy; `fuzz/README.md` says how to keep them (corpus.sh pack, commit).
#
# Builds the targets with plain cargo and the flags cargo-fuzz would pass (no cargo-fuzz needed):
#   FUZZ_SECS=60 scripts/fuzz-check.sh        (0: replay only)
set -Eeuo pipefail
trap 'echo "fuzz-check.sh: command failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/../fuzz"
secs=${FUZZ_SECS:-30}
target=x86_64-unknown-linux-gnu
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares"
cargo build --release --target "$target" --bins
bin=target/$target/release
scratch=$(mktemp -d /tmp/tw-fuzz-check.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
for archive in corpus/*.tar.xz; do
  name=${archive##*/}; name=${name%.tar.xz}
  mkdir -p "$scratch/$name"
  tar -xJf "$archive" -C "$scratch"
  inputs=$(find "$scratch/$name" -type f | wc -l)
  # -runs=0: run every input once and exit; a crash, a panic or an assertion exits non-zero.
  "$bin/$name" -runs=0 -rss_limit_mb=4096 -artifact_prefix="$scratch/" "$scratch/$name" >"$scratch/$name.log" 2>&1 \
    || { tail -40 "$scratch/$name.log" >&2; echo "fuzz-check: $name failed on its corpus" >&2; exit 1; }
  echo "fuzz-check: $name replayed $inputs corpus inputs, no failure"
done
if ((secs > 0)); then
  "$bin/ingest_pipeline" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$scratch/" "$scratch/ingest_pipeline" >"$scratch/run.log" 2>&1 \
    || { tail -60 "$scratch/run.log" >&2; echo "fuzz-check: ingest_pipeline failed (input above)" >&2; exit 1; }
  runs=$(grep -m1 -oE 'stat::number_of_executed_units: *[0-9]+' "$scratch/run.log" | grep -oE '[0-9]+$' || echo "?")
  cov=$(grep -oE 'cov: [0-9]+' "$scratch/run.log" | tail -1 || true)
  echo "fuzz-check: ingest_pipeline fuzzed ${secs}s: $runs runs, $cov, no failure"
fi
