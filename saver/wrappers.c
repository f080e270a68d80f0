/* The wrappers handed out instead of the driver's own entry points.  The
 * allocation path is here: classify (tracer), then redirect into a
 * releasable region (saver/regions.c) or pass through.  Every real call is
 * bracketed with the busy count so the CUPTI subscriber does not record it
 * a second time. */
#include <cuda.h>
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "app_vmm.h"
#include "copy.h"
#include "gate.h"
#include "hooks.h"
#include "regions.h"
#include "shared.h"
#include "tracer/driver.h"
#include "tracer/events.h"
#include "tracer/log.h"
#include "tracer/options.h"
#include "tracer/pyframes.h"
#include "tracer/callsite.h"
#include "tracer/thread.h"
#include "tracer/trace_format.h"
#include "tracer/tracer.h"

#define REAL(sym) static __typeof__(&sym) real_##sym
/* cuda.h declares the _ptsz forms only under CUDA_API_PER_THREAD_DEFAULT_STREAM. */
#define REAL_AS(sym, as) static __typeof__(&as) real_##sym
REAL(cuInit);
REAL(cuGetProcAddress_v2);
REAL(cuMemAlloc_v2);
REAL(cuMemFree_v2);
REAL(cuMemAllocPitch_v2);
REAL(cuMemAllocAsync);
REAL_AS(cuMemAllocAsync_ptsz, cuMemAllocAsync);
REAL(cuMemFreeAsync);
REAL_AS(cuMemFreeAsync_ptsz, cuMemFreeAsync);
REAL(cuMemGetAddressRange_v2);
REAL(cuPointerGetAttribute);
REAL(cuIpcGetMemHandle);
REAL(cuMemRetainAllocationHandle);
REAL(cuMemExportToShareableHandle);
REAL(cuMemGetHandleForAddressRange);
REAL(cuStreamBeginCapture_v2);
REAL_AS(cuStreamBeginCapture_v2_ptsz, cuStreamBeginCapture_v2);
REAL(cuStreamEndCapture);
REAL_AS(cuStreamEndCapture_ptsz, cuStreamEndCapture);
REAL(cuGraphInstantiateWithFlags);
REAL(cuDevicePrimaryCtxRetain);
/* cuda.h 13 declares only cuCtxCreate_v4; a driver still answers older
 * cudart versions with _v2 or _v3. */
static CUresult (*real_cuCtxCreate_v2)(CUcontext *, unsigned int, CUdevice);
static CUresult (*real_cuCtxCreate_v3)(CUcontext *, CUexecAffinityParam *, int, unsigned int, CUdevice);
REAL(cuCtxCreate_v4);
REAL(cuModuleLoad);
REAL(cuModuleLoadData);
REAL(cuModuleLoadDataEx);
REAL(cuModuleLoadFatBinary);
REAL(cuLibraryLoadData);
REAL(cuLibraryLoadFromFile);
REAL(cuStreamCreate);
REAL(cuStreamCreateWithPriority);
REAL(cuMemAllocManaged);
static CUresult (*real_cuMemAllocFromPoolAsync)(CUdeviceptr *, size_t, CUmemoryPool, CUstream);
static CUresult (*real_cuMemAllocFromPoolAsync_ptsz)(CUdeviceptr *, size_t, CUmemoryPool, CUstream);
REAL(cuCtxEnablePeerAccess);
REAL(cuMemCreate);
REAL(cuMemRelease);
REAL(cuMemMap);
REAL(cuMemUnmap);
REAL(cuMemSetAccess);
REAL(cuMemGetAllocationPropertiesFromHandle);
static CUresult (*real_cuGetProcAddress_v1)(const char *, void **, int, cuuint64_t);
/* Gated (saver/gate.h); _ptsz/_ptds: the per-thread-default-stream forms. */
REAL(cuLaunchKernel);
REAL_AS(cuLaunchKernel_ptsz, cuLaunchKernel);
REAL(cuLaunchKernelEx);
REAL_AS(cuLaunchKernelEx_ptsz, cuLaunchKernelEx);
REAL(cuLaunchCooperativeKernel);
REAL_AS(cuLaunchCooperativeKernel_ptsz, cuLaunchCooperativeKernel);
REAL(cuGraphLaunch);
REAL_AS(cuGraphLaunch_ptsz, cuGraphLaunch);
REAL(cuMemcpy);
REAL_AS(cuMemcpy_ptds, cuMemcpy);
REAL(cuMemcpyAsync);
REAL_AS(cuMemcpyAsync_ptsz, cuMemcpyAsync);
REAL(cuMemcpyHtoD_v2);
REAL_AS(cuMemcpyHtoD_v2_ptds, cuMemcpyHtoD_v2);
REAL(cuMemcpyDtoH_v2);
REAL_AS(cuMemcpyDtoH_v2_ptds, cuMemcpyDtoH_v2);
REAL(cuMemcpyDtoD_v2);
REAL_AS(cuMemcpyDtoD_v2_ptds, cuMemcpyDtoD_v2);
REAL(cuMemcpyHtoDAsync_v2);
REAL_AS(cuMemcpyHtoDAsync_v2_ptsz, cuMemcpyHtoDAsync_v2);
REAL(cuMemcpyDtoHAsync_v2);
REAL_AS(cuMemcpyDtoHAsync_v2_ptsz, cuMemcpyDtoHAsync_v2);
REAL(cuMemcpyDtoDAsync_v2);
REAL_AS(cuMemcpyDtoDAsync_v2_ptsz, cuMemcpyDtoDAsync_v2);
REAL(cuMemsetD8_v2);
REAL_AS(cuMemsetD8_v2_ptds, cuMemsetD8_v2);
REAL(cuMemsetD16_v2);
REAL_AS(cuMemsetD16_v2_ptds, cuMemsetD16_v2);
REAL(cuMemsetD32_v2);
REAL_AS(cuMemsetD32_v2_ptds, cuMemsetD32_v2);
REAL(cuMemsetD8Async);
REAL_AS(cuMemsetD8Async_ptsz, cuMemsetD8Async);
REAL(cuMemsetD16Async);
REAL_AS(cuMemsetD16Async_ptsz, cuMemsetD16Async);
REAL(cuMemsetD32Async);
REAL_AS(cuMemsetD32Async_ptsz, cuMemsetD32Async);

