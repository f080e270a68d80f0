/* How long CUDA VMM takes to give physical memory back and to take it again,
 * by step (create, map, set access; unmap, release), for one large region and
 * for many small ones, sequentially and from several threads, and memory
 * that was written before its release re-created in one piece or in pieces
 * from several threads (what a resume does).  The saver's
 * pause and resume are made of exactly these calls.  JSON lines on stdout.
 *
 * usage: bench-vmm_map [LARGE_GIB [SMALL_COUNT [SMALL_MIB [THREADS]]]]
 * (defaults 64 1000 4 8).  Runs on any driver with VMM: the real one or the
 * fake (build/fakecuda) with small sizes. */
#include <cuda.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench_util.h"

#define F(name) static __typeof__(&name) p_##name
F(cuInit);
F(cuDeviceGet);
F(cuDevicePrimaryCtxRetain);
F(cuCtxSetCurrent);
F(cuMemAddressReserve);
F(cuMemAddressFree);
F(cuMemCreate);
F(cuMemRelease);
F(cuMemMap);
F(cuMemUnmap);
F(cuMemSetAccess);
F(cuCtxSynchronize);
F(cuMemsetD8);

static CUcontext ctx;

#define now bench_now_ms
#define CHECK BENCH_CHECK

struct job {
	CUdeviceptr *va;
	CUmemGenericAllocationHandle *h;
	size_t n, size;
	double t_create, t_map, t_access, t_unmap, t_release;
};

static const CUmemAllocationProp prop = {.type = CU_MEM_ALLOCATION_TYPE_PINNED,
					 .location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 0}};
static const CUmemAccessDesc acc = {.location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 0},
				    .flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE};

static void *map_all(void *arg)
{
	struct job *j = arg;
	CHECK(p_cuCtxSetCurrent(ctx));
	double t = now();
	for (size_t i = 0; i < j->n; i++)
		CHECK(p_cuMemCreate(&j->h[i], j->size, &prop, 0));
	j->t_create = now() - t, t = now();
	for (size_t i = 0; i < j->n; i++)
		CHECK(p_cuMemMap(j->va[i], j->size, 0, j->h[i], 0));
	j->t_map = now() - t, t = now();
	for (size_t i = 0; i < j->n; i++)
		CHECK(p_cuMemSetAccess(j->va[i], j->size, &acc, 1));
	j->t_access = now() - t;
	return NULL;
}

static void *unmap_all(void *arg)
{
	struct job *j = arg;
	CHECK(p_cuCtxSetCurrent(ctx));
	double t = now();
	for (size_t i = 0; i < j->n; i++)
		CHECK(p_cuMemUnmap(j->va[i], j->size));
	j->t_unmap = now() - t, t = now();
	for (size_t i = 0; i < j->n; i++)
		CHECK(p_cuMemRelease(j->h[i]));
	j->t_release = now() - t;
	return NULL;
}

/* dirty: the memory is written before each release, as an engine's is
 * (the driver may clear released memory before handing it out again);
 * delay_ms: sleep between the release and the next creation. */
