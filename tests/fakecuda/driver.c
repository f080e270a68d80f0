/* The libcuda.so.1 double: state, configuration, tracing and the entry
 * points.  See fakecuda.h for the contract.
 *
 * One mutex (g_lock) guards all state.  It is never held while a CUPTI
 * callback or InitializeInjection runs, so tools may call back in. */
#include "driver_internal.h"
#include "saver/digest_mix.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define GRAN (2ull << 20)
#define ROUND_UP(x, a) (((x) + (a) - 1) / (a) * (a))
#define MAX_FAULTS 32
#define CTX_STACK_MAX 64
#define DEFAULT_STACK 1024ull

/* ---------------------------------------------------------------- config */

static struct {
	uint64_t total;
	uint64_t ctx_bytes;
	uint64_t stack_threads;
	uint64_t module_bytes;
	uint64_t graph_bytes;
	uint64_t garbage_max;
	int zero_fresh;
	int reuse_handles; /* FAKECUDA_REUSE_HANDLES: cuMemCreate hands out the lowest free handle value */
	int defer_async; /* FAKECUDA_DEFER_ASYNC: async work runs at the next synchronization */
	int lazy_loading; /* FAKECUDA_LAZY_LOADING: a module's memory comes at its first launch */
	char sync_hold[256]; /* FAKECUDA_SYNC_HOLD: cuCtxSynchronize waits while this file exists */
} cfg;

struct fault {
	char name[96];
	uint64_t nth;
	int plus;
	CUresult err;
	_Atomic uint64_t seen;
};
static struct fault g_faults[MAX_FAULTS];
static int g_nfaults;
static pthread_once_t g_cfg_once = PTHREAD_ONCE_INIT;

struct errinfo {
	CUresult code;
	const char *name;
	const char *msg;
};

#define E(c, m) { c, #c, m },
static const struct errinfo g_errors[] = {
	E(CUDA_SUCCESS, "no error")
	E(CUDA_ERROR_INVALID_VALUE, "invalid argument")
	E(CUDA_ERROR_OUT_OF_MEMORY, "out of memory")
	E(CUDA_ERROR_NOT_INITIALIZED, "initialization error")
	E(CUDA_ERROR_DEINITIALIZED, "driver shutting down")
	E(CUDA_ERROR_PROFILER_DISABLED, "profiler disabled while using external profiling tool")
	E(CUDA_ERROR_STUB_LIBRARY, "CUDA driver is a stub library")
	E(CUDA_ERROR_DEVICE_UNAVAILABLE, "CUDA-capable device(s) is/are busy or unavailable")
	E(CUDA_ERROR_NO_DEVICE, "no CUDA-capable device is detected")
	E(CUDA_ERROR_INVALID_DEVICE, "invalid device ordinal")
	E(CUDA_ERROR_DEVICE_NOT_LICENSED, "device doesn't have valid Grid license")
	E(CUDA_ERROR_INVALID_IMAGE, "device kernel image is invalid")
	E(CUDA_ERROR_INVALID_CONTEXT, "invalid device context")
	E(CUDA_ERROR_CONTEXT_ALREADY_CURRENT, "context already current")
	E(CUDA_ERROR_MAP_FAILED, "mapping of buffer object failed")
	E(CUDA_ERROR_UNMAP_FAILED, "unmapping of buffer object failed")
	E(CUDA_ERROR_ARRAY_IS_MAPPED, "array is mapped")
	E(CUDA_ERROR_ALREADY_MAPPED, "resource already mapped")
	E(CUDA_ERROR_NO_BINARY_FOR_GPU, "no kernel image is available for execution on the device")
	E(CUDA_ERROR_ALREADY_ACQUIRED, "resource already acquired")
	E(CUDA_ERROR_NOT_MAPPED, "resource not mapped")
	E(CUDA_ERROR_NOT_MAPPED_AS_ARRAY, "resource not mapped as array")
	E(CUDA_ERROR_NOT_MAPPED_AS_POINTER, "resource not mapped as pointer")
	E(CUDA_ERROR_ECC_UNCORRECTABLE, "uncorrectable ECC error encountered")
	E(CUDA_ERROR_UNSUPPORTED_LIMIT, "limit is not supported on this architecture")
	E(CUDA_ERROR_CONTEXT_ALREADY_IN_USE, "exclusive-thread device already in use by a different thread")
	E(CUDA_ERROR_PEER_ACCESS_UNSUPPORTED, "peer access is not supported between these two devices")
	E(CUDA_ERROR_INVALID_PTX, "a PTX JIT compilation failed")
	E(CUDA_ERROR_INVALID_SOURCE, "device kernel image is invalid")
	E(CUDA_ERROR_FILE_NOT_FOUND, "file not found")
	E(CUDA_ERROR_SHARED_OBJECT_SYMBOL_NOT_FOUND, "shared object symbol not found")
	E(CUDA_ERROR_SHARED_OBJECT_INIT_FAILED, "shared object initialization failed")
	E(CUDA_ERROR_OPERATING_SYSTEM, "OS call failed or operation not supported on this OS")
	E(CUDA_ERROR_INVALID_HANDLE, "invalid resource handle")
	E(CUDA_ERROR_ILLEGAL_STATE, "the operation cannot be performed in the present state")
	E(CUDA_ERROR_NOT_FOUND, "named symbol not found")
	E(CUDA_ERROR_NOT_READY, "device not ready")
	E(CUDA_ERROR_ILLEGAL_ADDRESS, "an illegal memory access was encountered")
	E(CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES, "too many resources requested for launch")
	E(CUDA_ERROR_LAUNCH_TIMEOUT, "the launch timed out and was terminated")
	E(CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED, "peer access is already enabled")
	E(CUDA_ERROR_PEER_ACCESS_NOT_ENABLED, "peer access has not been enabled")
	E(CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE, "cannot set while device is active in this process")
	E(CUDA_ERROR_CONTEXT_IS_DESTROYED, "context is destroyed")
	E(CUDA_ERROR_ASSERT, "device-side assert triggered")
	E(CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED, "part or all of the requested memory range is already mapped")
	E(CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED, "pointer does not correspond to a registered memory region")
	E(CUDA_ERROR_LAUNCH_FAILED, "unspecified launch failure")
	E(CUDA_ERROR_NOT_PERMITTED, "operation not permitted")
	E(CUDA_ERROR_NOT_SUPPORTED, "operation not supported")
	E(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, "operation not permitted when stream is capturing")
	E(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, "operation failed due to a previous error during capture")
	E(CUDA_ERROR_STREAM_CAPTURE_MERGE, "operation would result in a merge of separate capture sequences")
	E(CUDA_ERROR_STREAM_CAPTURE_UNMATCHED, "capture was not ended in the same stream as it began")
	E(CUDA_ERROR_STREAM_CAPTURE_UNJOINED, "capturing stream has unjoined work")
	E(CUDA_ERROR_STREAM_CAPTURE_ISOLATION, "dependency created on uncaptured work in another stream")
	E(CUDA_ERROR_STREAM_CAPTURE_IMPLICIT, "operation would make the legacy stream depend on a capturing blocking stream")
	E(CUDA_ERROR_CAPTURED_EVENT, "operation not permitted on an event last recorded in a capturing stream")
	E(CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD, "attempt to terminate a thread-local capture sequence from another thread")
	E(CUDA_ERROR_TIMEOUT, "wait operation timed out")
	E(CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE, "the graph update was not performed because it included changes which violated constraints specific to instantiated graph update")
	E(CUDA_ERROR_UNKNOWN, "unknown error")
};
#undef E

static const struct errinfo *err_find(CUresult code)
{
	for (size_t i = 0; i < sizeof(g_errors) / sizeof(g_errors[0]); i++)
		if (g_errors[i].code == code)
			return &g_errors[i];
	return NULL;
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	uint64_t mul = 1;
	switch (*end) {
	case 'k': case 'K': mul = 1ull << 10; end++; break;
	case 'm': case 'M': mul = 1ull << 20; end++; break;
	case 'g': case 'G': mul = 1ull << 30; end++; break;
	case 't': case 'T': mul = 1ull << 40; end++; break;
	default: break;
	}
	if (mul != 1 && (*end == 'i' || *end == 'I'))
		end++;
	if (*end == 'b' || *end == 'B')
		end++;
	if (*end)
		return -1;
	*out = (uint64_t)v * mul;
	return 0;
}

static uint64_t env_size(const char *name, uint64_t def)
{
	const char *s = getenv(name);
	uint64_t v;
	if (!s || !*s)
		return def;
	if (parse_size(s, &v)) {
		fprintf(stderr, "fakecuda: %s=%s is not a size, using %llu\n", name, s,
			(unsigned long long)def);
		return def;
	}
	return v;
}

static int env_bool(const char *name)
{
	const char *s = getenv(name);
	if (!s)
		return 0;
	return !strcmp(s, "1") || !strcasecmp(s, "true") || !strcasecmp(s, "on") ||
	       !strcasecmp(s, "yes");
}

static void parse_faults(const char *spec)
{
	char *copy = strdup(spec), *save = NULL;
	if (!copy)
		return;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *c1 = strchr(tok, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		struct fault *f = &g_faults[g_nfaults];
		char *end;
		if (!c1 || !c2 || g_nfaults >= MAX_FAULTS || (size_t)(c1 - tok) >= sizeof(f->name))
			goto bad;
		memcpy(f->name, tok, (size_t)(c1 - tok));
		f->name[c1 - tok] = 0;
		f->nth = strtoull(c1 + 1, &end, 10);
		f->plus = *end == '+';
		if (f->plus)
			end++;
		if (end != c2 || f->nth == 0)
			goto bad;
		f->err = CUDA_ERROR_UNKNOWN;
		if (c2[1] >= '0' && c2[1] <= '9') {
			f->err = (CUresult)strtoul(c2 + 1, &end, 10);
		} else {
			int found = 0;
			for (size_t i = 0; i < sizeof(g_errors) / sizeof(g_errors[0]); i++)
				if (!strcmp(g_errors[i].name, c2 + 1)) {
					f->err = g_errors[i].code;
					found = 1;
				}
			if (!found)
				goto bad;
		}
		g_nfaults++;
		continue;
bad:
		fprintf(stderr, "fakecuda: FAKECUDA_FAIL entry '%s' ignored "
			"(want NAME:N[+]:CUDA_ERROR_X)\n", tok);
	}
	free(copy);
}

static void config_load(void)
{
	cfg.total = env_size("FAKECUDA_TOTAL_BYTES", 80ull << 30);
	cfg.ctx_bytes = env_size("FAKECUDA_CONTEXT_BYTES", 512ull << 20);
	cfg.stack_threads = env_size("FAKECUDA_STACK_THREADS", 262144);
	cfg.module_bytes = env_size("FAKECUDA_MODULE_BYTES", 2ull << 20);
	cfg.graph_bytes = env_size("FAKECUDA_GRAPH_EXEC_BYTES", 4ull << 20);
	cfg.garbage_max = env_size("FAKECUDA_GARBAGE_MAX", 64ull << 20);
	cfg.zero_fresh = env_bool("FAKECUDA_ZERO_FRESH");
	cfg.reuse_handles = env_bool("FAKECUDA_REUSE_HANDLES");
	cfg.defer_async = env_bool("FAKECUDA_DEFER_ASYNC");
	cfg.lazy_loading = env_bool("FAKECUDA_LAZY_LOADING");
	const char *hold = getenv("FAKECUDA_SYNC_HOLD");
	if (hold)
		snprintf(cfg.sync_hold, sizeof(cfg.sync_hold), "%s", hold);
	const char *f = getenv("FAKECUDA_FAIL");
	if (f && *f)
		parse_faults(f);
}

static void config_once(void)
{
	pthread_once(&g_cfg_once, config_load);
}

/* --------------------------------------------------------------- tracing */

static const struct fakecuda_cupti_hook *_Atomic g_hook;
static _Atomic uint32_t g_correlation;
static _Atomic uint64_t g_calls[CUPTI_DRIVER_TRACE_CBID_SIZE];

FC_EXPORT void fakecuda_set_cupti_hook(const struct fakecuda_cupti_hook *hook)
{
	if (hook)
		_fc_ckpt_cupti_subscribed();
	atomic_store(&g_hook, hook);
}

int _fc_name_matches(const char *name, const char *symbol)
{
	size_t n = strlen(name);
	if (strncmp(name, symbol, n))
		return 0;
	const char *rest = symbol + n;
	if (!*rest)
		return 1;
	/* base name: NAME[_vN][_ptsz|_ptds] */
	if (rest[0] == '_' && rest[1] == 'v' && rest[2] >= '0' && rest[2] <= '9') {
		rest += 2;
		while (*rest >= '0' && *rest <= '9')
			rest++;
	}
	return !*rest || !strcmp(rest, "_ptsz") || !strcmp(rest, "_ptds");
}

uint64_t _fc_calls_by_cbid(uint32_t cbid)
{
	return cbid < CUPTI_DRIVER_TRACE_CBID_SIZE ? atomic_load(&g_calls[cbid]) : 0;
}

static CUcontext cur_ctx(void);
static uint32_t ctx_uid(CUcontext c);

int _fc_enter(struct _fc_call *c, uint32_t cbid, const char *name, const void *params,
	      CUresult *rc)
{
	config_once();
	_fc_ckpt_gate_enter(cbid);
	if (cbid < CUPTI_DRIVER_TRACE_CBID_SIZE)
		atomic_fetch_add(&g_calls[cbid], 1);
	memset(c, 0, sizeof(*c));
	c->cbid = cbid;
	c->hook = atomic_load(&g_hook);
	*rc = CUDA_SUCCESS;
	if (c->hook && cbid != CUPTI_DRIVER_TRACE_CBID_INVALID &&
	    c->hook->enabled(CUPTI_CB_DOMAIN_DRIVER_API, cbid)) {
		CUcontext ctx = cur_ctx();
		c->delivered = 1;
		c->data.callbackSite = CUPTI_API_ENTER;
		c->data.functionName = name;
		c->data.functionParams = params;
		c->data.functionReturnValue = NULL;
		c->data.symbolName = NULL;
		c->data.context = ctx;
		c->data.contextUid = ctx_uid(ctx);
		c->data.correlationData = &c->correlation_data;
		c->data.correlationId = atomic_fetch_add(&g_correlation, 1) + 1;
		c->hook->deliver(CUPTI_CB_DOMAIN_DRIVER_API, cbid, &c->data);
	}
	for (int i = 0; i < g_nfaults; i++) {
		struct fault *f = &g_faults[i];
		if (!_fc_name_matches(f->name, name))
			continue;
		uint64_t n = atomic_fetch_add(&f->seen, 1) + 1;
		if (n == f->nth || (f->plus && n > f->nth)) {
			*rc = f->err;
			return 1;
		}
	}
	return 0;
}

CUresult _fc_exit(struct _fc_call *c, CUresult *rc)
{
	if (c->delivered) {
		CUcontext ctx = cur_ctx();
		c->data.callbackSite = CUPTI_API_EXIT;
		c->data.functionReturnValue = rc;
		c->data.context = ctx;
		c->data.contextUid = ctx_uid(ctx);
		c->hook->deliver(CUPTI_CB_DOMAIN_DRIVER_API, c->cbid, &c->data);
	}
	_fc_ckpt_gate_exit(c->cbid);
	return *rc;
}

static void emit_resource(uint32_t cbid, CUcontext ctx, CUstream stream, void *desc)
{
	const struct fakecuda_cupti_hook *h = atomic_load(&g_hook);
	if (!h || !h->enabled(CUPTI_CB_DOMAIN_RESOURCE, cbid))
		return;
	CUpti_ResourceData d;
	memset(&d, 0, sizeof(d));
	d.context = ctx;
	d.resourceHandle.stream = stream;
	d.resourceDescriptor = desc;
	h->deliver(CUPTI_CB_DOMAIN_RESOURCE, cbid, &d);
}

static void emit_graph(uint32_t cbid, CUcontext ctx, CUgraph g, CUgraphExec e)
{
	CUpti_GraphData gd;
	memset(&gd, 0, sizeof(gd));
	gd.graph = g;
	gd.graphExec = e;
	emit_resource(cbid, ctx, NULL, &gd);
}

static void emit_module(uint32_t cbid, CUcontext ctx, uint32_t id, const void *image)
{
	CUpti_ModuleResourceData md;
	memset(&md, 0, sizeof(md));
	md.moduleId = id;
	md.cubinSize = 0;
	md.pCubin = image;
	emit_resource(cbid, ctx, NULL, &md);
}

/* ----------------------------------------------------------------- state */

enum { ALLOC_DEV = 1, ALLOC_HOST, ALLOC_REG };

