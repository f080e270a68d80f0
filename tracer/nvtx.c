/* memsaver's own NVTX injection (NVTX_INJECTION64_PATH points at this .so).
 * CUPTI 13.0's NVTX path has a reported crash (NVIDIA/NVTX#125), so range
 * names reach us here instead: we fill the core and core2 function tables
 * with handlers that maintain a per-thread stack of open ranges. */
#include <nvtx3/nvToolsExt.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "thread.h"

#define MSV_API __attribute__((visibility("default")))

/* Registered strings and domains are handed out as pointers to our own
 * copies; NVTX never frees them, nor do we (they are few and static). */
struct reg_string {
	char s[MSV_NVTX_NAME];
};

static void push_name(const char *name, uint64_t id)
{
	struct msv_tls *t = _msv_tls();
	if (t->n_nvtx < MSV_NVTX_DEPTH) {
		snprintf(t->nvtx[t->n_nvtx].name, MSV_NVTX_NAME, "%s", name ? name : "");
		t->nvtx[t->n_nvtx].id = id;
	}
	t->n_nvtx++;
}

static int pop_name(void)
{
	struct msv_tls *t = _msv_tls();
	if (t->n_nvtx == 0)
		return -1;
	return --t->n_nvtx;
}

static const char *attr_name(const nvtxEventAttributes_t *a, char *buf, size_t len)
{
	if (!a)
		return "";
	switch (a->messageType) {
	case NVTX_MESSAGE_TYPE_ASCII:
		return a->message.ascii ? a->message.ascii : "";
	case NVTX_MESSAGE_TYPE_REGISTERED:
		return a->message.registered ? ((const struct reg_string *)a->message.registered)->s : "";
	case NVTX_MESSAGE_TYPE_UNICODE:
		/* Keep the ASCII subset of a wide name: globs are written in ASCII. */
		if (a->message.unicode) {
			size_t i = 0;
			for (; i + 1 < len && a->message.unicode[i]; i++)
				buf[i] = (a->message.unicode[i] < 128) ? (char)a->message.unicode[i] : '?';
			buf[i] = '\0';
			return buf;
		}
		return "";
	default:
		return "";
	}
}

static atomic_uint_fast64_t next_id;

static int push_a(const char *m)
{
	push_name(m, 0);
	return _msv_tls()->n_nvtx - 1;
}

static int push_ex(const nvtxEventAttributes_t *a)
{
	char buf[MSV_NVTX_NAME];
	return push_a(attr_name(a, buf, sizeof(buf)));
}

static int pop(void)
{
	return pop_name();
}

static nvtxRangeId_t start_a(const char *m)
{
	/* Start/end ranges are tracked on the starting thread's stack: that is
	 * the thread whose allocations they describe.  An end from another
	 * thread finds nothing there and is ignored. */
	uint64_t id = atomic_fetch_add(&next_id, 1) + 1;
	push_name(m, id);
	return id;
}

static nvtxRangeId_t start_ex(const nvtxEventAttributes_t *a)
{
	char buf[MSV_NVTX_NAME];
	return start_a(attr_name(a, buf, sizeof(buf)));
}

static void range_end(nvtxRangeId_t id)
{
	struct msv_tls *t = _msv_tls();
	int n = t->n_nvtx < MSV_NVTX_DEPTH ? t->n_nvtx : MSV_NVTX_DEPTH;
	for (int i = n - 1; i >= 0; i--) {
		if (t->nvtx[i].id == id) {
			memmove(&t->nvtx[i], &t->nvtx[i + 1], (size_t)(n - i - 1) * sizeof(t->nvtx[0]));
			t->n_nvtx--;
			return;
		}
	}
}

static int d_push_ex(nvtxDomainHandle_t d, const nvtxEventAttributes_t *a)
{
	(void)d;
	return push_ex(a);
}

static int d_pop(nvtxDomainHandle_t d)
{
	(void)d;
	return pop();
}

static nvtxRangeId_t d_start_ex(nvtxDomainHandle_t d, const nvtxEventAttributes_t *a)
{
	(void)d;
	return start_ex(a);
}

static void d_end(nvtxDomainHandle_t d, nvtxRangeId_t id)
{
	(void)d;
	range_end(id);
}

static nvtxStringHandle_t d_register_a(nvtxDomainHandle_t d, const char *s)
{
	(void)d;
	struct reg_string *r = calloc(1, sizeof(*r));
	if (r)
		snprintf(r->s, sizeof(r->s), "%s", s ? s : "");
	return (nvtxStringHandle_t)r;
}

static nvtxDomainHandle_t d_create_a(const char *name)
{
	return (nvtxDomainHandle_t)d_register_a(NULL, name);
}

static void d_destroy(nvtxDomainHandle_t d)
{
	(void)d; /* registered strings of the domain may still be in use */
}

static int set(NvtxFunctionTable table, unsigned size, unsigned cbid, NvtxFunctionPointer fn)
{
	if (!table || cbid > size || !table[cbid])
		return -1;
	*table[cbid] = fn;
	return 0;
}

MSV_API int InitializeInjectionNvtx2(NvtxGetExportTableFunc_t get)
{
	const NvtxExportTableCallbacks *cb = get ? get(NVTX_ETID_CALLBACKS) : NULL;
	NvtxFunctionTable core = NULL, core2 = NULL;
	unsigned n_core = 0, n_core2 = 0;
	if (!cb || !cb->GetModuleFunctionTable || !cb->GetModuleFunctionTable(NVTX_CB_MODULE_CORE, &core, &n_core) ||
	    !cb->GetModuleFunctionTable(NVTX_CB_MODULE_CORE2, &core2, &n_core2)) {
		MSV_WARN("NVTX injection: no callback table; NVTX ranges will not be recorded");
		return 0; /* 0 tells NVTX to detach us; the host goes on */
	}
#define FP(f) ((NvtxFunctionPointer)(f))
	set(core, n_core, NVTX_CBID_CORE_RangePushEx, FP(push_ex));
	set(core, n_core, NVTX_CBID_CORE_RangePushA, FP(push_a));
	set(core, n_core, NVTX_CBID_CORE_RangePop, FP(pop));
	set(core, n_core, NVTX_CBID_CORE_RangeStartEx, FP(start_ex));
	set(core, n_core, NVTX_CBID_CORE_RangeStartA, FP(start_a));
	set(core, n_core, NVTX_CBID_CORE_RangeEnd, FP(range_end));
	set(core2, n_core2, NVTX_CBID_CORE2_DomainRangePushEx, FP(d_push_ex));
	set(core2, n_core2, NVTX_CBID_CORE2_DomainRangePop, FP(d_pop));
	set(core2, n_core2, NVTX_CBID_CORE2_DomainRangeStartEx, FP(d_start_ex));
	set(core2, n_core2, NVTX_CBID_CORE2_DomainRangeEnd, FP(d_end));
	set(core2, n_core2, NVTX_CBID_CORE2_DomainRegisterStringA, FP(d_register_a));
	set(core2, n_core2, NVTX_CBID_CORE2_DomainCreateA, FP(d_create_a));
	set(core2, n_core2, NVTX_CBID_CORE2_DomainDestroy, FP(d_destroy));
#undef FP
	MSV_INFO("NVTX injection attached");
	return 1;
}
