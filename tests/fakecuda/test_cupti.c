/* The libcupti double and the callbacks the libcuda double delivers. */
#include <cupti.h>
#include <stdio.h> /* cupti.h already brings generated_cuda_meta.h */
#include <string.h>

#include "test_common.h"

#define CUPTI_OK(call)                                                           \
	do {                                                                     \
		CUptiResult r_ = (call);                                         \
		ck_assert_msg(r_ == CUPTI_SUCCESS, "%s = %d", #call, (int)r_);   \
	} while (0)

struct rec {
	CUpti_CallbackDomain domain;
	CUpti_CallbackId cbid;
	CUpti_ApiCallbackSite site;
	char name[64];
	uint32_t correlation;
	CUcontext ctx;
	size_t bytesize;         /* cuMemAlloc_v2 / cuMemAllocAsync_ptsz */
	CUdeviceptr dptr_value;  /* *params->dptr at this site */
	int has_ret;
	CUresult ret;
	CUcontext res_ctx;       /* RESOURCE */
	CUpti_GraphData graph;
	uint32_t module_id;
	size_t free_in_cb;       /* from the re-entrant cuMemGetInfo */
};

static struct rec g_recs[256];
static int g_nrec;
static int g_reenter;

static void CUPTIAPI on_cb(void *ud, CUpti_CallbackDomain domain, CUpti_CallbackId cbid,
			   const void *data)
{
	(void)ud;
	if (g_nrec >= 256)
		return;
	struct rec *r = &g_recs[g_nrec++];
	memset(r, 0, sizeof(*r));
	r->domain = domain;
	r->cbid = cbid;
	if (domain == CUPTI_CB_DOMAIN_DRIVER_API) {
		const CUpti_CallbackData *d = data;
		r->site = d->callbackSite;
		snprintf(r->name, sizeof(r->name), "%s", d->functionName);
		r->correlation = d->correlationId;
		r->ctx = d->context;
		ck_assert_ptr_null(d->symbolName);
		if (cbid == CUPTI_DRIVER_TRACE_CBID_cuMemAlloc_v2) {
			const cuMemAlloc_v2_params *p = d->functionParams;
			r->bytesize = p->bytesize;
			r->dptr_value = *p->dptr;
		} else if (cbid == CUPTI_DRIVER_TRACE_CBID_cuMemAllocAsync_ptsz) {
			const cuMemAllocAsync_ptsz_params *p = d->functionParams;
			r->bytesize = p->bytesize;
			r->dptr_value = *p->dptr;
		}
		if (d->callbackSite == CUPTI_API_EXIT) {
			r->has_ret = 1;
			r->ret = *(CUresult *)d->functionReturnValue;
			if (g_reenter) {
				size_t f, t;
				/* Calling back into the driver must not deadlock. */
				cuMemGetInfo(&f, &t);
				r->free_in_cb = f;
			}
		} else {
			ck_assert_ptr_null(d->functionReturnValue);
		}
	} else if (domain == CUPTI_CB_DOMAIN_RESOURCE) {
		const CUpti_ResourceData *d = data;
		r->res_ctx = d->context;
		if (cbid == CUPTI_CBID_RESOURCE_GRAPHEXEC_CREATED ||
		    cbid == CUPTI_CBID_RESOURCE_GRAPHEXEC_DESTROY_STARTING)
			r->graph = *(const CUpti_GraphData *)d->resourceDescriptor;
		if (cbid == CUPTI_CBID_RESOURCE_MODULE_LOADED ||
		    cbid == CUPTI_CBID_RESOURCE_MODULE_UNLOAD_STARTING)
			r->module_id = ((const CUpti_ModuleResourceData *)d->resourceDescriptor)->moduleId;
	}
}

static int count(CUpti_CallbackDomain dom, CUpti_CallbackId cbid)
{
	int n = 0;
	for (int i = 0; i < g_nrec; i++)
		n += g_recs[i].domain == dom && g_recs[i].cbid == cbid;
	return n;
}

static const struct rec *find(CUpti_CallbackDomain dom, CUpti_CallbackId cbid, int nth)
{
	for (int i = 0; i < g_nrec; i++)
		if (g_recs[i].domain == dom && g_recs[i].cbid == cbid && nth-- == 0)
			return &g_recs[i];
	return NULL;
}

START_TEST(test_subscribe_rules)
{
	CUpti_SubscriberHandle s1, s2;
	CUPTI_OK(cuptiSubscribe(&s1, on_cb, NULL));
	ck_assert_int_eq(cuptiSubscribe(&s2, on_cb, NULL), CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED);
	ck_assert_int_eq(cuptiGetLastError(), CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED);
	ck_assert_int_eq(cuptiGetLastError(), CUPTI_SUCCESS);
	CUPTI_OK(cuptiUnsubscribe(s1));
	ck_assert_int_eq(cuptiUnsubscribe(s1), CUPTI_ERROR_INVALID_PARAMETER);

	CUpti_SubscriberParams p = { .structSize = CUpti_SubscriberParams_STRUCT_SIZE,
				     .subscriberName = "memsaver" };
	CUPTI_OK(cuptiSubscribe_v2(&s1, on_cb, NULL, &p));
	char holder[CUPTI_OLD_SUBSCRIBER_NAME_MIN_LEN] = "";
	CUpti_SubscriberParams q = { .structSize = CUpti_SubscriberParams_STRUCT_SIZE,
				     .subscriberName = "kineto",
				     .oldSubscriberName = holder,
				     .oldSubscriberSize = sizeof(holder) };
	ck_assert_int_eq(cuptiSubscribe_v2(&s2, on_cb, NULL, &q),
			 CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED);
	ck_assert_str_eq(holder, "CUPTI for memsaver");

	/* cuptiFinalize detaches; re-attach is allowed. */
	CUPTI_OK(cuptiFinalize());
	CUPTI_OK(cuptiSubscribe(&s2, on_cb, NULL));
	uint32_t on = 7;
	CUPTI_OK(cuptiGetCallbackState(&on, s2, CUPTI_CB_DOMAIN_DRIVER_API,
				       CUPTI_DRIVER_TRACE_CBID_cuMemAlloc_v2));
	ck_assert_uint_eq(on, 0);
	CUPTI_OK(cuptiEnableDomain(1, s2, CUPTI_CB_DOMAIN_DRIVER_API));
	CUPTI_OK(cuptiGetCallbackState(&on, s2, CUPTI_CB_DOMAIN_DRIVER_API,
				       CUPTI_DRIVER_TRACE_CBID_cuMemAlloc_v2));
	ck_assert_uint_eq(on, 1);
	ck_assert_int_eq(cuptiEnableCallback(1, s2, CUPTI_CB_DOMAIN_DRIVER_API, 100000),
			 CUPTI_ERROR_INVALID_PARAMETER);
	const char *str;
	CUPTI_OK(cuptiGetResultString(CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED, &str));
	ck_assert_str_eq(str, "CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED");
}
END_TEST

START_TEST(test_driver_callbacks)
{
	CUpti_SubscriberHandle sub;
	CUPTI_OK(cuptiSubscribe(&sub, on_cb, NULL));
	CUPTI_OK(cuptiEnableCallback(1, sub, CUPTI_CB_DOMAIN_DRIVER_API,
				     CUPTI_DRIVER_TRACE_CBID_cuMemAlloc_v2));
	CUPTI_OK(cuptiEnableCallback(1, sub, CUPTI_CB_DOMAIN_DRIVER_API,
				     CUPTI_DRIVER_TRACE_CBID_cuMemAllocAsync_ptsz));
	CUcontext ctx = fc_setup();
	g_nrec = 0;

	CUdeviceptr p = 0;
	CU_OK(cuMemAlloc(&p, 12345));
	CU_OK(cuMemFree(p)); /* not enabled: not delivered */
	ck_assert_int_eq(g_nrec, 2);
	const struct rec *in = &g_recs[0], *out = &g_recs[1];
	ck_assert_int_eq(in->site, CUPTI_API_ENTER);
	ck_assert_int_eq(out->site, CUPTI_API_EXIT);
	ck_assert_str_eq(in->name, "cuMemAlloc_v2");
	ck_assert_uint_eq(in->bytesize, 12345);
	ck_assert_uint_eq(out->dptr_value, p);
	ck_assert(out->has_ret && out->ret == CUDA_SUCCESS);
	ck_assert_uint_eq(in->correlation, out->correlation);
	ck_assert_uint_ne(in->correlation, 0);
	ck_assert_ptr_eq(in->ctx, ctx);

	/* A failing call reports its CUresult at exit. */
	g_nrec = 0;
	CU_IS(cuMemAlloc(&p, 1ull << 50), CUDA_ERROR_OUT_OF_MEMORY);
	ck_assert_int_eq(g_nrec, 2);
	ck_assert_int_eq(g_recs[1].ret, CUDA_ERROR_OUT_OF_MEMORY);

	/* The per-thread variant has its own cbid. */
	g_nrec = 0;
	void *fn;
	CU_OK(cuGetProcAddress("cuMemAllocAsync", &fn, 13000,
			       CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, NULL));
	CU_OK(((CUresult (*)(CUdeviceptr *, size_t, CUstream))fn)(&p, 4096, NULL));
	ck_assert_int_eq(count(CUPTI_CB_DOMAIN_DRIVER_API, CUPTI_DRIVER_TRACE_CBID_cuMemAllocAsync_ptsz), 2);
	ck_assert_int_eq(count(CUPTI_CB_DOMAIN_DRIVER_API, CUPTI_DRIVER_TRACE_CBID_cuMemAllocAsync), 0);
	ck_assert_str_eq(g_recs[0].name, "cuMemAllocAsync_ptsz");
	ck_assert_uint_eq(g_recs[1].dptr_value, p);

	/* Disabled again: nothing. */
	CUPTI_OK(cuptiEnableCallback(0, sub, CUPTI_CB_DOMAIN_DRIVER_API,
				     CUPTI_DRIVER_TRACE_CBID_cuMemAlloc_v2));
	g_nrec = 0;
	CU_OK(cuMemAlloc(&p, 10));
	ck_assert_int_eq(g_nrec, 0);

	/* Unsubscribed: nothing either. */
	CUPTI_OK(cuptiEnableCallback(1, sub, CUPTI_CB_DOMAIN_DRIVER_API,
				     CUPTI_DRIVER_TRACE_CBID_cuMemAlloc_v2));
	CUPTI_OK(cuptiUnsubscribe(sub));
	CU_OK(cuMemAlloc(&p, 10));
	ck_assert_int_eq(g_nrec, 0);
}
END_TEST

START_TEST(test_callback_reenters_driver)
{
	CUpti_SubscriberHandle sub;
	CUPTI_OK(cuptiSubscribe(&sub, on_cb, NULL));
	CUPTI_OK(cuptiEnableAllDomains(1, sub));
	fc_setup();
	size_t f0, t;
	CU_OK(cuMemGetInfo(&f0, &t));
	g_reenter = 1;
	g_nrec = 0;
	CUdeviceptr p;
	CU_OK(cuMemAlloc(&p, 4 * MiB));
	const struct rec *out = find(CUPTI_CB_DOMAIN_DRIVER_API, CUPTI_DRIVER_TRACE_CBID_cuMemAlloc_v2, 1);
	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(out->free_in_cb, f0 - 4 * MiB);
	/* The nested cuMemGetInfo was traced too. */
	ck_assert_int_ge(count(CUPTI_CB_DOMAIN_DRIVER_API, CUPTI_DRIVER_TRACE_CBID_cuMemGetInfo_v2), 2);
}
END_TEST

START_TEST(test_resource_callbacks)
{
	CUpti_SubscriberHandle sub;
	CUPTI_OK(cuptiSubscribe(&sub, on_cb, NULL));
	CUPTI_OK(cuptiEnableDomain(1, sub, CUPTI_CB_DOMAIN_RESOURCE));
	CU_OK(cuInit(0));
	ck_assert_int_eq(count(CUPTI_CB_DOMAIN_RESOURCE, CUPTI_CBID_RESOURCE_CU_INIT_FINISHED), 1);
	CUcontext ctx;
	CU_OK(cuDevicePrimaryCtxRetain(&ctx, 0));
	CU_OK(cuCtxSetCurrent(ctx));
	const struct rec *r = find(CUPTI_CB_DOMAIN_RESOURCE, CUPTI_CBID_RESOURCE_CONTEXT_CREATED, 0);
	ck_assert_ptr_nonnull(r);
	ck_assert_ptr_eq(r->res_ctx, ctx);

	CUmodule m;
	CU_OK(cuModuleLoadData(&m, "image"));
	CU_OK(cuModuleUnload(m));
	r = find(CUPTI_CB_DOMAIN_RESOURCE, CUPTI_CBID_RESOURCE_MODULE_LOADED, 0);
	ck_assert_ptr_nonnull(r);
	ck_assert_uint_ne(r->module_id, 0);
	const struct rec *u = find(CUPTI_CB_DOMAIN_RESOURCE, CUPTI_CBID_RESOURCE_MODULE_UNLOAD_STARTING, 0);
	ck_assert_ptr_nonnull(u);
	ck_assert_uint_eq(u->module_id, r->module_id);

	CUgraph g;
	CUgraphExec e;
	CU_OK(cuGraphCreate(&g, 0));
	CU_OK(cuGraphInstantiate(&e, g, 0));
	r = find(CUPTI_CB_DOMAIN_RESOURCE, CUPTI_CBID_RESOURCE_GRAPHEXEC_CREATED, 0);
	ck_assert_ptr_nonnull(r);
	ck_assert_ptr_eq(r->graph.graphExec, e);
	ck_assert_ptr_eq(r->graph.graph, g);
	CU_OK(cuGraphExecDestroy(e));
	r = find(CUPTI_CB_DOMAIN_RESOURCE, CUPTI_CBID_RESOURCE_GRAPHEXEC_DESTROY_STARTING, 0);
	ck_assert_ptr_nonnull(r);
	ck_assert_ptr_eq(r->graph.graphExec, e);

	CU_OK(cuDevicePrimaryCtxRelease(0));
	r = find(CUPTI_CB_DOMAIN_RESOURCE, CUPTI_CBID_RESOURCE_CONTEXT_DESTROY_STARTING, 0);
	ck_assert_ptr_nonnull(r);
	ck_assert_ptr_eq(r->res_ctx, ctx);
	/* Driver API callbacks were not enabled. */
	for (int i = 0; i < g_nrec; i++)
		ck_assert_int_eq(g_recs[i].domain, CUPTI_CB_DOMAIN_RESOURCE);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fakecuda_cupti");
	TCase *tc = tcase_create("cupti");
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_subscribe_rules);
	tcase_add_test(tc, test_driver_callbacks);
	tcase_add_test(tc, test_callback_reenters_driver);
	tcase_add_test(tc, test_resource_callbacks);
	suite_add_tcase(s, tc);
	return fc_run_suite(s);
}
