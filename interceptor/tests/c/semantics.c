/* glibc 2.36 semantics of every interposed function, small and large sizes.
 * Runs identically with and without LD_PRELOAD=libturingwatch_preload.so; the
 * assertions are ports of glibc's malloc/tst-*.c checks (tst-malloc, tst-calloc,
 * tst-realloc, tst-reallocarray, tst-memalign, tst-posix_memalign, tst-valloc,
 * tst-pvalloc, tst-malloc-usable, tst-malloc-too-large, tst-free-errno). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <gnu/libc-version.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

static int failures, checks;
#define CHECK(c)                                                                 \
    do {                                                                         \
        checks++;                                                                \
        if (!(c)) {                                                              \
            failures++;                                                          \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c);         \
        }                                                                        \
    } while (0)

static const size_t sizes[] = {0, 1, 24, 100, 4096, 128 * 1024 - 17, 128 * 1024, 200000,
                               1 << 20, (3 << 20) + 5, 48 << 20};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 31 + seed);
}
static int same(const unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(i * 31 + seed)) return 0;
    return 1;
}
static int zero(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

static void t_malloc_free(void) {
    for (size_t i = 0; i < NSIZES; i++) {
        for (int round = 0; round < 3; round++) { /* rounds 2+ come from the cache */
            size_t n = sizes[i];
            unsigned char *p = malloc(n);
            CHECK(p != NULL);
            CHECK(((uintptr_t)p & 15) == 0);
            size_t u = malloc_usable_size(p);
            CHECK(u >= n);
            fill(p, u, round); /* the whole usable size is writable */
            CHECK(same(p, u, round));
            errno = 12345;
            free(p);
            CHECK(errno == 12345); /* free preserves errno */
        }
    }
    errno = 0;
    free(NULL);
    CHECK(errno == 0);
    CHECK(malloc_usable_size(NULL) == 0);
    void *a = malloc(0), *b = malloc(0);
    CHECK(a && b && a != b); /* unique pointers */
    CHECK(malloc_usable_size(a) >= 0);
    free(a);
    free(b);
    /* tst-malloc-too-large */
    size_t huge[] = {SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX, (size_t)PTRDIFF_MAX + 1,
                     (size_t)PTRDIFF_MAX - 100000};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        errno = 0;
        CHECK(malloc(huge[i]) == NULL && errno == ENOMEM);
        errno = 0;
        CHECK(calloc(1, huge[i]) == NULL && errno == ENOMEM);
        errno = 0;
        CHECK(memalign(4096, huge[i]) == NULL && errno == ENOMEM);
        errno = 0;
        CHECK(valloc(huge[i]) == NULL && errno == ENOMEM);
        errno = 0;
        CHECK(pvalloc(huge[i]) == NULL && errno == ENOMEM);
        void *r = (void *)1;
        CHECK(posix_memalign(&r, 64, huge[i]) == ENOMEM && r == (void *)1);
    }
}

static void t_calloc(void) {
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        for (int round = 0; round < 3; round++) {
            /* Dirty a block of the same size first so calloc may get it back. */
            unsigned char *d = malloc(n ? n : 1);
            memset(d, 0xa5, n);
            free(d);
            unsigned char *p = calloc(1, n);
            CHECK(p != NULL);
            CHECK(zero(p, n));
            free(p);
            p = calloc(n ? n : 1, 1);
            CHECK(p && zero(p, n));
            free(p);
        }
    }
    errno = 0;
    CHECK(calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc((size_t)1 << 33, (size_t)1 << 33) == NULL && errno == ENOMEM);
    void *p = calloc(0, 0);
    CHECK(p != NULL);
    free(p);
}

