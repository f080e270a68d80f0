/* How fast host memory can be made ready for a backup of GIB GiB: pinned by
 * cuMemHostAlloc (what the first pause does today), or allocated with
 * transparent huge pages (madvise MADV_HUGEPAGE), touched, and registered
 * with cuMemHostRegister; then a DtoH copy into each.  JSON lines.
 *
 * usage: bench-pin_bw [GIB]   (default 4) */
#include <cuda.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "bench_util.h"

#define F(name) static __typeof__(&name) p_##name
F(cuInit);
F(cuDeviceGet);
F(cuDevicePrimaryCtxRetain);
F(cuCtxSetCurrent);
F(cuMemAlloc);
F(cuMemHostAlloc);
F(cuMemFreeHost);
F(cuMemHostRegister);
F(cuMemHostUnregister);
F(cuMemcpyDtoH);


int main(int argc, char **argv)
{
	size_t size = (argc > 1 ? strtoull(argv[1], NULL, 10) : 4) << 30;
	void *h = dlopen("libcuda.so.1", RTLD_NOW);
	if (!h)
		return 77;
#define L(name, sym) p_##name = (__typeof__(p_##name))dlsym(h, sym)
	L(cuInit, "cuInit");
	L(cuDeviceGet, "cuDeviceGet");
	L(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
	L(cuCtxSetCurrent, "cuCtxSetCurrent");
	L(cuMemAlloc, "cuMemAlloc_v2");
	L(cuMemHostAlloc, "cuMemHostAlloc");
	L(cuMemFreeHost, "cuMemFreeHost");
	L(cuMemHostRegister, "cuMemHostRegister_v2");
	L(cuMemHostUnregister, "cuMemHostUnregister");
	L(cuMemcpyDtoH, "cuMemcpyDtoH_v2");
	CUdevice dev;
	CUcontext ctx;
	CUdeviceptr d;
	BENCH_CHECK(p_cuInit(0));
	BENCH_CHECK(p_cuDeviceGet(&dev, 0));
	BENCH_CHECK(p_cuDevicePrimaryCtxRetain(&ctx, dev));
	BENCH_CHECK(p_cuCtxSetCurrent(ctx));
	BENCH_CHECK(p_cuMemAlloc(&d, size));
	double t0 = bench_now_ms();
	void *pinned;
	BENCH_CHECK(p_cuMemHostAlloc(&pinned, size, CU_MEMHOSTALLOC_PORTABLE));
	double t1 = bench_now_ms();
	BENCH_CHECK(p_cuMemcpyDtoH(pinned, d, size));
	double t2 = bench_now_ms();
	printf("{\"bench\":\"pin_bw\",\"how\":\"cuMemHostAlloc\",\"gib\":%zu,\"prepare_ms\":%.1f,\"prepare_gbps\":%.2f,"
	       "\"dtoh_gbps\":%.2f}\n", size >> 30, t1 - t0, size / (t1 - t0) / 1e6, size / (t2 - t1) / 1e6);
	BENCH_CHECK(p_cuMemFreeHost(pinned));
	for (int huge = 1; huge >= 0; huge--) {
		double a0 = bench_now_ms();
		void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return 1;
		if (huge)
			madvise(p, size, MADV_HUGEPAGE);
		memset(p, 0, size);
		double a1 = bench_now_ms();
		BENCH_CHECK(p_cuMemHostRegister(p, size, CU_MEMHOSTREGISTER_PORTABLE));
		double a2 = bench_now_ms();
		BENCH_CHECK(p_cuMemcpyDtoH(p, d, size));
		double a3 = bench_now_ms();
		printf("{\"bench\":\"pin_bw\",\"how\":\"mmap%s+touch+cuMemHostRegister\",\"gib\":%zu,\"touch_ms\":%.1f,"
		       "\"register_ms\":%.1f,\"prepare_gbps\":%.2f,\"dtoh_gbps\":%.2f}\n",
		       huge ? "+MADV_HUGEPAGE" : "", size >> 30, a1 - a0, a2 - a1, size / (a2 - a0) / 1e6,
		       size / (a3 - a2) / 1e6);
		BENCH_CHECK(p_cuMemHostUnregister(p));
		munmap(p, size);
	}
	return 0;
}
