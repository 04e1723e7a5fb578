// A Swift closure handed to other threads without boxing it.
//
// Swift has no way to store a non-escaping closure, and `withoutActuallyEscaping` wraps it in a
// heap-allocated thunk on every call. A closure is two words under the Swift calling convention
// (function, context); these two functions keep those words in a slot and call them, so the
// thread pool can publish the caller's stack closure to its workers with no allocation. The
// caller must keep the closure alive until every call has returned (ThreadPool.run waits).
//
// Swift declares them with @_silgen_name (ThreadPool.swift), passing `(Int, Int) -> Void`.
#ifndef VM_CLOSURE_H
#define VM_CLOSURE_H
#include <stdint.h>

typedef struct {
    void *function;
    void *context;
} vm_closure;

#endif
