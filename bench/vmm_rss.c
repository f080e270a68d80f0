/* Whether the driver's own host memory grows with release/re-create cycles
 * of VMM memory, as a pause/resume loop makes them: GIB GiB in REGIONS
 * regions of equal size (an engine has about 150) are unmapped, released,
 * created, mapped and granted access CYCLES times; the process's resident
 * set size is printed every tenth of the way.  JSON lines.
 *
 * usage: bench-vmm_rss [GIB [CYCLES [REGIONS]]]   (defaults 40 200 1) */
#include <cuda.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"

#define F(name) static __typeof__(&name) p_##name
F(cuInit);
F(cuDeviceGet);
F(cuDevicePrimaryCtxRetain);
F(cuCtxSetCurrent);
F(cuMemAddressReserve);
F(cuMemCreate);
F(cuMemRelease);
F(cuMemMap);
F(cuMemUnmap);
F(cuMemSetAccess);

int main(int argc, char **argv)
{
	size_t size = (argc > 1 ? strtoull(argv[1], NULL, 10) : 40) << 30;
	int cycles = argc > 2 ? atoi(argv[2]) : 200;
	int n = argc > 3 ? atoi(argv[3]) : 1;
	if (n < 1 || n > 4096)
		n = 1;
	void *h = bench_libcuda();
#define L(name) p_##name = (__typeof__(p_##name))dlsym(h, #name)
	L(cuInit);
	L(cuDeviceGet);
	L(cuDevicePrimaryCtxRetain);
	L(cuCtxSetCurrent);
	p_cuMemAddressReserve = (__typeof__(p_cuMemAddressReserve))dlsym(h, "cuMemAddressReserve");
	L(cuMemCreate);
	L(cuMemRelease);
	L(cuMemMap);
	L(cuMemUnmap);
	L(cuMemSetAccess);
	CUdevice dev;
	CUcontext ctx;
	BENCH_CHECK(p_cuInit(0));
	BENCH_CHECK(p_cuDeviceGet(&dev, 0));
	BENCH_CHECK(p_cuDevicePrimaryCtxRetain(&ctx, dev));
	BENCH_CHECK(p_cuCtxSetCurrent(ctx));
	CUmemAllocationProp prop = {.type = CU_MEM_ALLOCATION_TYPE_PINNED,
				    .location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = dev}};
	CUmemAccessDesc acc = {.location = prop.location, .flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
	size_t each = (size / n + (2u << 20) - 1) / (2u << 20) * (2u << 20);
	CUdeviceptr *va = calloc(n, sizeof(*va));
	CUmemGenericAllocationHandle *mh = calloc(n, sizeof(*mh));
	for (int i = 0; i < n; i++) {
		BENCH_CHECK(p_cuMemAddressReserve(&va[i], each, 2 << 20, 0, 0));
		BENCH_CHECK(p_cuMemCreate(&mh[i], each, &prop, 0));
		BENCH_CHECK(p_cuMemMap(va[i], each, 0, mh[i], 0));
		BENCH_CHECK(p_cuMemSetAccess(va[i], each, &acc, 1));
	}
	long r0 = bench_rss_kib();
	for (int c = 1; c <= cycles; c++) {
		for (int i = 0; i < n; i++) {
			BENCH_CHECK(p_cuMemUnmap(va[i], each));
			BENCH_CHECK(p_cuMemRelease(mh[i]));
		}
		for (int i = 0; i < n; i++) {
			BENCH_CHECK(p_cuMemCreate(&mh[i], each, &prop, 0));
			BENCH_CHECK(p_cuMemMap(va[i], each, 0, mh[i], 0));
			BENCH_CHECK(p_cuMemSetAccess(va[i], each, &acc, 1));
		}
		if (c == 1 || c % (cycles / 10 ? cycles / 10 : 1) == 0)
			printf("{\"bench\":\"vmm_rss\",\"gib\":%zu,\"regions\":%d,\"cycle\":%d,\"rss_kib\":%ld,"
			       "\"growth_kib\":%ld}\n",
			       size >> 30, n, c, bench_rss_kib(), bench_rss_kib() - r0);
	}
	return 0;
}
