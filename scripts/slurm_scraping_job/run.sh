#!/usr/bin/env bash
# Admin-without-root mode: run the turingwatch server and distributor inside one long SLURM job
# (the original's scripts/slurm_scraping_jobs). Usable by any user with a SLURM account; the
# scrapers it places report every job they can read (as that user: their own jobs only, unless
# the user is a service account listed in [ingest] service_users).
#
#   scripts/slurm_scraping_job/run.sh [CONFIG] [extra sbatch options...]
#
# Edit the #SBATCH lines in submit.sh (partition, time, memory) for your site first.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
config=${1:-$here/turingwatch.toml}
shift || true
[[ -f $config ]] || { echo "run.sh: config $config not found (copy config/turingwatch.example.toml)" >&2; exit 1; }
exec sbatch "$@" --export=ALL,TURINGWATCH_CONFIG="$config" "$here/submit.sh"
