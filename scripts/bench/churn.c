/* Large-block churn benchmark.
 *   churn THREADS SECONDS MIN_KIB MAX_KIB TOUCH SLOTS
 * Each thread keeps SLOTS live blocks; every op frees a random one and allocates a new
 * block of a log-uniform size in [MIN_KIB, MAX_KIB], then touches it
 * (TOUCH 0 = not at all, 1 = one byte per 4 KiB page, 2 = memset).
 * TOUCH 1 writes the first and the last byte and, in every page the block covers, the
 * byte at page offset 2048, whatever the block's own offset in its page. Writing at
 * block offsets 0, 4096, 8192, ... instead (as before 2026-12-02) measured where each
 * allocator puts its header: on this VM the same loop over the same pre-faulted 48 MiB
 * ran at ~8,800 ops/s when the touched bytes sat in a page's first 128 or last 128 bytes
 * (glibc's mmapped chunks start at page offset 16) and ~12,700 ops/s at offsets 0x100
 * to 0x800 (where glibc's heap happened to put them), so "glibc tuned" beat the warm loop
 * by 1.5x for a reason no allocator controls.
 * Runs for SECONDS and prints ops/s (wall and CPU time), minor faults and peak RSS:
 *   ops=N secs=S ops_per_s=R cpu_s=C ops_per_cpu_s=P minflt=F maxrss_mib=M
 * With MIN_KIB = MAX_KIB = 0 it runs the small-allocation workload instead:
 * 1024 live blocks per thread of 16..1024 bytes, write the first word.
 * With CHURN_WARM=1 in the environment it runs the "warm loop": the same sizes and
 * touches over one pre-faulted MAX_KIB block per slot, with no malloc or free at all;
 * this is what a perfect cache could reach.
 * With CHURN_OPS=N each thread stops after N ops instead of after SECONDS, so one thread's
 * run is deterministic (its instruction count under callgrind repeats exactly). */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double seconds, lmin, lmax;
static int touch, slots, small, warm;
static volatile int stop;
static uint64_t maxops; /* CHURN_OPS: ops per thread, then stop (0 = run for SECONDS) */

static uint64_t rnd(uint64_t *s) { *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17; return *s; }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

static void *worker(void *arg) {
    uint64_t s = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 7, ops = 0;
    int n = small ? 1024 : slots;
    unsigned char **live = calloc((size_t)n, sizeof *live);
    size_t maxsz = (size_t)(exp(lmax) * 1024.0) + 1;
    if (warm && !small)
        for (int i = 0; i < n; i++) {
            live[i] = malloc(maxsz);
            if (!live[i]) { perror("malloc"); exit(1); }
            memset(live[i], 1, maxsz); /* pre-fault every page */
        }
    while (!stop && (!maxops || ops < maxops)) {
        for (int k = 0; k < (small ? 4096 : 1) && (!maxops || ops < maxops); k++) {
            int i = (int)(rnd(&s) % (uint64_t)n);
            size_t sz;
            if (small) sz = 16 + rnd(&s) % 1009;
            else sz = (size_t)(exp(lmin + (lmax - lmin) * (double)(rnd(&s) >> 11) / 9007199254740992.0) * 1024.0);
            if (sz == 0) sz = 1;
            if (sz > maxsz) sz = maxsz;
            unsigned char *p;
            if (warm && !small) p = live[i];
            else { free(live[i]); p = malloc(sz); }
            if (!p) { perror("malloc"); exit(1); }
            if (small) { for (size_t j = 0; j < sz; j += 4096) p[j] = (unsigned char)j; p[sz - 1] = 1; }
            else if (touch == 1) {
                uintptr_t q = ((uintptr_t)p & ~(uintptr_t)4095) + 2048, e = (uintptr_t)p + sz;
                if (q < (uintptr_t)p) q += 4096;
                p[0] = 1;
                for (; q < e; q += 4096) *(unsigned char *)q = (unsigned char)q;
                p[sz - 1] = 1;
            }
            else if (touch == 2) memset(p, 1, sz);
            live[i] = p;
            ops++;
        }
    }
    for (int i = 0; i < n; i++) free(live[i]);
    free(live);
    return (void *)(uintptr_t)ops;
}

int main(int argc, char **argv) {
    if (argc != 7) { fprintf(stderr, "usage: churn THREADS SECONDS MIN_KIB MAX_KIB TOUCH SLOTS\n"); return 2; }
    int threads = atoi(argv[1]);
    seconds = atof(argv[2]);
    double mink = atof(argv[3]), maxk = atof(argv[4]);
    touch = atoi(argv[5]);
    slots = atoi(argv[6]);
    small = mink == 0 && maxk == 0;
    const char *w = getenv("CHURN_WARM");
    warm = w && w[0] == '1';
    const char *mo = getenv("CHURN_OPS");
    maxops = mo ? strtoull(mo, NULL, 10) : 0;
    if (!small) { lmin = log(mink); lmax = log(maxk); }
    pthread_t t[64];
    double t0 = now();
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1));
    while (!maxops && now() - t0 < seconds) { struct timespec d = {0, 2000000}; nanosleep(&d, NULL); }
    stop = !maxops; /* with CHURN_OPS the threads stop by themselves */
    uint64_t ops = 0;
    for (int i = 0; i < threads; i++) { void *r; pthread_join(t[i], &r); ops += (uint64_t)(uintptr_t)r; }
    double dt = now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    /* CPU time excludes the time other processes held our CPU, which matters on a shared
     * machine when comparing tiny per-call overheads. */
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
    printf("ops=%llu secs=%.3f ops_per_s=%.1f cpu_s=%.3f ops_per_cpu_s=%.1f minflt=%ld maxrss_mib=%.1f\n",
           (unsigned long long)ops, dt, ops / dt, cpu, ops / cpu, ru.ru_minflt, ru.ru_maxrss / 1024.0);
    return 0;
}