static void run(const char *name, size_t n, size_t size, int threads, int dirty, int delay_ms)
{
	CUdeviceptr *va = calloc(n, sizeof(*va));
	CUmemGenericAllocationHandle *h = calloc(n, sizeof(*h));
	for (size_t i = 0; i < n; i++)
		CHECK(p_cuMemAddressReserve(&va[i], size, 2 << 20, 0, 0));
	struct job jobs[64];
	pthread_t t[64];
	size_t per = (n + threads - 1) / threads;
	for (int pass = 0; pass < 2; pass++) { /* first pass warms up; the second is reported */
		for (int k = 0; k < threads; k++) {
			size_t lo = k * per < n ? k * per : n, hi = lo + per < n ? lo + per : n;
			jobs[k] = (struct job){.va = va + lo, .h = h + lo, .n = hi - lo, .size = size};
		}
		double t0 = now();
		for (int k = 0; k < threads; k++)
			pthread_create(&t[k], NULL, map_all, &jobs[k]);
		for (int k = 0; k < threads; k++)
			pthread_join(t[k], NULL);
		double t_map = now() - t0;
		for (size_t i = 0; dirty && i < n; i++)
			CHECK(p_cuMemsetD8(va[i], 0x5a, size));
		CHECK(p_cuCtxSynchronize());
		t0 = now();
		for (int k = 0; k < threads; k++)
			pthread_create(&t[k], NULL, unmap_all, &jobs[k]);
		for (int k = 0; k < threads; k++)
			pthread_join(t[k], NULL);
		double t_unmap = now() - t0;
		if (pass == 0 && delay_ms) {
			struct timespec ts = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
			nanosleep(&ts, NULL);
		}
		if (pass == 1)
			printf("{\"bench\":\"vmm_map\",\"case\":\"%s\",\"regions\":%zu,\"bytes_each\":%zu,\"threads\":%d,"
			       "\"dirty\":%d,\"delay_ms\":%d,"
			       "\"map_ms\":%.3f,\"create_ms\":%.3f,\"cumap_ms\":%.3f,\"set_access_ms\":%.3f,"
			       "\"unmap_ms\":%.3f,\"cuunmap_ms\":%.3f,\"release_ms\":%.3f}\n",
			       name, n, size, threads, dirty, delay_ms, t_map, jobs[0].t_create, jobs[0].t_map, jobs[0].t_access, t_unmap,
			       jobs[0].t_unmap, jobs[0].t_release);
	}
	for (size_t i = 0; i < n; i++)
		p_cuMemAddressFree(va[i], size);
	free(va);
	free(h);
}

int main(int argc, char **argv)
{
	size_t large = (argc > 1 ? strtoull(argv[1], NULL, 10) : 64) << 30;
	size_t count = argc > 2 ? strtoull(argv[2], NULL, 10) : 1000;
	size_t small = (argc > 3 ? strtoull(argv[3], NULL, 10) : 4) << 20;
	int threads = argc > 4 ? atoi(argv[4]) : 8;
	void *lib = bench_libcuda();
#define STR2(x) #x
#define STR(x) STR2(x)
#define L(name) p_##name = (__typeof__(p_##name))dlsym(lib, STR(name))
	L(cuInit);
	L(cuDeviceGet);
	L(cuDevicePrimaryCtxRetain);
	L(cuCtxSetCurrent);
	L(cuMemAddressReserve);
	L(cuMemAddressFree);
	L(cuMemCreate);
	L(cuMemRelease);
	L(cuMemMap);
	L(cuMemUnmap);
	L(cuMemSetAccess);
	L(cuCtxSynchronize);
	p_cuMemsetD8 = (__typeof__(p_cuMemsetD8))dlsym(lib, "cuMemsetD8_v2");
	CUdevice dev;
	CHECK(p_cuInit(0));
	CHECK(p_cuDeviceGet(&dev, 0));
	CHECK(p_cuDevicePrimaryCtxRetain(&ctx, dev));
	CHECK(p_cuCtxSetCurrent(ctx));
	run("one_large", 1, large, 1, 0, 0);
	run("eight_large_parallel", 8, large / 8, 8, 0, 0);
	run("many_small", count, small, 1, 0, 0);
	run("many_small_parallel", count, small, threads, 0, 0);
	/* Memory an engine wrote, given back and taken again (a resume). */
	run("dirty_one_large", 1, large, 1, 1, 0);
	run("dirty_one_large_after_1s", 1, large, 1, 1, 1000);
	run("dirty_one_large_after_5s", 1, large, 1, 1, 5000);
	for (int pieces = 4; pieces <= 64; pieces *= 4)
		for (int t = 1; t <= 16; t *= 4) {
			char name[64];
			snprintf(name, sizeof(name), "dirty_%d_pieces_%d_threads", pieces, t);
			run(name, pieces, large / pieces, t, 1, 0);
		}
	return 0;
}
