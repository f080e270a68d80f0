#include "events.h"

#include "thread.h"
#include "trace_format.h"
#include "tracer.h"

static __thread uint64_t used_before, alloc_before;

void _msv_ev_alloc(CUresult rc, int api, CUdeviceptr addr, size_t size, CUstream stream, uint8_t flags)
{
	if (rc != CUDA_SUCCESS || !_msv_tracer_active())
		return;
	struct msv_decision d;
	_msv_tracer_decide(size, (flags & MSV_F_CAPTURING) != 0, NULL, &d);
	_msv_tracer_alloc(&d, api, addr, size, 0, (uint64_t)(uintptr_t)stream, flags);
}

void _msv_ev_free(CUresult rc, int api, CUdeviceptr addr)
{
	if (rc == CUDA_SUCCESS && addr)
		_msv_tracer_free(api, addr, 0, 0, MSV_CAT_OTHER);
}

/* A capture costs driver memory beyond the graph pool's allocations (on an
 * H200, 158 MiB appeared during the capture of six decode graphs): the
 * device-memory change across the capture minus what was allocated in it. */
static __thread uint64_t capture_used0, capture_alloc0;

void _msv_ev_capture_begin(CUresult rc)
{
	if (rc != CUDA_SUCCESS)
		return;
	if (_msv_tls()->capturing == 0 && _msv_tracer_active()) {
		capture_used0 = _msv_tracer_used_now();
		capture_alloc0 = _msv_tracer_allocated();
	}
	_msv_tracer_capture_begin();
}

void _msv_ev_capture_end(CUresult rc)
{
	/* A failed EndCapture still ends the capture (it is invalidated). */
	(void)rc;
	_msv_tracer_capture_end();
	if (_msv_tls()->capturing != 0 || capture_used0 == MSV_NO_VALUE || !_msv_tracer_active())
		return;
	uint64_t now = _msv_tracer_used_now();
	if (now != MSV_NO_VALUE && capture_used0)
		_msv_tracer_driver(MSV_DRV_GRAPH_EXEC, (int64_t)(now - capture_used0) -
							(int64_t)(_msv_tracer_allocated() - capture_alloc0));
	capture_used0 = MSV_NO_VALUE;
}

void _msv_ev_measure_before(void)
{
	used_before = _msv_tracer_active() ? _msv_tracer_used_now() : MSV_NO_VALUE;
	alloc_before = _msv_tracer_allocated();
}

void _msv_ev_measure_after(CUresult rc, int cause)
{
	if (rc != CUDA_SUCCESS || used_before == MSV_NO_VALUE)
		return;
	uint64_t now = _msv_tracer_used_now();
	if (now != MSV_NO_VALUE)
		_msv_tracer_driver(cause, (int64_t)(now - used_before) -
						  (int64_t)(_msv_tracer_allocated() - alloc_before));
	used_before = MSV_NO_VALUE;
}

void _msv_ev_context(CUresult rc, CUcontext ctx)
{
	if (rc == CUDA_SUCCESS)
		_msv_tracer_context_ready(ctx);
}

void _msv_ev_vmm_create(CUresult rc, CUmemGenericAllocationHandle h, size_t size)
{
	if (rc == CUDA_SUCCESS)
		_msv_tracer_vmm(MSV_REC_VMM_CREATE, h, size, 0);
}

void _msv_ev_vmm_release(CUresult rc, CUmemGenericAllocationHandle h)
{
	if (rc == CUDA_SUCCESS)
		_msv_tracer_vmm(MSV_REC_VMM_RELEASE, h, 0, 0);
}

void _msv_ev_vmm_map(CUresult rc, CUdeviceptr va, size_t size, CUmemGenericAllocationHandle h)
{
	if (rc == CUDA_SUCCESS)
		_msv_tracer_vmm(MSV_REC_VMM_MAP, va, size, h);
}

void _msv_ev_vmm_unmap(CUresult rc, CUdeviceptr va, size_t size)
{
	if (rc == CUDA_SUCCESS)
		_msv_tracer_vmm(MSV_REC_VMM_UNMAP, va, size, 0);
}
