#!/usr/bin/env bash
# Allocator comparison for the interceptor (run by hand, not a timed test).
#   bash scripts/bench/run-malloc-bench.sh [REPS] [SECONDS]
# Runs every workload under glibc, glibc tuned (256 MiB mmap and trim thresholds: what a
# user sets instead of a library), jemalloc, mimalloc, tcmalloc (Debian packages, via
# LD_PRELOAD), turingwatch, and the warm loop (churn.c with CHURN_WARM=1: the same loop over
# pre-faulted blocks with no malloc at all, the bound a perfect cache could reach; churn
# workloads only), REPS times each (interleaved), SECONDS per run, and prints medians as
# Markdown tables (ops/s, ratios, best run, ops per CPU-second, peak RSS). Raw lines go to
# $OUT (default /tmp/malloc-bench) for inspection.
# Optional filters: ONLY='small|numpy' (regex on workload names), CONFIGS='glibc turingwatch'.
# MODE=callgrind: instead, counts the instructions of the small-allocation workload (one
# thread, CHURN_OPS=$CG_OPS ops, default 400000) under valgrind's callgrind, with and without
# the preload, at CG_OPS and at 1 op, and prints the instructions per op of each and their
# ratio (start-up excluded). Deterministic, so it resolves a few percent on a loaded machine.
set -euo pipefail
REPS=${1:-3}
SECS=${2:-2}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${OUT:-/tmp/malloc-bench}
LIB=/usr/lib/x86_64-linux-gnu
export PATH="$HOME/.cargo/bin:$PATH"
mkdir -p "$OUT"
: >"$OUT/raw.txt"

for p in libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4 python3-numpy gcc; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "$p"
done
(cd "$ROOT/interceptor" && cargo build -j1 --release -q)
SO="$ROOT/interceptor/target/release/libturingwatch_preload.so"
gcc -O2 -pthread -o "$OUT/churn" "$ROOT/scripts/bench/churn.c" -lm

if [[ ${MODE:-} == callgrind ]]; then
    command -v valgrind >/dev/null || apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends valgrind
    N=${CG_OPS:-400000}
    ir() { # ir OPS [ENV...]: instructions of one callgrind run of the small workload
        local n=$1
        shift
        env "$@" CHURN_OPS="$n" valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" \
            "$OUT/churn" 1 1 0 0 0 0 2>&1 >/dev/null | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
    }
    g1=$(ir 1 X=1) gn=$(ir "$N" X=1) t1=$(ir 1 LD_PRELOAD="$SO") tn=$(ir "$N" LD_PRELOAD="$SO")
    echo "callgrind small 16-1024 B, 1 thr: glibc $g1 / $gn instructions at 1 / $N ops; turingwatch $t1 / $tn"
    awk -v g1="$g1" -v gn="$gn" -v t1="$t1" -v tn="$tn" -v n="$N" 'BEGIN {
        g = (gn - g1) / (n - 1); t = (tn - t1) / (n - 1)
        printf "instructions per op (free + malloc + the loop): glibc %.2f, turingwatch %.2f, ratio %.4f\n", g, t, t / g }'
    exit 0
fi

TB=268435456 # 256 MiB: glibc serves every request of these workloads from its heap and never trims
declare -A CFG=(
    [glibc]=""
    [glibc_tuned]="GLIBC_TUNABLES=glibc.malloc.mmap_threshold=$TB:glibc.malloc.trim_threshold=$TB"
    [warm]="CHURN_WARM=1"
    [jemalloc]="LD_PRELOAD=$LIB/libjemalloc.so.2"
    [mimalloc]="LD_PRELOAD=$LIB/libmimalloc.so.2"
    [tcmalloc]="LD_PRELOAD=$LIB/libtcmalloc_minimal.so.4"
    [turingwatch]="LD_PRELOAD=$SO"
)
ORDER=${CONFIGS:-"glibc glibc_tuned jemalloc mimalloc tcmalloc turingwatch warm"}
# name|command (churn: THREADS SECONDS MIN_KIB MAX_KIB TOUCH SLOTS)
WORKLOADS=(
    "fixed 48 MiB, 1 thr|$OUT/churn 1 $SECS 49152 49152 1 1"
    "random 1-64 MiB, 1 thr|$OUT/churn 1 $SECS 1024 65536 1 1"
    "random 1-64 MiB, 2 thr|$OUT/churn 2 $SECS 1024 65536 1 1"
    "256 KiB-4 MiB, 2 thr, 4 live|$OUT/churn 2 $SECS 256 4096 1 4"
    "small 16-1024 B, 1 thr, 1024 live|$OUT/churn 1 $SECS 0 0 0 0"
    "numpy temporaries (48 MB)|/usr/bin/python3 $ROOT/scripts/bench/numpy_temps.py $SECS"
)

