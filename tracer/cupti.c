/* The CUPTI subscriber.  The driver calls InitializeInjection during cuInit
 * when CUDA_INJECTION64_PATH names this library.  We enable only the
 * memory, capture, graph, module and context callbacks of the driver domain
 * (kernel launches stay untouched) plus the RESOURCE domain.  libcupti is
 * dlopen()ed, so a host without it still runs, with the interposer alone. */
#include <cupti.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "events.h"
#include "log.h"
#include "options.h"
#include "thread.h"
#include "trace_format.h"
#include "tracer.h"

#define MSV_API __attribute__((visibility("default")))

static struct {
	CUptiResult (*subscribe)(CUpti_SubscriberHandle *, CUpti_CallbackFunc, void *);
	CUptiResult (*subscribe_v2)(CUpti_SubscriberHandle *, CUpti_CallbackFunc, void *,
				    CUpti_SubscriberParams *);
	CUptiResult (*enable_cb)(uint32_t, CUpti_SubscriberHandle, CUpti_CallbackDomain, CUpti_CallbackId);
	CUptiResult (*enable_domain)(uint32_t, CUpti_SubscriberHandle, CUpti_CallbackDomain);
	CUptiResult (*result_string)(CUptiResult, const char **);
	CUpti_SubscriberHandle sub;
} C;

static const CUpti_CallbackId driver_cbids[] = {
	CUPTI_DRIVER_TRACE_CBID_cuMemAlloc_v2,
	CUPTI_DRIVER_TRACE_CBID_cuMemAllocPitch_v2,
	CUPTI_DRIVER_TRACE_CBID_cuMemFree_v2,
	CUPTI_DRIVER_TRACE_CBID_cuMemAllocAsync,
	CUPTI_DRIVER_TRACE_CBID_cuMemAllocAsync_ptsz,
	CUPTI_DRIVER_TRACE_CBID_cuMemFreeAsync,
	CUPTI_DRIVER_TRACE_CBID_cuMemFreeAsync_ptsz,
	CUPTI_DRIVER_TRACE_CBID_cuMemAllocFromPoolAsync,
	CUPTI_DRIVER_TRACE_CBID_cuMemAllocFromPoolAsync_ptsz,
	CUPTI_DRIVER_TRACE_CBID_cuMemAllocManaged,
	CUPTI_DRIVER_TRACE_CBID_cuMemCreate,
	CUPTI_DRIVER_TRACE_CBID_cuMemRelease,
	CUPTI_DRIVER_TRACE_CBID_cuMemMap,
	CUPTI_DRIVER_TRACE_CBID_cuMemUnmap,
	CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCapture_v2,
	CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCapture_v2_ptsz,
	CUPTI_DRIVER_TRACE_CBID_cuStreamEndCapture,
	CUPTI_DRIVER_TRACE_CBID_cuStreamEndCapture_ptsz,
	CUPTI_DRIVER_TRACE_CBID_cuGraphInstantiateWithFlags,
	CUPTI_DRIVER_TRACE_CBID_cuModuleLoad,
	CUPTI_DRIVER_TRACE_CBID_cuModuleLoadData,
	CUPTI_DRIVER_TRACE_CBID_cuModuleLoadDataEx,
	CUPTI_DRIVER_TRACE_CBID_cuModuleLoadFatBinary,
	CUPTI_DRIVER_TRACE_CBID_cuLibraryLoadData,
	CUPTI_DRIVER_TRACE_CBID_cuLibraryLoadFromFile,
};

static int api_of(CUpti_CallbackId cbid)
{
	switch (cbid) {
	case CUPTI_DRIVER_TRACE_CBID_cuMemAllocPitch_v2:
		return MSV_API_MEM_ALLOC_PITCH;
	case CUPTI_DRIVER_TRACE_CBID_cuMemAllocAsync:
	case CUPTI_DRIVER_TRACE_CBID_cuMemAllocAsync_ptsz:
	case CUPTI_DRIVER_TRACE_CBID_cuMemAllocFromPoolAsync:
	case CUPTI_DRIVER_TRACE_CBID_cuMemAllocFromPoolAsync_ptsz:
		return MSV_API_MEM_ALLOC_ASYNC;
	case CUPTI_DRIVER_TRACE_CBID_cuMemAllocManaged:
		return MSV_API_MEM_ALLOC_MANAGED;
	default:
		return MSV_API_MEM_ALLOC;
	}
}

