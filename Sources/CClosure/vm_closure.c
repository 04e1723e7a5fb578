#include "vm_closure.h"

// The Swift closure `(Int, Int) -> Void`: its context travels in the swiftself register.
typedef __attribute__((swiftcall)) void (*vm_closure_body)(intptr_t, intptr_t, void *__attribute__((swift_context)));

__attribute__((swiftcall)) void vm_closure_store(vm_closure *slot, void *function, void *context) {
    slot->function = function;
    slot->context = context;
}

__attribute__((swiftcall)) void vm_closure_call(const vm_closure *slot, intptr_t ith, intptr_t nth) {
    ((vm_closure_body)slot->function)(ith, nth, slot->context);
}
