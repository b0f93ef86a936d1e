/* Multi-threaded stress with content verification (in the spirit of mimalloc's
 * test-stress): random small and large sizes, every block carries a cookie pattern
 * checked before it is freed, blocks migrate between threads, threads exit and are
 * re-created, the main thread forks children that allocate, and a signal handler
 * allocates and frees large blocks (our path is lock-free).
 * Usage: stress THREADS ROUNDS */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define SLOTS 64
#define XCHG 256
static _Atomic(uintptr_t) exchange[XCHG]; /* blocks handed between threads */
static atomic_long errors, ops;
static int rounds;

static uint64_t rnd(uint64_t *s) { *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17; return *s; }

typedef struct { size_t n; uint64_t cookie; } head_t;

static size_t pick(uint64_t *s) {
    uint64_t r = rnd(s) % 100;
    if (r < 60) return rnd(s) % 2048 + 1;                  /* small */
    if (r < 85) return rnd(s) % (256 * 1024) + 16;         /* around the threshold */
    if (r < 98) return rnd(s) % (8u << 20) + 100000;       /* large */
    return rnd(s) % (40u << 20) + (1u << 20);              /* very large */
}

static void *make(uint64_t *s, size_t n) {
    unsigned char *p;
    uint64_t kind = rnd(s) % 8;
    if (kind == 0) p = calloc(1, n);
    else if (kind == 1) p = memalign((size_t)16 << (rnd(s) % 9), n);
    else if (kind == 2) { void *r = NULL; if (posix_memalign(&r, 4096, n)) r = NULL; p = r; }
    else p = malloc(n);
    if (!p) { atomic_fetch_add(&errors, 1); fprintf(stderr, "alloc %zu failed\n", n); return NULL; }
    if (kind == 0) { /* calloc: first, last and some middle bytes are zero */
        if (p[0] || p[n - 1] || p[n / 2]) { atomic_fetch_add(&errors, 1); fprintf(stderr, "calloc not zero\n"); }
    }
    if (malloc_usable_size(p) < n) { atomic_fetch_add(&errors, 1); fprintf(stderr, "usable too small\n"); }
    return p;
}

static void stamp(unsigned char *p, size_t n, uint64_t cookie) {
    if (n <= sizeof(head_t)) { memset(p, (int)(cookie & 0xff), n); return; }
    head_t h = {n, cookie};
    memcpy(p, &h, sizeof h);
    for (size_t i = sizeof h; i < n; i += 4096) p[i] = (unsigned char)(cookie >> (i % 7));
    p[n - 1] = (unsigned char)(cookie ^ 0x5a);
}

static int verify(unsigned char *p, size_t n, uint64_t cookie) {
    if (n <= sizeof(head_t)) {
        for (size_t i = 0; i < n; i++) if (p[i] != (unsigned char)(cookie & 0xff)) return 0;
        return 1;
    }
    head_t h;
    memcpy(&h, p, sizeof h);
    if (h.n != n || h.cookie != cookie) return 0;
    for (size_t i = sizeof h; i < n - 1; i += 4096) if (p[i] != (unsigned char)(cookie >> (i % 7))) return 0;
    return p[n - 1] == (unsigned char)(cookie ^ 0x5a);
}

static int verify_self(unsigned char *p) { /* for exchanged blocks: size and cookie in the header */
    head_t h;
    memcpy(&h, p, sizeof h);
    return verify(p, h.n, h.cookie);
}

