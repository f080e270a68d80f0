#include "pause.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "copy.h"
#include "gate.h"
#include "host_backup.h"
#include "regions.h"
#include "sync.h"
#include "tracer/driver.h"
#include "tracer/log.h"
#include "tracer/options.h"
#include "tracer/thread.h"
#include "tracer/trace_format.h"
#include "tracer/trace_writer.h"
#include "tracer/tracer.h"
#include "trim.h"

/* One pause or resume at a time (op_lock).  The regions lock guards the
 * table only: an operation takes it to choose and pin its regions and to
 * flip their state, and drops it for everything that waits on the GPU
 * (synchronize, copies, map, unmap).  Holding it across those stalled
 * every allocation, free and pointer query of the engine, and deadlocked
 * when the GPU work being waited for needed a thread blocked on the lock.
 * The pausing thread works in relaxed capture mode: its synchronize and
 * pinning must not invalidate a CUDA-graph capture on another thread. */
static pthread_mutex_t op_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic unsigned paused_mask; /* read by status without op_lock */
static struct msv_timing last_pause, last_resume;

unsigned _msv_saver_paused(void)
{
	return paused_mask;
}

void _msv_saver_last(struct msv_timing *p, struct msv_timing *r)
{
	pthread_mutex_lock(&op_lock);
	*p = last_pause;
	*r = last_resume;
	pthread_mutex_unlock(&op_lock);
}

/* A pause acts on mapped regions that nothing outside memsaver references
 * (saver/shared.h), a resume on released ones and on those a failed resume
 * left mapped with stale contents. */
static int wanted(const struct msv_region *r, unsigned mask, int pause)
{
	const struct msv_policy *p = _msv_tracer_policy();
	if (!r->wrapped || !(mask & (1u << r->cat)) || _msv_policy_action(p, r->cat) == MSV_ACT_KEEP)
		return 0;
	return pause ? r->resident && !r->shared : !r->resident || r->stale;
}

/* Every region the call acts on, in table order, pinned.  Locked. */
static struct msv_region **collect(unsigned mask, int pause, size_t *n)
{
	size_t cap = 0, k = 0;
	struct msv_region *r, *tmp, **list = NULL;
	HASH_ITER(hh, _msv_regions_all(), r, tmp)
		cap += wanted(r, mask, pause);
	list = calloc(cap ? cap : 1, sizeof(*list));
	if (!list)
		return NULL;
	HASH_ITER(hh, _msv_regions_all(), r, tmp)
		if (wanted(r, mask, pause))
			list[k++] = r;
	_msv_regions_pin(list, k);
	*n = k;
	return list;
}

static void relaxed(CUstreamCaptureMode *mode)
{
	const struct msv_driver *d = _msv_drv();
	if (d && d->cuThreadExchangeStreamCaptureMode)
		d->cuThreadExchangeStreamCaptureMode(mode);
}

static void names(unsigned mask, char *buf, size_t len)
{
	buf[0] = '\0';
	for (int c = 0; c < MSV_CAT_COUNT; c++)
		if (mask & (1u << c))
			snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", buf[0] ? "," : "",
				 _msv_category_name(c));
}

static void record(int type, unsigned mask, uint64_t bytes, uint64_t dur, uint64_t copy_bytes,
		   uint64_t skipped, uint64_t copy_ns, int ok)
{
	struct msv_rec r = {.type = (uint16_t)type, .addr = mask, .size = bytes, .aux = dur,
			    .aux2 = copy_bytes, .pysite = (uint32_t)(copy_ns / 1000),
			    .site = (uint32_t)(skipped >> 10), .flags = ok ? 0 : MSV_F_FAILED};
	_msv_tracer_record(&r);
}

/* The context current for readings: that of the first region, so that a
 * pause called from a thread without a context still measures the device. */