#define CALL(expr)                    \
	({                            \
		MSV_BUSY_BEGIN();     \
		CUresult r_ = (expr); \
		MSV_BUSY_END();       \
		r_;                   \
	})

/* Whether memsaver acts on this process: tracer up and the real pointer known. */
#define READY(fn) (real_##fn && _msv_tracer_active())

static CUresult w_cuInit(unsigned flags)
{
	/* Before the real cuInit: the tracer and the baseline reading (NVML,
	 * no context yet).  InitializeInjection runs inside the real call. */
	_msv_driver_load();
	if (_msv_tracer_init() == 0)
		_msv_tracer_baseline();
	return real_cuInit ? real_cuInit(flags) : CUDA_ERROR_NOT_INITIALIZED;
}

static int stream_capturing(CUstream s)
{
	const struct msv_driver *d = _msv_drv();
	CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;
	if (!s || !d || !d->cuStreamGetCaptureInfo)
		return 0;
	return CALL(d->cuStreamGetCaptureInfo(s, &st, NULL, NULL, NULL, NULL, NULL)) == CUDA_SUCCESS &&
	       st == CU_STREAM_CAPTURE_STATUS_ACTIVE;
}

/* Pin the host side of what a pause will keep, off the allocating thread. */
static void prepare_backup(CUdeviceptr va, enum msv_category cat)
{
	if (!_msv_options()->prepin)
		return;
	_msv_regions_lock();
	struct msv_region *r = _msv_regions_find(va);
	size_t keep = r ? _msv_region_keep(r, _msv_policy_action(_msv_tracer_policy(), cat)) : 0;
	_msv_regions_unlock();
	if (keep)
		_msv_copy_prepin(va);
}

/* The allocation path: classify, then redirect or pass through. */
static CUresult w_cuMemAlloc_v2(CUdeviceptr *dptr, size_t size)
{
	if (!READY(cuMemAlloc_v2))
		return real_cuMemAlloc_v2 ? real_cuMemAlloc_v2(dptr, size) : CUDA_ERROR_NOT_INITIALIZED;
	struct msv_decision d;
	_msv_copy_note_alloc();
	_msv_tracer_decide(size, 0, __builtin_return_address(0), &d);
	uint8_t flags = 0;
	if (_msv_options()->redirect && _msv_policy_action(_msv_tracer_policy(), d.cat) != MSV_ACT_KEEP &&
	    dptr && size) {
		size_t mapped = 0;
		CUresult r = _msv_region_create(size, d.cat, dptr, &mapped);
		if (r == CUDA_SUCCESS) {
			_msv_tracer_alloc(&d, MSV_API_MEM_ALLOC, *dptr, size, mapped, 0, MSV_F_WRAPPED);
			prepare_backup(*dptr, d.cat);
			return CUDA_SUCCESS;
		}
		/* Fall back to a plain allocation: the engine keeps working and
		 * the report names the bytes that stay resident because of it. */
		MSV_WARN("could not wrap %zu bytes of %s: %s; allocating them with cuMemAlloc", size,
			 _msv_category_name(d.cat), _msv_cu_error(r));
		struct msv_rec wf = {.type = MSV_REC_WRAP_FAIL, .category = (uint8_t)d.cat, .size = size, .aux = r};
		_msv_tracer_record(&wf);
		flags = MSV_F_WRAP_FAILED;
	}
	CUresult r = CALL(real_cuMemAlloc_v2(dptr, size));
	if (r == CUDA_SUCCESS) {
		_msv_tracer_alloc(&d, MSV_API_MEM_ALLOC, *dptr, size, 0, 0, flags);
		_msv_regions_note(*dptr, size, d.cat);
	}
	return r;
}

static CUresult w_cuMemFree_v2(CUdeviceptr p)
{
	if (!real_cuMemFree_v2)
		return CUDA_ERROR_NOT_INITIALIZED;
	int deferred;
	struct msv_region *r = p ? _msv_regions_take(p, &deferred) : NULL;
	if (!r) {
		/* Pitch and managed allocations, or memory allocated before the
		 * tracer: the record CUPTI would write, written here. */
		CUresult rc = CALL(real_cuMemFree_v2(p));
		_msv_ev_free(rc, MSV_API_MEM_FREE, p);
		return rc;
	}
	if (!r->wrapped) {
		CUresult rc = CALL(real_cuMemFree_v2(p));
		_msv_tracer_free(MSV_API_MEM_FREE, p, r->size, r->size, r->cat);
		_msv_region_destroy(r);
		return rc;
	}
	size_t size = r->size, mapped = r->mapped;
	int cat = r->cat;
	/* A pause or resume is working on it: it releases the region when it
	 * is done (the address is not handed out again before that). */
	CUresult rc = deferred ? CUDA_SUCCESS : _msv_region_free(r);
	if (rc != CUDA_SUCCESS) {
		/* The context is in error: like cuMemFree, fail and keep the
		 * memory (the region goes back into the table). */
		MSV_WARN("freeing the wrapped region at 0x%llx failed: %s; it stays allocated",
			 (unsigned long long)p, _msv_cu_error(rc));
		_msv_regions_put(r);
		return rc;
	}
	_msv_tracer_free(MSV_API_MEM_FREE, p, size, mapped, cat);
	return CUDA_SUCCESS;
}

