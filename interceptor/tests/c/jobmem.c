/* One rank of a job that churns large blocks near its memory limit.
 *   jobmem SECONDS LIVE_MIB MIN_KIB MAX_KIB
 * Keeps at most LIVE_MIB of live blocks (log-uniform sizes in [MIN_KIB, MAX_KIB], every
 * page written), and for SECONDS frees random blocks and allocates new ones, never
 * holding more than LIVE_MIB plus nothing else. Run 16 of these in one memory cgroup:
 * without a preload the job's usage stays at 16 x LIVE_MIB, so a preload that caches
 * freed blocks must keep the job below its limit on its own.
 * Prints "jobmem: ops N, peak live MiB M" and exits 0; the contents are verified. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAXB 4096
static uint64_t rnd(uint64_t *s) { *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17; return *s; }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: jobmem SECONDS LIVE_MIB MIN_KIB MAX_KIB\n"); return 2; }
    double secs = atof(argv[1]);
    size_t live_max = (size_t)atol(argv[2]) << 20;
    double lmin = log(atof(argv[3])), lmax = log(atof(argv[4]));
    static unsigned char *blk[MAXB];
    static size_t len[MAXB];
    static unsigned char tag[MAXB];
    size_t live = 0, peak = 0;
    int n = 0;
    uint64_t s = 0x9e3779b97f4a7c15ull ^ ((uint64_t)getpid() << 20);
    unsigned long ops = 0;
    double t0 = now();
    while (now() - t0 < secs) {
        size_t sz = (size_t)(exp(lmin + (lmax - lmin) * (double)(rnd(&s) >> 11) / 9007199254740992.0) * 1024.0);
        /* Free random blocks until the new one fits under LIVE_MIB. */
        while (n > 0 && (live + sz > live_max || n == MAXB)) {
            int i = (int)(rnd(&s) % (uint64_t)n);
            for (size_t j = 0; j < len[i]; j += 4096)
                if (blk[i][j] != tag[i]) { fprintf(stderr, "jobmem: corrupted block\n"); return 1; }
            free(blk[i]);
            live -= len[i];
            n--;
            blk[i] = blk[n], len[i] = len[n], tag[i] = tag[n];
        }
        if (sz > live_max) sz = live_max;
        unsigned char *p = malloc(sz);
        if (!p) { perror("jobmem: malloc"); return 1; }
        unsigned char t = (unsigned char)(ops * 7 + 1);
        for (size_t j = 0; j < sz; j += 4096) p[j] = t; /* fault every page */
        blk[n] = p, len[n] = sz, tag[n] = t, n++;
        live += sz;
        if (live > peak) peak = live;
        ops++;
    }
    for (int i = 0; i < n; i++) free(blk[i]);
    printf("jobmem: ops %lu, peak live MiB %zu\n", ops, peak >> 20);
    return 0;
}
