/* A library meant to be dlopen()ed with RTLD_DEEPBIND: its malloc/free/realloc calls
 * bind to glibc directly, not to the preload (the php-fpm/hwloc/falco crash scenario). */
#include <stdlib.h>
void *deep_malloc(size_t n) { return malloc(n); }
void *deep_realloc(void *p, size_t n) { return realloc(p, n); }
void deep_free(void *p) { free(p); }
size_t deep_usable(void *p);
#include <malloc.h>
size_t deep_usable(void *p) { return malloc_usable_size(p); }
