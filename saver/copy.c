#include "copy.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "host_backup.h"
#include "kernels.h"
#include "own_thread.h"
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

/* IN_SM: host -> device by memsaver's kernel (saver/kernels.cu) where it
 * can, by the copy engines elsewhere. */
enum dir { OUT, IN, IN_SM, ZERO };

#define RESTORE_BLOCK_BYTES (512u * 8u * 16u) /* bytes per block of msv_restore */

/* One chunk host -> device by msv_restore on st: the SMs read the pinned
 * host memory through its mapped address.  A chunk whose host memory has no
 * mapped address, or whose addresses are not 16-byte aligned, goes by the
 * copy engines. */
static CUresult chunk_by_kernel(const struct msv_driver *d, CUfunction fn, CUdeviceptr dev, char *host,
				size_t len, CUstream st)
{
	CUdeviceptr src = 0;
	if (!d->cuMemHostGetDevicePointer || d->cuMemHostGetDevicePointer(&src, host, 0) != CUDA_SUCCESS ||
	    ((dev | src) & 15))
		return d->cuMemcpyHtoDAsync(dev, host, len, st);
	unsigned long long n = len;
	void *args[] = {&dev, &src, &n};
	return d->cuLaunchKernel(fn, (unsigned)((len + RESTORE_BLOCK_BYTES - 1) / RESTORE_BLOCK_BYTES), 1, 1, 512, 1,
				 1, 0, st, args, NULL);
}

/* One chunk.  Without a copy stream (none could be created) or a pinned
 * buffer the copy is synchronous: an asynchronous one on the NULL stream
 * would never be waited for, and the pause could unmap under it.  fn:
 * msv_restore for an asynchronous IN_SM chunk, else NULL. */
static CUresult chunk(const struct msv_driver *d, enum dir dir, CUdeviceptr dev, char *host, size_t len,
		      CUstream st, int async, CUfunction fn)
{
	if (fn)
		return chunk_by_kernel(d, fn, dev, host, len, st);
	if (dir == ZERO)
		return async ? d->cuMemsetD8Async(dev, 0, len, st) : d->cuMemsetD8(dev, 0, len);
	if (!async)
		return dir == OUT ? d->cuMemcpyDtoH(host, dev, len) : d->cuMemcpyHtoD(dev, host, len);
	return dir == OUT ? d->cuMemcpyDtoHAsync(host, dev, len, st) : d->cuMemcpyHtoDAsync(dev, host, len, st);
}

/* prep and item: the backups a pause prepares while it copies (item[i] is
 * region i's, or -1 when its backup was ready); NULL otherwise. */
