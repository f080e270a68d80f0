#include "callsite.h"

#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
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

void _msv_callsite_init(void)
{
	void *f[2];
	backtrace(f, 2);
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
	snprintf(cache[k].base, sizeof(cache[k].base), "%s", base);
	return cache[k].base;
}

static int scan(void **frames, int from, int n, char *buf, size_t len)
{
	for (int i = from; i < n; i++) {
		const char *base = basename_of(frames[i]);
		if (!base || !*base || skipped(base))
			continue;
		snprintf(buf, len, "%s", base);
		return 1;
	}
	return 0;
}

const char *_msv_callsite_library(char *buf, size_t len)
{
	void *frames[48];
	buf[0] = '\0';
	/* Frame 0 is us; the caller is a few frames up (cudart's cudaMalloc,
	 * then its caller), so a short walk usually suffices: unwinding a deep
	 * Python stack costs microseconds per frame.  The statically linked
	 * cudart inside cuBLAS or NCCL shows up as that library, which is what
	 * a policy wants to match. */
	int n = backtrace(frames, 10);
	if (scan(frames, 1, n, buf, len) || n < 10)
		return buf;
	n = backtrace(frames, 48);
	scan(frames, 10, n, buf, len);
	return buf;
}
