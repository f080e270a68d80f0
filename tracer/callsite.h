/* The native library that called into the driver: the first frame of the
 * calling thread's stack outside libcuda, libcudart, libcupti and memsaver,
 * found with backtrace(3) and dladdr(3).  Thread-safe, no locks of ours. */
#ifndef MSV_CALLSITE_H
#define MSV_CALLSITE_H

#include <stddef.h>

/* Writes the basename of the caller's object ("libcublasLt.so.13",
 * "python3.12", "demo-engine") into buf; "" when unknown.  Returns buf. */
const char *_msv_callsite_library(char *buf, size_t len);
/* Warm up backtrace(3) (its first call loads libgcc_s). */
void _msv_callsite_init(void);

#endif