static CUresult run(struct msv_region **list, size_t n, enum dir dir, int wait, uint64_t *copied,
		    uint64_t *skipped, struct msv_host_prep *prep, const long *item)
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
		long it = prep ? item[i] : -1;
		/* Zero-fill stops where the kept tail begins (the tail is
		 * restored from the backup); a region kept whole is not zeroed. */
		size_t lo = dir == ZERO ? 0 : r->keep_off;
		size_t hi = dir == ZERO ? (r->keep_len ? r->keep_off : r->size) : r->keep_off + r->keep_len;
		int async = ns > 0 && (dir == ZERO || r->backup_pinned);
		CUfunction fn = NULL;
		if (dir == IN_SM && async && _msv_kernel(d, r->ctx, "msv_restore", &fn, NULL) != CUDA_SUCCESS)
			fn = NULL;
		/* Chunks round-robin over the streams: both copy engines and
		 * several DMA queues stay busy on large regions. */
		size_t issued = 0;
		for (size_t off = lo, k = 0; rc == CUDA_SUCCESS && off < hi; off += csize, k++) {
			size_t len = hi - off < csize ? hi - off : csize;
			if (dir == OUT && _msv_digest_unchanged(r, k)) {
				*skipped += len;
				continue;
			}
			/* A backup being prepared: this chunk's piece first (its
			 * preparation writes to it). */
			int piece_async = it < 0 ? async : _msv_host_prep_wait(prep, (size_t)it, off - lo) && ns > 0;
			rc = chunk(d, dir, r->va + off, dir == ZERO ? NULL : (char *)r->backup + (off - lo), len,
				   ns ? s[issued++ % (size_t)ns] : NULL, piece_async, fn);
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

/* The buffer touched ahead for r's backup, taken off r; NULL when there is
 * none, or none of the size the backup needs now (that one is freed).
 * Locked. */
static void *take_ahead(struct msv_region *r)
{
	void *buf = r->ahead;
	if (buf && r->ahead_len != r->keep_len) {
		_msv_host_free(buf, r->ahead_len, 0);
		buf = NULL;
	}
	r->ahead = NULL;
	return buf;
}

/* Regions without a backup buffer get one, prepared by several threads
 * while the copies run (saver/host_backup.h); a buffer touched ahead is
 * only registered.  The buffers are attached at once, so the background
 * pinner leaves them alone, and are registered whole or used pageable.
 * Locked. */
static struct msv_host_prep *prepare_backups(struct msv_region **list, size_t n, long *item)
{
	size_t *lens = calloc(n ? n : 1, sizeof(*lens));
	CUcontext *ctxs = calloc(n ? n : 1, sizeof(*ctxs));
	void **bufs = calloc(n ? n : 1, sizeof(*bufs));
	struct msv_host_prep *prep = NULL;
	size_t want = 0;
	for (size_t i = 0; lens && ctxs && bufs && i < n; i++) {
		item[i] = list[i]->backup ? -1 : (long)want;
		if (!list[i]->backup) {
			lens[want] = list[i]->keep_len;
			bufs[want] = take_ahead(list[i]);
			ctxs[want++] = list[i]->ctx;
		}
	}
	if (want)
		prep = _msv_host_prep_start(lens, ctxs, bufs, want, _msv_options()->prep_threads);
	for (size_t i = 0; want && i < n; i++) {
		if (item[i] < 0)
			continue;
		if (prep) {
			list[i]->backup = _msv_host_prep_buf(prep, (size_t)item[i]);
			list[i]->backup_pinned = 0; /* until prep_finish says otherwise */
			list[i]->backup_len = list[i]->keep_len;
		} else if (bufs[item[i]]) { /* still the region's: the next try takes it again */
			list[i]->ahead = bufs[item[i]];
			list[i]->ahead_len = list[i]->keep_len;
		}
	}
	free(lens);
	free(ctxs);
	free(bufs);
	return prep;
}

CUresult _msv_copy_out(struct msv_region **list, size_t n, uint64_t *copied, uint64_t *skipped)
{
	*copied = *skipped = 0;
	long *item = calloc(n ? n : 1, sizeof(*item));
	int *pinned = calloc(n ? n : 1, sizeof(*pinned));
	if (!item || !pinned) {
		free(item);
		free(pinned);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	/* Digests first: the backups' registration below holds driver locks
	 * that the digest kernel's launch would wait for (171 ms instead of 2
	 * for 5 GiB on an H200).  Without digests (first pause, no kernel)
	 * everything is copied. */
	uint64_t t0 = _msv_now_ns();
	_msv_digest_take(list, n, _msv_options()->chunk_bytes);
	uint64_t t1 = _msv_now_ns();
	_msv_regions_lock();
	struct msv_host_prep *prep = prepare_backups(list, n, item);
	int missing = 0;
	for (size_t i = 0; i < n; i++)
		missing |= !list[i]->backup;
	_msv_regions_unlock();
	CUresult rc = missing ? CUDA_ERROR_OUT_OF_MEMORY : CUDA_SUCCESS;
	if (rc == CUDA_SUCCESS)
		rc = run(list, n, OUT, 1, copied, skipped, prep, item);
	if (prep) {
		/* run() waited for every copy it issued. */
		struct msv_prep_stats st;
		_msv_host_prep_finish(prep, pinned, &st);
		MSV_INFO("backup host memory made for this pause: %.1f MiB (%.1f MiB of it touched ahead) by %d "
			 "threads while copying (summed over them: touch %.1f ms, register %.1f ms); digest %.1f ms, "
			 "copy %.1f ms",
			 st.bytes / 1048576.0, st.adopted_bytes / 1048576.0, st.threads, st.touch_ns / 1e6,
			 st.register_ns / 1e6, (t1 - t0) / 1e6, (_msv_now_ns() - t1) / 1e6);
		_msv_regions_lock();
		for (size_t i = 0; i < n; i++)
			if (item[i] >= 0)
				list[i]->backup_pinned = pinned[item[i]];
		_msv_regions_unlock();
	}
	free(item);
	free(pinned);
	return rc;
}

CUresult _msv_copy_in_async(struct msv_region **list, size_t n, int by_kernel)
{
	uint64_t unused = 0;
	return run(list, n, by_kernel ? IN_SM : IN, 0, NULL, &unused, NULL, NULL);
}

CUresult _msv_copy_zero_async(struct msv_region **list, size_t n)
{
	uint64_t unused = 0;
	return run(list, n, ZERO, 0, NULL, &unused, NULL, NULL);
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
	_msv_kernels_unload(d); /* after the kernels that restored */
	MSV_BUSY_END();
	return rc;
}

/* With MEMSAVER_PREPIN a background thread prepares each backup ahead of
 * the first pause, in two steps.  Once the engine has allocated nothing for
 * 1 s (start-up is over), it maps and touches the buffer (the kernel zeroes
 * the pages: the slow part, no driver call, so the engine's launches go on
 * beside it).  While the engine is idle besides (no launch, copy or memset
 * since the thread last looked: 1 s before its first region, during the
 * previous region after that), it registers the buffer.  Registering holds
 * driver locks: doing it during start-up slowed the weight load from 0.05
 * to 1.4 s, and a launch would wait for it.  A pause that comes between the
 * two only registers what was touched (a first pause of 5 GB of backups on
 * an H200 while the engine worked: 228-249 ms against 264-266 ms with
 * nothing prepared; the driver serializes registrations).  One thread, so
 * that it takes little from the engine; the host memory a pause needs is
 * then committed before it. */
#define QUIET_NS 1000000000ull

static atomic_ullong last_alloc_ns;
_Atomic int _msv_copy_launched;

void _msv_copy_note_alloc(void)
{
	atomic_store(&last_alloc_ns, _msv_now_ns());
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
	nanosleep(&ts, NULL);
}

/* No allocation for QUIET_NS. */
static void wait_settled(void)
{
	for (;;) {
		uint64_t idle = _msv_now_ns() - atomic_load(&last_alloc_ns);
		if (idle >= QUIET_NS)
			return;
		sleep_ns(QUIET_NS - idle);
	}
}

/* No allocation for QUIET_NS and no launch since the last look: 1, at
 * once; else 0 after a sleep (until the allocations are QUIET_NS old, or
 * QUIET_NS for the launches to stop). */
static int quiet_now(void)
{
	uint64_t idle = _msv_now_ns() - atomic_load(&last_alloc_ns);
	int launched = atomic_exchange(&_msv_copy_launched, 0);
	if (idle >= QUIET_NS && !launched)
		return 1;
	sleep_ns(idle >= QUIET_NS ? QUIET_NS : QUIET_NS - idle);
	return 0;
}
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cond = PTHREAD_COND_INITIALIZER;
static CUdeviceptr queue[4096];
static size_t q_head, q_tail;
static int worker_started;

static void say_no_room(void)
{
	unsigned long long need, avail;
	static int said;
	if (_msv_host_shortfall(&need, &avail) && !said++)
		MSV_WARN("backups not prepared in the background: %llu bytes needed, %llu available above "
			 "MEMSAVER_HOST_RESERVE; a pause will check again",
			 need, avail);
}

/* Touch the host memory of the region at va's backup unless it has a
 * backup or such memory; attached as r->ahead. */
static void touch_one(CUdeviceptr va)
{
	_msv_regions_lock();
	struct msv_region *r = _msv_regions_find(va);
	size_t len = r && r->va == va && !r->backup && !r->ahead ? r->keep_len : 0;
	_msv_regions_unlock();
	if (!len)
		return;
	void *p = _msv_host_touch(len);
	if (!p) {
		say_no_room();
		return;
	}
	_msv_regions_lock();
	r = _msv_regions_find(va);
	int used = r && r->va == va && !r->backup && !r->ahead && r->keep_len == len;
	if (used) {
		r->ahead = p;
		r->ahead_len = len;
	}
	_msv_regions_unlock();
	if (!used)
		_msv_host_free(p, len, 0);
}

/* Prepare the backup of the region at va unless it has one (registering
 * what was touched ahead); the bytes attached. */
static size_t prepare_one(CUdeviceptr va)
{
	_msv_regions_lock();
	struct msv_region *r = _msv_regions_find(va);
	size_t len = r && r->va == va && !r->backup ? r->keep_len : 0;
	CUcontext ctx = r ? r->ctx : NULL;
	/* Off the region while registering: a pause meanwhile makes its own. */
	void *ahead = len ? take_ahead(r) : NULL;
	_msv_regions_unlock();
	if (!len)
		return 0;
	int pinned = 0;
	struct msv_host_prep *prep = _msv_host_prep_start(&len, &ctx, &ahead, 1, 0);
	if (!prep) {
		_msv_host_free(ahead, len, 0);
		say_no_room();
		return 0; /* the pause allocates (or falls back) itself */
	}
	void *p = _msv_host_prep_buf(prep, 0);
	struct msv_prep_stats st;
	_msv_host_prep_finish(prep, &pinned, &st);
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
		_msv_host_free(p, len, pinned);
	return used ? len : 0;
}

static void *pinner(void *arg)
{
	(void)arg;
	_msv_own_thread_start();
	/* pend[0, nt) are touched, pend[nt, np) not yet; registered in order. */
	static CUdeviceptr pend[4096];
	size_t np = 0, nt = 0, regions = 0, bytes = 0;
	uint64_t touch_ns = 0, t_start = 0;
	for (;;) {
		pthread_mutex_lock(&q_lock);
		while (q_head == q_tail && !np)
			pthread_cond_wait(&q_cond, &q_lock);
		while (q_head != q_tail && np < 4096)
			pend[np++] = queue[q_head++ % 4096];
		pthread_mutex_unlock(&q_lock);
		wait_settled();
		uint64_t t0 = _msv_now_ns();
		if (!t_start)
			t_start = t0;
		for (; nt < np; nt++)
			touch_one(pend[nt]);
		touch_ns += _msv_now_ns() - t0;
		if (!quiet_now())
			continue; /* new regions are touched meanwhile */
		size_t got = prepare_one(pend[0]);
		memmove(pend, pend + 1, --np * sizeof(*pend));
		nt--;
		regions += got > 0;
		bytes += got;
		pthread_mutex_lock(&q_lock);
		int drained = q_head == q_tail && !np;
		pthread_mutex_unlock(&q_lock);
		if (drained && regions)
			MSV_INFO("backups prepared in the background: %zu regions, %.1f MiB in %.1f ms (touched in %.1f "
				 "ms, registered when the engine was idle; MEMSAVER_PREPIN)",
				 regions, bytes / 1048576.0, (_msv_now_ns() - t_start) / 1e6, touch_ns / 1e6);
		if (drained)
			regions = bytes = 0, touch_ns = t_start = 0;
	}
	return NULL;
}

/* A child of fork has no pinner, and the queue lock may have been held
 * by a thread that does not exist there: every wrapped allocation of the
 * child would wait for it.  The child starts afresh. */
static void q_prepare(void)
{
	pthread_mutex_lock(&q_lock);
}

static void q_parent(void)
{
	pthread_mutex_unlock(&q_lock);
}

static void q_child(void)
{
	pthread_mutex_init(&q_lock, NULL);
	pthread_cond_init(&q_cond, NULL);
	q_head = q_tail = 0;
	worker_started = 0;
}

static pthread_once_t q_fork_once = PTHREAD_ONCE_INIT;

static void q_register_fork(void)
{
	pthread_atfork(q_prepare, q_parent, q_child);
}

void _msv_copy_prepin(CUdeviceptr va)
{
	pthread_once(&q_fork_once, q_register_fork);
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