static int push_ctx(struct msv_region **list, size_t n)
{
	const struct msv_driver *d = _msv_drv();
	CUcontext cur = NULL;
	if (!n || !d)
		return 0;
	if (d->cuCtxGetCurrent(&cur) == CUDA_SUCCESS && cur)
		return 0;
	return d->cuCtxPushCurrent(list[0]->ctx) == CUDA_SUCCESS;
}

static void pop_ctx(int pushed)
{
	CUcontext old;
	if (pushed)
		_msv_drv()->cuCtxPopCurrent(&old);
}

/* The regions a pause or resume acts on, pinned.  Returns 1 with *list to
 * free (unpin first), 0 when there is nothing to do (a warning in err), or
 * -ENOMEM.  The regions lock is not held on return. */
static int begin(int pause, unsigned mask, char *cats, size_t catlen, struct msv_region ***list, size_t *n,
		 char *err, size_t errlen)
{
	names(mask, cats, catlen);
	_msv_regions_lock();
	*list = collect(mask, pause, n);
	_msv_regions_unlock();
	if (!*list) {
		snprintf(err, errlen, "%s: out of host memory", pause ? "pause" : "resume");
		return -ENOMEM;
	}
	unsigned pending = pause ? mask & ~paused_mask : mask & paused_mask;
	if (*n == 0 && pending == 0) {
		/* Success with a note: err carries the warning to the caller. */
		snprintf(err, errlen, pause ? "pause of %s: already paused; nothing to do"
					    : "resume of %s: nothing is paused; nothing to do", cats);
		MSV_WARN("%s", err);
		free(*list);
		return 0;
	}
	return 1;
}

static int larger_first(const void *a, const void *b)
{
	size_t x = (*(struct msv_region *const *)a)->mapped, y = (*(struct msv_region *const *)b)->mapped;
	return x < y ? 1 : x > y ? -1 : 0;
}

static int smaller_first(const void *a, const void *b)
{
	return larger_first(b, a);
}

static void end(struct msv_region **list, size_t n, CUstreamCaptureMode *mode)
{
	_msv_regions_unpin(list, n);
	free(list);
	relaxed(mode);
	pthread_mutex_unlock(&op_lock);
}

/* Host bytes the backups hold (they stay allocated for the next pause). */
static uint64_t backup_host_bytes(void)
{
	uint64_t host = 0;
	struct msv_region *it, *tmp;
	_msv_regions_lock();
	HASH_ITER(hh, _msv_regions_all(), it, tmp)
		host += _msv_region_host_bytes(it);
	_msv_regions_unlock();
	return host;
}

