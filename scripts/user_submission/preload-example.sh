#!/bin/bash
# Template: run a batch job with the turingwatch large-chunk cache preloaded.
#
# The library makes programs that repeatedly allocate and free large buffers (>= 128 KiB)
# faster by keeping freed buffers mapped and handing them out again, so their pages do not
# have to be faulted in (zeroed by the kernel) every time. The program is not changed or
# rebuilt; memory stays glibc-compatible, and the cache is bounded by a byte budget.
#
# Submit with:  sbatch preload-example.sh
#
#SBATCH --job-name=preload-example
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=01:00:00
#SBATCH --output=%x-%j.out

set -euo pipefail

# Where the site installed the library (built from interceptor/ with
# `cargo build --release`; the file is target/release/libturingwatch_preload.so).
TURINGWATCH_PRELOAD_LIB=${TURINGWATCH_PRELOAD_LIB:-/opt/turingwatch/lib/libturingwatch_preload.so}

# Settings (all optional; an invalid value is reported once on stderr and the default used):
#   TURINGWATCH_PRELOAD_BUDGET       most bytes each process keeps cached (default: min(1 GiB,
#                                    25 % of the job's cgroup memory limit), a second cap: the
#                                    job as a whole is bounded by the next setting
#   TURINGWATCH_PRELOAD_JOB_HIGH     percent of the job's cgroup limit above which no process
#                                    of the job caches and caches are released (default 75;
#                                    from 2/3 of it cached buffers are MADV_FREE, reclaimable)
#   TURINGWATCH_PRELOAD_THRESHOLD    smallest request that is cached (default 128K)
#   TURINGWATCH_PRELOAD_CLASS_SLOTS  cached buffers per size class, 0..32 (default 32)
#   TURINGWATCH_PRELOAD_MAX_MAPPINGS most cached buffers in total (default 1024)
#   TURINGWATCH_PRELOAD_STATS=1      print hits, misses, bytes reused/released and the
#                                    page faults avoided to stderr when each process exits
#   TURINGWATCH_PRELOAD_DISABLE=1    pure pass-through to glibc (e.g. for valgrind runs)
export TURINGWATCH_PRELOAD_BUDGET=2G
export TURINGWATCH_PRELOAD_STATS=1

# Preload only for the application: LD_PRELOAD is inherited by every child process
# (fine for scripts, Python, MPI ranks started by srun), but do not put it on programs with
# their own statically linked allocator such as rustc/cargo.
if [ -r "$TURINGWATCH_PRELOAD_LIB" ]; then
    export LD_PRELOAD="$TURINGWATCH_PRELOAD_LIB${LD_PRELOAD:+:$LD_PRELOAD}"
else
    echo "warning: $TURINGWATCH_PRELOAD_LIB not found, running without the preload" >&2
fi

# Python: set PYTHONMALLOC=malloc only if small objects should go through malloc too;
# large arrays (numpy etc.) reach the cache either way.
srun ./my_application --input data.bin --output result.bin

# Or for a single step only, without exporting it for the whole script:
#   LD_PRELOAD="$TURINGWATCH_PRELOAD_LIB" srun python3 analysis.py
