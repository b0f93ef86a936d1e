#!/usr/bin/env bash
#SBATCH --job-name=turingwatch-server
#SBATCH --cpus-per-task=1
#SBATCH --mem=4G
#SBATCH --time=7-00:00:00
#SBATCH --output=turingwatch-server.%j.log
# Runs `turingwatch server` and `turingwatch distribute` side by side in this job. If either
# exits, the other is stopped and the job ends (so a half-working pair never lingers).
# Scrapers placed by the distributor report to this job's node: set [scrape] server_url to
# http://<this node>:<port> — done below through TURINGWATCH_SCRAPE_SERVER_URL.
set -uo pipefail
umask 077   # the store, results and logs of this server are the submitting user's alone
bin=${TURINGWATCH_BIN:-turingwatch}
node=$(hostname -f 2>/dev/null || hostname)
port=${TURINGWATCH_PORT:-8080}
export TURINGWATCH_WEB_BIND=0.0.0.0:$port
# The node is shared with other users' jobs: trust no identity header from anywhere (an empty
# list; "," because an empty variable means "not set"). The site then answers 401/403; put a
# reverse proxy of your own in front of it to serve people.
export TURINGWATCH_WEB_TRUSTED_PROXIES=,
export TURINGWATCH_SCRAPE_SERVER_URL=http://$node:$port
"$bin" server & server=$!
sleep 5
"$bin" distribute & distributor=$!
wait -n "$server" "$distributor"
status=$?
echo "turingwatch: a process exited ($status); stopping the other" >&2
kill -TERM "$server" "$distributor" 2>/dev/null
wait
exit "$status"