struct alloc {
	uintptr_t base;
	size_t size;     /* as asked */
	size_t map_size; /* mapped and accounted (DEV) */
	int kind;
	CUcontext ctx;
	struct alloc *next;
};

struct vres {
	uintptr_t base;
	size_t size;
	struct vres *next;
};

struct vphys {
	CUmemGenericAllocationHandle handle;
	int fd;
	size_t size;
	int refs; /* cuMemCreate + cuMemRetainAllocationHandle - cuMemRelease */
	int maps;
	CUmemAllocationProp prop;
	struct vphys *next;
};

struct vmap {
	uintptr_t base;
	size_t size;
	size_t offset;
	struct vphys *ph;
	CUmemAccess_flags access;
	struct vmap *next;
};

/* OP_KERNEL: a copy by a kernel of module `mod` (memsaver's msv_restore);
 * one whose module was unloaded while it was queued is OP_DEAD and faults
 * when its stream runs. */
enum { OP_MEMSET = 1, OP_COPY, OP_KERNEL, OP_DEAD };

struct op {
	int kind;
	const void *mod; /* OP_KERNEL */
	int unified; /* OP_COPY: either side may be pageable host memory */
	int src_dev; /* OP_COPY: src is device memory */
	int dst_dev;
	uintptr_t dst, src;
	size_t count; /* elements (memset) or bytes (copy) */
	unsigned elem;
	uint32_t value;
};

struct CUgraph_st {
	struct op *ops;
	size_t n, cap;
	struct CUgraph_st *next;
};

struct CUgraphExec_st {
	CUcontext ctx;
	CUgraph graph;
	struct op *ops;
	size_t n;
	struct CUgraphExec_st *next;
};

struct opq { struct op *ops; size_t n, cap; }; /* FAKECUDA_DEFER_ASYNC */

struct CUctx_st {
	uint32_t uid;
	int primary;
	int active;
	unsigned flags;
	size_t limits[CU_LIMIT_MAX];
	struct opq null_pending; /* the context's legacy stream */
	struct CUctx_st *next;
};

struct CUstream_st {
	CUcontext ctx;
	unsigned flags;
	int priority;
	CUstreamCaptureStatus cap_status;
	CUstreamCaptureMode cap_mode;
	cuuint64_t cap_id;
	CUgraph cap_graph;
	pthread_t cap_thread;
	struct opq pending; /* FAKECUDA_DEFER_ASYNC */
	struct CUstream_st *next;
};

struct CUevent_st {
	CUcontext ctx;
	unsigned flags;
	int recorded;
	struct timespec ts;
	struct CUevent_st *next;
};

struct CUfunc_st {
	CUmodule mod;
};

/* Every name but msv_digest gets the module's one function `fn`, whose
 * launch does nothing (except load the module under FAKECUDA_LAZY_LOADING). */
struct CUmod_st {
	CUcontext ctx;
	uint32_t id;
	int loaded; /* module_bytes charged */
	struct CUfunc_st fn;
	struct CUmod_st *next;
};

struct CUlib_st {
	uint32_t id;
	struct CUlib_st *next;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int g_initialized;
static pthread_once_t g_init_once = PTHREAD_ONCE_INIT;
static struct CUctx_st g_primary = { .uid = 1, .primary = 1 };
static int g_primary_refs;
static struct CUctx_st *g_ctxs; /* cuCtxCreate contexts */
static uint32_t g_next_uid = 2;
static uint64_t g_restore_launches; /* msv_restore kernels run */
static struct alloc *g_allocs;
static struct vres *g_vres;
static struct vphys *g_vphys;
static struct vmap *g_vmaps;
static struct CUstream_st *g_streams;
static struct CUevent_st *g_events;
static struct CUgraph_st *g_graphs;
static struct CUgraphExec_st *g_execs;
static struct CUmod_st *g_mods;
static struct CUlib_st *g_libs;
static uint64_t g_alloc_bytes, g_vmm_bytes, g_module_bytes, g_graph_bytes;
static uint32_t g_nallocs, g_nphys, g_nmaps, g_nmods;
static CUmemGenericAllocationHandle g_next_handle = 1;
static cuuint64_t g_next_capture = 1;
static uint8_t g_pattern = 0x5a;

static __thread CUcontext t_stack[CTX_STACK_MAX];
static __thread int t_depth;
static __thread CUstreamCaptureMode t_mode = CU_STREAM_CAPTURE_MODE_GLOBAL;

#define LOCK() pthread_mutex_lock(&g_lock)
#define UNLOCK() pthread_mutex_unlock(&g_lock)

static CUcontext cur_ctx(void)
{
	return t_depth ? t_stack[t_depth - 1] : NULL;
}

static uint32_t ctx_uid(CUcontext c)
{
	return c ? c->uid : 0;
}

static int ctx_alive(CUcontext c)
{
	if (!c)
		return 0;
	if (c == &g_primary)
		return g_primary.active;
	for (struct CUctx_st *p = g_ctxs; p; p = p->next)
		if (p == c)
			return 1;
	return 0;
}

static uint64_t ctx_cost(const struct CUctx_st *c)
{
	uint64_t local = DEFAULT_STACK * cfg.stack_threads;
	uint64_t base = cfg.ctx_bytes > local ? cfg.ctx_bytes - local : 0;
	return base + (uint64_t)c->limits[CU_LIMIT_STACK_SIZE] * cfg.stack_threads;
}

static uint64_t ctx_bytes_locked(uint32_t *n)
{
	uint64_t sum = 0;
	uint32_t cnt = 0;
	if (g_primary.active) {
		sum += ctx_cost(&g_primary);
		cnt++;
	}
	for (struct CUctx_st *p = g_ctxs; p; p = p->next) {
		sum += ctx_cost(p);
		cnt++;
	}
	if (n)
		*n = cnt;
	return sum;
}

static uint64_t used_locked(void)
{
	if (_fc_ckpt_released())
		return 0;
	return ctx_bytes_locked(NULL) + g_alloc_bytes + g_vmm_bytes + g_module_bytes + g_graph_bytes;
}

static int fits_locked(uint64_t more)
{
	uint64_t used = used_locked() + _fc_others_bytes();
	return more <= cfg.total && used <= cfg.total - more;
}

static uint8_t next_pattern_locked(void)
{
	g_pattern = (uint8_t)(g_pattern + 0x3b);
	if (!g_pattern)
		g_pattern = 0xa5;
	return g_pattern;
}

static void fill_fresh(void *p, size_t size, uint8_t pat)
{
	if (cfg.zero_fresh)
		return;
	memset(p, pat, size < cfg.garbage_max ? size : cfg.garbage_max);
}

static void ctx_init_limits(struct CUctx_st *c)
{
	memset(c->limits, 0, sizeof(c->limits));
	c->limits[CU_LIMIT_STACK_SIZE] = DEFAULT_STACK;
	c->limits[CU_LIMIT_PRINTF_FIFO_SIZE] = 1 << 20;
	c->limits[CU_LIMIT_MALLOC_HEAP_SIZE] = 8 << 20;
	c->limits[CU_LIMIT_DEV_RUNTIME_SYNC_DEPTH] = 2;
	c->limits[CU_LIMIT_DEV_RUNTIME_PENDING_LAUNCH_COUNT] = 2048;
	c->limits[CU_LIMIT_MAX_L2_FETCH_GRANULARITY] = 128;
	c->limits[CU_LIMIT_PERSISTING_L2_CACHE_SIZE] = 0;
}

#define NEED_INIT()                                      \
	do {                                             \
		if (!atomic_load(&g_initialized))        \
			return CUDA_ERROR_NOT_INITIALIZED; \
	} while (0)

/* Call with g_lock held. */
static CUresult need_ctx_locked(CUcontext *out)
{
	CUcontext c = cur_ctx();
	if (!c || !ctx_alive(c))
		return CUDA_ERROR_INVALID_CONTEXT;
	if (out)
		*out = c;
	return CUDA_SUCCESS;
}

/* Capture-mode rules for "potentially unsafe" calls (CUDA programming
 * guide, cuThreadExchangeStreamCaptureMode).  Invalidates what it breaks. */
static int unsafe_call_locked(void)
{
	int bad = 0;
	if (t_mode == CU_STREAM_CAPTURE_MODE_RELAXED)
		return 0;
	pthread_t me = pthread_self();
	for (struct CUstream_st *s = g_streams; s; s = s->next) {
		if (s->cap_status != CU_STREAM_CAPTURE_STATUS_ACTIVE)
			continue;
		int mine = pthread_equal(s->cap_thread, me);
		if ((mine && s->cap_mode != CU_STREAM_CAPTURE_MODE_RELAXED) ||
		    (!mine && t_mode == CU_STREAM_CAPTURE_MODE_GLOBAL &&
		     s->cap_mode == CU_STREAM_CAPTURE_MODE_GLOBAL)) {
			s->cap_status = CU_STREAM_CAPTURE_STATUS_INVALIDATED;
			bad = 1;
		}
	}
	return bad;
}

/* ---------------------------------------------------- range validation */

static struct alloc *alloc_find_locked(uintptr_t p, int want_kind)
{
	for (struct alloc *a = g_allocs; a; a = a->next) {
		size_t len = a->kind == ALLOC_DEV ? a->map_size : a->size;
		if ((!want_kind || a->kind == want_kind) && p >= a->base && p - a->base < (len ? len : 1))
			return a;
	}
	return NULL;
}

static struct vres *vres_find_locked(uintptr_t p)
{
	for (struct vres *r = g_vres; r; r = r->next)
		if (p >= r->base && p - r->base < r->size)
			return r;
	return NULL;
}

static struct vmap *vmap_find_locked(uintptr_t p)
{
	for (struct vmap *m = g_vmaps; m; m = m->next)
		if (p >= m->base && p - m->base < m->size)
			return m;
	return NULL;
}

/* Device-side range: allocation, pinned/registered host memory (UVA), or
 * mapped VMM memory with enough access. */
static CUresult check_dev_locked(uintptr_t p, size_t n, int write)
{
	if (!n)
		return CUDA_SUCCESS;
	struct alloc *a = alloc_find_locked(p, 0);
	if (a) {
		size_t len = a->kind == ALLOC_DEV ? a->map_size : a->size;
		return n <= len - (p - a->base) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
	}
	if (!vres_find_locked(p))
		return CUDA_ERROR_INVALID_VALUE;
	while (n) {
		struct vmap *m = vmap_find_locked(p);
		if (!m)
			return CUDA_ERROR_ILLEGAL_ADDRESS;
		if (m->access == CU_MEM_ACCESS_FLAGS_PROT_NONE ||
		    (write && m->access != CU_MEM_ACCESS_FLAGS_PROT_READWRITE))
			return CUDA_ERROR_ILLEGAL_ADDRESS;
		size_t chunk = m->size - (p - m->base);
		if (chunk > n)
			chunk = n;
		p += chunk;
		n -= chunk;
	}
	return CUDA_SUCCESS;
}

/* Either device memory or pageable host memory (cuMemcpy with UVA). */
static CUresult check_any_locked(uintptr_t p, size_t n, int write)
{
	if (!n)
		return CUDA_SUCCESS;
	if (alloc_find_locked(p, 0) || vres_find_locked(p))
		return check_dev_locked(p, n, write);
	return p ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

static CUresult op_check_locked(const struct op *o)
{
	CUresult rc;
	if (o->kind == OP_MEMSET)
		return check_dev_locked(o->dst, o->count * o->elem, 1);
	if (o->kind == OP_DEAD)
		return CUDA_ERROR_ILLEGAL_ADDRESS;
	if (o->unified) {
		rc = check_any_locked(o->dst, o->count, 1);
		return rc ? rc : check_any_locked(o->src, o->count, 0);
	}
	rc = o->dst_dev ? check_dev_locked(o->dst, o->count, 1) : CUDA_SUCCESS;
	if (!rc && o->src_dev)
		rc = check_dev_locked(o->src, o->count, 0);
	if (!rc && ((!o->dst_dev && !o->dst) || (!o->src_dev && !o->src)))
		rc = CUDA_ERROR_INVALID_VALUE;
	return rc;
}

static void op_run(const struct op *o)
{
	if (o->kind == OP_COPY || o->kind == OP_KERNEL) {
		if (o->count)
			memmove((void *)o->dst, (const void *)o->src, o->count);
		return;
	}
	switch (o->elem) {
	case 1:
		memset((void *)o->dst, (int)(o->value & 0xff), o->count);
		break;
	case 2: {
		uint16_t *d = (uint16_t *)o->dst;
		for (size_t i = 0; i < o->count; i++)
			d[i] = (uint16_t)o->value;
		break;
	}
	default: {
		uint32_t *d = (uint32_t *)o->dst;
		for (size_t i = 0; i < o->count; i++)
			d[i] = o->value;
		break;
	}
	}
}

static CUresult graph_append_locked(CUgraph g, const struct op *o)
{
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 16;
		struct op *ops = realloc(g->ops, cap * sizeof(*ops));
		if (!ops)
			return CUDA_ERROR_OUT_OF_MEMORY;
		g->ops = ops;
		g->cap = cap;
	}
	g->ops[g->n++] = *o;
	return CUDA_SUCCESS;
}

static int is_default_stream(CUstream h)
{
	return !h || h == CU_STREAM_LEGACY || h == CU_STREAM_PER_THREAD;
}

static CUresult stream_get_locked(CUstream h, struct CUstream_st **out)
{
	CUresult rc = need_ctx_locked(NULL);
	*out = NULL;
	if (is_default_stream(h))
		return rc;
	for (struct CUstream_st *s = g_streams; s; s = s->next)
		if (s == h) {
			*out = s;
			return ctx_alive(s->ctx) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
		}
	return CUDA_ERROR_INVALID_HANDLE;
}

/* FAKECUDA_DEFER_ASYNC models the GPU running behind the host: async work
 * waits in its stream's queue until a synchronization runs it, and work
 * whose memory is gone by then (unmapped under it) is not done and leaves a
 * sticky CUDA_ERROR_ILLEGAL_ADDRESS, as a faulting kernel would. */
static CUresult g_sticky;

static CUresult opq_push(struct opq *q, const struct op *o)
{
	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 16;
		struct op *ops = realloc(q->ops, cap * sizeof(*ops));
		if (!ops)
			return CUDA_ERROR_OUT_OF_MEMORY;
		q->ops = ops;
		q->cap = cap;
	}
	q->ops[q->n++] = *o;
	return CUDA_SUCCESS;
}

static void opq_drain_locked(struct opq *q)
{
	for (size_t i = 0; i < q->n; i++) {
		if (op_check_locked(&q->ops[i]) != CUDA_SUCCESS)
			g_sticky = CUDA_ERROR_ILLEGAL_ADDRESS;
		else
			op_run(&q->ops[i]);
	}
	q->n = 0;
}

/* The legacy stream waits for every blocking stream of its context; a
 * context sync for all of them.  c NULL: every context (events). */
static void drain_all_locked(CUcontext c, int blocking_only)
{
	if (c)
		opq_drain_locked(&c->null_pending);
	for (struct CUctx_st *x = g_ctxs; !c && x; x = x->next)
		opq_drain_locked(&x->null_pending);
	if (!c)
		opq_drain_locked(&g_primary.null_pending);
	for (struct CUstream_st *s = g_streams; s; s = s->next)
		if ((!c || s->ctx == c) && (!blocking_only || !(s->flags & CU_STREAM_NON_BLOCKING)))
			opq_drain_locked(&s->pending);
}

/* An async operation: recorded while the stream captures, else run now
 * (or queued, FAKECUDA_DEFER_ASYNC). */
static CUresult stream_op(CUstream h, const struct op *o)
{
	struct CUstream_st *s;
	CUresult rc;
	NEED_INIT();
	LOCK();
	rc = stream_get_locked(h, &s);
	if (rc)
		goto out;
	if (s && s->cap_status == CU_STREAM_CAPTURE_STATUS_INVALIDATED) {
		rc = CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
		goto out;
	}
	rc = op_check_locked(o);
	if (rc)
		goto out;
	if (s && s->cap_status == CU_STREAM_CAPTURE_STATUS_ACTIVE)
		rc = graph_append_locked(s->cap_graph, o);
	else if (cfg.defer_async)
		rc = s ? opq_push(&s->pending, o) : opq_push(&cur_ctx()->null_pending, o);
	else
		op_run(o);
out:
	UNLOCK();
	return rc;
}

/* A synchronous operation (legacy stream, potentially unsafe in capture). */
static CUresult sync_op(const struct op *o)
{
	CUresult rc;
	NEED_INIT();
	LOCK();
	rc = need_ctx_locked(NULL);
	if (!rc && unsafe_call_locked())
		rc = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
	if (!rc)
		drain_all_locked(cur_ctx(), 1);
	if (!rc)
		rc = op_check_locked(o);
	if (!rc)
		op_run(o);
	UNLOCK();
	return rc;
}

