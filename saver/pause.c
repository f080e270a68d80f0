#include "pause.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "copy.h"
#include "regions.h"
#include "tracer/driver.h"
#include "tracer/log.h"
#include "tracer/thread.h"
#include "tracer/trace_format.h"
#include "tracer/trace_writer.h"
#include "tracer/tracer.h"
#include "trim.h"

/* One pause or resume at a time; the regions lock is taken inside it so
 * allocations and frees of other threads wait only for the release itself. */
static pthread_mutex_t op_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned paused_mask;
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

static int wanted(const struct msv_region *r, unsigned mask, int resident)
{
	const struct msv_policy *p = _msv_tracer_policy();
	return r->wrapped && r->resident == resident && (mask & (1u << r->cat)) &&
	       _msv_policy_action(p, r->cat) != MSV_ACT_KEEP;
}

/* Every region the call acts on, in table order.  Locked. */
static struct msv_region **collect(unsigned mask, int resident, size_t *n)
{
	size_t cap = 0, k = 0;
	struct msv_region *r, *tmp, **list = NULL;
	HASH_ITER(hh, _msv_regions_all(), r, tmp)
		cap += wanted(r, mask, resident);
	list = calloc(cap ? cap : 1, sizeof(*list));
	if (!list)
		return NULL;
	HASH_ITER(hh, _msv_regions_all(), r, tmp)
		if (wanted(r, mask, resident))
			list[k++] = r;
	*n = k;
	return list;
}

