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
	int trimmed;
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
	if (!any || before == MSV_NO_VALUE || after == MSV_NO_VALUE)
		return 0;
	return (int64_t)(before - after);
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

void _msv_untrim_context(void)
{
	const struct msv_driver *d = _msv_drv();
	if (!d)
		return;
	MSV_BUSY_BEGIN();
	for (int k = 0; k < MAX_CTX; k++) {
		if (!ctxs[k].ctx || !ctxs[k].trimmed)
			continue;
		CUcontext old;
		if (d->cuCtxPushCurrent(ctxs[k].ctx) != CUDA_SUCCESS)
			continue;
		uint64_t before = _msv_tracer_used_now();
		for (size_t i = 0; i < N_LIMITS; i++) {
			CUresult r = d->cuCtxSetLimit(limits[i], ctxs[k].saved[i]);
			if (r != CUDA_SUCCESS)
				MSV_ERROR("context untrim: cuCtxSetLimit(%d, %zu) failed: %s", (int)limits[i],
					  ctxs[k].saved[i], _msv_cu_error(r));
		}
		uint64_t after = _msv_tracer_used_now();
		d->cuCtxPopCurrent(&old);
		ctxs[k].trimmed = 0;
		record(1, before != MSV_NO_VALUE && after != MSV_NO_VALUE ? (int64_t)(after - before) : 0);
	}
	MSV_BUSY_END();
}

void _msv_retrim_context(void)
{
	const struct msv_driver *d = _msv_drv();
	if (!d || _msv_policy_context(_msv_tracer_policy()) != MSV_CONTEXT_TRIM)
		return;
	MSV_BUSY_BEGIN();
	for (int k = 0; k < MAX_CTX; k++)
		if (ctxs[k].ctx && !ctxs[k].trimmed)
			record(0, trim_one(d, k));
	MSV_BUSY_END();
}
