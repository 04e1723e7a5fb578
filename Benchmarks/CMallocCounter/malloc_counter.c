#include "malloc_counter.h"

#include <errno.h>
#include <execinfo.h>
#include <unistd.h>
#include <stddef.h>

#if defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define VM_SANITIZED 1  // the sanitizer runtime owns malloc; interposing it as well crashes at start
#endif
#endif

#if defined(__linux__) && defined(__GLIBC__) && !defined(VM_SANITIZED)
int vm_malloc_counting(void) { return 1; }
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static unsigned long count;
static int tracing;
static __thread int in_trace;

// With tracing on, every allocation prints its call stack to stderr (for finding the source of
// an allocation; `swift demangle` reads the symbols). The guard skips backtrace's own mallocs.
static void trace(void) {
    if (!__atomic_load_n(&tracing, __ATOMIC_RELAXED) || in_trace) return;
    in_trace = 1;
    void *frames[24];
    int n = backtrace(frames, 24);
    (void)!write(2, "--- malloc\n", 11);
    backtrace_symbols_fd(frames, n, 2);
    in_trace = 0;
}

static inline void bump(void) {
    __atomic_fetch_add(&count, 1, __ATOMIC_RELAXED);
    trace();
}

void vm_malloc_trace(int on) { __atomic_store_n(&tracing, on, __ATOMIC_RELAXED); }

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
// Counting needs glibc and no sanitizer; callers check vm_malloc_counting() and report it unavailable.
int vm_malloc_counting(void) { return 0; }
unsigned long vm_malloc_count(void) { return 0; }
void vm_malloc_trace(int on) { (void)on; }
#endif