static void t_realloc(void) {
    /* Every size to every size: contents preserved up to min(old, new). */
    for (size_t i = 0; i < NSIZES; i++) {
        for (size_t j = 0; j < NSIZES; j++) {
            size_t a = sizes[i], b = sizes[j];
            if (b == 0) continue;
            unsigned char *p = malloc(a);
            CHECK(p != NULL);
            fill(p, a, 7);
            unsigned char *q = realloc(p, b);
            CHECK(q != NULL);
            CHECK(malloc_usable_size(q) >= b);
            CHECK(same(q, a < b ? a : b, 7));
            fill(q, b, 9);
            free(q);
        }
    }
    /* realloc(NULL, n) == malloc(n); realloc(NULL, 0) returns a minimum chunk. */
    void *p = realloc(NULL, 1 << 20);
    CHECK(p != NULL && malloc_usable_size(p) >= (1 << 20));
    /* realloc(p, 0) frees p and returns NULL (glibc REALLOC_ZERO_BYTES_FREES). */
    CHECK(realloc(p, 0) == NULL);
    p = realloc(NULL, 0);
    CHECK(p != NULL);
    CHECK(realloc(p, 0) == NULL);
    p = malloc(100);
    CHECK(realloc(p, 0) == NULL);
    /* Failure leaves the old block intact. */
    for (size_t i = 0; i < NSIZES; i++) {
        unsigned char *o = malloc(sizes[i]);
        fill(o, sizes[i], 3);
        errno = 0;
        CHECK(realloc(o, SIZE_MAX - 8) == NULL && errno == ENOMEM);
        errno = 0;
        CHECK(realloc(o, (size_t)PTRDIFF_MAX + 1) == NULL && errno == ENOMEM);
        CHECK(same(o, sizes[i], 3));
        free(o);
    }
    /* Growing a large block step by step (mremap path) keeps its contents. */
    size_t n = 200000;
    unsigned char *g = malloc(n);
    fill(g, n, 5);
    for (int k = 0; k < 8; k++) {
        size_t m = n * 2 + 12345;
        g = realloc(g, m);
        CHECK(g && same(g, n, 5));
        fill(g, m, 5);
        n = m;
    }
    for (int k = 0; k < 8; k++) { /* and shrinking */
        size_t m = n / 3;
        g = realloc(g, m);
        CHECK(g && same(g, m, 5));
        n = m;
    }
    free(g);
}