int _msv_saver_pause(unsigned mask, char *err, size_t errlen)
{
	int rc = 0;
	char cats[128];
	size_t n = 0;
	struct msv_region **list;
	CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_RELAXED;
	pthread_mutex_lock(&op_lock);
	relaxed(&mode);
	uint64_t t0 = _msv_now_ns();
	int go = begin(1, mask, cats, sizeof(cats), &list, &n, err, errlen);
	if (go <= 0) {
		relaxed(&mode);
		pthread_mutex_unlock(&op_lock);
		return go;
	}
	/* The largest regions are released last and created first by the
	 * resume (see there). */
	qsort(list, n, sizeof(*list), smaller_first);
	/* A pause from outside stops the engine's new work before the
	 * synchronize, which then waits for what was launched before it. */
	if (_msv_gate_outside_caller())
		_msv_gate_close();
	int pushed = push_ctx(list, n);
	int timeout = _msv_options()->pause_timeout;
	CUresult cr = _msv_sync_contexts(list, n, timeout);
	if (cr != CUDA_SUCCESS) {
		if (cr == CUDA_ERROR_TIMEOUT)
			snprintf(err, errlen,
				 "pause: the GPU work in flight did not finish within %d s (MEMSAVER_PAUSE_TIMEOUT); "
				 "nothing was released and the engine keeps running",
				 timeout);
		else
			snprintf(err, errlen, "pause: synchronizing the GPU failed: %s; nothing was released",
				 _msv_cu_error(cr));
		rc = cr == CUDA_ERROR_TIMEOUT ? -ETIMEDOUT : -EIO;
		record(MSV_REC_PAUSE, mask, 0, _msv_now_ns() - t0, 0, 0, 0, 0);
		goto out;
	}
	_msv_tracer_phase("before_pause");
	/* Back up first, release after: a failed copy leaves everything mapped.
	 * A stale region's backup already holds its true contents. */
	size_t nb = 0;
	uint64_t backup_bytes = 0;
	struct msv_region **bl = calloc(n ? n : 1, sizeof(*bl));
	_msv_regions_lock();
	for (size_t i = 0; bl && i < n; i++)
		if (_msv_region_keep(list[i], _msv_policy_action(_msv_tracer_policy(), list[i]->cat)) &&
		    !list[i]->stale)
			bl[nb++] = list[i];
	_msv_regions_unlock();
	uint64_t c0 = _msv_now_ns(), skipped = 0;
	cr = bl ? _msv_copy_out(bl, nb, &backup_bytes, &skipped) : CUDA_ERROR_OUT_OF_MEMORY;
	uint64_t copy_ns = _msv_now_ns() - c0;
	free(bl);
	if (cr != CUDA_SUCCESS) {
		unsigned long long need, avail;
		if (cr == CUDA_ERROR_OUT_OF_MEMORY && _msv_host_shortfall(&need, &avail))
			snprintf(err, errlen,
				 "pause: the backups need %llu bytes of host memory and %llu are available above "
				 "MEMSAVER_HOST_RESERVE (%llu); nothing was released",
				 need, avail, (unsigned long long)_msv_options()->host_reserve);
		else
			snprintf(err, errlen, "pause: backup copy failed: %s; nothing was released",
				 _msv_cu_error(cr));
		rc = -EIO;
		record(MSV_REC_PAUSE, mask, 0, _msv_now_ns() - t0, 0, 0, copy_ns, 0);
		goto out;
	}
	uint64_t released = 0, u0 = _msv_now_ns();
	for (size_t i = 0; i < n; i++) {
		cr = _msv_region_unmap(list[i]);
		if (cr != CUDA_SUCCESS) {
			/* Regions released so far stay released (their state is
			 * exact); the rest stay mapped.  A retry finishes the job. */
			snprintf(err, errlen, "pause: cuMemUnmap failed: %s; %zu of %zu regions released",
				 _msv_cu_error(cr), i, n);
			rc = -EIO;
			break;
		}
		released += list[i]->mapped;
	}
	/* Even a partial pause is a pause: what was released must come back
	 * with the next resume, and a second pause releases the rest. */
	paused_mask |= mask;
	uint64_t unmap_ns = _msv_now_ns() - u0;
	uint64_t trimmed = 0;
	if (rc == 0)
		_msv_trim_context(list, n, &trimmed);
	/* The report's saver section shows the host memory the backups hold. */
	struct msv_rec meta = {.type = MSV_REC_META, .api = MSV_META_STAGING, .size = backup_host_bytes()};
	_msv_tracer_record(&meta);
	/* The pause record, then the reading that shows its effect: the
	 * analyzer takes the first "pause" phase after a pause record. */
	uint64_t dur = _msv_now_ns() - t0;
	record(MSV_REC_PAUSE, mask, released, dur, backup_bytes, skipped, copy_ns, rc == 0);
	_msv_tracer_phase("pause");
	last_pause = (struct msv_timing){.t_ns = t0, .dur_ns = dur, .bytes = released,
					 .copy_bytes = backup_bytes, .skipped_bytes = skipped, .copy_ns = copy_ns,
					 .map_ns = unmap_ns, .ok = rc == 0, .valid = 1};
	MSV_INFO("paused %s: %zu regions, %llu bytes released, %llu backed up, %llu unchanged since the last "
		 "backup; %.1f ms (copy %.1f, unmap %.1f)",
		 cats, n, (unsigned long long)released, (unsigned long long)backup_bytes,
		 (unsigned long long)skipped, dur / 1e6, copy_ns / 1e6, unmap_ns / 1e6);
out:
	if (!paused_mask)
		_msv_gate_open(); /* failed with nothing paused */
	pop_ctx(pushed);
	end(list, n, &mode);
	return rc;
}

