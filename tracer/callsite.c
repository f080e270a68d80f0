#include "callsite.h"

#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
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

const char *_msv_callsite_library(char *buf, size_t len)
{
	void *frames[48];
	int n = backtrace(frames, 48);
	buf[0] = '\0';
	/* Frame 0 is us; the statically linked cudart inside cuBLAS or NCCL
	 * shows up as that library, which is what a policy wants to match. */
	for (int i = 1; i < n; i++) {
		Dl_info info;
		if (!dladdr(frames[i], &info) || !info.dli_fname)
			continue;
		/* glibc names the main program "" in its link map. */
		const char *name = *info.dli_fname ? info.dli_fname : program_invocation_short_name;
		const char *base = strrchr(name, '/');
		base = base ? base + 1 : name;
		if (!*base || skipped(base))
			continue;
		snprintf(buf, len, "%s", base);
		break;
	}
	return buf;
}
