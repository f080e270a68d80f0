#include "callsite.h"

#include <dlfcn.h>
#include <errno.h>
#include <unwind.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Objects that sit between the application and the driver. */
static const char *const skip[] = {"libcuda.so", "libcudart.so", "libcupti.so", "libmemsaver.so",
				   "libnvidia-ml.so"};

static int skipped(const char *base)
{
	for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
		if (strncmp(base, skip[i], strlen(skip[i])) == 0)
			return 1;
	return 0;
}

static _Unwind_Reason_Code stop(struct _Unwind_Context *ctx, void *arg)
{
	(void)ctx;
	(void)arg;
	return _URC_END_OF_STACK;
}

void _msv_callsite_init(void)
{
	_Unwind_Backtrace(stop, NULL);
}

/* strlcpy: snprintf("%s") costs a printf per allocation. */
static void copy(char *dst, size_t len, const char *src)
{
	size_t n = strlen(src);
	if (n >= len)
		n = len - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* dladdr takes the loader's lock and walks the link maps; the same few
 * return addresses (cudart's, cuBLAS's) come back on every allocation, so a
 * small per-thread cache of address -> basename skips it. */
#define CACHE 64
static __thread struct {
	void *pc;
	char base[64];
} cache[CACHE];

static const char *basename_of(void *pc)
{
	unsigned k = (unsigned)(((uintptr_t)pc >> 4) * 2654435761u) % CACHE;
	if (cache[k].pc == pc)
		return cache[k].base;
	Dl_info info;
	if (!dladdr(pc, &info) || !info.dli_fname)
		return NULL;
	/* glibc names the main program "" in its link map. */
	const char *name = *info.dli_fname ? info.dli_fname : program_invocation_short_name;
	const char *base = strrchr(name, '/');
	base = base ? base + 1 : name;
	cache[k].pc = pc;
	copy(cache[k].base, sizeof(cache[k].base), base);
	return cache[k].base;
}

struct walk {
	char *buf;
	size_t len;
	int n;
};

/* Stop at the first frame outside the skipped objects: unwinding costs
 * a few hundred instructions per frame (FDE lookup), the bulk of
 * memsaver's cost per cudaMalloc. */
static _Unwind_Reason_Code step(struct _Unwind_Context *ctx, void *arg)
{
	struct walk *w = arg;
	if (w->n++ == 0) /* ourselves */
		return _URC_NO_REASON;
	void *pc = (void *)_Unwind_GetIP(ctx);
	const char *base = pc ? basename_of(pc) : NULL;
	if (base && *base && !skipped(base)) {
		copy(w->buf, w->len, base);
		return _URC_END_OF_STACK;
	}
	return w->n > 48 ? _URC_END_OF_STACK : _URC_NO_REASON;
}

const char *_msv_callsite_library(void *caller, char *buf, size_t len)
{
	buf[0] = '\0';
	/* The driver's caller itself, when the wrapper knows it: NCCL and
	 * cuBLAS link cudart statically and call the driver directly, so the
	 * common library cases need no unwinding at all. */
	const char *base = caller ? basename_of(caller) : NULL;
	if (base && *base && !skipped(base)) {
		copy(buf, len, base);
		return buf;
	}
	struct walk w = {.buf = buf, .len = len};
	_Unwind_Backtrace(step, &w);
	return buf;
}
