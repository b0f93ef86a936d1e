#!/usr/bin/env bash
# Three demo jobs on the dev cluster, one per node (so each node keeps a CPU for its scraper),
# each running DEMO_SECS (default 90 s):
#   alice  demo-idle-cpus   asks 1 CPU and 1 GiB, sleeps: CPU and memory unused
#   alice  demo-big-memory  asks 2 GiB, touches 60 MiB while computing on its CPU
#   bob    demo-fine        asks 160 MiB, touches 120 MiB while computing on its CPU
# Prints them, and a last line `demo job ids: <idle> <big> <fine>`. Used by scripts/run-dev.sh and scripts/check-demo.sh.
set -euo pipefail
secs=${DEMO_SECS:-90}
submit() { # user node name mem program
  runuser -u "$1" -- sbatch --parsable -w "$2" -J "$3" -n1 -c1 --mem="$4" --time=2 -o /dev/null \
    -D /tmp --wrap "python3 -c '$5'"
}
burn="import time
def burn(mib, secs):
    keep = bytearray(mib << 20)
    for i in range(0, len(keep), 4096): keep[i] = 1
    end = time.time() + secs
    while time.time() < end: sum(range(10000))
"
idle=$(submit alice n1 demo-idle-cpus 1G "import time; time.sleep($secs)")
big=$(submit alice n2 demo-big-memory 2G "$burn
burn(60, $secs)")
fine=$(submit bob n3 demo-fine 160M "$burn
burn(120, $secs)")
echo "demo jobs: $idle (alice, idle), $big (alice, big memory request), $fine (bob, fine); each runs ${secs} s"
echo "demo job ids: $idle $big $fine"
