#include "events.h"

#include <stdatomic.h>

#include "log.h"
#include "thread.h"
#include "trace_format.h"
#include "tracer.h"

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

/* Capture and instantiation cost driver memory beyond the graph pool's
 * allocations (on an H200, 158 MiB appeared during the capture of six decode
 * graphs).  A checkpoint when each begins closes the interval before it
 * (memory no driver call explains); one when it ends charges the interval
 * to the graph.  The analyzer subtracts what was allocated meanwhile. */
void _msv_ev_capture_begin(CUresult rc)
{
	if (rc != CUDA_SUCCESS)
		return;
	_msv_tracer_capture_begin();
	_msv_tracer_checkpoint(MSV_DRV_UNOBSERVED, MSV_MARK_CAPTURE_BEGIN, NULL);
}

void _msv_ev_capture_end(CUresult rc)
{
	/* A failed EndCapture still ends the capture (it is invalidated). */
	(void)rc;
	_msv_tracer_capture_end();
	_msv_tracer_checkpoint(MSV_DRV_GRAPH_EXEC, MSV_MARK_CAPTURE_END, NULL);
}

/* Set between the entry and the exit of an explicit module/library load:
 * the MODULE_LOADED callback inside it is that load, measured at its exit. */
static __thread int in_load;

void _msv_ev_measure_before(void)
{
	_msv_tracer_checkpoint(MSV_DRV_UNOBSERVED, MSV_MARK_INSTANTIATE_BEGIN, NULL);
}

void _msv_ev_load_before(void)
{
	in_load = 1;
	_msv_tracer_checkpoint(MSV_DRV_UNOBSERVED, MSV_MARK_LOAD_BEGIN, NULL);
}

void _msv_ev_measure_after(CUresult rc, int cause)
{
	int load = cause == MSV_DRV_MODULES;
	if (load)
		in_load = 0;
	/* A failed call may still have taken memory: the interval is charged
	 * either way, to "unobserved" when the call failed. */
	_msv_tracer_checkpoint(rc == CUDA_SUCCESS ? cause : MSV_DRV_UNOBSERVED,
			       load ? MSV_MARK_LOAD_END : MSV_MARK_INSTANTIATE_END, NULL);
}

/* With CUDA_MODULE_LOADING=LAZY (the default since CUDA 12.2) kernels load
 * inside the launch that first needs them, a call memsaver never observes;
 * CUPTI still reports the module.  The unwinder names the library whose
 * launch it was, the Python frames the line that ran it. */
void _msv_ev_module_loaded(void)
{
	if (!in_load)
		_msv_tracer_checkpoint(MSV_DRV_LAZY_LOAD, MSV_MARK_MODULE_LOADED, NULL);
}

/* Without CUPTI nothing reports a module loaded inside a launch, but the
 * interposer sees every launch: the first launch of each function is the
 * checkpoint instead, taken after it returned, so the module it loaded is
 * in the reading.  More checkpoints than CUPTI's (one per function, not per
 * module; a function of an explicitly loaded module adds nothing), each
 * charged what appeared since the previous one, as CUPTI's are.  The set is
 * a fixed open-addressing table of function handles: a launch costs a hash
 * and a probe or two; a full table ends the watch (said once), and later
 * loads fall into the next checkpoint's interval. */
#define SEEN_SLOTS 16384u
#define SEEN_MAX (SEEN_SLOTS / 2) /* half full at most: probes stay short and end */
static _Atomic uintptr_t seen[SEEN_SLOTS];
static atomic_uint seen_n;
static atomic_int seen_full;

static int first_sight(uintptr_t f)
{
	for (unsigned i = (unsigned)((f >> 4) * 2654435761u) % SEEN_SLOTS;; i = (i + 1) % SEEN_SLOTS) {
		uintptr_t cur = atomic_load_explicit(&seen[i], memory_order_relaxed);
		if (cur == f)
			return 0;
		if (cur != 0)
			continue;
		if (atomic_fetch_add(&seen_n, 1) >= SEEN_MAX) {
			if (!atomic_exchange(&seen_full, 1))
				MSV_WARN("more than %u kernels launched: later first launches are not checkpoints, "
					 "what they load is charged to the next one", SEEN_MAX);
			return 0;
		}
		if (atomic_compare_exchange_strong(&seen[i], &cur, f))
			return 1;
		atomic_fetch_sub(&seen_n, 1);
		if (cur == f) /* another thread put it there first */
			return 0;
	}
}

void _msv_ev_launch(CUfunction f, void *caller)
{
	if (!f || _msv_tracer_cupti() || atomic_load_explicit(&seen_full, memory_order_relaxed) ||
	    !_msv_tracer_active())
		return;
	if (first_sight((uintptr_t)f))
		_msv_tracer_checkpoint(MSV_DRV_LAZY_LOAD, MSV_MARK_FIRST_LAUNCH, caller);
}

void _msv_ev_stream_created(void)
{
	_msv_tracer_checkpoint(MSV_DRV_UNOBSERVED, MSV_MARK_STREAM_CREATED, NULL);
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
