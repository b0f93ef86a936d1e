"""Real-program benchmark: numpy expression temporaries (two 48 MB arrays per round).

Usage: python3 numpy_temps.py SECONDS
Prints the same key=value line as churn.c.
"""

import resource
import sys
import time

import numpy as np

secs = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
a = np.random.default_rng(1).random(6_000_000)  # 48 MB of float64
t0 = time.perf_counter()
n = 0
acc = 0.0
while time.perf_counter() - t0 < secs:
    b = a * 2.0 + 1.0  # a*2.0 and (...)+1.0: fresh 48 MB temporaries, freed each round
    acc += float(b[::4096].sum())
    n += 1
dt = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
cpu = ru.ru_utime + ru.ru_stime
print(
    f"ops={n} secs={dt:.3f} ops_per_s={n / dt:.1f} cpu_s={cpu:.3f} ops_per_cpu_s={n / cpu:.1f} "
    f"minflt={ru.ru_minflt} maxrss_mib={ru.ru_maxrss / 1024:.1f}"
)
