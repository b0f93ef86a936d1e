#!/usr/bin/env bash
# Load test of the report API: starts a release server over a seeded store (synthetic users,
# jobs, samples and mail-sized reports from `turingwatch debug seed-web`) and runs wrk on
# loopback (a trusted proxy address by default) against GET /api/report for one user.
# Prints wrk's req/s and latency percentiles, plain and with gzip.
#
#   scripts/bench/web-load.sh            # defaults below; override with env variables
#   USERS=500 DURATION=30s CONNS=128 scripts/bench/web-load.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
port=${PORT:-18490}
users=${USERS:-200}
jobs=${JOBS:-40}
duration=${DURATION:-15s}
conns=${CONNS:-64}
threads=${THREADS:-2}
user=${REPORT_USER:-user042}
bin=${TURINGWATCH_BIN:-$root/target/release/turingwatch}

command -v wrk >/dev/null || { echo "web-load: wrk is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
if [[ ! -x $bin ]]; then
  (cd "$root" && cargo build --release -p turingwatch)
fi
dir=$(mktemp -d /tmp/tw-web-load.XXXXXX)
server_pid=""
cleanup() {
  if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

"$bin" debug seed-web --db "$dir/store.redb" --users "$users" --jobs-per-user "$jobs"
cat >"$dir/tw.toml" <<TOML
[store]
path = "$dir/store.redb"
[web]
bind = "127.0.0.1:$port"
[log]
level = "warn"
TOML
"$bin" --config "$dir/tw.toml" server >"$dir/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
url="http://127.0.0.1:$port/api/report"
status=$(curl -s -o "$dir/report.json" -w '%{http_code}' -H "X-AuthUser: $user" "$url")
[[ $status == 200 ]] || { echo "web-load: $url answered $status: $(cat "$dir/report.json")" >&2; exit 1; }
plain=$(stat -c %s "$dir/report.json")
gz=$(curl -s -H "X-AuthUser: $user" -H 'Accept-Encoding: gzip' -o /dev/null -w '%{size_download}' "$url")
echo "report of $user: $plain bytes ($gz gzip); $(nproc) CPUs; wrk -t$threads -c$conns -d$duration"

wrk -t"$threads" -c"$conns" -d3s -H "X-AuthUser: $user" "$url" >/dev/null   # warm-up
echo "--- GET /api/report (identity, no compression)"
wrk -t"$threads" -c"$conns" -d"$duration" --latency -H "X-AuthUser: $user" "$url"
echo "--- GET /api/report (identity, Accept-Encoding: gzip)"
wrk -t"$threads" -c"$conns" -d"$duration" --latency -H "X-AuthUser: $user" -H 'Accept-Encoding: gzip' "$url"
