/* The native library that called into the driver: the first frame of the
 * calling thread's stack outside libcuda, libcudart, libcupti and memsaver,
 * found by unwinding (libgcc's _Unwind_Backtrace, stopped at that frame) and
 * dladdr(3), cached per thread by address.  A call up the same chain of
 * return addresses as the thread's last one (x86_64) reuses its answer
 * without unwinding.  Thread-safe, no locks of ours. */
#ifndef MSV_CALLSITE_H
#define MSV_CALLSITE_H

#include <stddef.h>

/* Writes the basename of the caller's object ("libcublasLt.so.13",
 * "python3.12", "demo-engine") into buf; "" when unknown.  caller: the
 * return address of the driver entry point when known (the wrapper's
 * __builtin_return_address(0)), else NULL.  Returns buf. */
const char *_msv_callsite_library(void *caller, char *buf, size_t len);
/* Warm up the unwinder (its first use loads libgcc_s). */
void _msv_callsite_init(void);

#endif
