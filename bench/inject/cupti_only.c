/* A CUDA_INJECTION64_PATH library that only subscribes to CUPTI, with a
 * callback that does nothing: whether a subscription alone makes an engine's
 * host memory grow (bench/soak.py --no-memsaver with this injected).
 * CUPTI_ONLY=none|driver|resource|both picks what is enabled (default both:
 * the driver callbacks of allocations, captures and module loads that
 * tracer/cupti.c enables, and the resource domain).  Built by `make all` as
 * build/lib/bench-cupti_only.so. */
#include <cupti.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void CUPTIAPI noop(void *u, CUpti_CallbackDomain d, CUpti_CallbackId id, const void *data)
{
	(void)u, (void)d, (void)id, (void)data;
}

static const CUpti_CallbackId driver_ids[] = {
	CUPTI_DRIVER_TRACE_CBID_cuMemAlloc_v2,
	CUPTI_DRIVER_TRACE_CBID_cuMemFree_v2,
	CUPTI_DRIVER_TRACE_CBID_cuMemAllocAsync,
	CUPTI_DRIVER_TRACE_CBID_cuMemFreeAsync,
	CUPTI_DRIVER_TRACE_CBID_cuMemCreate,
	CUPTI_DRIVER_TRACE_CBID_cuMemRelease,
	CUPTI_DRIVER_TRACE_CBID_cuMemMap,
	CUPTI_DRIVER_TRACE_CBID_cuMemUnmap,
	CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCapture_v2,
	CUPTI_DRIVER_TRACE_CBID_cuStreamEndCapture,
	CUPTI_DRIVER_TRACE_CBID_cuGraphInstantiateWithFlags,
	CUPTI_DRIVER_TRACE_CBID_cuModuleLoadData,
	CUPTI_DRIVER_TRACE_CBID_cuLibraryLoadData,
};

int InitializeInjection(void)
{
	const char *m = getenv("CUPTI_ONLY");
	if (!m)
		m = "both";
	void *h = dlopen("libcupti.so.13", RTLD_NOW);
	__typeof__(&cuptiSubscribe) subscribe = h ? (__typeof__(&cuptiSubscribe))dlsym(h, "cuptiSubscribe") : NULL;
	__typeof__(&cuptiEnableCallback) enable_cb =
		h ? (__typeof__(&cuptiEnableCallback))dlsym(h, "cuptiEnableCallback") : NULL;
	__typeof__(&cuptiEnableDomain) enable_domain =
		h ? (__typeof__(&cuptiEnableDomain))dlsym(h, "cuptiEnableDomain") : NULL;
	CUpti_SubscriberHandle sub;
	CUptiResult r = subscribe && enable_cb && enable_domain ? subscribe(&sub, noop, NULL) : CUPTI_ERROR_UNKNOWN;
	if (r != CUPTI_SUCCESS) {
		fprintf(stderr, "cupti_only: no subscription (%s, result %d)\n", h ? "libcupti.so.13" : dlerror(),
			(int)r);
		return 1;
	}
	if (!strcmp(m, "driver") || !strcmp(m, "both"))
		for (size_t i = 0; i < sizeof(driver_ids) / sizeof(driver_ids[0]); i++)
			enable_cb(1, sub, CUPTI_CB_DOMAIN_DRIVER_API, driver_ids[i]);
	if (!strcmp(m, "resource") || !strcmp(m, "both"))
		enable_domain(1, sub, CUPTI_CB_DOMAIN_RESOURCE);
	fprintf(stderr, "cupti_only: subscribed, enabled: %s\n", m);
	return 1;
}
