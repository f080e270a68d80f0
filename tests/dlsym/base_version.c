/* tracer/driver.h's MSV_GLIBC_BASE_VERSION names a dlsym that this
 * architecture's glibc has (the one a glibc older than 2.34 offers only),
 * and _msv_real_dlsym_init finds a working real dlsym.  Built natively and
 * for aarch64 (run under qemu-aarch64) by the end-to-end scripts. */
#include <dlfcn.h>
#include <stdio.h>

#include "tracer/driver.h"

int main(void)
{
	void *base = dlvsym(RTLD_NEXT, "dlsym", MSV_GLIBC_BASE_VERSION);

	_msv_real_dlsym_init();
	if (!base || !_msv_real_dlsym || _msv_real_dlsym(RTLD_DEFAULT, "printf") != (void *)printf) {
		fprintf(stderr, "base_version: dlsym@%s %p, real dlsym %p\n", MSV_GLIBC_BASE_VERSION,
			base, (void *)_msv_real_dlsym);
		return 1;
	}
	printf("base_version: dlsym@%s found, real dlsym works\n", MSV_GLIBC_BASE_VERSION);
	return 0;
}