for w in "${WORKLOADS[@]}"; do
    name=${w%%|*}
    cmd=${w#*|}
    [[ -z "${ONLY:-}" || "$name" =~ $ONLY ]] || continue
    for rep in $(seq "$REPS"); do
        for c in $ORDER; do
            # The warm loop exists only for the large-block churn workloads.
            [[ $c != warm || ($cmd == */churn* && $name != small*) ]] || continue
            # shellcheck disable=SC2086
            line=$(env ${CFG[$c]} $cmd | tail -n 1)
            echo "$name|$c|$rep|$line" | tee -a "$OUT/raw.txt"
        done
    done
done

/usr/bin/python3 - "$OUT/raw.txt" "$ORDER" "$REPS" "$SECS" <<'PY'
import statistics, sys
raw, order, reps, secs = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4]
ops, rss, cpu, names = {}, {}, {}, []
for line in open(raw):
    name, cfg, _rep, kv = line.rstrip("\n").split("|", 3)
    d = dict(x.split("=") for x in kv.split())
    if name not in names:
        names.append(name)
    ops.setdefault((name, cfg), []).append(float(d["ops_per_s"]))
    if "ops_per_cpu_s" in d:
        cpu.setdefault((name, cfg), []).append(float(d["ops_per_cpu_s"]))
    rss.setdefault((name, cfg), []).append(float(d["maxrss_mib"]))
against = [c for c in ("glibc", "glibc_tuned", "tcmalloc", "warm") if c in order and c != "turingwatch"]

def table(title, d, fmt):
    print(f"\n{title}\n")
    print("| Workload | " + " | ".join(order) + "".join(f" | tw/{c}" for c in against) + " |")
    print("|---" + "|---:" * (len(order) + len(against)) + "|")
    for n in names:
        row = [fmt(d[(n, c)]) if (n, c) in d else "-" for c in order]
        tw = d.get((n, "turingwatch"))
        ratios = [f"{tw / d[(n, c)]:.2f}x" if tw and d.get((n, c)) else "-" for c in against]
        print(f"| {n} | " + " | ".join(row + ratios) + " |")

med = {k: statistics.median(v) for k, v in ops.items()}
table(f"Median ops/s of {reps} runs x {secs} s (higher is better)", med, lambda v: f"{v:,.0f}")
table(f"Best run ops/s of {reps} (less sensitive to other load on the machine)",
      {k: max(v) for k, v in ops.items()}, lambda v: f"{v:,.0f}")
table(f"Median ops per CPU-second of {reps} (user+sys time; excludes time other processes held the CPU)",
      {k: statistics.median(v) for k, v in cpu.items()}, lambda v: f"{v:,.0f}")
mrss = {k: max(v) for k, v in rss.items()}
print("\nPeak RSS, MiB (max over runs; turingwatch minus glibc in the last column)\n")
print("| Workload | " + " | ".join(order) + " | tw - glibc |")
print("|---" + "|---:" * (len(order) + 1) + "|")
for n in names:
    row = [f"{mrss[(n, c)]:.0f}" if (n, c) in mrss else "-" for c in order]
    diff = f"{mrss[(n, 'turingwatch')] - mrss[(n, 'glibc')]:+.0f}" if (n, "turingwatch") in mrss and (n, "glibc") in mrss else "-"
    print(f"| {n} | " + " | ".join(row) + f" | {diff} |")
PY