static CUresult memset_op(CUdeviceptr dst, uint32_t v, size_t n, unsigned elem, CUstream s,
			  int async)
{
	struct op o = { .kind = OP_MEMSET, .dst = dst, .count = n, .elem = elem, .value = v };
	if (dst % elem)
		return CUDA_ERROR_INVALID_VALUE;
	return async ? stream_op(s, &o) : sync_op(&o);
}

/* Stricter than the driver: an asynchronous copy whose host side starts
 * in page-locked memory must end in the same range.  memsaver registers
 * backups in pieces; a copy across two would be staged by the real driver
 * (silently slow), and here it fails. */
static int spans_ranges(uintptr_t h, size_t n)
{
	LOCK();
	struct alloc *a = alloc_find_locked(h, ALLOC_REG);
	if (!a)
		a = alloc_find_locked(h, ALLOC_HOST);
	int bad = a && n > a->base + a->size - h;
	UNLOCK();
	return bad;
}

static CUresult copy_op(uintptr_t dst, int dst_dev, uintptr_t src, int src_dev, size_t n,
			int unified, CUstream s, int async)
{
	if (async && !unified && ((!dst_dev && spans_ranges(dst, n)) || (!src_dev && spans_ranges(src, n))))
		return CUDA_ERROR_INVALID_VALUE;
	struct op o = { .kind = OP_COPY, .dst = dst, .src = src, .count = n,
			.dst_dev = dst_dev, .src_dev = src_dev, .unified = unified };
	return async ? stream_op(s, &o) : sync_op(&o);
}

/* ------------------------------------------------------ init and device */

static void init_body(void)
{
	config_once();
	atomic_store(&g_initialized, 1);
	_fc_ckpt_start();
	const char *path = getenv("CUDA_INJECTION64_PATH");
	if (path && *path) {
		void *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
		int (*fn)(void) = h ? (int (*)(void))dlsym(h, "InitializeInjection") : NULL;
		if (!h)
			fprintf(stderr, "fakecuda: CUDA_INJECTION64_PATH=%s: %s\n", path, dlerror());
		else if (!fn)
			fprintf(stderr, "fakecuda: %s has no InitializeInjection\n", path);
		else
			fn();
	}
	emit_resource(CUPTI_CBID_RESOURCE_CU_INIT_FINISHED, NULL, NULL, NULL);
}

