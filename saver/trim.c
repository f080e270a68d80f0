#include "trim.h"

#include "tracer/driver.h"
#include "tracer/log.h"
#include "tracer/thread.h"
#include "tracer/trace_format.h"
#include "tracer/tracer.h"

#define MAX_CTX 16

/* Limits that hold device memory.  Measured on an H200: only the stack
 * size frees memory; malloc heap and printf FIFO at 0 freed nothing, so
 * they are left alone. */
static const CUlimit limits[] = {CU_LIMIT_STACK_SIZE};
#define N_LIMITS (sizeof(limits) / sizeof(limits[0]))

static struct {
	CUcontext ctx;
	size_t saved[N_LIMITS];
	int trimmed;       /* limits lowered; saved holds the application's values */
	int restored_now;  /* restored by the resume in progress (retrim undoes it) */
	int64_t bytes;     /* device bytes the trim freed */
} ctxs[MAX_CTX];

static void record(int api, int64_t bytes)
{
	struct msv_rec r = {.type = MSV_REC_CONTEXT, .api = (uint8_t)api, .size = (uint64_t)bytes};
	_msv_tracer_record(&r);
}

static int64_t trim_one(const struct msv_driver *d, int slot)
{
	CUcontext old;
	if (d->cuCtxPushCurrent(ctxs[slot].ctx) != CUDA_SUCCESS)
		return 0;
	uint64_t before = _msv_tracer_used_now();
	int any = 0;
	for (size_t i = 0; i < N_LIMITS; i++) {
		if (d->cuCtxGetLimit(&ctxs[slot].saved[i], limits[i]) != CUDA_SUCCESS)
			continue;
		CUresult r = d->cuCtxSetLimit(limits[i], 0);
		if (r != CUDA_SUCCESS)
			MSV_WARN("context trim: cuCtxSetLimit(%d, 0) failed: %s", (int)limits[i], _msv_cu_error(r));
		else
			any = 1;
	}
	uint64_t after = _msv_tracer_used_now();
	d->cuCtxPopCurrent(&old);
	ctxs[slot].trimmed = any;
	ctxs[slot].bytes = !any || before == MSV_NO_VALUE || after == MSV_NO_VALUE ? 0 : (int64_t)(before - after);
	return ctxs[slot].bytes;
}

void _msv_trim_context(struct msv_region **list, size_t n, uint64_t *trimmed)
{
	const struct msv_driver *d = _msv_drv();
	*trimmed = 0;
	if (!d || !d->cuCtxGetLimit || !d->cuCtxSetLimit ||
	    _msv_policy_context(_msv_tracer_policy()) != MSV_CONTEXT_TRIM)
		return;
	MSV_BUSY_BEGIN();
	for (size_t i = 0; i < n; i++) {
		int slot = -1;
		for (int k = 0; k < MAX_CTX; k++) {
			if (ctxs[k].ctx == list[i]->ctx) {
				slot = k;
				break;
			}
			if (!ctxs[k].ctx && slot < 0)
				slot = k;
		}
		if (slot < 0 || (ctxs[slot].ctx == list[i]->ctx && ctxs[slot].trimmed))
			continue;
		ctxs[slot].ctx = list[i]->ctx;
		int64_t freed = trim_one(d, slot);
		if (ctxs[slot].trimmed) {
			record(0, freed);
			*trimmed += freed > 0 ? (uint64_t)freed : 0;
		}
	}
	MSV_BUSY_END();
}

CUresult _msv_untrim_context(uint64_t *need)
{
	const struct msv_driver *d = _msv_drv();
	CUresult rc = CUDA_SUCCESS;
	*need = 0;
	if (!d)
		return CUDA_SUCCESS;
	MSV_BUSY_BEGIN();
	for (int k = 0; k < MAX_CTX; k++) {
		ctxs[k].restored_now = 0;
		if (!ctxs[k].ctx || !ctxs[k].trimmed)
			continue;
		*need += ctxs[k].bytes > 0 ? (uint64_t)ctxs[k].bytes : 0;
		CUcontext old;
		CUresult r = d->cuCtxPushCurrent(ctxs[k].ctx);
		if (r != CUDA_SUCCESS) {
			rc = rc == CUDA_SUCCESS ? r : rc;
			continue;
		}
		uint64_t before = _msv_tracer_used_now();
		size_t i = 0;
		for (; i < N_LIMITS && r == CUDA_SUCCESS; i++)
			r = d->cuCtxSetLimit(limits[i], ctxs[k].saved[i]);
		if (r != CUDA_SUCCESS) {
			/* Typically out of memory (another process took it): the
			 * context stays trimmed, with the application's values still
			 * saved, and the resume fails rather than run kernels
			 * without their stack. */
			MSV_WARN("context untrim: cuCtxSetLimit(%d, %zu) failed: %s", (int)limits[i - 1],
				 ctxs[k].saved[i - 1], _msv_cu_error(r));
			while (--i > 0)
				d->cuCtxSetLimit(limits[i - 1], 0);
			rc = rc == CUDA_SUCCESS ? r : rc;
		}
		uint64_t after = _msv_tracer_used_now();
		d->cuCtxPopCurrent(&old);
		if (r != CUDA_SUCCESS)
			continue;
		ctxs[k].trimmed = 0;
		ctxs[k].restored_now = 1;
		record(1, before != MSV_NO_VALUE && after != MSV_NO_VALUE ? (int64_t)(after - before) : 0);
	}
	MSV_BUSY_END();
	return rc;
}

void _msv_retrim_context(void)
{
	const struct msv_driver *d = _msv_drv();
	if (!d || _msv_policy_context(_msv_tracer_policy()) != MSV_CONTEXT_TRIM)
		return;
	MSV_BUSY_BEGIN();
	for (int k = 0; k < MAX_CTX; k++)
		if (ctxs[k].ctx && ctxs[k].restored_now && !ctxs[k].trimmed) {
			ctxs[k].restored_now = 0;
			record(0, trim_one(d, k));
		}
	MSV_BUSY_END();
}
