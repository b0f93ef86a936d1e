/* Cross-allocator frees: glibc frees our chunks, we free glibc's, realloc across both,
 * and a RTLD_DEEPBIND library whose malloc/free bind to glibc. Run under the preload. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static int failures, checks;
#define CHECK(c)                                                                  \
    do {                                                                          \
        checks++;                                                                 \
        if (!(c)) {                                                               \
            failures++;                                                           \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c);          \
        }                                                                         \
    } while (0)

static void fill(unsigned char *p, size_t n, unsigned s) { for (size_t i = 0; i < n; i += 97) p[i] = (unsigned char)(i + s); }
static int same(unsigned char *p, size_t n, unsigned s) {
    for (size_t i = 0; i < n; i += 97)
        if (p[i] != (unsigned char)(i + s)) return 0;
    return 1;
}
static size_t hdr(void *p, int w) { return ((size_t *)p)[w - 2]; }

int main(int argc, char **argv) {
    size_t (*glibc_usable)(void *) = (size_t (*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
    CHECK(dlsym(RTLD_DEFAULT, "turingwatch_preload_stats") != NULL); /* really preloaded */

    /* 0. The running glibc's own mmapped-chunk layout: glibc <= 2.42 writes
     * size = mapping - offset, glibc >= 2.43 size = mapping - offset - 16. */
    unsigned char *g0 = __libc_malloc(64u << 20);
    CHECK(g0 && (hdr(g0, 1) & 2));
    size_t tail = ((hdr(g0, 1) & ~(size_t)7) & 4095) == 0 ? 0 : 16;
    CHECK((((hdr(g0, 1) & ~(size_t)7) + tail) & 4095) == 0);
    __libc_free(g0);
    printf("crossfree: glibc %s mmapped-chunk layout\n", tail ? "compact (>= 2.43)" : "classic (<= 2.42)");
    unsigned long lay[10] = {0};
    int (*stats0)(unsigned long *, size_t) = (int (*)(unsigned long *, size_t))dlsym(RTLD_DEFAULT, "turingwatch_preload_stats");
    CHECK(stats0 && stats0(lay, 10) >= 10 && lay[9] == (tail ? 2u : 1u)); /* the probe agreed */
    /* 1. Our chunk has glibc's mmapped layout: prev_size 0, size|IS_MMAPPED. */
    for (size_t n = 128 * 1024; n <= (64u << 20); n = n * 3 + 4096) {
        unsigned char *p = malloc(n);
        CHECK(p && hdr(p, 0) == 0 && (hdr(p, 1) & 2));
        CHECK((((hdr(p, 1) & ~(size_t)7) + tail) & 4095) == 0);
        CHECK(glibc_usable && glibc_usable(p) == malloc_usable_size(p));
        fill(p, n, 1);
        if (n & 1) __libc_free(p); else free(p); /* 2. glibc frees ours */
    }
    /* 3. glibc reallocs ours (mremap) and frees the result. */
    unsigned char *p = malloc(3 << 20);
    fill(p, 3 << 20, 2);
    unsigned char *q = __libc_realloc(p, 5 << 20);
    CHECK(q && same(q, 3 << 20, 2));
    q = __libc_realloc(q, 1 << 20);
    CHECK(q && same(q, 1 << 20, 2));
    __libc_free(q);
    /* glibc shrinking ours below its threshold, then our free of the glibc result. */
    p = malloc(1 << 20);
    fill(p, 1 << 20, 3);
    q = __libc_realloc(p, 1000);
    CHECK(q && same(q, 1000, 3));
    free(q);
    /* 4. We free glibc's: heap chunks, glibc-mmapped chunks, memalign'd mmapped chunks. */
    for (size_t n = 16; n < (8u << 20); n = n * 5 + 3) {
        unsigned char *g = __libc_malloc(n);
        fill(g, n, 4);
        CHECK(malloc_usable_size(g) == glibc_usable(g));
        free(g);
        g = __libc_calloc(1, n);
        CHECK(g != NULL);
        free(g);
        g = __libc_memalign(65536, n);
        CHECK(((uintptr_t)g & 65535) == 0);
        CHECK(malloc_usable_size(g) == glibc_usable(g));
        free(g);
    }
    /* 5. We realloc glibc's chunks, small->large, mmapped->larger, mmapped->small. */
    for (size_t n = 100; n < (4u << 20); n = n * 7 + 1) {
        unsigned char *g = __libc_malloc(n);
        fill(g, n, 5);
        unsigned char *r = realloc(g, n * 3 + 200000);
        CHECK(r && same(r, n, 5));
        r = realloc(r, n / 2 + 1);
        CHECK(r && same(r, n / 2 + 1, 5));
        free(r);
        g = __libc_memalign(4096, n);
        fill(g, n, 6);
        r = realloc(g, n + (1 << 20));
        CHECK(r && same(r, n, 6));
        __libc_free(r);
    }
    /* 6. RTLD_DEEPBIND library: its malloc/free are glibc's. */
    char path[4096];
    snprintf(path, sizeof path, "%s", argc > 1 ? argv[1] : "./libdeep.so");
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    CHECK(h != NULL);
    if (h) {
        void *(*dm)(size_t) = (void *(*)(size_t))dlsym(h, "deep_malloc");
        void *(*dr)(void *, size_t) = (void *(*)(void *, size_t))dlsym(h, "deep_realloc");
        void (*df)(void *) = (void (*)(void *))dlsym(h, "deep_free");
        size_t (*du)(void *) = (size_t (*)(void *))dlsym(h, "deep_usable");
        for (int i = 0; i < 50; i++) {
            size_t n = (size_t)(i % 10 + 1) * 300000;
            unsigned char *a = malloc(n); /* ours */
            fill(a, n, 7);
            CHECK(du(a) == malloc_usable_size(a));
            a = dr(a, n + 100000);        /* glibc reallocs ours */
            CHECK(a && same(a, n, 7));
            df(a);                        /* glibc frees ours */
            unsigned char *b = dm(n);     /* glibc's */
            fill(b, n, 8);
            b = realloc(b, n * 2);        /* we realloc glibc's */
            CHECK(b && same(b, n, 8));
            if (i & 1) free(b); else df(b);
            b = dm(i * 10 + 1);
            free(b);                      /* we free glibc's small */
        }
        dlclose(h);
    }
    /* 7. C23 free_sized / free_aligned_sized (not declared by glibc 2.36's headers). */
    void (*fs)(void *, size_t) = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
    void (*fas)(void *, size_t, size_t) = (void (*)(void *, size_t, size_t))dlsym(RTLD_DEFAULT, "free_aligned_sized");
    CHECK(fs != NULL && fas != NULL);
    if (fs && fas) {
        for (size_t n = 100; n < (16u << 20); n *= 9) {
            void *a = malloc(n);
            errno = 4321;
            fs(a, n);
            CHECK(errno == 4321);
            a = aligned_alloc(4096, n);
            fas(a, 4096, n);
            fs(NULL, 0);
        }
    }
    /* 8. calloc after reuse is zero; the cache was really used. */
    unsigned long st[9] = {0};
    int (*stats)(unsigned long *, size_t) = (int (*)(unsigned long *, size_t))dlsym(RTLD_DEFAULT, "turingwatch_preload_stats");
    for (int i = 0; i < 20; i++) {
        unsigned char *d = malloc(6 << 20);
        memset(d, 0xff, 6 << 20);
        free(d);
        unsigned char *z = calloc(6, 1 << 20);
        size_t bad = 0;
        for (size_t k = 0; k < (6u << 20); k++) bad += z[k] != 0;
        CHECK(bad == 0);
        free(z);
    }
    if (stats) {
        stats(st, 9);
        CHECK(st[0] > 20);          /* hits */
        CHECK(st[4] <= st[6]);      /* cached bytes <= budget */
        malloc_trim(0);
        stats(st, 9);
        CHECK(st[4] == 0 && st[5] == 0); /* trim empties the cache */
    }
    printf("crossfree: %d checks, %d failures (hits %lu, misses %lu)\n", checks, failures, st[0], st[1]);
    return failures != 0;
}