static void on_driver(CUpti_CallbackId cbid, const CUpti_CallbackData *cb)
{
	const void *p = cb->functionParams;
	int exit = cb->callbackSite == CUPTI_API_EXIT;
	CUresult rc = exit && cb->functionReturnValue ? *(CUresult *)cb->functionReturnValue : CUDA_SUCCESS;
	switch (cbid) {
	case CUPTI_DRIVER_TRACE_CBID_cuMemAlloc_v2:
	case CUPTI_DRIVER_TRACE_CBID_cuMemAllocManaged:
		if (exit)
			_msv_ev_alloc(rc, api_of(cbid), *((const cuMemAlloc_v2_params *)p)->dptr,
				      ((const cuMemAlloc_v2_params *)p)->bytesize, NULL, MSV_F_CUPTI);
		break;
	case CUPTI_DRIVER_TRACE_CBID_cuMemAllocPitch_v2: {
		const cuMemAllocPitch_v2_params *a = p;
		if (exit && rc == CUDA_SUCCESS)
			_msv_ev_alloc(rc, MSV_API_MEM_ALLOC_PITCH, *a->dptr, *a->pPitch * a->Height, NULL,
				      MSV_F_CUPTI);
		break;
	}
	case CUPTI_DRIVER_TRACE_CBID_cuMemAllocAsync:
	case CUPTI_DRIVER_TRACE_CBID_cuMemAllocAsync_ptsz:
	case CUPTI_DRIVER_TRACE_CBID_cuMemAllocFromPoolAsync:
	case CUPTI_DRIVER_TRACE_CBID_cuMemAllocFromPoolAsync_ptsz: {
		/* The first three fields are the same in all four param structs. */
		const cuMemAllocAsync_params *a = p;
		if (exit)
			_msv_ev_alloc(rc, MSV_API_MEM_ALLOC_ASYNC, *a->dptr, a->bytesize, a->hStream, MSV_F_CUPTI);
		break;
	}
	case CUPTI_DRIVER_TRACE_CBID_cuMemFree_v2:
		if (exit)
			_msv_ev_free(rc, MSV_API_MEM_FREE, ((const cuMemFree_v2_params *)p)->dptr);
		break;
	case CUPTI_DRIVER_TRACE_CBID_cuMemFreeAsync:
	case CUPTI_DRIVER_TRACE_CBID_cuMemFreeAsync_ptsz:
		if (exit)
			_msv_ev_free(rc, MSV_API_MEM_FREE_ASYNC, ((const cuMemFreeAsync_params *)p)->dptr);
		break;
	case CUPTI_DRIVER_TRACE_CBID_cuMemCreate:
		if (exit && rc == CUDA_SUCCESS)
			_msv_ev_vmm_create(rc, *((const cuMemCreate_params *)p)->handle,
					   ((const cuMemCreate_params *)p)->size);
		break;
	case CUPTI_DRIVER_TRACE_CBID_cuMemRelease:
		if (exit)
			_msv_ev_vmm_release(rc, ((const cuMemRelease_params *)p)->handle);
		break;
	case CUPTI_DRIVER_TRACE_CBID_cuMemMap: {
		const cuMemMap_params *a = p;
		if (exit)
			_msv_ev_vmm_map(rc, a->ptr, a->size, a->handle);
		break;
	}
	case CUPTI_DRIVER_TRACE_CBID_cuMemUnmap:
		if (exit)
			_msv_ev_vmm_unmap(rc, ((const cuMemUnmap_params *)p)->ptr,
					  ((const cuMemUnmap_params *)p)->size);
		break;
	case CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCapture_v2:
	case CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCapture_v2_ptsz:
		if (exit)
			_msv_ev_capture_begin(rc);
		break;
	case CUPTI_DRIVER_TRACE_CBID_cuStreamEndCapture:
	case CUPTI_DRIVER_TRACE_CBID_cuStreamEndCapture_ptsz:
		if (exit)
			_msv_ev_capture_end(rc);
		break;
	case CUPTI_DRIVER_TRACE_CBID_cuGraphInstantiateWithFlags:
		if (exit)
			_msv_ev_measure_after(rc, MSV_DRV_GRAPH_EXEC);
		else
			_msv_ev_measure_before();
		break;
	default: /* module and library loading */
		if (exit)
			_msv_ev_measure_after(rc, MSV_DRV_MODULES);
		else
			_msv_ev_load_before();
		break;
	}
}