static void t_reallocarray(void) {
    errno = 0;
    CHECK(reallocarray(NULL, SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
    unsigned char *p = reallocarray(NULL, 1000, 1000);
    CHECK(p != NULL && malloc_usable_size(p) >= 1000000);
    fill(p, 1000000, 1);
    errno = 0;
    CHECK(reallocarray(p, SIZE_MAX, SIZE_MAX) == NULL && errno == ENOMEM);
    CHECK(same(p, 1000000, 1));
    p = reallocarray(p, 3000, 1000);
    CHECK(p && same(p, 1000000, 1));
    CHECK(reallocarray(p, 0, 1000) == NULL); /* frees */
}

/* glibc 2.38+ follows ISO C17 in aligned_alloc: an alignment that is not a power of two
 * fails with EINVAL (2.36 rounds it up like memalign). Ask libc.so.6 itself, so the
 * preload is held to the semantics of whichever glibc it runs on. */
static int c17_aligned_alloc(void) {
    void *h = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    void *(*aa)(size_t, size_t) = h ? (void *(*)(size_t, size_t))dlsym(h, "aligned_alloc") : NULL;
    if (!aa) return 0;
    void *p = aa(24, 64);
    if (p) { free(p); return 0; }
    return 1;
}

static void t_aligned(void) {
    int c17 = c17_aligned_alloc();
    static const size_t aligns[] = {1, 2, 8, 16, 24, 32, 48, 64, 100, 256, 4096, 8192, 65536, 1 << 21};
    for (size_t a = 0; a < sizeof aligns / sizeof aligns[0]; a++) {
        size_t al = aligns[a], eff = 16;
        while (eff < al) eff <<= 1; /* glibc rounds non-powers of two up */
        for (size_t i = 0; i < NSIZES; i++) {
            size_t n = sizes[i];
            for (int round = 0; round < 2; round++) {
                unsigned char *p = memalign(al, n);
                CHECK(p != NULL && ((uintptr_t)p % eff) == 0);
                CHECK(malloc_usable_size(p) >= n);
                fill(p, n, 2);
                free(p);
                errno = 0;
                p = aligned_alloc(al, n); /* glibc 2.36: same as memalign */
                if (c17 && (al & (al - 1)) != 0) { /* glibc 2.38+: ISO C17 */
                    CHECK(p == NULL && errno == EINVAL);
                    p = memalign(al, n);
                }
                CHECK(p != NULL && ((uintptr_t)p % eff) == 0);
                fill(p, n, 2);
                unsigned char *q = realloc(p, n + 300000);
                CHECK(q && same(q, n, 2));
                free(q);

                void *r = (void *)1;
                int rc = posix_memalign(&r, al, n);
                int valid = al % sizeof(void *) == 0 && (al & (al - 1)) == 0;
                if (valid) {
                    CHECK(rc == 0 && r != NULL && ((uintptr_t)r % al) == 0);
                    CHECK(malloc_usable_size(r) >= n);
                    memset(r, 1, n);
                    free(r);
                } else {
                    CHECK(rc == EINVAL && r == (void *)1); /* *p untouched on error */
                }
            }
        }
    }
    void *r = (void *)1;
    CHECK(posix_memalign(&r, 0, 100) == EINVAL && r == (void *)1);
    errno = 0;
    CHECK(memalign(((size_t)1 << 63) + 1, 10) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(memalign((size_t)1 << 63, 10) == NULL && errno == ENOMEM);
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        unsigned char *p = valloc(n);
        CHECK(p && ((uintptr_t)p & 4095) == 0 && malloc_usable_size(p) >= n);
        memset(p, 3, n);
        free(p);
        p = pvalloc(n);
        CHECK(p && ((uintptr_t)p & 4095) == 0);
        if (n >= 4096) CHECK(malloc_usable_size(p) >= ((n + 4095) & ~(size_t)4095));
        memset(p, 3, n);
        free(p);
    }
}

static void t_trim_and_errno(void) {
    void *p[8];
    for (int i = 0; i < 8; i++) p[i] = malloc((size_t)(i + 1) << 20);
    for (int i = 0; i < 8; i++) free(p[i]);
    errno = 777;
    int r = malloc_trim(0);
    CHECK(r == 0 || r == 1);
    CHECK(errno == 777);
    /* tst-free-errno, simplified: free keeps errno whatever the unmap does. */
    for (int i = 0; i < 50; i++) {
        void *q = malloc((size_t)(i % 7 + 1) << 18);
        errno = ENOSPC;
        free(q);
        CHECK(errno == ENOSPC);
    }
}

/* strdup & co. inside libc must use the interposed malloc (tst-interpose-*). */
static void t_libc_internal(void) {
    char big[300000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    char *s = strdup(big);
    CHECK(s && strlen(s) == sizeof big - 1);
    free(s);
    char *line = NULL;
    size_t cap = 0;
    FILE *f = fmemopen(big, sizeof big - 1, "r");
    CHECK(f != NULL);
    CHECK(getline(&line, &cap, f) == (ssize_t)(sizeof big - 1));
    CHECK(cap >= sizeof big - 1);
    fclose(f);
    free(line);
}

static size_t vm_bytes(void) {
    unsigned long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%lu", &pages) != 1) pages = 0;
        fclose(f);
    }
    return pages * 4096;
}

/* Out of address space (RLIMIT_AS): a cache full of unusable chunks must be given back
 * before a large malloc fails, and real exhaustion is ENOMEM (tst-malloc-too-large). */
static void t_address_space_limit(void) {
    struct rlimit old;
    getrlimit(RLIMIT_AS, &old);
    size_t base = vm_bytes();
    void *p[4];
    for (int i = 0; i < 4; i++) p[i] = malloc(64u << 20);
    for (int i = 0; i < 4; i++) free(p[i]); /* cached by the preload: still mapped */
    struct rlimit lim = {base + (300u << 20), old.rlim_max};
    CHECK(setrlimit(RLIMIT_AS, &lim) == 0);
    unsigned char *q = malloc(200u << 20);
    CHECK(q != NULL);
    if (q) { q[0] = 1; q[(200u << 20) - 1] = 2; }
    free(q);
    errno = 0;
    CHECK(malloc(400u << 20) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(400, 1u << 20) == NULL && errno == ENOMEM);
    void *r = (void *)1;
    CHECK(posix_memalign(&r, 1u << 16, 400u << 20) == ENOMEM && r == (void *)1);
    q = malloc(100u << 20);
    CHECK(q != NULL);
    free(q);
    CHECK(setrlimit(RLIMIT_AS, &old) == 0);
}

int main(void) {
    t_malloc_free();
    t_calloc();
    t_realloc();
    t_reallocarray();
    t_aligned();
    t_trim_and_errno();
    t_libc_internal();
    t_address_space_limit();
    int (*stats)(unsigned long *, size_t) = (int (*)(unsigned long *, size_t))dlsym(RTLD_DEFAULT, "turingwatch_preload_stats");
    printf("semantics: %d checks, %d failures (%s, glibc %s, aligned_alloc %s)\n", checks, failures,
           stats ? "preloaded" : "plain glibc", gnu_get_libc_version(), c17_aligned_alloc() ? "ISO C17" : "like memalign");
    return failures != 0;
}
