#include "shared.h"

#include <stdint.h>

#include "regions.h"
#include "tracer/log.h"
#include "tracer/trace_format.h"
#include "tracer/tracer.h"

static void record(const struct msv_region *r, int kind, void *caller)
{
	struct msv_decision d;
	_msv_tracer_decide(r->size, 0, caller, &d);
	struct msv_rec rec = {.type = MSV_REC_SHARED, .category = (uint8_t)r->cat, .api = (uint8_t)kind,
			      .addr = r->va, .size = r->mapped, .site = d.site, .pysite = d.pysite,
			      .nvtx = d.nvtx, .device = (uint8_t)r->device};
	_msv_tracer_record(&rec);
}

static struct msv_region *by_handle(CUmemGenericAllocationHandle h)
{
	struct msv_region *r, *tmp;
	HASH_ITER(hh, _msv_regions_all(), r, tmp)
		if (r->wrapped && r->resident && r->handle == h)
			return r;
	return NULL;
}

int _msv_share_note(CUdeviceptr addr, CUmemGenericAllocationHandle handle, int kind, void *caller)
{
	_msv_regions_lock();
	struct msv_region *r = addr ? _msv_regions_find(addr) : by_handle(handle);
	struct msv_region copy;
	int first = 0, cat = -1;
	if (r) {
		cat = (int)r->cat;
		first = !(r->noted & (1u << kind));
		r->noted |= 1u << kind;
		if (kind == MSV_SHARE_RETAINED)
			r->retains++;
		if (kind != MSV_SHARE_IPC_REFUSED)
			r->shared |= 1u << kind;
		copy = *r;
	}
	_msv_regions_unlock();
	/* One record per region and kind: NCCL may retain a buffer per peer. */
	if (r && first)
		record(&copy, kind, caller);
	return cat;
}

void _msv_share_release(CUmemGenericAllocationHandle handle)
{
	_msv_regions_lock();
	struct msv_region *r = by_handle(handle), copy;
	int ended = 0;
	if (r && r->retains > 0 && --r->retains == 0) {
		r->shared &= ~(1u << MSV_SHARE_RETAINED);
		r->noted &= ~(1u << MSV_SHARE_RETAINED);
		ended = r->shared == 0;
		copy = *r;
	}
	_msv_regions_unlock();
	if (ended)
		record(&copy, MSV_SHARE_ENDED, __builtin_return_address(0));
}
