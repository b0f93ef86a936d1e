#!/usr/bin/env bash
# Verifies every unit in systemd/ (with its drop-ins) with `systemd-analyze verify`, pointing
# ExecStart at a built turingwatch binary (verify checks that the program exists).
# systemd-analyze exits 0 even when it reports problems, so any diagnostic it prints fails this
# check.
#   scripts/check-systemd.sh [BINARY] [UNIT_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/target/debug/turingwatch}
units=${2:-$root/systemd}
[[ -x $bin ]] || { echo "check-systemd: no binary at $bin (build first)" >&2; exit 1; }
id turingwatch >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin turingwatch 2>/dev/null || true
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
shopt -s nullglob
files=("$units"/*.service "$units"/*.timer)
((${#files[@]})) || { echo "check-systemd: no units in $units" >&2; exit 1; }
for f in "${files[@]}"; do sed "s#/usr/local/bin/turingwatch#$bin#g" "$f" >"$work/$(basename "$f")"; done
# Drop-ins (<unit>.d/*.conf) are verified with their unit, as systemd loads them.
for d in "$units"/*.service.d; do mkdir -p "$work/$(basename "$d")"; cp "$d"/*.conf "$work/$(basename "$d")/"; done
cd "$work"
out=$(SYSTEMD_LOG_LEVEL=notice systemd-analyze verify ./*.service ./*.timer 2>&1 || echo "systemd-analyze exited with $?")
# Lines about units outside ours (e.g. missing munge.service on a build host) are not ours to fix.
ours=$(grep -E "^$work|turingwatch|\.service:|\.timer:|exited" <<<"$out" | grep -vE "^(munge|slurmd|slurmdbd)\.service" || true)
if [[ -n $ours ]]; then echo "$ours" >&2; echo "check-systemd: FAILED" >&2; exit 1; fi
echo "check-systemd: ${#files[@]} units verified"
