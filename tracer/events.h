/* What an observer (CUPTI callback or interposer wrapper) reports to the
 * tracer, one function per kind of driver event.  Each takes the call's
 * arguments as seen at API exit (after the real call returned `rc`) unless
 * its name says "before".  All are cheap no-ops while the tracer is off. */
#ifndef MSV_EVENTS_H
#define MSV_EVENTS_H

#include <cuda.h>
#include <stdint.h>

/* An allocation that memsaver did not redirect (pass-through or seen only
 * by CUPTI): classified and recorded. */
void _msv_ev_alloc(CUresult rc, int api, CUdeviceptr addr, size_t size, CUstream stream, uint8_t flags);
void _msv_ev_free(CUresult rc, int api, CUdeviceptr addr);
void _msv_ev_capture_begin(CUresult rc);
void _msv_ev_capture_end(CUresult rc);
/* Graph instantiation, module/library loading and context creation cost
 * driver-internal memory: a checkpoint before (closing the interval no call
 * explains) and one after, charged to `cause` (enum msv_driver_cause).
 * _msv_ev_measure_before is for graph instantiation, _msv_ev_load_before
 * for cuModuleLoad* / cuLibraryLoad*; both end with _msv_ev_measure_after. */
void _msv_ev_measure_before(void);
void _msv_ev_load_before(void);
void _msv_ev_measure_after(CUresult rc, int cause);
/* A module loaded (CUPTI RESOURCE; outside an explicit load: at first
 * launch), a stream created (CUPTI RESOURCE or the interposer's
 * cuStreamCreate*).  A checkpoint each. */
void _msv_ev_module_loaded(void);
void _msv_ev_stream_created(void);
/* A kernel launch returned (interposer).  While CUPTI is not attached, the
 * first launch of each function is a checkpoint charged to lazy loading,
 * in place of the MODULE_LOADED callback; otherwise a no-op.  caller: as in
 * _msv_tracer_decide.  Costs a hash probe per launch without CUPTI, one
 * relaxed load with it. */
void _msv_ev_launch(CUfunction f, void *caller);
/* A context created or retained (CUPTI RESOURCE or the interposer's
 * cuCtxCreate* / cuDevicePrimaryCtxRetain): the first per device takes the
 * context reading. */
void _msv_ev_context(CUresult rc, CUcontext ctx);
/* App-owned VMM. */
void _msv_ev_vmm_create(CUresult rc, CUmemGenericAllocationHandle h, size_t size);
void _msv_ev_vmm_release(CUresult rc, CUmemGenericAllocationHandle h);
void _msv_ev_vmm_map(CUresult rc, CUdeviceptr va, size_t size, CUmemGenericAllocationHandle h);
void _msv_ev_vmm_unmap(CUresult rc, CUdeviceptr va, size_t size);

#endif
