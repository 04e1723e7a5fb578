// Heap-allocation counting for vitmerge-bench: this target defines malloc, calloc, realloc,
// posix_memalign, aligned_alloc and memalign, forwarding to glibc's __libc_* entry points and
// counting every call. Linked into the benchmark and the allocation tests (ELF interposition makes
// every library in the process, the Swift runtime included, call these). Off under ASan and TSan.
#pragma once

/// Allocation calls (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign) so far.
unsigned long vm_malloc_count(void);

/// 1 when allocations are counted (glibc, no sanitizer), else 0 and vm_malloc_count() stays 0.
int vm_malloc_counting(void);

/// With `on` nonzero, every counted allocation prints its call stack to stderr.
void vm_malloc_trace(int on);
