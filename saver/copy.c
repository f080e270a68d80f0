#include "copy.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <stdlib.h>

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

/* The background pinner may attach a buffer at any time: the pointer is
 * set under the regions lock, by whichever comes first. */
static CUresult ensure_backup(const struct msv_driver *d, struct msv_region *r)
{
	_msv_regions_lock();
	int have = r->backup != NULL;
	_msv_regions_unlock();
	if (have)
		return CUDA_SUCCESS;
	void *p = NULL;
	int pinned = 0;
	/* Portable: the pinning thread and the pausing thread may differ. */
	if (d->cuMemHostAlloc && d->cuMemHostAlloc(&p, r->keep_len, CU_MEMHOSTALLOC_PORTABLE) == CUDA_SUCCESS) {
		pinned = 1;
	} else {
		MSV_WARN("pinning %zu bytes of host memory failed; backing up through pageable memory (slower)",
			 r->keep_len);
		p = malloc(r->keep_len ? r->keep_len : 1);
		if (!p)
			return CUDA_ERROR_OUT_OF_MEMORY;
	}
	_msv_regions_lock();
	int lost = r->backup != NULL;
	if (!lost) {
		r->backup = p;
		r->backup_pinned = pinned;
	}
	_msv_regions_unlock();
	if (lost) {
		if (pinned)
			d->cuMemFreeHost(p);
		else
			free(p);
	}
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

static CUresult run(struct msv_region **list, size_t n, enum dir dir, int wait)
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
		for (size_t off = lo, k = 0; rc == CUDA_SUCCESS && off < hi; off += csize, k++) {
			size_t len = hi - off < csize ? hi - off : csize;
			rc = chunk(d, dir, r->va + off, dir == ZERO ? NULL : (char *)r->backup + (off - lo), len,
				   ns ? s[k % (size_t)ns] : NULL, async);
		}
		for (int k = 0; wait && k < ns; k++) {
			CUresult sr = d->cuStreamSynchronize(s[k]);
			if (rc == CUDA_SUCCESS)
				rc = sr;
		}
		d->cuCtxPopCurrent(&old);
	}
	MSV_BUSY_END();
	return rc;
}

CUresult _msv_copy_out(struct msv_region **list, size_t n)
{
	return run(list, n, OUT, 1);
}

CUresult _msv_copy_in_async(struct msv_region **list, size_t n)
{
	return run(list, n, IN, 0);
}

CUresult _msv_copy_zero_async(struct msv_region **list, size_t n)
{
	return run(list, n, ZERO, 0);
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

/* Pinning host memory runs at about 2 GB/s, so a first pause that pinned
 * its backups on the spot took 2.3 s for 4.5 GB on an H200.  A background
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
		void *p = NULL;
		CUcontext old;
		MSV_BUSY_BEGIN();
		int pushed = d->cuCtxPushCurrent(ctx) == CUDA_SUCCESS;
		CUresult rc = d->cuMemHostAlloc(&p, len, CU_MEMHOSTALLOC_PORTABLE);
		if (pushed)
			d->cuCtxPopCurrent(&old);
		MSV_BUSY_END();
		if (rc != CUDA_SUCCESS)
			continue; /* the pause pins (or falls back) itself */
		_msv_regions_lock();
		r = _msv_regions_find(va);
		int used = r && r->va == va && !r->backup && r->keep_len == len;
		if (used) {
			r->backup = p;
			r->backup_pinned = 1;
		}
		_msv_regions_unlock();
		if (!used) {
			MSV_BUSY_BEGIN();
			d->cuMemFreeHost(p);
			MSV_BUSY_END();
		}
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