static CUresult w_cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pitch, size_t w, size_t h, unsigned el)
{
	CUresult r = CALL(real_cuMemAllocPitch_v2(dptr, pitch, w, h, el));
	if (r == CUDA_SUCCESS)
		_msv_ev_alloc(r, MSV_API_MEM_ALLOC_PITCH, *dptr, *pitch * h, NULL, 0);
	return r;
}

/* Stream-ordered allocations live in the driver's pools: observed, not
 * redirected. */
#define ALLOC_ASYNC(fn)                                                                    \
	static CUresult w_##fn(CUdeviceptr *dptr, size_t size, CUstream s)                 \
	{                                                                                  \
		CUresult r = CALL(real_##fn(dptr, size, s));                               \
		if (r == CUDA_SUCCESS)                                                     \
			_msv_ev_alloc(r, MSV_API_MEM_ALLOC_ASYNC, *dptr, size, s,          \
				      stream_capturing(s) ? MSV_F_CAPTURING : 0);          \
		return r;                                                                  \
	}                                                                                  \
	static CUresult w_##fn(CUdeviceptr *, size_t, CUstream)
ALLOC_ASYNC(cuMemAllocAsync);
ALLOC_ASYNC(cuMemAllocAsync_ptsz);

#define ALLOC_FROM_POOL(fn)                                                                \
	static CUresult w_##fn(CUdeviceptr *dptr, size_t size, CUmemoryPool pool, CUstream s) \
	{                                                                                  \
		CUresult r = CALL(real_##fn(dptr, size, pool, s));                         \
		if (r == CUDA_SUCCESS)                                                     \
			_msv_ev_alloc(r, MSV_API_MEM_ALLOC_ASYNC, *dptr, size, s,          \
				      stream_capturing(s) ? MSV_F_CAPTURING : 0);          \
		return r;                                                                  \
	}                                                                                  \
	static CUresult w_##fn(CUdeviceptr *, size_t, CUmemoryPool, CUstream)
ALLOC_FROM_POOL(cuMemAllocFromPoolAsync);
ALLOC_FROM_POOL(cuMemAllocFromPoolAsync_ptsz);

/* Managed memory is observed, never redirected (VMM cannot back it). */
static CUresult w_cuMemAllocManaged(CUdeviceptr *dptr, size_t size, unsigned flags)
{
	CUresult r = CALL(real_cuMemAllocManaged(dptr, size, flags));
	if (r == CUDA_SUCCESS)
		_msv_ev_alloc(r, MSV_API_MEM_ALLOC_MANAGED, *dptr, size, NULL, 0);
	return r;
}

#define FREE_ASYNC(fn)                                                      \
	static CUresult w_##fn(CUdeviceptr p, CUstream s)                   \
	{                                                                   \
		CUresult r = CALL(real_##fn(p, s));                         \
		_msv_ev_free(r, MSV_API_MEM_FREE_ASYNC, p);                 \
		return r;                                                   \
	}                                                                   \
	static CUresult w_##fn(CUdeviceptr, CUstream)
FREE_ASYNC(cuMemFreeAsync);
FREE_ASYNC(cuMemFreeAsync_ptsz);

/* Wrapped memory must look like cuMemAlloc memory to the engine. */
static CUresult w_cuMemGetAddressRange_v2(CUdeviceptr *base, size_t *size, CUdeviceptr p)
{
	_msv_regions_lock();
	struct msv_region *r = _msv_regions_find(p);
	if (r) {
		if (base)
			*base = r->va;
		if (size)
			*size = r->size;
	}
	_msv_regions_unlock();
	return r ? CUDA_SUCCESS : real_cuMemGetAddressRange_v2(base, size, p);
}

static CUresult w_cuPointerGetAttribute(void *data, CUpointer_attribute attr, CUdeviceptr p)
{
	CUresult rc = real_cuPointerGetAttribute(data, attr, p);
	if (rc != CUDA_SUCCESS || !data)
		return rc;
	_msv_regions_lock();
	struct msv_region *r = _msv_regions_find(p);
	if (r) {
		if (attr == CU_POINTER_ATTRIBUTE_RANGE_START_ADDR)
			*(CUdeviceptr *)data = r->va;
		else if (attr == CU_POINTER_ATTRIBUTE_RANGE_SIZE)
			*(size_t *)data = r->size;
		else if (attr == CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE)
			*(int *)data = 0;
	}
	_msv_regions_unlock();
	return rc;
}

/* Legacy IPC cannot share VMM memory: refused, and said once with the call
 * site and the rule that keeps such a buffer unwrapped (saver/shared.h). */
static CUresult w_cuIpcGetMemHandle(CUipcMemHandle *h, CUdeviceptr p)
{
	static atomic_int said;
	int cat = _msv_share_note(p, 0, MSV_SHARE_IPC_REFUSED, __builtin_return_address(0));
	if (cat < 0)
		return real_cuIpcGetMemHandle(h, p);
	if (!atomic_exchange(&said, 1)) {
		char lib[128], frames[1][MSV_PYFRAME_LEN];
		int nf = _msv_pyframes_read(frames, 1);
		MSV_ERROR("cuIpcGetMemHandle from %s on memory memsaver wrapped (category %s): legacy CUDA IPC "
			  "cannot share VMM memory, so the call fails; keep this buffer unwrapped with a policy "
			  "rule placed first, e.g. {\"category\": \"comm\", \"match\": {\"python\": \"*%s*\"}} "
			  "(comm is kept by default), or set \"actions\": {\"%s\": \"keep\"}; the report lists "
			  "every such call site",
			  nf ? frames[0] : _msv_callsite_library(__builtin_return_address(0), lib, sizeof(lib)),
			  _msv_category_name(cat), nf ? frames[0] : "FILE.py:FUNCTION", _msv_category_name(cat));
	}
	return CUDA_ERROR_INVALID_VALUE;
}

/* Sharing the physical memory of a wrapped region keeps it resident from
 * then on (saver/shared.h). */
static CUresult w_cuMemRetainAllocationHandle(CUmemGenericAllocationHandle *h, void *addr)
{
	/* The application's own handle: its value back (saver/app_vmm.h). */
	if (h && _msv_app_vmm_retain_app(addr, h, __builtin_return_address(0)))
		return CUDA_SUCCESS;
	CUresult r = CALL(real_cuMemRetainAllocationHandle(h, addr));
	if (r == CUDA_SUCCESS)
		_msv_share_note((CUdeviceptr)addr, 0, MSV_SHARE_RETAINED, __builtin_return_address(0));
	return r;
}

static CUresult w_cuMemExportToShareableHandle(void *sh, CUmemGenericAllocationHandle h, CUmemAllocationHandleType type,
					       unsigned long long flags)
{
	CUresult r;
	if (_msv_app_vmm_export_app(sh, h, type, flags, __builtin_return_address(0), &r))
		return r;
	r = CALL(real_cuMemExportToShareableHandle(sh, h, type, flags));
	if (r == CUDA_SUCCESS)
		_msv_share_note(0, h, MSV_SHARE_EXPORTED, __builtin_return_address(0));
	return r;
}

static CUresult w_cuMemGetHandleForAddressRange(void *out, CUdeviceptr p, size_t size, CUmemRangeHandleType type,
						unsigned long long flags)
{
	CUresult r = CALL(real_cuMemGetHandleForAddressRange(out, p, size, type, flags));
	if (r == CUDA_SUCCESS)
		_msv_share_note(p, 0, MSV_SHARE_DMABUF, __builtin_return_address(0));
	return r;
}

#define BEGIN_CAPTURE(fn)                                                 \
	static CUresult w_##fn(CUstream s, CUstreamCaptureMode mode)      \
	{                                                                 \
		CUresult r = CALL(real_##fn(s, mode));                    \
		_msv_ev_capture_begin(r);                                 \
		return r;                                                 \
	}                                                                 \
	static CUresult w_##fn(CUstream, CUstreamCaptureMode)
BEGIN_CAPTURE(cuStreamBeginCapture_v2);
BEGIN_CAPTURE(cuStreamBeginCapture_v2_ptsz);

#define END_CAPTURE(fn)                                          \
	static CUresult w_##fn(CUstream s, CUgraph *g)           \
	{                                                        \
		CUresult r = CALL(real_##fn(s, g));              \
		_msv_ev_capture_end(r);                          \
		return r;                                        \
	}                                                        \
	static CUresult w_##fn(CUstream, CUgraph *)
END_CAPTURE(cuStreamEndCapture);
END_CAPTURE(cuStreamEndCapture_ptsz);

static CUresult w_cuGraphInstantiateWithFlags(CUgraphExec *e, CUgraph g, unsigned long long flags)
{
	_msv_ev_measure_before();
	CUresult r = CALL(real_cuGraphInstantiateWithFlags(e, g, flags));
	_msv_ev_measure_after(r, MSV_DRV_GRAPH_EXEC);
	return r;
}

/* cuMemAlloc memory becomes reachable from the peer once peer access is
 * enabled; VMM memory needs its own grant (saver/regions.c). */
static CUresult w_cuCtxEnablePeerAccess(CUcontext peer, unsigned flags)
{
	CUresult r = CALL(real_cuCtxEnablePeerAccess(peer, flags));
	const struct msv_driver *d = _msv_drv();
	CUdevice me, owner;
	CUcontext old;
	if (r != CUDA_SUCCESS || !d || !_msv_tracer_active())
		return r;
	MSV_BUSY_BEGIN();
	int ok = d->cuCtxGetDevice(&me) == CUDA_SUCCESS && d->cuCtxPushCurrent(peer) == CUDA_SUCCESS;
	if (ok) {
		ok = d->cuCtxGetDevice(&owner) == CUDA_SUCCESS;
		d->cuCtxPopCurrent(&old);
	}
	MSV_BUSY_END();
	CUresult g = ok ? _msv_regions_grant_peer(owner, me) : CUDA_ERROR_INVALID_CONTEXT;
	if (g != CUDA_SUCCESS)
		MSV_WARN("peer access from the current device to the peer context's wrapped memory could not be "
			 "granted: %s; kernels of that device reading it will fault", _msv_cu_error(g));
	return r;
}

static CUresult w_cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice dev)
{
	CUresult r = CALL(real_cuDevicePrimaryCtxRetain(ctx, dev));
	if (r == CUDA_SUCCESS && ctx)
		_msv_ev_context(r, *ctx);
	return r;
}

/* The events CUPTI's RESOURCE domain reports, seen where the interposer can
 * see them, so that a run without CUPTI (the default) records the same:
 * context creation, explicit module and library loads, stream creation.
 * The RESOURCE callbacks they cause come under the busy count and are
 * ignored (tracer/cupti.c). */
#define CTX_CREATE(fn, params, args)                                  \
	static CUresult w_##fn params                                 \
	{                                                             \
		CUresult r = CALL(real_##fn args);                    \
		if (r == CUDA_SUCCESS && ctx)                         \
			_msv_ev_context(r, *ctx);                     \
		return r;                                             \
	}
CTX_CREATE(cuCtxCreate_v2, (CUcontext *ctx, unsigned flags, CUdevice dev), (ctx, flags, dev))
CTX_CREATE(cuCtxCreate_v3, (CUcontext *ctx, CUexecAffinityParam *p, int n, unsigned flags, CUdevice dev),
	   (ctx, p, n, flags, dev))
CTX_CREATE(cuCtxCreate_v4, (CUcontext *ctx, CUctxCreateParams *p, unsigned flags, CUdevice dev),
	   (ctx, p, flags, dev))

#define LOAD(fn, params, args)                                        \
	static CUresult w_##fn params                                 \
	{                                                             \
		_msv_ev_load_before();                                \
		CUresult r = CALL(real_##fn args);                    \
		_msv_ev_measure_after(r, MSV_DRV_MODULES);            \
		return r;                                             \
	}
LOAD(cuModuleLoad, (CUmodule *m, const char *path), (m, path))
LOAD(cuModuleLoadData, (CUmodule *m, const void *image), (m, image))
LOAD(cuModuleLoadDataEx, (CUmodule *m, const void *image, unsigned n, CUjit_option *o, void **v),
     (m, image, n, o, v))
LOAD(cuModuleLoadFatBinary, (CUmodule *m, const void *fatbin), (m, fatbin))
LOAD(cuLibraryLoadData,
     (CUlibrary *l, const void *code, CUjit_option *jo, void **jv, unsigned nj, CUlibraryOption *lo, void **lv,
      unsigned nl),
     (l, code, jo, jv, nj, lo, lv, nl))
LOAD(cuLibraryLoadFromFile,
     (CUlibrary *l, const char *path, CUjit_option *jo, void **jv, unsigned nj, CUlibraryOption *lo, void **lv,
      unsigned nl),
     (l, path, jo, jv, nj, lo, lv, nl))

static CUresult w_cuStreamCreate(CUstream *s, unsigned flags)
{
	CUresult r = CALL(real_cuStreamCreate(s, flags));
	if (r == CUDA_SUCCESS)
		_msv_ev_stream_created();
	return r;
}

static CUresult w_cuStreamCreateWithPriority(CUstream *s, unsigned flags, int priority)
{
	CUresult r = CALL(real_cuStreamCreateWithPriority(s, flags, priority));
	if (r == CUDA_SUCCESS)
		_msv_ev_stream_created();
	return r;
}

/* App-owned VMM (PyTorch's expandable segments, vLLM, NCCL): handles are
 * translated and mappings become regions in saver/app_vmm.c; handles made
 * before the tracer started pass through. */
#define MAX_CLASH 8

static CUresult w_cuMemCreate(CUmemGenericAllocationHandle *h, size_t size, const CUmemAllocationProp *prop,
			      unsigned long long flags)
{
	CUresult r = CALL(real_cuMemCreate(h, size, prop, flags));
	if (r != CUDA_SUCCESS || !_msv_tracer_active())
		return r;
	/* A value the driver hands out again while the application still holds
	 * it for memory a pause released is kept aside: the application gets
	 * another one. */
	CUmemGenericAllocationHandle clash[MAX_CLASH];
	int k = 0, known;
	while ((known = _msv_app_vmm_created(*h, size, prop, flags)) == -EEXIST && k < MAX_CLASH) {
		clash[k++] = *h;
		if ((r = CALL(real_cuMemCreate(h, size, prop, flags))) != CUDA_SUCCESS)
			break;
	}
	if (r == CUDA_SUCCESS && known == -EEXIST) {
		CALL(real_cuMemRelease(*h));
		r = CUDA_ERROR_OUT_OF_MEMORY;
	}
	while (k > 0)
		CALL(real_cuMemRelease(clash[--k]));
	_msv_ev_vmm_create(r, r == CUDA_SUCCESS ? *h : 0, size);
	return r;
}

static CUresult w_cuMemRelease(CUmemGenericAllocationHandle h)
{
	CUresult r;
	if (_msv_app_vmm_release_app(h, &r))
		return r;
	r = CALL(real_cuMemRelease(h));
	if (r == CUDA_SUCCESS)
		_msv_share_release(h);
	_msv_ev_vmm_release(r, h);
	return r;
}

/* The map is where the address is known: classified there, through the
 * same policy as any allocation. */
static CUresult w_cuMemMap(CUdeviceptr va, size_t size, size_t off, CUmemGenericAllocationHandle h,
			   unsigned long long flags)
{
	if (_msv_app_vmm_known(h)) {
		struct msv_decision d;
		int wrapped = 0;
		_msv_tracer_decide(size, 0, __builtin_return_address(0), &d);
		CUresult r = _msv_app_vmm_map_app(va, size, off, h, flags, &d, &wrapped);
		if (r == CUDA_SUCCESS)
			_msv_tracer_alloc(&d, MSV_API_MEM_CREATE, va, size, size, h,
					  MSV_F_APP_VMM | (wrapped ? MSV_F_WRAPPED : 0));
		return r;
	}
	CUresult r = CALL(real_cuMemMap(va, size, off, h, flags));
	_msv_ev_vmm_map(r, va, size, h);
	return r;
}

static CUresult w_cuMemUnmap(CUdeviceptr va, size_t size)
{
	CUresult r;
	if (_msv_app_vmm_unmap_app(va, size, &r))
		return r;
	r = CALL(real_cuMemUnmap(va, size));
	_msv_ev_vmm_unmap(r, va, size);
	return r;
}

/* Access the application grants is granted again after every re-map. */
static CUresult w_cuMemSetAccess(CUdeviceptr va, size_t size, const CUmemAccessDesc *desc, size_t count)
{
	CUresult r = CALL(real_cuMemSetAccess(va, size, desc, count));
	if (r == CUDA_SUCCESS)
		_msv_app_vmm_access(va, size, desc, count);
	return r;
}

static CUresult w_cuMemGetAllocationPropertiesFromHandle(CUmemAllocationProp *prop, CUmemGenericAllocationHandle h)
{
	CUresult r;
	if (_msv_app_vmm_props_app(prop, h, &r))
		return r;
	return CALL(real_cuMemGetAllocationPropertiesFromHandle(prop, h));
}

/* Work that may touch memory a pause from outside released waits at the
 * gate (saver/gate.h).  Open: one relaxed load and a branch, then exactly
 * the driver's pointer; no busy count (CUPTI does not trace launches and
 * copies: tracer/cupti.c).  A kernel launch then tells the tracer, which
 * without CUPTI takes the first launch of each function as the lazy-loading
 * checkpoint (tracer/events.h). */
#define GATE(call, s, ptsz)                                                  \
	do {                                                                 \
		_msv_copy_note_launch();                                     \
		if (_msv_gate_closed()) {                                    \
			CUresult g_ = _msv_gate_wait(call, (s), (ptsz));     \
			if (g_ != CUDA_SUCCESS)                              \
				return g_;                                   \
		}                                                            \
	} while (0)

#define LAUNCH(fn, ptsz)                                                                                     \
	static CUresult w_##fn(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,   \
			       unsigned bz, unsigned shmem, CUstream s, void **params, void **extra)            \
	{                                                                                                    \
		GATE(#fn, s, ptsz);                                                                          \
		CUresult r_ = real_##fn(f, gx, gy, gz, bx, by, bz, shmem, s, params, extra);                \
		_msv_ev_launch(f, __builtin_return_address(0));                                             \
		return r_;                                                                                   \
	}                                                                                                    \
	static CUresult w_##fn(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, \
			       CUstream, void **, void **)
LAUNCH(cuLaunchKernel, 0);
LAUNCH(cuLaunchKernel_ptsz, 1);

#define LAUNCH_EX(fn, ptsz)                                                                      \
	static CUresult w_##fn(const CUlaunchConfig *c, CUfunction f, void **params, void **extra) \
	{                                                                                        \
		GATE(#fn, c ? c->hStream : NULL, ptsz);                                          \
		CUresult r_ = real_##fn(c, f, params, extra);                                    \
		_msv_ev_launch(f, __builtin_return_address(0));                                 \
		return r_;                                                                       \
	}                                                                                        \
	static CUresult w_##fn(const CUlaunchConfig *, CUfunction, void **, void **)
LAUNCH_EX(cuLaunchKernelEx, 0);
LAUNCH_EX(cuLaunchKernelEx_ptsz, 1);

#define LAUNCH_COOP(fn, ptsz)                                                                                \
	static CUresult w_##fn(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,   \
			       unsigned bz, unsigned shmem, CUstream s, void **params)                          \
	{                                                                                                    \
		GATE(#fn, s, ptsz);                                                                          \
		CUresult r_ = real_##fn(f, gx, gy, gz, bx, by, bz, shmem, s, params);                       \
		_msv_ev_launch(f, __builtin_return_address(0));                                             \
		return r_;                                                                                   \
	}                                                                                                    \
	static CUresult w_##fn(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, \
			       CUstream, void **)
LAUNCH_COOP(cuLaunchCooperativeKernel, 0);
LAUNCH_COOP(cuLaunchCooperativeKernel_ptsz, 1);

#define GRAPH_LAUNCH(fn, ptsz)                                  \
	static CUresult w_##fn(CUgraphExec e, CUstream s)       \
	{                                                       \
		GATE(#fn, s, ptsz);                             \
		return real_##fn(e, s);                         \
	}                                                       \
	static CUresult w_##fn(CUgraphExec, CUstream)
GRAPH_LAUNCH(cuGraphLaunch, 0);
GRAPH_LAUNCH(cuGraphLaunch_ptsz, 1);

/* Copies and memsets: TD, TS (destination and source types), then the
 * stream for the async forms. */
#define COPY(fn, TD, TS)                                               \
	static CUresult w_##fn(TD dst, TS src, size_t n)               \
	{                                                              \
		GATE(#fn, NULL, 0);                                    \
		return real_##fn(dst, src, n);                         \
	}                                                              \
	static CUresult w_##fn(TD, TS, size_t)
COPY(cuMemcpy, CUdeviceptr, CUdeviceptr);
COPY(cuMemcpy_ptds, CUdeviceptr, CUdeviceptr);
COPY(cuMemcpyHtoD_v2, CUdeviceptr, const void *);
COPY(cuMemcpyHtoD_v2_ptds, CUdeviceptr, const void *);
COPY(cuMemcpyDtoH_v2, void *, CUdeviceptr);
COPY(cuMemcpyDtoH_v2_ptds, void *, CUdeviceptr);
COPY(cuMemcpyDtoD_v2, CUdeviceptr, CUdeviceptr);
COPY(cuMemcpyDtoD_v2_ptds, CUdeviceptr, CUdeviceptr);
COPY(cuMemsetD8_v2, CUdeviceptr, unsigned char);
COPY(cuMemsetD8_v2_ptds, CUdeviceptr, unsigned char);
COPY(cuMemsetD16_v2, CUdeviceptr, unsigned short);
COPY(cuMemsetD16_v2_ptds, CUdeviceptr, unsigned short);
COPY(cuMemsetD32_v2, CUdeviceptr, unsigned int);
COPY(cuMemsetD32_v2_ptds, CUdeviceptr, unsigned int);

#define COPY_ASYNC(fn, TD, TS, ptsz)                                         \
	static CUresult w_##fn(TD dst, TS src, size_t n, CUstream s)         \
	{                                                                    \
		GATE(#fn, s, ptsz);                                          \
		return real_##fn(dst, src, n, s);                            \
	}                                                                    \
	static CUresult w_##fn(TD, TS, size_t, CUstream)
COPY_ASYNC(cuMemcpyAsync, CUdeviceptr, CUdeviceptr, 0);
COPY_ASYNC(cuMemcpyAsync_ptsz, CUdeviceptr, CUdeviceptr, 1);
COPY_ASYNC(cuMemcpyHtoDAsync_v2, CUdeviceptr, const void *, 0);
COPY_ASYNC(cuMemcpyHtoDAsync_v2_ptsz, CUdeviceptr, const void *, 1);
COPY_ASYNC(cuMemcpyDtoHAsync_v2, void *, CUdeviceptr, 0);
COPY_ASYNC(cuMemcpyDtoHAsync_v2_ptsz, void *, CUdeviceptr, 1);
COPY_ASYNC(cuMemcpyDtoDAsync_v2, CUdeviceptr, CUdeviceptr, 0);
COPY_ASYNC(cuMemcpyDtoDAsync_v2_ptsz, CUdeviceptr, CUdeviceptr, 1);
COPY_ASYNC(cuMemsetD8Async, CUdeviceptr, unsigned char, 0);
COPY_ASYNC(cuMemsetD8Async_ptsz, CUdeviceptr, unsigned char, 1);
COPY_ASYNC(cuMemsetD16Async, CUdeviceptr, unsigned short, 0);
COPY_ASYNC(cuMemsetD16Async_ptsz, CUdeviceptr, unsigned short, 1);
COPY_ASYNC(cuMemsetD32Async, CUdeviceptr, unsigned int, 0);
COPY_ASYNC(cuMemsetD32Async_ptsz, CUdeviceptr, unsigned int, 1);

/* cuGetProcAddress itself: the driver's answer, with our wrapper swapped
 * in for the entry points we hook. */
static void *swap(const char *name, void *pfn, int version, cuuint64_t flags)
{
	const struct msv_hook *h = _msv_hook_for_proc(name, version, flags);
	if (!h || !pfn)
		return pfn;
	if (!*h->real)
		*h->real = pfn;
	return h->wrapper;
}

static CUresult w_cuGetProcAddress_v2(const char *name, void **pfn, int version, cuuint64_t flags,
				      CUdriverProcAddressQueryResult *status)
{
	CUresult r = real_cuGetProcAddress_v2(name, pfn, version, flags, status);
	if (r == CUDA_SUCCESS && pfn && name)
		*pfn = swap(name, *pfn, version, flags);
	return r;
}

static CUresult w_cuGetProcAddress_v1(const char *name, void **pfn, int version, cuuint64_t flags)
{
	CUresult r = real_cuGetProcAddress_v1(name, pfn, version, flags);
	if (r == CUDA_SUCCESS && pfn && name)
		*pfn = swap(name, *pfn, version, flags);
	return r;
}

#define HOOK(name, sym, ptsz, ver) {name, #sym, ptsz, ver, (void *)w_##sym, (void **)&real_##sym}
const struct msv_hook _msv_hooks[] = {
	HOOK("cuGetProcAddress", cuGetProcAddress_v2, 0, 12000),
	{"cuGetProcAddress", "cuGetProcAddress", 0, 11030, (void *)w_cuGetProcAddress_v1,
	 (void **)&real_cuGetProcAddress_v1},
	HOOK("cuInit", cuInit, 0, 2000),
	HOOK("cuMemAlloc", cuMemAlloc_v2, 0, 3020),
	HOOK("cuMemFree", cuMemFree_v2, 0, 3020),
	HOOK("cuMemAllocPitch", cuMemAllocPitch_v2, 0, 3020),
	HOOK("cuMemAllocAsync", cuMemAllocAsync, 0, 11020),
	HOOK("cuMemAllocAsync", cuMemAllocAsync_ptsz, 1, 11020),
	HOOK("cuMemFreeAsync", cuMemFreeAsync, 0, 11020),
	HOOK("cuMemFreeAsync", cuMemFreeAsync_ptsz, 1, 11020),
	HOOK("cuMemGetAddressRange", cuMemGetAddressRange_v2, 0, 3020),
	HOOK("cuPointerGetAttribute", cuPointerGetAttribute, 0, 4000),
	HOOK("cuIpcGetMemHandle", cuIpcGetMemHandle, 0, 4010),
	HOOK("cuMemRetainAllocationHandle", cuMemRetainAllocationHandle, 0, 11000),
	HOOK("cuMemExportToShareableHandle", cuMemExportToShareableHandle, 0, 10020),
	HOOK("cuMemGetHandleForAddressRange", cuMemGetHandleForAddressRange, 0, 11070),
	HOOK("cuStreamBeginCapture", cuStreamBeginCapture_v2, 0, 10010),
	HOOK("cuStreamBeginCapture", cuStreamBeginCapture_v2_ptsz, 1, 10010),
	HOOK("cuStreamEndCapture", cuStreamEndCapture, 0, 10000),
	HOOK("cuStreamEndCapture", cuStreamEndCapture_ptsz, 1, 10000),
	HOOK("cuGraphInstantiateWithFlags", cuGraphInstantiateWithFlags, 0, 11040),
	/* cudart 12+ asks "cuGraphInstantiate" at 12000 and the driver answers
	 * cuGraphInstantiateWithFlags (cuda.h's #define): same ABI, same slot. */
	HOOK("cuGraphInstantiate", cuGraphInstantiateWithFlags, 0, 12000),
	HOOK("cuDevicePrimaryCtxRetain", cuDevicePrimaryCtxRetain, 0, 7000),
	HOOK("cuCtxCreate", cuCtxCreate_v2, 0, 3020),
	HOOK("cuCtxCreate", cuCtxCreate_v3, 0, 11040),
	HOOK("cuCtxCreate", cuCtxCreate_v4, 0, 12050),
	HOOK("cuModuleLoad", cuModuleLoad, 0, 2000),
	HOOK("cuModuleLoadData", cuModuleLoadData, 0, 2000),
	HOOK("cuModuleLoadDataEx", cuModuleLoadDataEx, 0, 2010),
	HOOK("cuModuleLoadFatBinary", cuModuleLoadFatBinary, 0, 2000),
	HOOK("cuLibraryLoadData", cuLibraryLoadData, 0, 12000),
	HOOK("cuLibraryLoadFromFile", cuLibraryLoadFromFile, 0, 12000),
	HOOK("cuStreamCreate", cuStreamCreate, 0, 2000),
	HOOK("cuStreamCreateWithPriority", cuStreamCreateWithPriority, 0, 5050),
	HOOK("cuMemAllocManaged", cuMemAllocManaged, 0, 6000),
	HOOK("cuMemAllocFromPoolAsync", cuMemAllocFromPoolAsync, 0, 11020),
	HOOK("cuMemAllocFromPoolAsync", cuMemAllocFromPoolAsync_ptsz, 1, 11020),
	HOOK("cuCtxEnablePeerAccess", cuCtxEnablePeerAccess, 0, 4000),
	HOOK("cuMemCreate", cuMemCreate, 0, 10020),
	HOOK("cuMemRelease", cuMemRelease, 0, 10020),
	HOOK("cuMemMap", cuMemMap, 0, 10020),
	HOOK("cuMemUnmap", cuMemUnmap, 0, 10020),
	HOOK("cuMemSetAccess", cuMemSetAccess, 0, 10020),
	HOOK("cuMemGetAllocationPropertiesFromHandle", cuMemGetAllocationPropertiesFromHandle, 0, 10020),
	HOOK("cuLaunchKernel", cuLaunchKernel, 0, 4000),
	HOOK("cuLaunchKernel", cuLaunchKernel_ptsz, 1, 4000),
	HOOK("cuLaunchKernelEx", cuLaunchKernelEx, 0, 11060),
	HOOK("cuLaunchKernelEx", cuLaunchKernelEx_ptsz, 1, 11060),
	HOOK("cuLaunchCooperativeKernel", cuLaunchCooperativeKernel, 0, 9000),
	HOOK("cuLaunchCooperativeKernel", cuLaunchCooperativeKernel_ptsz, 1, 9000),
	HOOK("cuGraphLaunch", cuGraphLaunch, 0, 10000),
	HOOK("cuGraphLaunch", cuGraphLaunch_ptsz, 1, 10000),
	HOOK("cuMemcpy", cuMemcpy, 0, 4000),
	HOOK("cuMemcpy", cuMemcpy_ptds, 1, 4000),
	HOOK("cuMemcpyAsync", cuMemcpyAsync, 0, 4000),
	HOOK("cuMemcpyAsync", cuMemcpyAsync_ptsz, 1, 4000),
	HOOK("cuMemcpyHtoD", cuMemcpyHtoD_v2, 0, 3020),
	HOOK("cuMemcpyHtoD", cuMemcpyHtoD_v2_ptds, 1, 3020),
	HOOK("cuMemcpyDtoH", cuMemcpyDtoH_v2, 0, 3020),
	HOOK("cuMemcpyDtoH", cuMemcpyDtoH_v2_ptds, 1, 3020),
	HOOK("cuMemcpyDtoD", cuMemcpyDtoD_v2, 0, 3020),
	HOOK("cuMemcpyDtoD", cuMemcpyDtoD_v2_ptds, 1, 3020),
	HOOK("cuMemcpyHtoDAsync", cuMemcpyHtoDAsync_v2, 0, 3020),
	HOOK("cuMemcpyHtoDAsync", cuMemcpyHtoDAsync_v2_ptsz, 1, 3020),
	HOOK("cuMemcpyDtoHAsync", cuMemcpyDtoHAsync_v2, 0, 3020),
	HOOK("cuMemcpyDtoHAsync", cuMemcpyDtoHAsync_v2_ptsz, 1, 3020),
	HOOK("cuMemcpyDtoDAsync", cuMemcpyDtoDAsync_v2, 0, 3020),
	HOOK("cuMemcpyDtoDAsync", cuMemcpyDtoDAsync_v2_ptsz, 1, 3020),
	HOOK("cuMemsetD8", cuMemsetD8_v2, 0, 3020),
	HOOK("cuMemsetD8", cuMemsetD8_v2_ptds, 1, 3020),
	HOOK("cuMemsetD16", cuMemsetD16_v2, 0, 3020),
	HOOK("cuMemsetD16", cuMemsetD16_v2_ptds, 1, 3020),
	HOOK("cuMemsetD32", cuMemsetD32_v2, 0, 3020),
	HOOK("cuMemsetD32", cuMemsetD32_v2_ptds, 1, 3020),
	HOOK("cuMemsetD8Async", cuMemsetD8Async, 0, 3020),
	HOOK("cuMemsetD8Async", cuMemsetD8Async_ptsz, 1, 3020),
	HOOK("cuMemsetD16Async", cuMemsetD16Async, 0, 3020),
	HOOK("cuMemsetD16Async", cuMemsetD16Async_ptsz, 1, 3020),
	HOOK("cuMemsetD32Async", cuMemsetD32Async, 0, 3020),
	HOOK("cuMemsetD32Async", cuMemsetD32Async_ptsz, 1, 3020),
};
const unsigned _msv_n_hooks = sizeof(_msv_hooks) / sizeof(_msv_hooks[0]);