static void *worker(void *arg) {
    uint64_t s = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
    unsigned char *blk[SLOTS] = {0};
    size_t len[SLOTS] = {0};
    uint64_t ck[SLOTS] = {0};
    for (int it = 0; it < rounds; it++) {
        int i = (int)(rnd(&s) % SLOTS);
        if (blk[i]) {
            if (!verify(blk[i], len[i], ck[i])) { atomic_fetch_add(&errors, 1); fprintf(stderr, "corrupt block\n"); }
            uint64_t act = rnd(&s) % 10;
            if (act < 2 && len[i] > sizeof(head_t)) { /* hand it to another thread */
                uintptr_t old = atomic_exchange(&exchange[rnd(&s) % XCHG], (uintptr_t)blk[i]);
                if (old) {
                    if (!verify_self((unsigned char *)old)) { atomic_fetch_add(&errors, 1); fprintf(stderr, "corrupt exchanged block\n"); }
                    free((void *)old);
                }
            } else if (act < 4) { /* realloc keeps the prefix */
                size_t m = pick(&s);
                unsigned char *r = realloc(blk[i], m);
                if (!r) { atomic_fetch_add(&errors, 1); continue; }
                size_t keep = m < len[i] ? m : len[i];
                if (keep > sizeof(head_t) && len[i] > sizeof(head_t)) {
                    head_t h; memcpy(&h, r, sizeof h);
                    if (h.cookie != ck[i]) { atomic_fetch_add(&errors, 1); fprintf(stderr, "realloc lost data\n"); }
                }
                blk[i] = r; len[i] = m; ck[i] = rnd(&s);
                stamp(r, m, ck[i]);
                atomic_fetch_add(&ops, 1);
                continue;
            } else {
                free(blk[i]);
            }
            blk[i] = NULL;
        }
        len[i] = pick(&s);
        ck[i] = rnd(&s);
        blk[i] = make(&s, len[i]);
        if (blk[i]) stamp(blk[i], len[i], ck[i]);
        atomic_fetch_add(&ops, 1);
    }
    for (int i = 0; i < SLOTS; i++) if (blk[i]) {
        if (!verify(blk[i], len[i], ck[i])) { atomic_fetch_add(&errors, 1); fprintf(stderr, "corrupt at exit\n"); }
        free(blk[i]);
    }
    return NULL;
}

static void on_alarm(int sig) {
    (void)sig;
    int saved = errno;
    for (int k = 0; k < 4; k++) { /* large only: our path takes no lock */
        unsigned char *p = malloc((size_t)(k + 1) << 20);
        if (p) { p[0] = 1; p[((size_t)(k + 1) << 20) - 1] = 2; free(p); }
    }
    errno = saved;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    rounds = argc > 2 ? atoi(argv[2]) : 20000;
    /* glibc's own large malloc takes an arena lock, so allocating from a signal handler
     * can deadlock without the preload; only the preload's large path is lock-free. */
    int preloaded = dlsym(RTLD_DEFAULT, "turingwatch_preload_stats") != NULL;
    if (preloaded) {
        struct sigaction sa = {0};
        sa.sa_handler = on_alarm;
        sa.sa_flags = SA_RESTART;
        sigaction(SIGALRM, &sa, NULL);
        struct itimerval tv = {{0, 2000}, {0, 2000}};
        setitimer(ITIMER_REAL, &tv, NULL);
    }
    int children = 0, child_fail = 0;
    for (int wave = 0; wave < 3; wave++) { /* threads exit and are re-created */
        pthread_t t[64];
        for (int i = 0; i < threads && i < 64; i++) pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(wave * 100 + i + 1));
        for (int f = 0; f < 4; f++) { /* fork while the workers allocate */
            pid_t pid = fork();
            if (pid == 0) {
                uint64_t s = 42 + f;
                for (int k = 0; k < 200; k++) {
                    size_t n = pick(&s);
                    unsigned char *p = make(&s, n);
                    if (!p) _exit(3);
                    stamp(p, n, k);
                    if (!verify(p, n, k)) _exit(4);
                    free(p);
                }
                _exit(atomic_load(&errors) ? 5 : 0);
            }
            int st = 0;
            waitpid(pid, &st, 0);
            children++;
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) { child_fail++; fprintf(stderr, "child failed: %d\n", st); }
        }
        for (int i = 0; i < threads && i < 64; i++) pthread_join(t[i], NULL);
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    for (int i = 0; i < XCHG; i++) {
        uintptr_t p = atomic_exchange(&exchange[i], 0);
        if (p) { if (!verify_self((unsigned char *)p)) atomic_fetch_add(&errors, 1); free((void *)p); }
    }
    unsigned long st[9] = {0};
    int (*stats)(unsigned long *, size_t) = (int (*)(unsigned long *, size_t))dlsym(RTLD_DEFAULT, "turingwatch_preload_stats");
    if (stats) {
        stats(st, 9);
        if (st[4] > st[6]) { atomic_fetch_add(&errors, 1); fprintf(stderr, "cache over budget\n"); }
    }
    printf("stress: %d threads x %d rounds x 3 waves, %ld ops, %d forks (%d failed), %ld errors; hits %lu misses %lu cached %lu/%lu\n",
           threads, rounds, atomic_load(&ops), children, child_fail, atomic_load(&errors), st[0], st[1], st[4], st[6]);
    return atomic_load(&errors) || child_fail;
}
