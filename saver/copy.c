#include "copy.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "digest.h"
#include "tracer/driver.h"
#include "tracer/log.h"
#include "tracer/options.h"
#include "tracer/thread.h"
#include "tracer/trace_writer.h"

#define MAX_CTX 16
#define MAX_STREAMS 16

/* Copy streams per context, created on first use and kept. */
static struct {
	CUcontext ctx;
	CUstream s[MAX_STREAMS];
	int n;
} pools[MAX_CTX];

/* Backups are whole 2 MiB pages (huge pages where the kernel gives them). */
static size_t host_len(size_t len)
{
	size_t page = 2u << 20;
	return len ? (len + page - 1) / page * page : page;
}

static int streams_for(const struct msv_driver *d, CUcontext ctx, CUstream **out)
{
	for (int i = 0; i < MAX_CTX; i++) {
		if (pools[i].ctx == ctx && pools[i].n) {
			*out = pools[i].s;
			return pools[i].n;
		}
		if (!pools[i].ctx) {
			int want = _msv_options()->streams;
			if (want > MAX_STREAMS)
				want = MAX_STREAMS;
			int n = 0;
			while (n < want && d->cuStreamCreate(&pools[i].s[n], CU_STREAM_NON_BLOCKING) == CUDA_SUCCESS)
				n++;
			if (!n)
				return 0;
			pools[i].ctx = ctx;
			pools[i].n = n;
			*out = pools[i].s;
			return n;
		}
	}
	return 0;
}

enum dir { OUT, IN, ZERO };

/* Host memory for a backup: anonymous memory with transparent huge pages,
 * touched, then registered with the driver (page-locked for DMA).  Measured
 * on an H200 (bench/pin_bw.c, 4 GiB): cuMemHostAlloc 4157 ms; mmap with
 * MADV_HUGEPAGE + touch 1010 ms, cuMemHostRegister 108 ms; DtoH 55 GB/s
 * into either.  The touch holds no driver lock; the registration does,
 * briefly.  When registration fails the memory is used pageable (slower,
 * synchronous copies).  *pinned says which. */