static void CUPTIAPI callback(void *user, CUpti_CallbackDomain domain, CUpti_CallbackId cbid, const void *data)
{
	(void)user;
	struct msv_tls *t = _msv_tls();
	/* Our own driver calls, and calls the interposer already recorded. */
	if (t->busy)
		return;
	if (domain == CUPTI_CB_DOMAIN_DRIVER_API) {
		on_driver(cbid, data);
	} else if (domain == CUPTI_CB_DOMAIN_RESOURCE) {
		if (cbid == CUPTI_CBID_RESOURCE_CU_INIT_FINISHED)
			_msv_tracer_baseline();
		else if (cbid == CUPTI_CBID_RESOURCE_CONTEXT_CREATED)
			_msv_tracer_context_ready(((const CUpti_ResourceData *)data)->context);
		else if (cbid == CUPTI_CBID_RESOURCE_MODULE_LOADED)
			_msv_ev_module_loaded();
		else if (cbid == CUPTI_CBID_RESOURCE_STREAM_CREATED)
			_msv_ev_stream_created();
	}
}

static const char *result_text(CUptiResult r)
{
	const char *s = NULL;
	if (C.result_string)
		C.result_string(r, &s);
	return s ? s : "unknown CUPTI error";
}

static void *open_cupti(void)
{
	void *h = dlopen("libcupti.so.13", RTLD_NOW | RTLD_LOCAL);
	if (h)
		return h;
	/* `memsaver run` adds the toolkit's lib64 to the search path; a process
	 * injected some other way may still find CUPTI under CUDA_HOME. */
	const char *home = getenv("CUDA_HOME");
	char path[4096];
	snprintf(path, sizeof(path), "%s/lib64/libcupti.so.13", home && *home ? home : "/usr/local/cuda");
	return dlopen(path, RTLD_NOW | RTLD_LOCAL);
}

static void attach(void)
{
	void *h = open_cupti();
	if (!h) {
		MSV_WARN("libcupti.so.13 not found (%s); tracing from the interposer only", dlerror());
		_msv_tracer_set_cupti(0, "libcupti.so.13 not found");
		return;
	}
	void *(*sym)(void *, const char *) = _msv_real_dlsym ? _msv_real_dlsym : dlsym;
	C.subscribe = (__typeof__(C.subscribe))sym(h, "cuptiSubscribe");
	C.subscribe_v2 = (__typeof__(C.subscribe_v2))sym(h, "cuptiSubscribe_v2");
	C.enable_cb = (__typeof__(C.enable_cb))sym(h, "cuptiEnableCallback");
	C.enable_domain = (__typeof__(C.enable_domain))sym(h, "cuptiEnableDomain");
	C.result_string = (__typeof__(C.result_string))sym(h, "cuptiGetResultString");
	if ((!C.subscribe && !C.subscribe_v2) || !C.enable_cb || !C.enable_domain) {
		MSV_WARN("libcupti.so.13 lacks the callback API; tracing from the interposer only");
		_msv_tracer_set_cupti(0, "libcupti.so.13 lacks the callback API");
		return;
	}
	CUptiResult r;
	char holder[256] = "";
	if (C.subscribe_v2) {
		CUpti_SubscriberParams sp = {.structSize = sizeof(sp), .subscriberName = "memsaver",
					     .oldSubscriberName = holder, .oldSubscriberSize = sizeof(holder)};
		r = C.subscribe_v2(&C.sub, callback, NULL, &sp);
	} else {
		r = C.subscribe(&C.sub, callback, NULL);
	}
	if (r != CUPTI_SUCCESS) {
		char why[512];
		if (r == CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED)
			snprintf(why, sizeof(why), "the CUPTI slot is held by %s",
				 holder[0] ? holder : "another tool (Nsight or torch.profiler)");
		else
			snprintf(why, sizeof(why), "cuptiSubscribe failed: %s", result_text(r));
		MSV_WARN("%s; memsaver keeps tracing from its interposer", why);
		_msv_tracer_set_cupti(0, why);
		return;
	}
	int bad = 0;
	for (size_t i = 0; i < sizeof(driver_cbids) / sizeof(driver_cbids[0]); i++)
		bad |= C.enable_cb(1, C.sub, CUPTI_CB_DOMAIN_DRIVER_API, driver_cbids[i]) != CUPTI_SUCCESS;
	bad |= C.enable_domain(1, C.sub, CUPTI_CB_DOMAIN_RESOURCE) != CUPTI_SUCCESS;
	if (bad)
		MSV_WARN("some CUPTI callbacks could not be enabled; events may be missing");
	_msv_tracer_set_cupti(1, "");
	MSV_INFO("CUPTI subscriber attached");
}

/* Called by the driver inside cuInit: only CUPTI calls here; the baseline
 * and everything else wait for CU_INIT_FINISHED / CONTEXT_CREATED. */
MSV_API int InitializeInjection(void)
{
	if (_msv_tracer_init() != 0)
		return 1;
	if (!_msv_options()->cupti) {
		_msv_tracer_set_cupti(0, "MEMSAVER_CUPTI=0");
		return 1;
	}
	attach();
	return 1;
}