static CUresult do_init(unsigned flags)
{
	if (flags)
		return CUDA_ERROR_INVALID_VALUE;
	pthread_once(&g_init_once, init_body);
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuInit(unsigned int Flags)
TRACE(cuInit, do_init(Flags), Flags)

static CUresult do_driver_version(int *v)
{
	if (!v)
		return CUDA_ERROR_INVALID_VALUE;
	*v = 13000;
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuDriverGetVersion(int *driverVersion)
TRACE(cuDriverGetVersion, do_driver_version(driverVersion), driverVersion)

static CUresult do_device_get(CUdevice *d, int ordinal)
{
	NEED_INIT();
	if (!d)
		return CUDA_ERROR_INVALID_VALUE;
	if (ordinal != 0)
		return CUDA_ERROR_INVALID_DEVICE;
	*d = 0;
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuDeviceGet(CUdevice *device, int ordinal)
TRACE(cuDeviceGet, do_device_get(device, ordinal), device, ordinal)

static CUresult do_device_count(int *n)
{
	NEED_INIT();
	if (!n)
		return CUDA_ERROR_INVALID_VALUE;
	*n = 1;
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuDeviceGetCount(int *count)
TRACE(cuDeviceGetCount, do_device_count(count), count)

#define DEVICE_NAME "NVIDIA H100 80GB HBM3"

static CUresult do_device_name(char *name, int len, CUdevice dev)
{
	NEED_INIT();
	if (dev != 0)
		return CUDA_ERROR_INVALID_DEVICE;
	if (!name || len <= 0)
		return CUDA_ERROR_INVALID_VALUE;
	snprintf(name, (size_t)len, "%s", DEVICE_NAME);
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuDeviceGetName(char *name, int len, CUdevice dev)
TRACE(cuDeviceGetName, do_device_name(name, len, dev), name, len, dev)

static CUresult do_total_mem(size_t *bytes, CUdevice dev)
{
	NEED_INIT();
	if (dev != 0)
		return CUDA_ERROR_INVALID_DEVICE;
	if (!bytes)
		return CUDA_ERROR_INVALID_VALUE;
	*bytes = cfg.total;
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev)
TRACE(cuDeviceTotalMem_v2, do_total_mem(bytes, dev), bytes, dev)

static int attr_value(CUdevice_attribute a)
{
	switch (a) {
	case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: return 1024;
	case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X: return 1024;
	case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y: return 1024;
	case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z: return 64;
	case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X: return 2147483647;
	case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y: return 65535;
	case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z: return 65535;
	case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: return 49152;
	case CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY: return 65536;
	case CU_DEVICE_ATTRIBUTE_WARP_SIZE: return 32;
	case CU_DEVICE_ATTRIBUTE_MAX_PITCH: return 2147483647;
	case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK: return 65536;
	case CU_DEVICE_ATTRIBUTE_CLOCK_RATE: return 1980000;
	case CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT: return 512;
	case CU_DEVICE_ATTRIBUTE_GPU_OVERLAP: return 1;
	case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: return 132;
	case CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY: return 1;
	case CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS: return 1;
	case CU_DEVICE_ATTRIBUTE_ECC_ENABLED: return 1;
	case CU_DEVICE_ATTRIBUTE_PCI_BUS_ID: return 0x18;
	case CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE: return 2619000;
	case CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH: return 5120;
	case CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE: return 52428800;
	case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR: return 2048;
	case CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT: return 5;
	case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING: return 1;
	case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: return 9;
	case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: return 0;
	case CU_DEVICE_ATTRIBUTE_STREAM_PRIORITIES_SUPPORTED: return 1;
	case CU_DEVICE_ATTRIBUTE_GLOBAL_L1_CACHE_SUPPORTED: return 1;
	case CU_DEVICE_ATTRIBUTE_LOCAL_L1_CACHE_SUPPORTED: return 1;
	case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR: return 233472;
	case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR: return 65536;
	case CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY: return 1;
	case CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS: return 1;
	case CU_DEVICE_ATTRIBUTE_COMPUTE_PREEMPTION_SUPPORTED: return 1;
	case CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH: return 1;
	case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: return 232448;
	case CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED: return 1;
	case CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_WITH_CUDA_VMM_SUPPORTED: return 1;
	case CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED: return 1;
	case CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR: return 32;
	case CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED: return 1;
	case CU_DEVICE_ATTRIBUTE_MEMPOOL_SUPPORTED_HANDLE_TYPES: return 1;
	case CU_DEVICE_ATTRIBUTE_MAX_PERSISTING_L2_CACHE_SIZE: return 32505856;
	default: return 0;
	}
}

static CUresult do_attr(int *pi, CUdevice_attribute a, CUdevice dev)
{
	NEED_INIT();
	if (dev != 0)
		return CUDA_ERROR_INVALID_DEVICE;
	if (!pi || (int)a <= 0 || a >= CU_DEVICE_ATTRIBUTE_MAX)
		return CUDA_ERROR_INVALID_VALUE;
	*pi = attr_value(a);
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev)
TRACE(cuDeviceGetAttribute, do_attr(pi, attrib, dev), pi, attrib, dev)

/* --------------------------------------------------------------- contexts */

/* Frees what a dying context owns.  Call with g_lock held. */
static void ctx_teardown_locked(CUcontext c)
{
	for (struct alloc **pp = &g_allocs; *pp;) {
		struct alloc *a = *pp;
		if (a->kind == ALLOC_DEV && a->ctx == c) {
			*pp = a->next;
			munmap((void *)a->base, a->map_size);
			g_alloc_bytes -= a->map_size;
			g_nallocs--;
			free(a);
		} else {
			pp = &a->next;
		}
	}
	for (struct CUstream_st **pp = &g_streams; *pp;) {
		struct CUstream_st *s = *pp;
		if (s->ctx == c) {
			*pp = s->next;
			if (s->cap_graph) {
				free(s->cap_graph->ops);
				free(s->cap_graph);
			}
			free(s);
		} else {
			pp = &s->next;
		}
	}
	for (struct CUevent_st **pp = &g_events; *pp;) {
		struct CUevent_st *e = *pp;
		if (e->ctx == c) {
			*pp = e->next;
			free(e);
		} else {
			pp = &e->next;
		}
	}
	for (struct CUmod_st **pp = &g_mods; *pp;) {
		struct CUmod_st *m = *pp;
		if (m->ctx == c) {
			*pp = m->next;
			g_module_bytes -= m->loaded ? cfg.module_bytes : 0;
			g_nmods--;
			free(m);
		} else {
			pp = &m->next;
		}
	}
	for (struct CUgraphExec_st **pp = &g_execs; *pp;) {
		struct CUgraphExec_st *e = *pp;
		if (e->ctx == c) {
			*pp = e->next;
			g_graph_bytes -= cfg.graph_bytes;
			free(e->ops);
			free(e);
		} else {
			pp = &e->next;
		}
	}
}

static void stack_remove(CUcontext c)
{
	int j = 0;
	for (int i = 0; i < t_depth; i++)
		if (t_stack[i] != c)
			t_stack[j++] = t_stack[i];
	t_depth = j;
}

static CUresult do_ctx_create(CUcontext *pctx, unsigned flags, CUdevice dev)
{
	NEED_INIT();
	if (!pctx)
		return CUDA_ERROR_INVALID_VALUE;
	if (dev != 0)
		return CUDA_ERROR_INVALID_DEVICE;
	if (t_depth >= CTX_STACK_MAX)
		return CUDA_ERROR_OUT_OF_MEMORY;
	struct CUctx_st *c = calloc(1, sizeof(*c));
	if (!c)
		return CUDA_ERROR_OUT_OF_MEMORY;
	ctx_init_limits(c);
	c->flags = flags;
	c->active = 1;
	LOCK();
	if (!fits_locked(ctx_cost(c))) {
		UNLOCK();
		free(c);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	c->uid = g_next_uid++;
	c->next = g_ctxs;
	g_ctxs = c;
	UNLOCK();
	t_stack[t_depth++] = c;
	*pctx = c;
	emit_resource(CUPTI_CBID_RESOURCE_CONTEXT_CREATED, c, NULL, NULL);
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuCtxCreate_v4(CUcontext *pctx, CUctxCreateParams *ctxCreateParams,
				   unsigned int flags, CUdevice dev)
TRACE(cuCtxCreate_v4, do_ctx_create(pctx, flags, dev), pctx, ctxCreateParams, flags, dev)

FC_EXPORT CUresult cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev)
TRACE(cuCtxCreate_v2, do_ctx_create(pctx, flags, dev), pctx, flags, dev)

FC_EXPORT CUresult cuCtxCreate_v3(CUcontext *pctx, CUexecAffinityParam *paramsArray, int numParams,
				   unsigned int flags, CUdevice dev)
TRACE(cuCtxCreate_v3, do_ctx_create(pctx, flags, dev), pctx, paramsArray, numParams, flags, dev)

static CUresult do_ctx_destroy(CUcontext ctx)
{
	NEED_INIT();
	LOCK();
	int ok = ctx && ctx != &g_primary && ctx_alive(ctx);
	UNLOCK();
	if (!ok)
		return CUDA_ERROR_INVALID_CONTEXT;
	emit_resource(CUPTI_CBID_RESOURCE_CONTEXT_DESTROY_STARTING, ctx, NULL, NULL);
	LOCK();
	for (struct CUctx_st **pp = &g_ctxs; *pp; pp = &(*pp)->next)
		if (*pp == ctx) {
			*pp = ctx->next;
			ctx_teardown_locked(ctx);
			free(ctx);
			ok = 2;
			break;
		}
	UNLOCK();
	stack_remove(ctx);
	return ok == 2 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
}

FC_EXPORT CUresult cuCtxDestroy_v2(CUcontext ctx)
TRACE(cuCtxDestroy_v2, do_ctx_destroy(ctx), ctx)

FC_EXPORT CUresult cuCtxDestroy(CUcontext ctx)
TRACE(cuCtxDestroy, do_ctx_destroy(ctx), ctx)

static CUresult do_primary_retain(CUcontext *pctx, CUdevice dev)
{
	NEED_INIT();
	if (!pctx)
		return CUDA_ERROR_INVALID_VALUE;
	if (dev != 0)
		return CUDA_ERROR_INVALID_DEVICE;
	int created = 0;
	LOCK();
	if (!g_primary.active) {
		ctx_init_limits(&g_primary);
		if (!fits_locked(ctx_cost(&g_primary))) {
			UNLOCK();
			return CUDA_ERROR_OUT_OF_MEMORY;
		}
		g_primary.active = 1;
		created = 1;
	}
	g_primary_refs++;
	UNLOCK();
	*pctx = &g_primary;
	if (created)
		emit_resource(CUPTI_CBID_RESOURCE_CONTEXT_CREATED, &g_primary, NULL, NULL);
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev)
TRACE(cuDevicePrimaryCtxRetain, do_primary_retain(pctx, dev), pctx, dev)

static void primary_destroy(void)
{
	emit_resource(CUPTI_CBID_RESOURCE_CONTEXT_DESTROY_STARTING, &g_primary, NULL, NULL);
	LOCK();
	ctx_teardown_locked(&g_primary);
	g_primary.active = 0;
	g_primary_refs = 0;
	UNLOCK();
}

static CUresult do_primary_release(CUdevice dev, int reset)
{
	NEED_INIT();
	if (dev != 0)
		return CUDA_ERROR_INVALID_DEVICE;
	LOCK();
	if (!reset && (!g_primary.active || g_primary_refs <= 0)) {
		UNLOCK();
		return CUDA_ERROR_INVALID_CONTEXT;
	}
	int destroy = reset ? g_primary.active : --g_primary_refs == 0;
	UNLOCK();
	if (destroy)
		primary_destroy();
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev)
TRACE(cuDevicePrimaryCtxRelease_v2, do_primary_release(dev, 0), dev)

FC_EXPORT CUresult cuDevicePrimaryCtxRelease(CUdevice dev)
TRACE(cuDevicePrimaryCtxRelease, do_primary_release(dev, 0), dev)

FC_EXPORT CUresult cuDevicePrimaryCtxReset_v2(CUdevice dev)
TRACE(cuDevicePrimaryCtxReset_v2, do_primary_release(dev, 1), dev)

FC_EXPORT CUresult cuDevicePrimaryCtxReset(CUdevice dev)
TRACE(cuDevicePrimaryCtxReset, do_primary_release(dev, 1), dev)

static CUresult do_primary_state(CUdevice dev, unsigned *flags, int *active)
{
	NEED_INIT();
	if (dev != 0)
		return CUDA_ERROR_INVALID_DEVICE;
	if (!flags || !active)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	*flags = g_primary.flags;
	*active = g_primary.active;
	UNLOCK();
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int *active)
TRACE(cuDevicePrimaryCtxGetState, do_primary_state(dev, flags, active), dev, flags, active)

static CUresult do_primary_flags(CUdevice dev, unsigned flags)
{
	NEED_INIT();
	if (dev != 0)
		return CUDA_ERROR_INVALID_DEVICE;
	LOCK();
	g_primary.flags = flags;
	UNLOCK();
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuDevicePrimaryCtxSetFlags_v2(CUdevice dev, unsigned int flags)
TRACE(cuDevicePrimaryCtxSetFlags_v2, do_primary_flags(dev, flags), dev, flags)

static CUresult do_ctx_set_current(CUcontext ctx)
{
	NEED_INIT();
	if (ctx) {
		LOCK();
		int ok = ctx_alive(ctx);
		UNLOCK();
		if (!ok)
			return CUDA_ERROR_INVALID_CONTEXT;
		if (t_depth)
			t_stack[t_depth - 1] = ctx;
		else
			t_stack[t_depth++] = ctx;
	} else if (t_depth) {
		t_depth--;
	}
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuCtxSetCurrent(CUcontext ctx)
TRACE(cuCtxSetCurrent, do_ctx_set_current(ctx), ctx)

static CUresult do_ctx_get_current(CUcontext *pctx)
{
	NEED_INIT();
	if (!pctx)
		return CUDA_ERROR_INVALID_VALUE;
	*pctx = cur_ctx();
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuCtxGetCurrent(CUcontext *pctx)
TRACE(cuCtxGetCurrent, do_ctx_get_current(pctx), pctx)

static CUresult do_ctx_push(CUcontext ctx)
{
	NEED_INIT();
	LOCK();
	int ok = ctx_alive(ctx);
	UNLOCK();
	if (!ok)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (t_depth >= CTX_STACK_MAX)
		return CUDA_ERROR_OUT_OF_MEMORY;
	t_stack[t_depth++] = ctx;
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuCtxPushCurrent_v2(CUcontext ctx)
TRACE(cuCtxPushCurrent_v2, do_ctx_push(ctx), ctx)

FC_EXPORT CUresult cuCtxPushCurrent(CUcontext ctx)
TRACE(cuCtxPushCurrent, do_ctx_push(ctx), ctx)

static CUresult do_ctx_pop(CUcontext *pctx)
{
	NEED_INIT();
	if (!t_depth)
		return CUDA_ERROR_INVALID_CONTEXT;
	CUcontext c = t_stack[--t_depth];
	if (pctx)
		*pctx = c;
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuCtxPopCurrent_v2(CUcontext *pctx)
TRACE(cuCtxPopCurrent_v2, do_ctx_pop(pctx), pctx)

FC_EXPORT CUresult cuCtxPopCurrent(CUcontext *pctx)
TRACE(cuCtxPopCurrent, do_ctx_pop(pctx), pctx)

static CUresult do_ctx_get_device(CUdevice *dev)
{
	NEED_INIT();
	if (!dev)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	CUresult rc = need_ctx_locked(NULL);
	UNLOCK();
	if (!rc)
		*dev = 0;
	return rc;
}

FC_EXPORT CUresult cuCtxGetDevice(CUdevice *device)
TRACE(cuCtxGetDevice, do_ctx_get_device(device), device)

/* FAKECUDA_SYNC_HOLD=PATH: the GPU is busy while PATH exists (a long
 * kernel, a collective waiting for its peer); PATH.entered tells a test
 * that a synchronize is waiting. */
static void sync_hold(void)
{
	if (!cfg.sync_hold[0] || access(cfg.sync_hold, F_OK) != 0)
		return;
	char entered[300];
	snprintf(entered, sizeof(entered), "%s.entered", cfg.sync_hold);
	int fd = open(entered, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	while (access(cfg.sync_hold, F_OK) == 0)
		usleep(10000);
}

static CUresult do_ctx_sync(void)
{
	NEED_INIT();
	sync_hold();
	LOCK();
	CUresult rc = need_ctx_locked(NULL);
	if (!rc && unsafe_call_locked())
		rc = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
	if (!rc) {
		drain_all_locked(cur_ctx(), 0);
		rc = g_sticky;
	}
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuCtxSynchronize(void)
TRACE0(cuCtxSynchronize, do_ctx_sync())

static CUresult do_get_limit(size_t *v, CUlimit l)
{
	NEED_INIT();
	if (!v || (int)l < 0 || l >= CU_LIMIT_MAX)
		return CUDA_ERROR_INVALID_VALUE;
	CUcontext c;
	LOCK();
	CUresult rc = need_ctx_locked(&c);
	if (!rc)
		*v = c->limits[l];
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuCtxGetLimit(size_t *pvalue, CUlimit limit)
TRACE(cuCtxGetLimit, do_get_limit(pvalue, limit), pvalue, limit)

static CUresult do_set_limit(CUlimit l, size_t v)
{
	NEED_INIT();
	if ((int)l < 0 || l >= CU_LIMIT_MAX)
		return CUDA_ERROR_INVALID_VALUE;
	CUcontext c;
	LOCK();
	CUresult rc = need_ctx_locked(&c);
	if (!rc && l == CU_LIMIT_STACK_SIZE && v > c->limits[l]) {
		uint64_t more = (uint64_t)(v - c->limits[l]) * cfg.stack_threads;
		if (!fits_locked(more))
			rc = CUDA_ERROR_OUT_OF_MEMORY;
	}
	if (!rc)
		c->limits[l] = v;
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuCtxSetLimit(CUlimit limit, size_t value)
TRACE(cuCtxSetLimit, do_set_limit(limit, value), limit, value)

static CUresult do_prio_range(int *least, int *greatest)
{
	NEED_INIT();
	LOCK();
	CUresult rc = need_ctx_locked(NULL);
	UNLOCK();
	if (rc)
		return rc;
	if (least)
		*least = 0;
	if (greatest)
		*greatest = -5;
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuCtxGetStreamPriorityRange(int *leastPriority, int *greatestPriority)
TRACE(cuCtxGetStreamPriorityRange, do_prio_range(leastPriority, greatestPriority),
      leastPriority, greatestPriority)

/* ------------------------------------------------------ errors and info */

static CUresult do_error_name(CUresult e, const char **s, int msg)
{
	if (!s)
		return CUDA_ERROR_INVALID_VALUE;
	const struct errinfo *ei = err_find(e);
	if (!ei) {
		*s = NULL;
		return CUDA_ERROR_INVALID_VALUE;
	}
	*s = msg ? ei->msg : ei->name;
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuGetErrorName(CUresult error, const char **pStr)
TRACE(cuGetErrorName, do_error_name(error, pStr, 0), error, pStr)

FC_EXPORT CUresult cuGetErrorString(CUresult error, const char **pStr)
TRACE(cuGetErrorString, do_error_name(error, pStr, 1), error, pStr)

static CUresult do_mem_info(size_t *free_b, size_t *total)
{
	NEED_INIT();
	LOCK();
	CUresult rc = need_ctx_locked(NULL);
	uint64_t used = used_locked();
	UNLOCK();
	if (rc)
		return rc;
	used += _fc_others_bytes();
	if (free_b)
		*free_b = used < cfg.total ? cfg.total - used : 0;
	if (total)
		*total = cfg.total;
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuMemGetInfo_v2(size_t *free, size_t *total)
TRACE(cuMemGetInfo_v2, do_mem_info(free, total), free, total)

FC_EXPORT void fakecuda_get_usage(struct fakecuda_usage *out)
{
	if (!out)
		return;
	config_once();
	memset(out, 0, sizeof(*out));
	LOCK();
	out->total = cfg.total;
	out->context_bytes = ctx_bytes_locked(&out->contexts);
	out->alloc_bytes = g_alloc_bytes;
	out->vmm_bytes = g_vmm_bytes;
	out->module_bytes = g_module_bytes;
	out->graph_bytes = g_graph_bytes;
	out->used = used_locked();
	out->vmm_handles = g_nphys;
	out->vmm_mappings = g_nmaps;
	out->allocations = g_nallocs;
	out->restore_launches = g_restore_launches;
	UNLOCK();
}

/* ------------------------------------------------------ cuMemAlloc family */

static CUresult mem_alloc(CUdeviceptr *dptr, size_t size, int sync)
{
	NEED_INIT();
	if (!dptr || !size)
		return CUDA_ERROR_INVALID_VALUE;
	CUcontext c;
	LOCK();
	CUresult rc = need_ctx_locked(&c);
	if (!rc && sync && unsafe_call_locked())
		rc = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
	size_t map = ROUND_UP(size, GRAN);
	if (!rc && (map < size || !fits_locked(map)))
		rc = CUDA_ERROR_OUT_OF_MEMORY;
	if (rc) {
		UNLOCK();
		return rc;
	}
	void *p = mmap(NULL, map, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	struct alloc *a = p == MAP_FAILED ? NULL : calloc(1, sizeof(*a));
	if (!a) {
		if (p != MAP_FAILED)
			munmap(p, map);
		UNLOCK();
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	fill_fresh(p, size, next_pattern_locked());
	a->base = (uintptr_t)p;
	a->size = size;
	a->map_size = map;
	a->kind = ALLOC_DEV;
	a->ctx = c;
	a->next = g_allocs;
	g_allocs = a;
	g_alloc_bytes += map;
	g_nallocs++;
	UNLOCK();
	*dptr = (CUdeviceptr)p;
	return CUDA_SUCCESS;
}

static CUresult mem_free(CUdeviceptr p, int sync)
{
	NEED_INIT();
	if (!p)
		return CUDA_SUCCESS;
	LOCK();
	CUresult rc = need_ctx_locked(NULL);
	if (!rc && sync && unsafe_call_locked())
		rc = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
	if (!rc) {
		rc = CUDA_ERROR_INVALID_VALUE;
		for (struct alloc **pp = &g_allocs; *pp; pp = &(*pp)->next) {
			struct alloc *a = *pp;
			if (a->kind == ALLOC_DEV && a->base == p) {
				*pp = a->next;
				munmap((void *)a->base, a->map_size);
				g_alloc_bytes -= a->map_size;
				g_nallocs--;
				free(a);
				rc = CUDA_SUCCESS;
				break;
			}
		}
	}
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
TRACE(cuMemAlloc_v2, mem_alloc(dptr, bytesize, 1), dptr, bytesize)

FC_EXPORT CUresult cuMemFree_v2(CUdeviceptr dptr)
TRACE(cuMemFree_v2, mem_free(dptr, 1), dptr)

static CUresult mem_alloc_pitch(CUdeviceptr *dptr, size_t *pitch, size_t w, size_t h,
				unsigned elem)
{
	if (!pitch || !w || !h || (elem != 4 && elem != 8 && elem != 16))
		return CUDA_ERROR_INVALID_VALUE;
	size_t p = ROUND_UP(w, 512);
	if (h > SIZE_MAX / p)
		return CUDA_ERROR_OUT_OF_MEMORY;
	CUresult rc = mem_alloc(dptr, p * h, 1);
	if (!rc)
		*pitch = p;
	return rc;
}

FC_EXPORT CUresult cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pPitch, size_t WidthInBytes,
				      size_t Height, unsigned int ElementSizeBytes)
TRACE(cuMemAllocPitch_v2, mem_alloc_pitch(dptr, pPitch, WidthInBytes, Height, ElementSizeBytes),
      dptr, pPitch, WidthInBytes, Height, ElementSizeBytes)

static CUresult mem_alloc_async(CUdeviceptr *dptr, size_t size, CUstream h)
{
	struct CUstream_st *s;
	NEED_INIT();
	LOCK();
	CUresult rc = stream_get_locked(h, &s);
	UNLOCK();
	return rc ? rc : mem_alloc(dptr, size, 0);
}

static CUresult mem_free_async(CUdeviceptr p, CUstream h)
{
	struct CUstream_st *s;
	NEED_INIT();
	LOCK();
	CUresult rc = stream_get_locked(h, &s);
	UNLOCK();
	if (!rc && !p)
		return CUDA_ERROR_INVALID_VALUE;
	return rc ? rc : mem_free(p, 0);
}

FC_EXPORT CUresult cuMemAllocAsync(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
TRACE(cuMemAllocAsync, mem_alloc_async(dptr, bytesize, hStream), dptr, bytesize, hStream)

FC_EXPORT CUresult cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
TRACE(cuMemAllocAsync_ptsz, mem_alloc_async(dptr, bytesize, hStream), dptr, bytesize, hStream)

/* The pool is not modelled: the driver's default pool serves every one. */
FC_EXPORT CUresult cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool, CUstream hStream)
TRACE(cuMemAllocFromPoolAsync, mem_alloc_async(dptr, bytesize, hStream), dptr, bytesize, pool, hStream)

FC_EXPORT CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool,
						CUstream hStream)
TRACE(cuMemAllocFromPoolAsync_ptsz, mem_alloc_async(dptr, bytesize, hStream), dptr, bytesize, pool, hStream)

/* Managed memory is device memory here (no migration modelled). */
FC_EXPORT CUresult cuMemAllocManaged(CUdeviceptr *dptr, size_t bytesize, unsigned int flags)
TRACE(cuMemAllocManaged, mem_alloc(dptr, bytesize, 1), dptr, bytesize, flags)

FC_EXPORT CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream hStream)
TRACE(cuMemFreeAsync, mem_free_async(dptr, hStream), dptr, hStream)

FC_EXPORT CUresult cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream hStream)
TRACE(cuMemFreeAsync_ptsz, mem_free_async(dptr, hStream), dptr, hStream)

static CUresult mem_range(CUdeviceptr *base, size_t *size, CUdeviceptr p)
{
	NEED_INIT();
	LOCK();
	CUresult rc = need_ctx_locked(NULL);
	if (!rc) {
		struct alloc *a = alloc_find_locked(p, ALLOC_DEV);
		struct vmap *m = a ? NULL : vmap_find_locked(p);
		if (a && p - a->base < a->size) {
			if (base)
				*base = a->base;
			if (size)
				*size = a->size;
		} else if (m) {
			if (base)
				*base = m->base;
			if (size)
				*size = m->size;
		} else {
			rc = CUDA_ERROR_NOT_FOUND;
		}
	}
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuMemGetAddressRange_v2(CUdeviceptr *pbase, size_t *psize, CUdeviceptr dptr)
TRACE(cuMemGetAddressRange_v2, mem_range(pbase, psize, dptr), pbase, psize, dptr)

static CUresult ptr_attr(void *data, CUpointer_attribute attr, CUdeviceptr p)
{
	NEED_INIT();
	if (!data)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	struct alloc *a = alloc_find_locked(p, 0);
	struct vmap *m = a ? NULL : vmap_find_locked(p);
	CUresult rc = CUDA_SUCCESS;
	if (!a && !m) {
		UNLOCK();
		return CUDA_ERROR_INVALID_VALUE;
	}
	uintptr_t base = a ? a->base : m->base;
	size_t size = a ? a->size : m->size;
	int host = a && a->kind != ALLOC_DEV;
	switch (attr) {
	case CU_POINTER_ATTRIBUTE_CONTEXT:
		*(CUcontext *)data = a && a->kind == ALLOC_DEV ? a->ctx : NULL;
		break;
	case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
		*(unsigned *)data = host ? CU_MEMORYTYPE_HOST : CU_MEMORYTYPE_DEVICE;
		break;
	case CU_POINTER_ATTRIBUTE_DEVICE_POINTER:
		*(CUdeviceptr *)data = p;
		break;
	case CU_POINTER_ATTRIBUTE_HOST_POINTER:
		if (!host)
			rc = CUDA_ERROR_INVALID_VALUE;
		else
			*(void **)data = (void *)p;
		break;
	case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR:
		*(CUdeviceptr *)data = base;
		break;
	case CU_POINTER_ATTRIBUTE_RANGE_SIZE:
		*(size_t *)data = size;
		break;
	case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL:
		*(int *)data = 0;
		break;
	case CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE:
		*(int *)data = a && a->kind == ALLOC_DEV;
		break;
	case CU_POINTER_ATTRIBUTE_IS_MANAGED:
		*(int *)data = 0;
		break;
	case CU_POINTER_ATTRIBUTE_MAPPED:
		*(int *)data = 1;
		break;
	case CU_POINTER_ATTRIBUTE_SYNC_MEMOPS:
		*(int *)data = 0;
		break;
	case CU_POINTER_ATTRIBUTE_BUFFER_ID:
		*(unsigned long long *)data = base;
		break;
	case CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES:
		*(unsigned long long *)data = m ? CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR : 0;
		break;
	case CU_POINTER_ATTRIBUTE_ACCESS_FLAGS:
		*(unsigned *)data = m ? (unsigned)m->access : CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
		break;
	default:
		rc = CUDA_ERROR_INVALID_VALUE;
		break;
	}
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuPointerGetAttribute(void *data, CUpointer_attribute attribute, CUdeviceptr ptr)
TRACE(cuPointerGetAttribute, ptr_attr(data, attribute, ptr), data, attribute, ptr)

static CUresult ptr_attrs(unsigned n, CUpointer_attribute *attrs, void **data, CUdeviceptr p)
{
	if (!attrs || !data)
		return CUDA_ERROR_INVALID_VALUE;
	for (unsigned i = 0; i < n; i++) {
		CUresult rc = ptr_attr(data[i], attrs[i], p);
		if (rc)
			return rc;
	}
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuPointerGetAttributes(unsigned int numAttributes, CUpointer_attribute *attributes,
					  void **data, CUdeviceptr ptr)
TRACE(cuPointerGetAttributes, ptr_attrs(numAttributes, attributes, data, ptr), numAttributes,
      attributes, data, ptr)

static CUresult ipc_get(CUipcMemHandle *h, CUdeviceptr p)
{
	NEED_INIT();
	if (!h)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	CUresult rc = need_ctx_locked(NULL);
	struct alloc *a = alloc_find_locked(p, ALLOC_DEV);
	if (!rc && !a)
		rc = CUDA_ERROR_INVALID_VALUE; /* VMM memory, host memory, garbage */
	if (!rc) {
		memset(h, 0, sizeof(*h));
		memcpy(h->reserved, &a->base, sizeof(a->base));
		memcpy(h->reserved + 8, &a->size, sizeof(a->size));
	}
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuIpcGetMemHandle(CUipcMemHandle *pHandle, CUdeviceptr dptr)
TRACE(cuIpcGetMemHandle, ipc_get(pHandle, dptr), pHandle, dptr)

/* ------------------------------------------------------------ host memory */

static CUresult host_alloc(void **pp, size_t size)
{
	NEED_INIT();
	if (!pp || !size)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	CUresult rc = need_ctx_locked(NULL);
	if (!rc && unsafe_call_locked())
		rc = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
	if (rc) {
		UNLOCK();
		return rc;
	}
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	struct alloc *a = p == MAP_FAILED ? NULL : calloc(1, sizeof(*a));
	if (!a) {
		if (p != MAP_FAILED)
			munmap(p, size);
		UNLOCK();
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	a->base = (uintptr_t)p;
	a->size = size;
	a->kind = ALLOC_HOST;
	a->next = g_allocs;
	g_allocs = a;
	UNLOCK();
	*pp = p;
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuMemHostAlloc(void **pp, size_t bytesize, unsigned int Flags)
TRACE(cuMemHostAlloc, host_alloc(pp, bytesize), pp, bytesize, Flags)

FC_EXPORT CUresult cuMemAllocHost_v2(void **pp, size_t bytesize)
TRACE(cuMemAllocHost_v2, host_alloc(pp, bytesize), pp, bytesize)

static CUresult host_free(void *p, int kind)
{
	NEED_INIT();
	LOCK();
	CUresult rc = kind == ALLOC_HOST ? need_ctx_locked(NULL) : CUDA_SUCCESS;
	if (!rc && unsafe_call_locked())
		rc = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
	if (!rc) {
		rc = kind == ALLOC_HOST ? CUDA_ERROR_INVALID_VALUE : CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
		for (struct alloc **pp = &g_allocs; *pp; pp = &(*pp)->next) {
			struct alloc *a = *pp;
			if (a->kind == kind && a->base == (uintptr_t)p) {
				*pp = a->next;
				if (kind == ALLOC_HOST)
					munmap(p, a->size);
				free(a);
				rc = CUDA_SUCCESS;
				break;
			}
		}
	}
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuMemFreeHost(void *p)
TRACE(cuMemFreeHost, host_free(p, ALLOC_HOST), p)

static CUresult host_register(void *p, size_t size)
{
	NEED_INIT();
	if (!p || !size)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	CUresult rc = need_ctx_locked(NULL);
	if (!rc && unsafe_call_locked())
		rc = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
	for (struct alloc *a = g_allocs; !rc && a; a = a->next)
		if (a->kind != ALLOC_DEV && (uintptr_t)p < a->base + a->size &&
		    a->base < (uintptr_t)p + size)
			rc = CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
	struct alloc *a = rc ? NULL : calloc(1, sizeof(*a));
	if (!rc && !a)
		rc = CUDA_ERROR_OUT_OF_MEMORY;
	if (!rc) {
		a->base = (uintptr_t)p;
		a->size = size;
		a->kind = ALLOC_REG;
		a->next = g_allocs;
		g_allocs = a;
	}
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuMemHostRegister_v2(void *p, size_t bytesize, unsigned int Flags)
TRACE(cuMemHostRegister_v2, host_register(p, bytesize), p, bytesize, Flags)

FC_EXPORT CUresult cuMemHostUnregister(void *p)
TRACE(cuMemHostUnregister, host_free(p, ALLOC_REG), p)

static CUresult host_devptr(CUdeviceptr *d, void *p)
{
	NEED_INIT();
	if (!d)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	struct alloc *a = alloc_find_locked((uintptr_t)p, 0);
	CUresult rc = a && a->kind != ALLOC_DEV ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
	UNLOCK();
	if (!rc)
		*d = (CUdeviceptr)p;
	return rc;
}

FC_EXPORT CUresult cuMemHostGetDevicePointer_v2(CUdeviceptr *pdptr, void *p, unsigned int Flags)
TRACE(cuMemHostGetDevicePointer_v2, host_devptr(pdptr, p), pdptr, p, Flags)

/* -------------------------------------------------------------------- VMM */

static CUresult vmm_reserve(CUdeviceptr *ptr, size_t size, size_t align, CUdeviceptr addr)
{
	NEED_INIT();
	if (!ptr || !size || size % GRAN || (align & (align - 1)))
		return CUDA_ERROR_INVALID_VALUE;
	if (align < GRAN)
		align = GRAN;
	void *p = MAP_FAILED;
	int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
	if (addr && addr % align == 0) {
		p = mmap((void *)addr, size, PROT_NONE, flags | MAP_FIXED_NOREPLACE, -1, 0);
		if (p != MAP_FAILED && (CUdeviceptr)p != addr) {
			munmap(p, size);
			p = MAP_FAILED;
		}
	}
	if (p == MAP_FAILED) {
		size_t span = size + align;
		char *raw = mmap(NULL, span, PROT_NONE, flags, -1, 0);
		if (raw == MAP_FAILED)
			return CUDA_ERROR_OUT_OF_MEMORY;
		uintptr_t start = ROUND_UP((uintptr_t)raw, align);
		if (start > (uintptr_t)raw)
			munmap(raw, start - (uintptr_t)raw);
		uintptr_t end = (uintptr_t)raw + span;
		if (end > start + size)
			munmap((void *)(start + size), end - (start + size));
		p = (void *)start;
	}
	struct vres *r = calloc(1, sizeof(*r));
	if (!r) {
		munmap(p, size);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	r->base = (uintptr_t)p;
	r->size = size;
	LOCK();
	r->next = g_vres;
	g_vres = r;
	UNLOCK();
	*ptr = (CUdeviceptr)p;
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment,
				       CUdeviceptr addr, unsigned long long flags)
TRACE(cuMemAddressReserve, vmm_reserve(ptr, size, alignment, addr), ptr, size, alignment, addr,
      flags)

static CUresult vmm_free(CUdeviceptr ptr, size_t size)
{
	NEED_INIT();
	CUresult rc = CUDA_ERROR_INVALID_VALUE;
	LOCK();
	for (struct vres **pp = &g_vres; *pp; pp = &(*pp)->next) {
		struct vres *r = *pp;
		if (r->base != ptr || r->size != size)
			continue;
		for (struct vmap *m = g_vmaps; m; m = m->next)
			if (m->base >= r->base && m->base < r->base + r->size)
				goto out; /* still mapped */
		*pp = r->next;
		munmap((void *)r->base, r->size);
		free(r);
		rc = CUDA_SUCCESS;
		break;
	}
out:
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size)
TRACE(cuMemAddressFree, vmm_free(ptr, size), ptr, size)

static struct vphys *phys_find_locked(CUmemGenericAllocationHandle h);

static CUresult vmm_create(CUmemGenericAllocationHandle *handle, size_t size,
			   const CUmemAllocationProp *prop, unsigned long long flags)
{
	NEED_INIT();
	if (!handle || !prop || !size || size % GRAN || flags)
		return CUDA_ERROR_INVALID_VALUE;
	if (prop->type != CU_MEM_ALLOCATION_TYPE_PINNED ||
	    prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
		return CUDA_ERROR_INVALID_VALUE;
	if (prop->location.id != 0)
		return CUDA_ERROR_INVALID_DEVICE;
	LOCK();
	if (!fits_locked(size)) {
		UNLOCK();
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	uint8_t pat = next_pattern_locked();
	g_vmm_bytes += size; /* hold the budget while the memfd is made */
	UNLOCK();
	CUresult rc = CUDA_ERROR_OUT_OF_MEMORY;
	struct vphys *ph = calloc(1, sizeof(*ph));
	int fd = memfd_create("fakecuda-vmm", MFD_CLOEXEC);
	if (!ph || fd < 0 || ftruncate(fd, (off_t)size))
		goto fail;
	if (!cfg.zero_fresh) {
		size_t n = size < cfg.garbage_max ? size : cfg.garbage_max;
		void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			goto fail;
		memset(p, pat, n);
		munmap(p, n);
	}
	ph->fd = fd;
	ph->size = size;
	ph->refs = 1;
	ph->prop = *prop;
	LOCK();
	ph->handle = g_next_handle++;
	/* A real driver's handles are addresses of its own objects: the value
	 * of a released handle comes back with a later cuMemCreate. */
	if (cfg.reuse_handles) {
		ph->handle = 1;
		while (phys_find_locked(ph->handle))
			ph->handle++;
	}
	ph->next = g_vphys;
	g_vphys = ph;
	g_nphys++;
	UNLOCK();
	*handle = ph->handle;
	return CUDA_SUCCESS;
fail:
	if (fd >= 0)
		close(fd);
	free(ph);
	LOCK();
	g_vmm_bytes -= size;
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size,
			       const CUmemAllocationProp *prop, unsigned long long flags)
TRACE(cuMemCreate, vmm_create(handle, size, prop, flags), handle, size, prop, flags)

static struct vphys *phys_find_locked(CUmemGenericAllocationHandle h)
{
	for (struct vphys *p = g_vphys; p; p = p->next)
		if (p->handle == h)
			return p;
	return NULL;
}

/* Frees the physical memory once nothing holds it.  g_lock held. */
static void phys_maybe_free_locked(struct vphys *ph)
{
	if (ph->refs > 0 || ph->maps > 0)
		return;
	for (struct vphys **pp = &g_vphys; *pp; pp = &(*pp)->next)
		if (*pp == ph) {
			*pp = ph->next;
			break;
		}
	close(ph->fd);
	g_vmm_bytes -= ph->size;
	g_nphys--;
	free(ph);
}

static CUresult vmm_release(CUmemGenericAllocationHandle h)
{
	NEED_INIT();
	LOCK();
	struct vphys *ph = phys_find_locked(h);
	CUresult rc = ph && ph->refs > 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
	if (!rc) {
		ph->refs--;
		phys_maybe_free_locked(ph);
	}
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuMemRelease(CUmemGenericAllocationHandle handle)
TRACE(cuMemRelease, vmm_release(handle), handle)

static CUresult vmm_map(CUdeviceptr ptr, size_t size, size_t offset,
			CUmemGenericAllocationHandle h, unsigned long long flags)
{
	NEED_INIT();
	if (!size || flags || ptr % GRAN || size % GRAN || offset % GRAN)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	CUresult rc = CUDA_SUCCESS;
	struct vphys *ph = phys_find_locked(h);
	struct vres *r = vres_find_locked(ptr);
	struct vmap *m = NULL;
	if (!ph || ph->refs <= 0 || offset > ph->size || size > ph->size - offset)
		rc = CUDA_ERROR_INVALID_VALUE;
	else if (!r || size > r->size - (ptr - r->base))
		rc = CUDA_ERROR_INVALID_VALUE;
	for (struct vmap *o = g_vmaps; !rc && o; o = o->next)
		if (o->base < ptr + size && ptr < o->base + o->size)
			rc = CUDA_ERROR_ALREADY_MAPPED;
	if (!rc && !(m = calloc(1, sizeof(*m))))
		rc = CUDA_ERROR_OUT_OF_MEMORY;
	if (!rc && mmap((void *)ptr, size, PROT_NONE, MAP_SHARED | MAP_FIXED, ph->fd,
			(off_t)offset) == MAP_FAILED)
		rc = CUDA_ERROR_OUT_OF_MEMORY;
	if (!rc) {
		m->base = ptr;
		m->size = size;
		m->offset = offset;
		m->ph = ph;
		m->access = CU_MEM_ACCESS_FLAGS_PROT_NONE;
		m->next = g_vmaps;
		g_vmaps = m;
		ph->maps++;
		g_nmaps++;
	} else {
		free(m);
	}
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset,
			    CUmemGenericAllocationHandle handle, unsigned long long flags)
TRACE(cuMemMap, vmm_map(ptr, size, offset, handle, flags), ptr, size, offset, handle, flags)

static CUresult vmm_unmap(CUdeviceptr ptr, size_t size)
{
	NEED_INIT();
	if (!size || ptr % GRAN || size % GRAN)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	/* Only whole mappings, all inside the range, the range fully covered. */
	size_t covered = 0;
	CUresult rc = CUDA_SUCCESS;
	for (struct vmap *m = g_vmaps; m; m = m->next) {
		if (!(m->base < ptr + size && ptr < m->base + m->size))
			continue;
		if (m->base < ptr || m->base + m->size > ptr + size)
			rc = CUDA_ERROR_INVALID_VALUE;
		covered += m->size;
	}
	if (!rc && covered != size)
		rc = CUDA_ERROR_INVALID_VALUE;
	if (!rc &&
	    mmap((void *)ptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
		 -1, 0) == MAP_FAILED)
		rc = CUDA_ERROR_UNKNOWN;
	if (!rc) {
		for (struct vmap **pp = &g_vmaps; *pp;) {
			struct vmap *m = *pp;
			if (m->base >= ptr && m->base < ptr + size) {
				*pp = m->next;
				m->ph->maps--;
				g_nmaps--;
				phys_maybe_free_locked(m->ph);
				free(m);
			} else {
				pp = &m->next;
			}
		}
	}
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuMemUnmap(CUdeviceptr ptr, size_t size)
TRACE(cuMemUnmap, vmm_unmap(ptr, size), ptr, size)

static CUresult vmm_set_access(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc,
			       size_t count)
{
	NEED_INIT();
	if (!desc || !count || !size)
		return CUDA_ERROR_INVALID_VALUE;
	CUmemAccess_flags fl = CU_MEM_ACCESS_FLAGS_PROT_NONE;
	for (size_t i = 0; i < count; i++) {
		if (desc[i].location.type != CU_MEM_LOCATION_TYPE_DEVICE)
			return CUDA_ERROR_INVALID_VALUE;
		if (desc[i].location.id != 0)
			return CUDA_ERROR_INVALID_DEVICE;
		if (desc[i].flags != CU_MEM_ACCESS_FLAGS_PROT_NONE &&
		    desc[i].flags != CU_MEM_ACCESS_FLAGS_PROT_READ &&
		    desc[i].flags != CU_MEM_ACCESS_FLAGS_PROT_READWRITE)
			return CUDA_ERROR_INVALID_VALUE;
		fl = desc[i].flags;
	}
	int prot = fl == CU_MEM_ACCESS_FLAGS_PROT_READWRITE ? PROT_READ | PROT_WRITE
		 : fl == CU_MEM_ACCESS_FLAGS_PROT_READ ? PROT_READ : PROT_NONE;
	LOCK();
	/* The whole range must be mapped. */
	CUresult rc = CUDA_SUCCESS;
	for (uintptr_t p = ptr, n = size; n && !rc;) {
		struct vmap *m = vmap_find_locked(p);
		if (!m) {
			rc = CUDA_ERROR_INVALID_VALUE;
			break;
		}
		size_t chunk = m->size - (p - m->base);
		if (chunk > n)
			chunk = n;
		p += chunk;
		n -= chunk;
	}
	if (!rc && mprotect((void *)ptr, size, prot))
		rc = CUDA_ERROR_INVALID_VALUE;
	if (!rc)
		for (struct vmap *m = g_vmaps; m; m = m->next)
			if (m->base < ptr + size && ptr < m->base + m->size)
				m->access = fl;
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc,
				  size_t count)
TRACE(cuMemSetAccess, vmm_set_access(ptr, size, desc, count), ptr, size, desc, count)

static CUresult vmm_get_access(unsigned long long *flags, const CUmemLocation *loc, CUdeviceptr p)
{
	NEED_INIT();
	if (!flags || !loc || loc->type != CU_MEM_LOCATION_TYPE_DEVICE)
		return CUDA_ERROR_INVALID_VALUE;
	if (loc->id != 0)
		return CUDA_ERROR_INVALID_DEVICE;
	LOCK();
	struct vmap *m = vmap_find_locked(p);
	if (m)
		*flags = m->access;
	UNLOCK();
	return m ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

FC_EXPORT CUresult cuMemGetAccess(unsigned long long *flags, const CUmemLocation *location,
				  CUdeviceptr ptr)
TRACE(cuMemGetAccess, vmm_get_access(flags, location, ptr), flags, location, ptr)

static CUresult vmm_retain(CUmemGenericAllocationHandle *h, void *addr)
{
	NEED_INIT();
	if (!h)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	struct vmap *m = vmap_find_locked((uintptr_t)addr);
	if (m) {
		m->ph->refs++;
		*h = m->ph->handle;
	}
	UNLOCK();
	return m ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

FC_EXPORT CUresult cuMemRetainAllocationHandle(CUmemGenericAllocationHandle *handle, void *addr)
TRACE(cuMemRetainAllocationHandle, vmm_retain(handle, addr), handle, addr)

/* An exported handle or a dma-buf may be imported by another process at any
 * time: the physical memory stays alive for the rest of this process. */
static CUresult vmm_share_fd(struct vphys *ph, int *fd_out)
{
	int fd = dup(ph->fd);
	if (fd < 0)
		return CUDA_ERROR_OUT_OF_MEMORY;
	ph->refs++;
	*fd_out = fd;
	return CUDA_SUCCESS;
}

static CUresult vmm_export(void *out, CUmemGenericAllocationHandle h, CUmemAllocationHandleType type,
			   unsigned long long flags)
{
	NEED_INIT();
	if (!out || flags || type != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	struct vphys *ph = phys_find_locked(h);
	CUresult rc = ph && ph->refs > 0 ? vmm_share_fd(ph, out) : CUDA_ERROR_INVALID_VALUE;
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuMemExportToShareableHandle(void *shareableHandle, CUmemGenericAllocationHandle handle,
						CUmemAllocationHandleType handleType, unsigned long long flags)
TRACE(cuMemExportToShareableHandle, vmm_export(shareableHandle, handle, handleType, flags), shareableHandle,
      handle, handleType, flags)

static CUresult vmm_dmabuf(void *out, CUdeviceptr p, size_t size, CUmemRangeHandleType type,
			   unsigned long long flags)
{
	NEED_INIT();
	if (!out || flags || type != CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	struct vmap *m = vmap_find_locked(p);
	CUresult rc = m && size <= m->size - (p - m->base) ? vmm_share_fd(m->ph, out) : CUDA_ERROR_INVALID_VALUE;
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuMemGetHandleForAddressRange(void *handle, CUdeviceptr dptr, size_t size,
						 CUmemRangeHandleType handleType, unsigned long long flags)
TRACE(cuMemGetHandleForAddressRange, vmm_dmabuf(handle, dptr, size, handleType, flags), handle, dptr, size,
      handleType, flags)

static CUresult vmm_get_prop(CUmemAllocationProp *prop, CUmemGenericAllocationHandle h)
{
	NEED_INIT();
	if (!prop)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	struct vphys *ph = phys_find_locked(h);
	if (ph)
		*prop = ph->prop;
	UNLOCK();
	return ph ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

FC_EXPORT CUresult cuMemGetAllocationPropertiesFromHandle(CUmemAllocationProp *prop,
							  CUmemGenericAllocationHandle handle)
TRACE(cuMemGetAllocationPropertiesFromHandle, vmm_get_prop(prop, handle), prop, handle)

static CUresult vmm_gran(size_t *g, const CUmemAllocationProp *prop)
{
	NEED_INIT();
	if (!g || !prop || prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
		return CUDA_ERROR_INVALID_VALUE;
	if (prop->location.id != 0)
		return CUDA_ERROR_INVALID_DEVICE;
	*g = GRAN;
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuMemGetAllocationGranularity(size_t *granularity, const CUmemAllocationProp *prop,
						 CUmemAllocationGranularity_flags option)
TRACE(cuMemGetAllocationGranularity, vmm_gran(granularity, prop), granularity, prop, option)

/* ---------------------------------------------------------- copies, sets */

#define H(x) ((uintptr_t)(x))

FC_EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount)
TRACE(cuMemcpyHtoD_v2, copy_op(dstDevice, 1, H(srcHost), 0, ByteCount, 0, NULL, 0), dstDevice,
      srcHost, ByteCount)
FC_EXPORT CUresult cuMemcpyHtoD_v2_ptds(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount)
TRACE(cuMemcpyHtoD_v2_ptds, copy_op(dstDevice, 1, H(srcHost), 0, ByteCount, 0, NULL, 0),
      dstDevice, srcHost, ByteCount)
FC_EXPORT CUresult cuMemcpyDtoH_v2(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount)
TRACE(cuMemcpyDtoH_v2, copy_op(H(dstHost), 0, srcDevice, 1, ByteCount, 0, NULL, 0), dstHost,
      srcDevice, ByteCount)
FC_EXPORT CUresult cuMemcpyDtoH_v2_ptds(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount)
TRACE(cuMemcpyDtoH_v2_ptds, copy_op(H(dstHost), 0, srcDevice, 1, ByteCount, 0, NULL, 0),
      dstHost, srcDevice, ByteCount)
FC_EXPORT CUresult cuMemcpyDtoD_v2(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount)
TRACE(cuMemcpyDtoD_v2, copy_op(dstDevice, 1, srcDevice, 1, ByteCount, 0, NULL, 0), dstDevice,
      srcDevice, ByteCount)
FC_EXPORT CUresult cuMemcpyDtoD_v2_ptds(CUdeviceptr dstDevice, CUdeviceptr srcDevice,
					size_t ByteCount)
TRACE(cuMemcpyDtoD_v2_ptds, copy_op(dstDevice, 1, srcDevice, 1, ByteCount, 0, NULL, 0),
      dstDevice, srcDevice, ByteCount)
FC_EXPORT CUresult cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount)
TRACE(cuMemcpy, copy_op(dst, 1, src, 1, ByteCount, 1, NULL, 0), dst, src, ByteCount)
FC_EXPORT CUresult cuMemcpy_ptds(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount)
TRACE(cuMemcpy_ptds, copy_op(dst, 1, src, 1, ByteCount, 1, NULL, 0), dst, src, ByteCount)

FC_EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dstDevice, const void *srcHost,
					size_t ByteCount, CUstream hStream)
TRACE(cuMemcpyHtoDAsync_v2, copy_op(dstDevice, 1, H(srcHost), 0, ByteCount, 0, hStream, 1),
      dstDevice, srcHost, ByteCount, hStream)
FC_EXPORT CUresult cuMemcpyHtoDAsync_v2_ptsz(CUdeviceptr dstDevice, const void *srcHost,
					     size_t ByteCount, CUstream hStream)
TRACE(cuMemcpyHtoDAsync_v2_ptsz, copy_op(dstDevice, 1, H(srcHost), 0, ByteCount, 0, hStream, 1),
      dstDevice, srcHost, ByteCount, hStream)
FC_EXPORT CUresult cuMemcpyDtoHAsync_v2(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount,
					CUstream hStream)
TRACE(cuMemcpyDtoHAsync_v2, copy_op(H(dstHost), 0, srcDevice, 1, ByteCount, 0, hStream, 1),
      dstHost, srcDevice, ByteCount, hStream)
FC_EXPORT CUresult cuMemcpyDtoHAsync_v2_ptsz(void *dstHost, CUdeviceptr srcDevice,
					     size_t ByteCount, CUstream hStream)
TRACE(cuMemcpyDtoHAsync_v2_ptsz, copy_op(H(dstHost), 0, srcDevice, 1, ByteCount, 0, hStream, 1),
      dstHost, srcDevice, ByteCount, hStream)
FC_EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dstDevice, CUdeviceptr srcDevice,
					size_t ByteCount, CUstream hStream)
TRACE(cuMemcpyDtoDAsync_v2, copy_op(dstDevice, 1, srcDevice, 1, ByteCount, 0, hStream, 1),
      dstDevice, srcDevice, ByteCount, hStream)
FC_EXPORT CUresult cuMemcpyDtoDAsync_v2_ptsz(CUdeviceptr dstDevice, CUdeviceptr srcDevice,
					     size_t ByteCount, CUstream hStream)
TRACE(cuMemcpyDtoDAsync_v2_ptsz, copy_op(dstDevice, 1, srcDevice, 1, ByteCount, 0, hStream, 1),
      dstDevice, srcDevice, ByteCount, hStream)
FC_EXPORT CUresult cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount,
				 CUstream hStream)
TRACE(cuMemcpyAsync, copy_op(dst, 1, src, 1, ByteCount, 1, hStream, 1), dst, src, ByteCount,
      hStream)
FC_EXPORT CUresult cuMemcpyAsync_ptsz(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount,
				      CUstream hStream)
TRACE(cuMemcpyAsync_ptsz, copy_op(dst, 1, src, 1, ByteCount, 1, hStream, 1), dst, src,
      ByteCount, hStream)

FC_EXPORT CUresult cuMemsetD8_v2(CUdeviceptr dstDevice, unsigned char uc, size_t N)
TRACE(cuMemsetD8_v2, memset_op(dstDevice, uc, N, 1, NULL, 0), dstDevice, uc, N)
FC_EXPORT CUresult cuMemsetD8_v2_ptds(CUdeviceptr dstDevice, unsigned char uc, size_t N)
TRACE(cuMemsetD8_v2_ptds, memset_op(dstDevice, uc, N, 1, NULL, 0), dstDevice, uc, N)
FC_EXPORT CUresult cuMemsetD16_v2(CUdeviceptr dstDevice, unsigned short us, size_t N)
TRACE(cuMemsetD16_v2, memset_op(dstDevice, us, N, 2, NULL, 0), dstDevice, us, N)
FC_EXPORT CUresult cuMemsetD16_v2_ptds(CUdeviceptr dstDevice, unsigned short us, size_t N)
TRACE(cuMemsetD16_v2_ptds, memset_op(dstDevice, us, N, 2, NULL, 0), dstDevice, us, N)
FC_EXPORT CUresult cuMemsetD32_v2(CUdeviceptr dstDevice, unsigned int ui, size_t N)
TRACE(cuMemsetD32_v2, memset_op(dstDevice, ui, N, 4, NULL, 0), dstDevice, ui, N)
FC_EXPORT CUresult cuMemsetD32_v2_ptds(CUdeviceptr dstDevice, unsigned int ui, size_t N)
TRACE(cuMemsetD32_v2_ptds, memset_op(dstDevice, ui, N, 4, NULL, 0), dstDevice, ui, N)
FC_EXPORT CUresult cuMemsetD8Async(CUdeviceptr dstDevice, unsigned char uc, size_t N,
				   CUstream hStream)
TRACE(cuMemsetD8Async, memset_op(dstDevice, uc, N, 1, hStream, 1), dstDevice, uc, N, hStream)
FC_EXPORT CUresult cuMemsetD8Async_ptsz(CUdeviceptr dstDevice, unsigned char uc, size_t N,
					CUstream hStream)
TRACE(cuMemsetD8Async_ptsz, memset_op(dstDevice, uc, N, 1, hStream, 1), dstDevice, uc, N,
      hStream)
FC_EXPORT CUresult cuMemsetD16Async(CUdeviceptr dstDevice, unsigned short us, size_t N,
				    CUstream hStream)
TRACE(cuMemsetD16Async, memset_op(dstDevice, us, N, 2, hStream, 1), dstDevice, us, N, hStream)
FC_EXPORT CUresult cuMemsetD16Async_ptsz(CUdeviceptr dstDevice, unsigned short us, size_t N,
					 CUstream hStream)
TRACE(cuMemsetD16Async_ptsz, memset_op(dstDevice, us, N, 2, hStream, 1), dstDevice, us, N,
      hStream)
FC_EXPORT CUresult cuMemsetD32Async(CUdeviceptr dstDevice, unsigned int ui, size_t N,
				    CUstream hStream)
TRACE(cuMemsetD32Async, memset_op(dstDevice, ui, N, 4, hStream, 1), dstDevice, ui, N, hStream)
FC_EXPORT CUresult cuMemsetD32Async_ptsz(CUdeviceptr dstDevice, unsigned int ui, size_t N,
					 CUstream hStream)
TRACE(cuMemsetD32Async_ptsz, memset_op(dstDevice, ui, N, 4, hStream, 1), dstDevice, ui, N,
      hStream)

/* ---------------------------------------------------------------- streams */

static CUresult stream_create(CUstream *ph, unsigned flags, int prio)
{
	NEED_INIT();
	if (!ph || (flags & ~(unsigned)CU_STREAM_NON_BLOCKING))
		return CUDA_ERROR_INVALID_VALUE;
	CUcontext c;
	LOCK();
	CUresult rc = need_ctx_locked(&c);
	struct CUstream_st *s = rc ? NULL : calloc(1, sizeof(*s));
	if (!rc && !s)
		rc = CUDA_ERROR_OUT_OF_MEMORY;
	if (!rc) {
		s->ctx = c;
		s->flags = flags;
		s->priority = prio < -5 ? -5 : prio > 0 ? 0 : prio;
		s->next = g_streams;
		g_streams = s;
		*ph = s;
	}
	UNLOCK();
	if (!rc)
		emit_resource(CUPTI_CBID_RESOURCE_STREAM_CREATED, c, s, NULL);
	return rc;
}

FC_EXPORT CUresult cuStreamCreate(CUstream *phStream, unsigned int Flags)
TRACE(cuStreamCreate, stream_create(phStream, Flags, 0), phStream, Flags)

FC_EXPORT CUresult cuStreamCreateWithPriority(CUstream *phStream, unsigned int flags, int priority)
TRACE(cuStreamCreateWithPriority, stream_create(phStream, flags, priority), phStream, flags,
      priority)

static CUresult stream_destroy(CUstream h)
{
	struct CUstream_st *s;
	NEED_INIT();
	LOCK();
	CUresult rc = stream_get_locked(h, &s);
	if (!rc && !s)
		rc = CUDA_ERROR_INVALID_HANDLE;
	CUcontext c = s ? s->ctx : NULL;
	UNLOCK();
	if (rc)
		return rc;
	emit_resource(CUPTI_CBID_RESOURCE_STREAM_DESTROY_STARTING, c, h, NULL);
	LOCK();
	rc = CUDA_ERROR_INVALID_HANDLE;
	for (struct CUstream_st **pp = &g_streams; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			opq_drain_locked(&s->pending); /* work queued before a destroy completes */
			free(s->pending.ops);
			*pp = s->next;
			if (s->cap_graph) {
				free(s->cap_graph->ops);
				free(s->cap_graph);
			}
			free(s);
			rc = CUDA_SUCCESS;
			break;
		}
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuStreamDestroy_v2(CUstream hStream)
TRACE(cuStreamDestroy_v2, stream_destroy(hStream), hStream)

FC_EXPORT CUresult cuStreamDestroy(CUstream hStream)
TRACE(cuStreamDestroy, stream_destroy(hStream), hStream)

/* Synchronize and query: fail on a capturing stream, as the real driver. */
static CUresult stream_sync(CUstream h)
{
	struct CUstream_st *s;
	NEED_INIT();
	LOCK();
	CUresult rc = stream_get_locked(h, &s);
	if (!rc && s && s->cap_status != CU_STREAM_CAPTURE_STATUS_NONE) {
		s->cap_status = CU_STREAM_CAPTURE_STATUS_INVALIDATED;
		rc = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
	}
	if (!rc && !s && unsafe_call_locked())
		rc = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
	if (!rc) {
		if (s)
			opq_drain_locked(&s->pending);
		else
			drain_all_locked(cur_ctx(), 1);
		rc = g_sticky;
	}
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuStreamSynchronize(CUstream hStream)
TRACE(cuStreamSynchronize, stream_sync(hStream), hStream)
FC_EXPORT CUresult cuStreamSynchronize_ptsz(CUstream hStream)
TRACE(cuStreamSynchronize_ptsz, stream_sync(hStream), hStream)
FC_EXPORT CUresult cuStreamQuery(CUstream hStream)
TRACE(cuStreamQuery, stream_sync(hStream), hStream)
FC_EXPORT CUresult cuStreamQuery_ptsz(CUstream hStream)
TRACE(cuStreamQuery_ptsz, stream_sync(hStream), hStream)

static CUresult event_get_locked(CUevent h, struct CUevent_st **out)
{
	for (struct CUevent_st *e = g_events; e; e = e->next)
		if (e == h) {
			*out = e;
			return CUDA_SUCCESS;
		}
	return CUDA_ERROR_INVALID_HANDLE;
}

static CUresult stream_wait_event(CUstream h, CUevent ev, unsigned flags)
{
	struct CUstream_st *s;
	struct CUevent_st *e;
	(void)flags;
	NEED_INIT();
	LOCK();
	CUresult rc = stream_get_locked(h, &s);
	if (!rc)
		rc = event_get_locked(ev, &e);
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuStreamWaitEvent(CUstream hStream, CUevent hEvent, unsigned int Flags)
TRACE(cuStreamWaitEvent, stream_wait_event(hStream, hEvent, Flags), hStream, hEvent, Flags)
FC_EXPORT CUresult cuStreamWaitEvent_ptsz(CUstream hStream, CUevent hEvent, unsigned int Flags)
TRACE(cuStreamWaitEvent_ptsz, stream_wait_event(hStream, hEvent, Flags), hStream, hEvent, Flags)

/* ----------------------------------------------------------------- events */

static CUresult event_create(CUevent *ph, unsigned flags)
{
	NEED_INIT();
	if (!ph)
		return CUDA_ERROR_INVALID_VALUE;
	CUcontext c;
	LOCK();
	CUresult rc = need_ctx_locked(&c);
	struct CUevent_st *e = rc ? NULL : calloc(1, sizeof(*e));
	if (!rc && !e)
		rc = CUDA_ERROR_OUT_OF_MEMORY;
	if (!rc) {
		e->ctx = c;
		e->flags = flags;
		e->next = g_events;
		g_events = e;
		*ph = e;
	}
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuEventCreate(CUevent *phEvent, unsigned int Flags)
TRACE(cuEventCreate, event_create(phEvent, Flags), phEvent, Flags)

static CUresult event_destroy(CUevent h)
{
	NEED_INIT();
	CUresult rc = CUDA_ERROR_INVALID_HANDLE;
	LOCK();
	for (struct CUevent_st **pp = &g_events; *pp; pp = &(*pp)->next)
		if (*pp == h) {
			*pp = h->next;
			free(h);
			rc = CUDA_SUCCESS;
			break;
		}
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuEventDestroy_v2(CUevent hEvent)
TRACE(cuEventDestroy_v2, event_destroy(hEvent), hEvent)
FC_EXPORT CUresult cuEventDestroy(CUevent hEvent)
TRACE(cuEventDestroy, event_destroy(hEvent), hEvent)

static CUresult event_record(CUevent h, CUstream hs)
{
	struct CUstream_st *s;
	struct CUevent_st *e;
	NEED_INIT();
	LOCK();
	CUresult rc = stream_get_locked(hs, &s);
	if (!rc)
		rc = event_get_locked(h, &e);
	if (!rc) {
		e->recorded = 1;
		clock_gettime(CLOCK_MONOTONIC, &e->ts);
	}
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuEventRecord(CUevent hEvent, CUstream hStream)
TRACE(cuEventRecord, event_record(hEvent, hStream), hEvent, hStream)
FC_EXPORT CUresult cuEventRecord_ptsz(CUevent hEvent, CUstream hStream)
TRACE(cuEventRecord_ptsz, event_record(hEvent, hStream), hEvent, hStream)

static CUresult event_query(CUevent h)
{
	struct CUevent_st *e;
	NEED_INIT();
	LOCK();
	CUresult rc = event_get_locked(h, &e);
	if (!rc)
		drain_all_locked(NULL, 0); /* events complete after everything queued before them */
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuEventQuery(CUevent hEvent)
TRACE(cuEventQuery, event_query(hEvent), hEvent)
FC_EXPORT CUresult cuEventSynchronize(CUevent hEvent)
TRACE(cuEventSynchronize, event_query(hEvent), hEvent)

static CUresult event_elapsed(float *ms, CUevent a, CUevent b)
{
	struct CUevent_st *ea, *eb;
	NEED_INIT();
	if (!ms)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	CUresult rc = event_get_locked(a, &ea);
	if (!rc)
		rc = event_get_locked(b, &eb);
	if (!rc && (!ea->recorded || !eb->recorded || (ea->flags & CU_EVENT_DISABLE_TIMING) ||
		    (eb->flags & CU_EVENT_DISABLE_TIMING)))
		rc = CUDA_ERROR_INVALID_HANDLE;
	if (!rc)
		*ms = (float)((double)(eb->ts.tv_sec - ea->ts.tv_sec) * 1e3 +
			      (double)(eb->ts.tv_nsec - ea->ts.tv_nsec) / 1e6);
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuEventElapsedTime(float *pMilliseconds, CUevent hStart, CUevent hEnd)
TRACE(cuEventElapsedTime, event_elapsed(pMilliseconds, hStart, hEnd), pMilliseconds, hStart, hEnd)
FC_EXPORT CUresult cuEventElapsedTime_v2(float *pMilliseconds, CUevent hStart, CUevent hEnd)
TRACE(cuEventElapsedTime_v2, event_elapsed(pMilliseconds, hStart, hEnd), pMilliseconds, hStart,
      hEnd)

/* ---------------------------------------------------------------- capture */

static CUgraph graph_new_locked(void)
{
	CUgraph g = calloc(1, sizeof(*g));
	if (g) {
		g->next = g_graphs;
		g_graphs = g;
	}
	return g;
}

static CUresult capture_begin(CUstream h, CUstreamCaptureMode mode)
{
	struct CUstream_st *s;
	NEED_INIT();
	if (mode != CU_STREAM_CAPTURE_MODE_GLOBAL && mode != CU_STREAM_CAPTURE_MODE_THREAD_LOCAL &&
	    mode != CU_STREAM_CAPTURE_MODE_RELAXED)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	CUresult rc = stream_get_locked(h, &s);
	if (!rc && !s)
		rc = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED; /* legacy/per-thread stream */
	if (!rc && s->cap_status != CU_STREAM_CAPTURE_STATUS_NONE)
		rc = CUDA_ERROR_ILLEGAL_STATE;
	CUgraph g = rc ? NULL : graph_new_locked();
	if (!rc && !g)
		rc = CUDA_ERROR_OUT_OF_MEMORY;
	if (!rc) {
		s->cap_status = CU_STREAM_CAPTURE_STATUS_ACTIVE;
		s->cap_mode = mode;
		s->cap_id = g_next_capture++;
		s->cap_graph = g;
		s->cap_thread = pthread_self();
	}
	CUcontext c = s ? s->ctx : NULL;
	UNLOCK();
	if (!rc)
		emit_graph(CUPTI_CBID_RESOURCE_GRAPH_CREATED, c, g, NULL);
	return rc;
}

FC_EXPORT CUresult cuStreamBeginCapture_v2(CUstream hStream, CUstreamCaptureMode mode)
TRACE(cuStreamBeginCapture_v2, capture_begin(hStream, mode), hStream, mode)
FC_EXPORT CUresult cuStreamBeginCapture_v2_ptsz(CUstream hStream, CUstreamCaptureMode mode)
TRACE(cuStreamBeginCapture_v2_ptsz, capture_begin(hStream, mode), hStream, mode)
FC_EXPORT CUresult cuStreamBeginCapture(CUstream hStream)
TRACE(cuStreamBeginCapture, capture_begin(hStream, CU_STREAM_CAPTURE_MODE_GLOBAL), hStream)
FC_EXPORT CUresult cuStreamBeginCapture_ptsz(CUstream hStream)
TRACE(cuStreamBeginCapture_ptsz, capture_begin(hStream, CU_STREAM_CAPTURE_MODE_GLOBAL), hStream)

static void graph_free_locked(CUgraph g)
{
	for (CUgraph *pp = &g_graphs; *pp; pp = &(*pp)->next)
		if (*pp == g) {
			*pp = g->next;
			break;
		}
	free(g->ops);
	free(g);
}

static CUresult capture_end(CUstream h, CUgraph *out)
{
	struct CUstream_st *s;
	NEED_INIT();
	if (!out)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	CUresult rc = stream_get_locked(h, &s);
	if (!rc && (!s || s->cap_status == CU_STREAM_CAPTURE_STATUS_NONE))
		rc = CUDA_ERROR_ILLEGAL_STATE;
	if (!rc && s->cap_mode != CU_STREAM_CAPTURE_MODE_RELAXED &&
	    !pthread_equal(s->cap_thread, pthread_self()))
		rc = CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD;
	CUgraph g = NULL, dead = NULL;
	if (!rc) {
		g = s->cap_graph;
		if (s->cap_status == CU_STREAM_CAPTURE_STATUS_INVALIDATED) {
			dead = g;
			g = NULL;
			rc = CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
		}
		s->cap_status = CU_STREAM_CAPTURE_STATUS_NONE;
		s->cap_graph = NULL;
		*out = g;
	}
	CUcontext c = s ? s->ctx : NULL;
	UNLOCK();
	if (dead) {
		emit_graph(CUPTI_CBID_RESOURCE_GRAPH_DESTROY_STARTING, c, dead, NULL);
		LOCK();
		graph_free_locked(dead);
		UNLOCK();
	}
	return rc;
}

FC_EXPORT CUresult cuStreamEndCapture(CUstream hStream, CUgraph *phGraph)
TRACE(cuStreamEndCapture, capture_end(hStream, phGraph), hStream, phGraph)
FC_EXPORT CUresult cuStreamEndCapture_ptsz(CUstream hStream, CUgraph *phGraph)
TRACE(cuStreamEndCapture_ptsz, capture_end(hStream, phGraph), hStream, phGraph)

static CUresult capture_info(CUstream h, CUstreamCaptureStatus *st, cuuint64_t *id, CUgraph *g,
			     const CUgraphNode **deps, const CUgraphEdgeData **edges, size_t *ndeps)
{
	struct CUstream_st *s;
	NEED_INIT();
	if (!st)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	CUresult rc = stream_get_locked(h, &s);
	if (!rc) {
		*st = s ? s->cap_status : CU_STREAM_CAPTURE_STATUS_NONE;
		int on = *st != CU_STREAM_CAPTURE_STATUS_NONE;
		if (id && on)
			*id = s->cap_id;
		if (g)
			*g = on ? s->cap_graph : NULL;
		if (deps)
			*deps = NULL;
		if (edges)
			*edges = NULL;
		if (ndeps)
			*ndeps = 0;
	}
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuStreamIsCapturing(CUstream hStream, CUstreamCaptureStatus *captureStatus)
TRACE(cuStreamIsCapturing, capture_info(hStream, captureStatus, NULL, NULL, NULL, NULL, NULL),
      hStream, captureStatus)
FC_EXPORT CUresult cuStreamIsCapturing_ptsz(CUstream hStream, CUstreamCaptureStatus *captureStatus)
TRACE(cuStreamIsCapturing_ptsz, capture_info(hStream, captureStatus, NULL, NULL, NULL, NULL, NULL),
      hStream, captureStatus)
FC_EXPORT CUresult cuStreamGetCaptureInfo(CUstream hStream, CUstreamCaptureStatus *captureStatus_out,
					  cuuint64_t *id_out)
TRACE(cuStreamGetCaptureInfo, capture_info(hStream, captureStatus_out, id_out, NULL, NULL, NULL,
					   NULL), hStream, captureStatus_out, id_out)
FC_EXPORT CUresult cuStreamGetCaptureInfo_ptsz(CUstream hStream,
					       CUstreamCaptureStatus *captureStatus_out,
					       cuuint64_t *id_out)
TRACE(cuStreamGetCaptureInfo_ptsz, capture_info(hStream, captureStatus_out, id_out, NULL, NULL,
						NULL, NULL), hStream, captureStatus_out, id_out)
FC_EXPORT CUresult cuStreamGetCaptureInfo_v2(CUstream hStream,
					     CUstreamCaptureStatus *captureStatus_out,
					     cuuint64_t *id_out, CUgraph *graph_out,
					     const CUgraphNode **dependencies_out,
					     size_t *numDependencies_out)
TRACE(cuStreamGetCaptureInfo_v2, capture_info(hStream, captureStatus_out, id_out, graph_out,
					      dependencies_out, NULL, numDependencies_out),
      hStream, captureStatus_out, id_out, graph_out, dependencies_out, numDependencies_out)
FC_EXPORT CUresult cuStreamGetCaptureInfo_v2_ptsz(CUstream hStream,
						  CUstreamCaptureStatus *captureStatus_out,
						  cuuint64_t *id_out, CUgraph *graph_out,
						  const CUgraphNode **dependencies_out,
						  size_t *numDependencies_out)
TRACE(cuStreamGetCaptureInfo_v2_ptsz, capture_info(hStream, captureStatus_out, id_out, graph_out,
						   dependencies_out, NULL, numDependencies_out),
      hStream, captureStatus_out, id_out, graph_out, dependencies_out, numDependencies_out)
FC_EXPORT CUresult cuStreamGetCaptureInfo_v3(CUstream hStream,
					     CUstreamCaptureStatus *captureStatus_out,
					     cuuint64_t *id_out, CUgraph *graph_out,
					     const CUgraphNode **dependencies_out,
					     const CUgraphEdgeData **edgeData_out,
					     size_t *numDependencies_out)
TRACE(cuStreamGetCaptureInfo_v3, capture_info(hStream, captureStatus_out, id_out, graph_out,
					      dependencies_out, edgeData_out, numDependencies_out),
      hStream, captureStatus_out, id_out, graph_out, dependencies_out, edgeData_out,
      numDependencies_out)
FC_EXPORT CUresult cuStreamGetCaptureInfo_v3_ptsz(CUstream hStream,
						  CUstreamCaptureStatus *captureStatus_out,
						  cuuint64_t *id_out, CUgraph *graph_out,
						  const CUgraphNode **dependencies_out,
						  const CUgraphEdgeData **edgeData_out,
						  size_t *numDependencies_out)
TRACE(cuStreamGetCaptureInfo_v3_ptsz, capture_info(hStream, captureStatus_out, id_out, graph_out,
						   dependencies_out, edgeData_out,
						   numDependencies_out),
      hStream, captureStatus_out, id_out, graph_out, dependencies_out, edgeData_out,
      numDependencies_out)

static CUresult exchange_mode(CUstreamCaptureMode *mode)
{
	NEED_INIT();
	if (!mode || (*mode != CU_STREAM_CAPTURE_MODE_GLOBAL &&
		      *mode != CU_STREAM_CAPTURE_MODE_THREAD_LOCAL &&
		      *mode != CU_STREAM_CAPTURE_MODE_RELAXED))
		return CUDA_ERROR_INVALID_VALUE;
	CUstreamCaptureMode old = t_mode;
	t_mode = *mode;
	*mode = old;
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuThreadExchangeStreamCaptureMode(CUstreamCaptureMode *mode)
TRACE(cuThreadExchangeStreamCaptureMode, exchange_mode(mode), mode)

/* ----------------------------------------------------------------- graphs */

static CUresult graph_create(CUgraph *out, unsigned flags)
{
	NEED_INIT();
	if (!out || flags)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	CUgraph g = graph_new_locked();
	UNLOCK();
	if (!g)
		return CUDA_ERROR_OUT_OF_MEMORY;
	*out = g;
	emit_graph(CUPTI_CBID_RESOURCE_GRAPH_CREATED, cur_ctx(), g, NULL);
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuGraphCreate(CUgraph *phGraph, unsigned int flags)
TRACE(cuGraphCreate, graph_create(phGraph, flags), phGraph, flags)

static int graph_alive_locked(CUgraph g)
{
	for (CUgraph p = g_graphs; p; p = p->next)
		if (p == g)
			return 1;
	return 0;
}

static CUresult graph_destroy(CUgraph g)
{
	NEED_INIT();
	LOCK();
	int ok = graph_alive_locked(g);
	for (struct CUstream_st *s = g_streams; ok && s; s = s->next)
		if (s->cap_graph == g)
			ok = 0; /* still being captured into */
	UNLOCK();
	if (!ok)
		return CUDA_ERROR_INVALID_VALUE;
	emit_graph(CUPTI_CBID_RESOURCE_GRAPH_DESTROY_STARTING, cur_ctx(), g, NULL);
	LOCK();
	if (graph_alive_locked(g))
		graph_free_locked(g);
	UNLOCK();
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuGraphDestroy(CUgraph hGraph)
TRACE(cuGraphDestroy, graph_destroy(hGraph), hGraph)

static CUresult graph_instantiate(CUgraphExec *out, CUgraph g)
{
	NEED_INIT();
	if (!out)
		return CUDA_ERROR_INVALID_VALUE;
	CUcontext c;
	LOCK();
	CUresult rc = need_ctx_locked(&c);
	if (!rc && !graph_alive_locked(g))
		rc = CUDA_ERROR_INVALID_VALUE;
	if (!rc && !fits_locked(cfg.graph_bytes))
		rc = CUDA_ERROR_OUT_OF_MEMORY;
	struct CUgraphExec_st *e = rc ? NULL : calloc(1, sizeof(*e));
	if (!rc && e && g->n) {
		e->ops = malloc(g->n * sizeof(*e->ops));
		if (e->ops)
			memcpy(e->ops, g->ops, g->n * sizeof(*e->ops));
		else {
			free(e);
			e = NULL;
		}
	}
	if (!rc && !e)
		rc = CUDA_ERROR_OUT_OF_MEMORY;
	if (!rc) {
		e->n = g->n;
		e->ctx = c;
		e->graph = g;
		e->next = g_execs;
		g_execs = e;
		g_graph_bytes += cfg.graph_bytes;
		*out = e;
	}
	UNLOCK();
	if (!rc)
		emit_graph(CUPTI_CBID_RESOURCE_GRAPHEXEC_CREATED, c, g, e);
	return rc;
}

FC_EXPORT CUresult cuGraphInstantiateWithFlags(CUgraphExec *phGraphExec, CUgraph hGraph,
					       unsigned long long flags)
TRACE(cuGraphInstantiateWithFlags, graph_instantiate(phGraphExec, hGraph), phGraphExec, hGraph,
      flags)

static CUresult graph_instantiate_legacy(CUgraphExec *out, CUgraph g, CUgraphNode *err_node,
					 char *log, size_t logsz)
{
	if (err_node)
		*err_node = NULL;
	if (log && logsz)
		log[0] = 0;
	return graph_instantiate(out, g);
}

FC_EXPORT CUresult cuGraphInstantiate(CUgraphExec *phGraphExec, CUgraph hGraph,
				      CUgraphNode *phErrorNode, char *logBuffer, size_t bufferSize)
TRACE(cuGraphInstantiate, graph_instantiate_legacy(phGraphExec, hGraph, phErrorNode, logBuffer,
						   bufferSize),
      phGraphExec, hGraph, phErrorNode, logBuffer, bufferSize)
FC_EXPORT CUresult cuGraphInstantiate_v2(CUgraphExec *phGraphExec, CUgraph hGraph,
					 CUgraphNode *phErrorNode, char *logBuffer, size_t bufferSize)
TRACE(cuGraphInstantiate_v2, graph_instantiate_legacy(phGraphExec, hGraph, phErrorNode, logBuffer,
						      bufferSize),
      phGraphExec, hGraph, phErrorNode, logBuffer, bufferSize)

static CUresult graph_instantiate_params(CUgraphExec *out, CUgraph g,
					 CUDA_GRAPH_INSTANTIATE_PARAMS *p)
{
	CUresult rc = graph_instantiate(out, g);
	if (p) {
		p->hErrNode_out = NULL;
		p->result_out = rc ? CUDA_GRAPH_INSTANTIATE_ERROR : CUDA_GRAPH_INSTANTIATE_SUCCESS;
	}
	return rc;
}

FC_EXPORT CUresult cuGraphInstantiateWithParams(CUgraphExec *phGraphExec, CUgraph hGraph,
						CUDA_GRAPH_INSTANTIATE_PARAMS *instantiateParams)
TRACE(cuGraphInstantiateWithParams, graph_instantiate_params(phGraphExec, hGraph,
							     instantiateParams),
      phGraphExec, hGraph, instantiateParams)
FC_EXPORT CUresult cuGraphInstantiateWithParams_ptsz(CUgraphExec *phGraphExec, CUgraph hGraph,
						     CUDA_GRAPH_INSTANTIATE_PARAMS *instantiateParams)
TRACE(cuGraphInstantiateWithParams_ptsz, graph_instantiate_params(phGraphExec, hGraph,
								  instantiateParams),
      phGraphExec, hGraph, instantiateParams)

static int exec_alive_locked(CUgraphExec e)
{
	for (struct CUgraphExec_st *p = g_execs; p; p = p->next)
		if (p == e)
			return 1;
	return 0;
}

static CUresult exec_destroy(CUgraphExec e)
{
	NEED_INIT();
	LOCK();
	int ok = exec_alive_locked(e);
	CUcontext c = ok ? e->ctx : NULL;
	CUgraph g = ok ? e->graph : NULL;
	UNLOCK();
	if (!ok)
		return CUDA_ERROR_INVALID_VALUE;
	emit_graph(CUPTI_CBID_RESOURCE_GRAPHEXEC_DESTROY_STARTING, c, g, e);
	LOCK();
	for (struct CUgraphExec_st **pp = &g_execs; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			g_graph_bytes -= cfg.graph_bytes;
			free(e->ops);
			free(e);
			break;
		}
	UNLOCK();
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuGraphExecDestroy(CUgraphExec hGraphExec)
TRACE(cuGraphExecDestroy, exec_destroy(hGraphExec), hGraphExec)

static CUresult graph_launch(CUgraphExec e, CUstream h)
{
	struct CUstream_st *s;
	NEED_INIT();
	LOCK();
	CUresult rc = stream_get_locked(h, &s);
	if (!rc && !exec_alive_locked(e))
		rc = CUDA_ERROR_INVALID_VALUE;
	if (!rc && s && s->cap_status == CU_STREAM_CAPTURE_STATUS_INVALIDATED)
		rc = CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
	for (size_t i = 0; !rc && i < e->n; i++)
		rc = op_check_locked(&e->ops[i]);
	for (size_t i = 0; !rc && i < e->n; i++) {
		if (s && s->cap_status == CU_STREAM_CAPTURE_STATUS_ACTIVE)
			rc = graph_append_locked(s->cap_graph, &e->ops[i]);
		else
			op_run(&e->ops[i]);
	}
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuGraphLaunch(CUgraphExec hGraphExec, CUstream hStream)
TRACE(cuGraphLaunch, graph_launch(hGraphExec, hStream), hGraphExec, hStream)
FC_EXPORT CUresult cuGraphLaunch_ptsz(CUgraphExec hGraphExec, CUstream hStream)
TRACE(cuGraphLaunch_ptsz, graph_launch(hGraphExec, hStream), hGraphExec, hStream)

static CUresult graph_nodes(CUgraph g, CUgraphNode *nodes, size_t *n)
{
	NEED_INIT();
	if (!n)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	CUresult rc = graph_alive_locked(g) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
	if (!rc) {
		if (nodes)
			for (size_t i = 0; i < *n && i < g->n; i++)
				nodes[i] = (CUgraphNode)&g->ops[i];
		else
			*n = g->n;
	}
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuGraphGetNodes(CUgraph hGraph, CUgraphNode *nodes, size_t *numNodes)
TRACE(cuGraphGetNodes, graph_nodes(hGraph, nodes, numNodes), hGraph, nodes, numNodes)

/* ------------------------------------------------------ modules, libraries */

static uint32_t g_next_module = 1;

static CUresult module_load(CUmodule *out, const void *image)
{
	NEED_INIT();
	if (!out || !image)
		return CUDA_ERROR_INVALID_VALUE;
	CUcontext c;
	LOCK();
	CUresult rc = need_ctx_locked(&c);
	if (!rc && !cfg.lazy_loading && !fits_locked(cfg.module_bytes))
		rc = CUDA_ERROR_OUT_OF_MEMORY;
	struct CUmod_st *m = rc ? NULL : calloc(1, sizeof(*m));
	if (!rc && !m)
		rc = CUDA_ERROR_OUT_OF_MEMORY;
	if (!rc) {
		m->ctx = c;
		m->id = g_next_module++;
		m->loaded = !cfg.lazy_loading;
		m->fn.mod = m;
		m->next = g_mods;
		g_mods = m;
		g_module_bytes += m->loaded ? cfg.module_bytes : 0;
		g_nmods++;
		*out = m;
	}
	UNLOCK();
	if (!rc && m->loaded)
		emit_module(CUPTI_CBID_RESOURCE_MODULE_LOADED, c, m->id, image);
	return rc;
}

/* FAKECUDA_LAZY_LOADING: the module of `f` is loaded inside its first
 * launch, as CUDA_MODULE_LOADING=LAZY does (CUPTI says so from inside the
 * launch). */
static CUresult lazy_load(CUfunction f)
{
	LOCK();
	struct CUmod_st *m = NULL;
	for (struct CUmod_st *p = g_mods; p; p = p->next)
		if (&p->fn == f)
			m = p;
	CUresult rc = m ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
	int load = m && !m->loaded;
	if (load && !fits_locked(cfg.module_bytes))
		rc = CUDA_ERROR_OUT_OF_MEMORY;
	if (!rc && load) {
		m->loaded = 1;
		g_module_bytes += cfg.module_bytes;
	}
	CUcontext c = m ? m->ctx : NULL;
	uint32_t id = m ? m->id : 0;
	UNLOCK();
	if (!rc && load)
		emit_module(CUPTI_CBID_RESOURCE_MODULE_LOADED, c, id, NULL);
	return rc;
}

FC_EXPORT CUresult cuModuleLoadData(CUmodule *module, const void *image)
TRACE(cuModuleLoadData, module_load(module, image), module, image)
FC_EXPORT CUresult cuModuleLoadDataEx(CUmodule *module, const void *image, unsigned int numOptions,
				      CUjit_option *options, void **optionValues)
TRACE(cuModuleLoadDataEx, module_load(module, image), module, image, numOptions, options,
      optionValues)
FC_EXPORT CUresult cuModuleLoadFatBinary(CUmodule *module, const void *fatCubin)
TRACE(cuModuleLoadFatBinary, module_load(module, fatCubin), module, fatCubin)

static void kill_in(struct opq *q, CUmodule m)
{
	for (size_t i = 0; i < q->n; i++)
		if (q->ops[i].kind == OP_KERNEL && q->ops[i].mod == m)
			q->ops[i].kind = OP_DEAD;
}

/* Queued launches of m's kernels lose their code. */
static void kill_kernels_locked(CUmodule m)
{
	kill_in(&g_primary.null_pending, m);
	for (struct CUctx_st *x = g_ctxs; x; x = x->next)
		kill_in(&x->null_pending, m);
	for (struct CUstream_st *st = g_streams; st; st = st->next)
		kill_in(&st->pending, m);
}

static CUresult module_unload(CUmodule m)
{
	NEED_INIT();
	LOCK();
	int ok = 0;
	for (struct CUmod_st *p = g_mods; p; p = p->next)
		ok |= p == m;
	CUcontext c = ok ? m->ctx : NULL;
	uint32_t id = ok ? m->id : 0;
	UNLOCK();
	if (!ok)
		return CUDA_ERROR_INVALID_HANDLE;
	emit_module(CUPTI_CBID_RESOURCE_MODULE_UNLOAD_STARTING, c, id, NULL);
	LOCK();
	kill_kernels_locked(m);
	for (struct CUmod_st **pp = &g_mods; *pp; pp = &(*pp)->next)
		if (*pp == m) {
			*pp = m->next;
			g_module_bytes -= m->loaded ? cfg.module_bytes : 0;
			g_nmods--;
			free(m);
			break;
		}
	UNLOCK();
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuModuleUnload(CUmodule hmod)
TRACE(cuModuleUnload, module_unload(hmod), hmod)

/* Kernels: the fake runs memsaver's two (saver/kernels.cu) on the host:
 * the backup digest with the same arithmetic (saver/digest_mix.h), so the
 * skip-unchanged path of a pause is exercised without a GPU, and the restore
 * copy, which must read page-locked host memory within one range and write
 * mapped device memory, with a grid that covers its bytes.  Any other name
 * is the module's do-nothing function. */
static struct CUfunc_st digest, restore;

static CUresult module_get_function(CUfunction *out, CUmodule m, const char *name)
{
	NEED_INIT();
	if (!out || !m || !name)
		return CUDA_ERROR_INVALID_VALUE;
	struct CUfunc_st *f = !strcmp(name, "msv_digest") ? &digest : !strcmp(name, "msv_restore") ? &restore : NULL;
	if (!f) {
		*out = &m->fn;
		return CUDA_SUCCESS;
	}
	f->mod = m;
	*out = f;
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name)
TRACE(cuModuleGetFunction, module_get_function(hfunc, hmod, name), hfunc, hmod, name)

/* msv_restore(dst, src, len): 512 threads of 8 16-byte vectors a block,
 * run in stream order like a copy (queued under FAKECUDA_DEFER_ASYNC). */
static CUresult launch_restore(unsigned gx, unsigned bx, CUstream s, void **args)
{
	if (!args || bx != 512)
		return CUDA_ERROR_INVALID_VALUE;
	uintptr_t dst = (uintptr_t) * (CUdeviceptr *)args[0], src = (uintptr_t) * (CUdeviceptr *)args[1];
	uint64_t len = *(uint64_t *)args[2];
	LOCK();
	struct alloc *h = alloc_find_locked(src, ALLOC_REG);
	if (!h)
		h = alloc_find_locked(src, ALLOC_HOST);
	CUresult rc = (uint64_t)gx * 512 * 8 * 16 < len || (dst | src) % 16 || !h || len > h->base + h->size - src
			      ? CUDA_ERROR_ILLEGAL_ADDRESS
			      : CUDA_SUCCESS;
	if (!rc)
		g_restore_launches++;
	UNLOCK();
	struct op o = {.kind = OP_KERNEL, .mod = restore.mod, .dst = dst, .src = src, .count = len, .dst_dev = 1};
	return rc ? rc : stream_op(s, &o);
}

static CUresult launch(CUfunction f, unsigned gx, unsigned bx, CUstream s, void **args)
{
	NEED_INIT();
	if (!f || !gx || !bx)
		return CUDA_ERROR_INVALID_VALUE;
	if (f == &restore)
		return launch_restore(gx, bx, s, args);
	if (f != &digest)
		return lazy_load(f);
	if (!args)
		return CUDA_ERROR_INVALID_VALUE;
	const unsigned char *base = *(const unsigned char **)args[0];
	uint64_t len = *(uint64_t *)args[1], chunk = *(uint64_t *)args[2];
	uint64_t *out = *(uint64_t **)args[3];
	unsigned bpc = *(unsigned *)args[4];
	uint64_t chunks = bpc ? gx / bpc : 0;
	struct CUstream_st *st;
	LOCK();
	CUresult rc = stream_get_locked(s, &st);
	if (!rc && (!bpc || gx % bpc || chunks * chunk < len || check_dev_locked((uintptr_t)base, len, 0) ||
		    check_dev_locked((uintptr_t)out, (size_t)chunks * 16, 1)))
		rc = CUDA_ERROR_ILLEGAL_ADDRESS;
	/* Stream order: what was queued before the launch runs first
	 * (FAKECUDA_DEFER_ASYNC); the kernel itself runs now. */
	if (!rc)
		opq_drain_locked(st ? &st->pending : &cur_ctx()->null_pending);
	/* The GPU's blocks add into a zeroed buffer; the sums are the same. */
	for (uint64_t b = 0; !rc && b < chunks; b++) {
		uint64_t lo = b * chunk, hi = lo + chunk < len ? lo + chunk : len, a0 = 0, a1 = 0, n = 0;
		for (uint64_t off = lo; off < hi; off += 8, n++) {
			uint64_t v = 0;
			memcpy(&v, base + off, hi - off < 8 ? hi - off : 8);
			a0 += msv_digest_mix(v, n, MSV_DIGEST_KEY0);
			a1 += msv_digest_mix(v, n, MSV_DIGEST_KEY1);
		}
		out[2 * b] += a0;
		out[2 * b + 1] += a1;
	}
	UNLOCK();
	return rc;
}

FC_EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
				  unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
				  unsigned int sharedMemBytes, CUstream hStream, void **kernelParams, void **extra)
TRACE(cuLaunchKernel, launch(f, gridDimX, blockDimX, hStream, kernelParams), f, gridDimX, gridDimY, gridDimZ,
      blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream, kernelParams, extra)
FC_EXPORT CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
				       unsigned int gridDimZ, unsigned int blockDimX, unsigned int blockDimY,
				       unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,
				       void **kernelParams, void **extra)
TRACE(cuLaunchKernel_ptsz, launch(f, gridDimX, blockDimX, hStream, kernelParams), f, gridDimX, gridDimY,
      gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream, kernelParams, extra)

static CUresult library_load(CUlibrary *out, const void *code)
{
	NEED_INIT();
	if (!out || !code)
		return CUDA_ERROR_INVALID_VALUE;
	LOCK();
	CUresult rc = fits_locked(cfg.module_bytes) ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
	struct CUlib_st *l = rc ? NULL : calloc(1, sizeof(*l));
	if (!rc && !l)
		rc = CUDA_ERROR_OUT_OF_MEMORY;
	if (!rc) {
		l->id = g_next_module++;
		l->next = g_libs;
		g_libs = l;
		g_module_bytes += cfg.module_bytes;
		*out = l;
	}
	UNLOCK();
	if (!rc)
		emit_module(CUPTI_CBID_RESOURCE_MODULE_LOADED, cur_ctx(), l->id, code);
	return rc;
}

FC_EXPORT CUresult cuLibraryLoadData(CUlibrary *library, const void *code, CUjit_option *jitOptions,
				     void **jitOptionsValues, unsigned int numJitOptions,
				     CUlibraryOption *libraryOptions, void **libraryOptionValues,
				     unsigned int numLibraryOptions)
TRACE(cuLibraryLoadData, library_load(library, code), library, code, jitOptions,
      jitOptionsValues, numJitOptions, libraryOptions, libraryOptionValues, numLibraryOptions)

static CUresult library_unload(CUlibrary l)
{
	NEED_INIT();
	LOCK();
	int ok = 0;
	for (struct CUlib_st *p = g_libs; p; p = p->next)
		ok |= p == l;
	uint32_t id = ok ? l->id : 0;
	UNLOCK();
	if (!ok)
		return CUDA_ERROR_INVALID_HANDLE;
	emit_module(CUPTI_CBID_RESOURCE_MODULE_UNLOAD_STARTING, cur_ctx(), id, NULL);
	LOCK();
	for (struct CUlib_st **pp = &g_libs; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			g_module_bytes -= cfg.module_bytes;
			free(l);
			break;
		}
	UNLOCK();
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuLibraryUnload(CUlibrary library)
TRACE(cuLibraryUnload, library_unload(library), library)