static void *host_alloc(const struct msv_driver *d, size_t len, int *pinned)
{
	size_t mlen = host_len(len);
	char *p = mmap(NULL, mlen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	madvise(p, mlen, MADV_HUGEPAGE);
	for (size_t off = 0; off < mlen; off += 4096)
		((volatile char *)p)[off] = 0;
	*pinned = d->cuMemHostRegister && d->cuMemHostRegister(p, mlen, CU_MEMHOSTREGISTER_PORTABLE) == CUDA_SUCCESS;
	if (!*pinned)
		MSV_WARN("registering %zu bytes of host memory failed; backing up through pageable memory (slower)",
			 mlen);
	return p;
}

void _msv_copy_host_free(void *p, size_t len, int pinned)
{
	const struct msv_driver *d = _msv_drv();
	if (!p)
		return;
	if (pinned && d && d->cuMemHostUnregister) {
		MSV_BUSY_BEGIN();
		d->cuMemHostUnregister(p);
		MSV_BUSY_END();
	}
	munmap(p, host_len(len));
}

/* The background pinner may attach a buffer at any time: the pointer is
 * set under the regions lock, by whichever comes first. */
static CUresult ensure_backup(const struct msv_driver *d, struct msv_region *r)
{
	_msv_regions_lock();
	int have = r->backup != NULL;
	_msv_regions_unlock();
	if (have)
		return CUDA_SUCCESS;
	int pinned = 0;
	void *p = host_alloc(d, r->keep_len, &pinned);
	if (!p)
		return CUDA_ERROR_OUT_OF_MEMORY;
	_msv_regions_lock();
	int lost = r->backup != NULL;
	if (!lost) {
		r->backup = p;
		r->backup_pinned = pinned;
		r->backup_len = r->keep_len;
	}
	_msv_regions_unlock();
	if (lost)
		_msv_copy_host_free(p, r->keep_len, pinned);
	return CUDA_SUCCESS;
}

/* One chunk.  Without a copy stream (none could be created) or a pinned
 * buffer the copy is synchronous: an asynchronous one on the NULL stream
 * would never be waited for, and the pause could unmap under it. */
static CUresult chunk(const struct msv_driver *d, enum dir dir, CUdeviceptr dev, char *host, size_t len,
		      CUstream st, int async)
{
	if (dir == ZERO)
		return async ? d->cuMemsetD8Async(dev, 0, len, st) : d->cuMemsetD8(dev, 0, len);
	if (!async)
		return dir == OUT ? d->cuMemcpyDtoH(host, dev, len) : d->cuMemcpyHtoD(dev, host, len);
	return dir == OUT ? d->cuMemcpyDtoHAsync(host, dev, len, st) : d->cuMemcpyHtoDAsync(dev, host, len, st);
}

static CUresult run(struct msv_region **list, size_t n, enum dir dir, int wait, uint64_t *copied,
		    uint64_t *skipped)
{
	const struct msv_driver *d = _msv_drv();
	CUresult rc = CUDA_SUCCESS;
	size_t csize = _msv_options()->chunk_bytes;
	MSV_BUSY_BEGIN();
	for (size_t i = 0; i < n && rc == CUDA_SUCCESS; i++) {
		struct msv_region *r = list[i];
		CUcontext old;
		if ((rc = d->cuCtxPushCurrent(r->ctx)) != CUDA_SUCCESS)
			break;
		CUstream *s = NULL;
		int ns = streams_for(d, r->ctx, &s);
		if (dir == OUT)
			rc = ensure_backup(d, r);
		/* Zero-fill stops where the kept tail begins (the tail is
		 * restored from the backup); a region kept whole is not zeroed. */
		size_t lo = dir == ZERO ? 0 : r->keep_off;
		size_t hi = dir == ZERO ? (r->keep_len ? r->keep_off : r->size) : r->keep_off + r->keep_len;
		int async = ns > 0 && (dir == ZERO || r->backup_pinned);
		/* Chunks round-robin over the streams: both copy engines and
		 * several DMA queues stay busy on large regions. */
		size_t issued = 0;
		for (size_t off = lo, k = 0; rc == CUDA_SUCCESS && off < hi; off += csize, k++) {
			size_t len = hi - off < csize ? hi - off : csize;
			if (dir == OUT && _msv_digest_unchanged(r, k)) {
				*skipped += len;
				continue;
			}
			rc = chunk(d, dir, r->va + off, dir == ZERO ? NULL : (char *)r->backup + (off - lo), len,
				   ns ? s[issued++ % (size_t)ns] : NULL, async);
			if (copied)
				*copied += len;
		}
		for (int k = 0; wait && k < ns; k++) {
			CUresult sr = d->cuStreamSynchronize(s[k]);
			if (rc == CUDA_SUCCESS)
				rc = sr;
		}
		/* The backup now holds what the digests describe. */
		if (dir == OUT && rc == CUDA_SUCCESS)
			_msv_digest_commit(r);
		d->cuCtxPopCurrent(&old);
	}
	MSV_BUSY_END();
	return rc;
}

CUresult _msv_copy_out(struct msv_region **list, size_t n, uint64_t *copied, uint64_t *skipped)
{
	*copied = *skipped = 0;
	/* Without digests (first pause, no kernel) everything is copied. */
	_msv_digest_take(list, n, _msv_options()->chunk_bytes);
	return run(list, n, OUT, 1, copied, skipped);
}

CUresult _msv_copy_in_async(struct msv_region **list, size_t n)
{
	uint64_t unused = 0;
	return run(list, n, IN, 0, NULL, &unused);
}

CUresult _msv_copy_zero_async(struct msv_region **list, size_t n)
{
	uint64_t unused = 0;
	return run(list, n, ZERO, 0, NULL, &unused);
}

CUresult _msv_copy_wait(void)
{
	const struct msv_driver *d = _msv_drv();
	CUresult rc = CUDA_SUCCESS;
	MSV_BUSY_BEGIN();
	for (int i = 0; i < MAX_CTX && pools[i].ctx; i++) {
		CUcontext old;
		if (d->cuCtxPushCurrent(pools[i].ctx) != CUDA_SUCCESS)
			continue;
		for (int k = 0; k < pools[i].n; k++) {
			CUresult sr = d->cuStreamSynchronize(pools[i].s[k]);
			if (rc == CUDA_SUCCESS)
				rc = sr;
		}
		d->cuCtxPopCurrent(&old);
	}
	MSV_BUSY_END();
	return rc;
}

/* Preparing host memory runs at about 4 GB/s (host_alloc), so a first pause
 * that prepares its backups on the spot takes about 1 s for 4.5 GB.  A background
 * thread pins each backup ahead of the pause instead, once the engine has
 * stopped allocating for a moment: pinning holds driver locks, and doing it
 * during start-up slowed the weight load from 0.05 to 1.4 s.  The host
 * memory a pause needs is then committed before the pause. */
#define QUIET_NS 300000000ull

static atomic_ullong last_alloc_ns;

void _msv_copy_note_alloc(void)
{
	atomic_store(&last_alloc_ns, _msv_now_ns());
}

static void wait_quiet(void)
{
	for (;;) {
		uint64_t idle = _msv_now_ns() - atomic_load(&last_alloc_ns);
		if (idle >= QUIET_NS)
			return;
		struct timespec ts = {0, (long)(QUIET_NS - idle)};
		nanosleep(&ts, NULL);
	}
}
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cond = PTHREAD_COND_INITIALIZER;
static CUdeviceptr queue[4096];
static size_t q_head, q_tail;
static int worker_started;

static void *pinner(void *arg)
{
	(void)arg;
	const struct msv_driver *d = _msv_drv();
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	/* Pinning is a "potentially unsafe" call: in the default global mode it
	 * would invalidate a CUDA-graph capture running on another thread
	 * (PyTorch captures in global mode).  Relaxed mode lets it through. */
	CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_RELAXED;
	if (d->cuThreadExchangeStreamCaptureMode)
		d->cuThreadExchangeStreamCaptureMode(&mode);
	for (;;) {
		pthread_mutex_lock(&q_lock);
		while (q_head == q_tail)
			pthread_cond_wait(&q_cond, &q_lock);
		CUdeviceptr va = queue[q_head++ % 4096];
		pthread_mutex_unlock(&q_lock);
		wait_quiet();
		_msv_regions_lock();
		struct msv_region *r = _msv_regions_find(va);
		size_t len = r && r->va == va && !r->backup ? r->keep_len : 0;
		CUcontext ctx = r ? r->ctx : NULL;
		_msv_regions_unlock();
		if (!len)
			continue;
		CUcontext old;
		int pinned = 0;
		MSV_BUSY_BEGIN();
		int pushed = d->cuCtxPushCurrent(ctx) == CUDA_SUCCESS;
		void *p = host_alloc(d, len, &pinned);
		if (pushed)
			d->cuCtxPopCurrent(&old);
		MSV_BUSY_END();
		if (!p)
			continue; /* the pause allocates (or falls back) itself */
		_msv_regions_lock();
		r = _msv_regions_find(va);
		int used = r && r->va == va && !r->backup && r->keep_len == len;
		if (used) {
			r->backup = p;
			r->backup_pinned = pinned;
			r->backup_len = len;
		}
		_msv_regions_unlock();
		if (!used)
			_msv_copy_host_free(p, len, pinned);
	}
	return NULL;
}

void _msv_copy_prepin(CUdeviceptr va)
{
	pthread_mutex_lock(&q_lock);
	if (!worker_started) {
		pthread_t t;
		worker_started = pthread_create(&t, NULL, pinner, NULL) == 0 ? 1 : -1;
		if (worker_started == 1) {
			pthread_detach(t);
			pthread_setname_np(t, "memsaver-pin");
		}
	}
	if (worker_started == 1 && q_tail - q_head < 4096) {
		queue[q_tail++ % 4096] = va;
		pthread_cond_signal(&q_cond);
	}
	pthread_mutex_unlock(&q_lock);
}
