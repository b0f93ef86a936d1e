/* Page-offset sweep: how fast the one-byte-per-page touch loop of churn.c runs over the
 * same pre-faulted 48 MiB, depending only on where in each 4 KiB page the touched byte
 * lies. No allocator is involved (one mmap, faulted once before timing).
 *   page_offset [SECONDS_PER_OFFSET]
 * prints one line per offset: "offset=0x10 ops_per_s=8835".
 * Why it exists: before 2026-12-02 churn.c touched bytes at block offsets 0, 4096, ...,
 * so the page offset was the allocator's header offset (16 for glibc's mmapped chunks
 * and for turingwatch's, whatever glibc's heap gave for "glibc tuned"), and this sweep
 * showed that offset alone moving the loop by 1.4-1.7x on the project's VM that day (flat,
 * within 8 %, on 2026-12-03 after the VM restarted: it depends on the host). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    const size_t sz = (size_t)48 << 20;
    unsigned char *base = mmap(NULL, sz + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) { perror("mmap"); return 1; }
    for (size_t j = 0; j < sz + 4096; j += 4096) base[j] = 1; /* fault every page once */
    const size_t offs[] = {0x0, 0x10, 0x20, 0x40, 0x80, 0x100, 0x200, 0x400, 0x800, 0xc00, 0xf80, 0xfc0, 0xff0};
    for (size_t k = 0; k < sizeof offs / sizeof offs[0]; k++) {
        unsigned char *p = base + offs[k];
        double t0 = now();
        long ops = 0;
        while (now() - t0 < secs) {
            for (size_t j = 0; j < sz; j += 4096) p[j] = (unsigned char)j;
            ops++;
        }
        printf("offset=%#zx ops_per_s=%.0f\n", offs[k], ops / (now() - t0));
    }
    return 0;
}
