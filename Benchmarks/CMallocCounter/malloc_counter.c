#include "malloc_counter.h"

#include <errno.h>
#include <stddef.h>

#if defined(__linux__) && defined(__GLIBC__)
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static unsigned long count;

static inline void bump(void) { __atomic_fetch_add(&count, 1, __ATOMIC_RELAXED); }

unsigned long vm_malloc_count(void) { return __atomic_load_n(&count, __ATOMIC_RELAXED); }

void *malloc(size_t n) { bump(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { bump(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { bump(); return __libc_realloc(p, n); }
void *memalign(size_t align, size_t n) { bump(); return __libc_memalign(align, n); }
void *aligned_alloc(size_t align, size_t n) { bump(); return __libc_memalign(align, n); }
int posix_memalign(void **out, size_t align, size_t n) {
    bump();
    if (align < sizeof(void *) || (align & (align - 1)) != 0) return EINVAL;
    void *p = __libc_memalign(align, n);
    if (!p && n) return ENOMEM;
    *out = p;
    return 0;
}
#else
unsigned long vm_malloc_count(void) { return 0; }  // counting needs glibc; reported as unavailable
#endif
