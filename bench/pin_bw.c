/* How fast host memory can be made ready for a backup of GIB GiB: pinned by
 * cuMemHostAlloc, or allocated with transparent huge pages (madvise
 * MADV_HUGEPAGE), touched, and registered with cuMemHostRegister; then a
 * DtoH copy into each.  Then the same huge-page memory prepared in pieces
 * by T threads at once (each touches and registers its own piece), and
 * registered by T threads without a touch first.  JSON lines.
 *
 * usage: bench-pin_bw [GIB [PIECE_MIB]]   (defaults 4, 256) */
#include <pthread.h>
#include <cuda.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
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

static CUcontext ctx;

struct piece_job {
	char *p;
	size_t len, piece;
	int touch;
	double t_touch, t_register;
};

/* One thread's share: pieces of `piece` bytes, touched (one write per 4 KiB)
 * then registered each on its own. */
static void *prepare(void *arg)
{
	struct piece_job *j = arg;
	BENCH_CHECK(p_cuCtxSetCurrent(ctx));
	for (size_t off = 0; off < j->len; off += j->piece) {
		size_t n = j->len - off < j->piece ? j->len - off : j->piece;
		double t0 = bench_now_ms();
		for (size_t k = 0; j->touch && k < n; k += 4096)
			((volatile char *)j->p)[off + k] = 0;
		double t1 = bench_now_ms();
		BENCH_CHECK(p_cuMemHostRegister(j->p + off, n, CU_MEMHOSTREGISTER_PORTABLE));
		j->t_touch += t1 - t0;
		j->t_register += bench_now_ms() - t1;
	}
	return NULL;
}

static void parallel(CUdeviceptr d, size_t size, size_t piece, int threads, int touch)
{
	struct piece_job jobs[64];
	pthread_t t[64];
	double a0 = bench_now_ms();
	char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		exit(1);
	madvise(p, size, MADV_HUGEPAGE);
	size_t per = (size / threads + piece - 1) / piece * piece;
	int used = 0;
	for (int k = 0; k < threads && (size_t)k * per < size; k++, used++) {
		size_t lo = (size_t)k * per, hi = lo + per < size ? lo + per : size;
		jobs[k] = (struct piece_job){.p = p + lo, .len = hi - lo, .piece = piece, .touch = touch};
		pthread_create(&t[k], NULL, prepare, &jobs[k]);
	}
	for (int k = 0; k < used; k++)
		pthread_join(t[k], NULL);
	double a1 = bench_now_ms();
	/* One copy per piece: a copy may not span two registrations. */
	for (size_t off = 0; off < size; off += piece)
		BENCH_CHECK(p_cuMemcpyDtoH(p + off, d + off, size - off < piece ? size - off : piece));
	double a2 = bench_now_ms();
	printf("{\"bench\":\"pin_bw\",\"how\":\"mmap+MADV_HUGEPAGE, %s cuMemHostRegister per piece, parallel\","
	       "\"gib\":%zu,\"piece_mib\":%zu,\"threads\":%d,\"prepare_ms\":%.1f,\"touch_ms_thread0\":%.1f,"
	       "\"register_ms_thread0\":%.1f,\"prepare_gbps\":%.2f,\"dtoh_gbps\":%.2f}\n",
	       touch ? "touch +" : "no touch,", size >> 30, piece >> 20, used, a1 - a0, jobs[0].t_touch,
	       jobs[0].t_register, size / (a1 - a0) / 1e6, size / (a2 - a1) / 1e6);
	for (size_t off = 0; off < size; off += piece)
		BENCH_CHECK(p_cuMemHostUnregister(p + off));
	munmap(p, size);
}


int main(int argc, char **argv)
{
	size_t size = (argc > 1 ? strtoull(argv[1], NULL, 10) : 4) << 30;
	size_t piece = (argc > 2 ? strtoull(argv[2], NULL, 10) : 256) << 20;
	void *h = bench_libcuda();
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
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	for (int threads = 1; threads <= 32 && threads <= cores; threads *= 2)
		parallel(d, size, piece, threads, 1);
	parallel(d, size, piece, cores < 8 ? (int)cores : 8, 0);
	return 0;
}