/* Undo what a failed resume did: unmap what it mapped.  A region whose
 * unmap fails stays mapped but stale — its backup stays authoritative, the
 * next pause does not copy over it and the next resume restores it. */
static void rollback(struct msv_region **list, size_t n, const unsigned char *mapped_now)
{
	for (size_t i = 0; i < n; i++) {
		if (!list[i]->resident)
			continue;
		if (!mapped_now[i] && !list[i]->stale)
			continue;
		if (_msv_region_unmap(list[i]) != CUDA_SUCCESS) {
			_msv_regions_lock();
			list[i]->stale = 1;
			_msv_regions_unlock();
			MSV_WARN("resume rollback: cannot unmap the region at 0x%llx; it stays mapped and is "
				 "restored from its backup by the next resume",
				 (unsigned long long)list[i]->va);
		}
	}
}

int _msv_saver_resume(unsigned mask, char *err, size_t errlen)
{
	int rc = 0;
	char cats[128];
	size_t n = 0;
	struct msv_region **list;
	CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_RELAXED;
	pthread_mutex_lock(&op_lock);
	relaxed(&mode);
	uint64_t t0 = _msv_now_ns();
	int go = begin(0, mask, cats, sizeof(cats), &list, &n, err, errlen);
	if (go <= 0) {
		relaxed(&mode);
		pthread_mutex_unlock(&op_lock);
		return go;
	}
	/* Largest first: re-creating the physical memory of a large region the
	 * pause released last is what the driver does fastest (bench/vmm_map.c:
	 * one 64 GiB region 0.6 ms, the same bytes in 4 regions 125 ms). */
	qsort(list, n, sizeof(*list), larger_first);
	int pushed = push_ctx(list, n);
	/* The context's limits come back before anything can run on it. */
	uint64_t ctx_need = 0, need = 0;
	CUresult ur = _msv_untrim_context(&ctx_need);
	for (size_t i = 0; i < n; i++)
		need += list[i]->resident ? 0 : list[i]->mapped;
	/* Map everything, then fill and restore.  Overlapping the copies with
	 * the mapping was measured on an H200 and gained nothing: the driver
	 * serializes them. */
	const struct msv_policy *pol = _msv_tracer_policy();
	struct msv_region **zl = calloc(n ? n : 1, sizeof(*zl)), **bl = calloc(n ? n : 1, sizeof(*bl));
	unsigned char *mapped_now = calloc(n ? n : 1, 1);
	size_t nz = 0, nb = 0;
	uint64_t restore_bytes = 0, slowest_ns = 0, slowest_bytes = 0;
	CUresult cr = zl && bl && mapped_now ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
	int map_failed = 0;
	if (ur != CUDA_SUCCESS) {
		cr = ur; /* nothing mapped yet: the same message as a failed map */
		map_failed = 1;
		need += ctx_need;
	}
	_msv_regions_lock();
	for (size_t i = 0; cr == CUDA_SUCCESS && i < n; i++) {
		/* Fresh physical pages hold whatever the driver gives; `zero`
		 * promises zeros, so they are written, not assumed. */
		if (_msv_policy_action(pol, list[i]->cat) == MSV_ACT_ZERO)
			zl[nz++] = list[i];
		/* Whole backups, and the segment tails of discard and zero regions. */
		if (list[i]->backup && list[i]->keep_len) {
			bl[nb++] = list[i];
			restore_bytes += list[i]->keep_len;
		}
	}
	_msv_regions_unlock();
	uint64_t m0 = _msv_now_ns();
	for (size_t i = 0; i < n && cr == CUDA_SUCCESS; i++) {
		if (list[i]->resident)
			continue; /* stale: mapped already, restored below */
		uint64_t r0 = _msv_now_ns();
		cr = _msv_region_map(list[i]);
		map_failed = cr != CUDA_SUCCESS;
		mapped_now[i] = cr == CUDA_SUCCESS;
		if (_msv_now_ns() - r0 > slowest_ns)
			slowest_ns = _msv_now_ns() - r0, slowest_bytes = list[i]->mapped;
	}
	uint64_t map_ns = _msv_now_ns() - m0, c0 = _msv_now_ns();
	if (cr == CUDA_SUCCESS)
		cr = _msv_copy_zero_async(zl, nz);
	/* Right after a pause the driver clears what it released, on the copy
	 * engines: the restore goes by memsaver's kernel then. */
	int ms = _msv_options()->restore_kernel_ms;
	int by_kernel = ms > 0 && last_pause.valid &&
			c0 - (last_pause.t_ns + last_pause.dur_ns) < (uint64_t)ms * 1000000u;
	if (cr == CUDA_SUCCESS)
		cr = _msv_copy_in_async(bl, nb, by_kernel);
	/* Nothing is unmapped while a copy into it may still run. */
	CUresult wr = _msv_copy_wait();
	if (cr == CUDA_SUCCESS)
		cr = wr;
	uint64_t copy_ns = _msv_now_ns() - c0;
	free(zl);
	free(bl);
	if (cr != CUDA_SUCCESS) {
		if (mapped_now)
			rollback(list, n, mapped_now);
		size_t fr = 0, tot = 0;
		const struct msv_driver *d = _msv_drv();
		MSV_BUSY_BEGIN();
		if (d->cuMemGetInfo)
			d->cuMemGetInfo(&fr, &tot);
		MSV_BUSY_END();
		if (map_failed)
			snprintf(err, errlen,
				 "resume of %s failed: %s; needs %llu bytes, %llu free; nothing stays mapped, "
				 "the categories stay paused and their backups are kept",
				 cats, _msv_cu_error(cr), (unsigned long long)need, (unsigned long long)fr);
		else
			snprintf(err, errlen,
				 "resume of %s failed while restoring contents: %s; nothing stays mapped, the "
				 "categories stay paused and their backups are kept",
				 cats, _msv_cu_error(cr));
		rc = cr == CUDA_ERROR_OUT_OF_MEMORY ? -ENOMEM : -EIO;
		record(MSV_REC_RESUME, mask, 0, _msv_now_ns() - t0, 0, 0, copy_ns, 0);
		goto out;
	}
	_msv_regions_lock();
	for (size_t i = 0; i < n; i++)
		list[i]->stale = 0;
	_msv_regions_unlock();
	paused_mask &= ~mask;
	if (!paused_mask)
		_msv_gate_open();
	uint64_t dur = _msv_now_ns() - t0;
	record(MSV_REC_RESUME, mask, need, dur, restore_bytes, 0, copy_ns, 1);
	_msv_tracer_phase("resume");
	last_resume = (struct msv_timing){.t_ns = t0, .dur_ns = dur, .bytes = need,
					  .copy_bytes = restore_bytes, .copy_ns = copy_ns, .map_ns = map_ns,
					  .by_kernel = by_kernel, .ok = 1, .valid = 1};
	MSV_INFO("resumed %s: %zu regions, %llu bytes; %.1f ms (map %.1f, of which %.1f for the slowest region of "
		 "%llu bytes; zero+restore %.1f, restored by %s)",
		 cats, n, (unsigned long long)need, dur / 1e6, map_ns / 1e6, slowest_ns / 1e6,
		 (unsigned long long)slowest_bytes, copy_ns / 1e6, by_kernel ? "kernel" : "copy engines");
out:
	free(mapped_now);
	if (rc != 0)
		_msv_retrim_context();
	pop_ctx(pushed);
	end(list, n, &mode);
	return rc;
}