/* Wait for the GPU work of every context that owns one of the regions. */
static CUresult sync_contexts(struct msv_region **list, size_t n)
{
	const struct msv_driver *d = _msv_drv();
	CUcontext done[16];
	size_t nd = 0;
	CUresult rc = CUDA_SUCCESS;
	MSV_BUSY_BEGIN();
	for (size_t i = 0; i < n && rc == CUDA_SUCCESS; i++) {
		size_t j = 0;
		while (j < nd && done[j] != list[i]->ctx)
			j++;
		if (j < nd)
			continue;
		CUcontext old;
		if ((rc = d->cuCtxPushCurrent(list[i]->ctx)) != CUDA_SUCCESS)
			break;
		rc = d->cuCtxSynchronize();
		d->cuCtxPopCurrent(&old);
		if (nd < 16)
			done[nd++] = list[i]->ctx;
	}
	MSV_BUSY_END();
	return rc;
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
		   uint64_t copy_ns, int ok)
{
	struct msv_rec r = {.type = (uint16_t)type, .addr = mask, .size = bytes, .aux = dur,
			    .aux2 = copy_bytes, .pysite = (uint32_t)(copy_ns / 1000),
			    .flags = ok ? 0 : MSV_F_FAILED};
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

/* The regions a pause (resident ones) or resume (released ones) acts on.
 * Returns 1 with the regions lock held and *list to free, 0 when there is
 * nothing to do (a warning in err), or -ENOMEM. */
static int begin(int pause, unsigned mask, char *cats, size_t catlen, struct msv_region ***list, size_t *n,
		 char *err, size_t errlen)
{
	names(mask, cats, catlen);
	_msv_regions_lock();
	*list = collect(mask, pause, n);
	if (!*list) {
		_msv_regions_unlock();
		snprintf(err, errlen, "%s: out of host memory", pause ? "pause" : "resume");
		return -ENOMEM;
	}
	unsigned pending = pause ? mask & ~paused_mask : mask & paused_mask;
	if (*n == 0 && pending == 0) {
		/* Success with a note: err carries the warning to the caller. */
		snprintf(err, errlen, pause ? "pause of %s: already paused; nothing to do"
					    : "resume of %s: nothing is paused; nothing to do", cats);
		MSV_WARN("%s", err);
		_msv_regions_unlock();
		free(*list);
		return 0;
	}
	return 1;
}

int _msv_saver_pause(unsigned mask, char *err, size_t errlen)
{
	int rc = 0;
	char cats[128];
	size_t n = 0;
	struct msv_region **list;
	pthread_mutex_lock(&op_lock);
	uint64_t t0 = _msv_now_ns();
	int go = begin(1, mask, cats, sizeof(cats), &list, &n, err, errlen);
	if (go <= 0) {
		rc = go;
		goto out;
	}
	int pushed = push_ctx(list, n);
	CUresult cr = sync_contexts(list, n);
	if (cr != CUDA_SUCCESS) {
		snprintf(err, errlen, "pause: synchronizing the GPU failed: %s; nothing was released",
			 _msv_cu_error(cr));
		rc = -EIO;
		goto unlock;
	}
	_msv_tracer_phase("before_pause");
	/* Back up first, release after: a failed copy leaves everything mapped. */
	size_t nb = 0;
	uint64_t backup_bytes = 0;
	struct msv_region **bl = calloc(n ? n : 1, sizeof(*bl));
	for (size_t i = 0; bl && i < n; i++)
		if (_msv_region_keep(list[i], _msv_policy_action(_msv_tracer_policy(), list[i]->cat))) {
			bl[nb++] = list[i];
			backup_bytes += list[i]->keep_len;
		}
	uint64_t c0 = _msv_now_ns();
	cr = bl ? _msv_copy_out(bl, nb) : CUDA_ERROR_OUT_OF_MEMORY;
	uint64_t copy_ns = _msv_now_ns() - c0;
	free(bl);
	if (cr != CUDA_SUCCESS) {
		snprintf(err, errlen, "pause: backup copy failed: %s; nothing was released", _msv_cu_error(cr));
		rc = -EIO;
		record(MSV_REC_PAUSE, mask, 0, _msv_now_ns() - t0, 0, copy_ns, 0);
		goto unlock;
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
	/* Host memory the backups hold (they stay allocated for the next
	 * pause): the report's saver section shows it. */
	uint64_t host = 0;
	struct msv_region *it, *tmp;
	HASH_ITER(hh, _msv_regions_all(), it, tmp)
		host += it->backup ? it->keep_len : 0;
	struct msv_rec meta = {.type = MSV_REC_META, .api = MSV_META_STAGING, .size = host};
	_msv_tracer_record(&meta);
	/* The pause record, then the reading that shows its effect: the
	 * analyzer takes the first "pause" phase after a pause record. */
	uint64_t dur = _msv_now_ns() - t0;
	record(MSV_REC_PAUSE, mask, released, dur, backup_bytes, copy_ns, rc == 0);
	_msv_tracer_phase("pause");
	last_pause = (struct msv_timing){.t_ns = t0, .dur_ns = dur, .bytes = released,
					 .copy_bytes = backup_bytes, .copy_ns = copy_ns, .map_ns = unmap_ns,
					 .ok = rc == 0, .valid = 1};
	MSV_INFO("paused %s: %zu regions, %llu bytes released, %llu backed up; %.1f ms (copy %.1f, unmap %.1f)",
		 cats, n, (unsigned long long)released, (unsigned long long)backup_bytes, dur / 1e6, copy_ns / 1e6,
		 unmap_ns / 1e6);
unlock:
	pop_ctx(pushed);
	_msv_regions_unlock();
	free(list);
out:
	pthread_mutex_unlock(&op_lock);
	return rc;
}

static void rollback(struct msv_region **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (list[i]->resident)
			_msv_region_unmap(list[i]);
}

int _msv_saver_resume(unsigned mask, char *err, size_t errlen)
{
	int rc = 0;
	char cats[128];
	size_t n = 0;
	struct msv_region **list;
	pthread_mutex_lock(&op_lock);
	uint64_t t0 = _msv_now_ns();
	int go = begin(0, mask, cats, sizeof(cats), &list, &n, err, errlen);
	if (go <= 0) {
		rc = go;
		goto out;
	}
	int pushed = push_ctx(list, n);
	/* The context's limits come back before anything can run on it. */
	_msv_untrim_context();
	uint64_t need = 0;
	for (size_t i = 0; i < n; i++)
		need += list[i]->mapped;
	/* Map everything, then fill and restore.  Overlapping the copies with
	 * the mapping was measured on an H200 and gained nothing: the driver
	 * serializes them. */
	const struct msv_policy *pol = _msv_tracer_policy();
	struct msv_region **zl = calloc(n ? n : 1, sizeof(*zl)), **bl = calloc(n ? n : 1, sizeof(*bl));
	size_t nz = 0, nb = 0;
	uint64_t restore_bytes = 0, slowest_ns = 0, slowest_bytes = 0;
	CUresult cr = zl && bl ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
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
	uint64_t m0 = _msv_now_ns();
	int map_failed = 0;
	for (size_t i = 0; i < n && cr == CUDA_SUCCESS; i++) {
		uint64_t r0 = _msv_now_ns();
		cr = _msv_region_map(list[i]);
		map_failed = cr != CUDA_SUCCESS;
		if (_msv_now_ns() - r0 > slowest_ns)
			slowest_ns = _msv_now_ns() - r0, slowest_bytes = list[i]->mapped;
	}
	uint64_t map_ns = _msv_now_ns() - m0, c0 = _msv_now_ns();
	if (cr == CUDA_SUCCESS)
		cr = _msv_copy_zero_async(zl, nz);
	if (cr == CUDA_SUCCESS)
		cr = _msv_copy_in_async(bl, nb);
	/* Nothing is unmapped while a copy into it may still run. */
	CUresult wr = _msv_copy_wait();
	if (cr == CUDA_SUCCESS)
		cr = wr;
	uint64_t copy_ns = _msv_now_ns() - c0;
	free(zl);
	free(bl);
	MSV_DEBUG("resume: slowest region map %.2f ms for %llu bytes", slowest_ns / 1e6,
		  (unsigned long long)slowest_bytes);
	if (cr != CUDA_SUCCESS) {
		rollback(list, n);
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
		record(MSV_REC_RESUME, mask, 0, _msv_now_ns() - t0, 0, copy_ns, 0);
		goto unlock;
	}
	paused_mask &= ~mask;
	uint64_t dur = _msv_now_ns() - t0;
	record(MSV_REC_RESUME, mask, need, dur, restore_bytes, copy_ns, 1);
	_msv_tracer_phase("resume");
	last_resume = (struct msv_timing){.t_ns = t0, .dur_ns = dur, .bytes = need,
					  .copy_bytes = restore_bytes, .copy_ns = copy_ns, .map_ns = map_ns,
					  .ok = 1, .valid = 1};
	MSV_INFO("resumed %s: %zu regions, %llu bytes; %.1f ms (map %.1f, zero+restore %.1f)", cats, n,
		 (unsigned long long)need, dur / 1e6, map_ns / 1e6, copy_ns / 1e6);
unlock:
	if (rc != 0)
		_msv_retrim_context();
	pop_ctx(pushed);
	_msv_regions_unlock();
	free(list);
out:
	pthread_mutex_unlock(&op_lock);
	return rc;
}
