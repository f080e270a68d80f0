#include "tracer.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "callsite.h"
#include "classify.h"
#include "driver.h"
#include "log.h"
#include "options.h"
#include "proc_cmdline.h"
#include "pyframes.h"
#include "readings.h"
#include "thread.h"

#define MSV_MAX_DEVICES 64

static struct {
	pthread_mutex_t lock;
	int state; /* 0 not yet, 1 active, -1 off */
	struct msv_policy *policy;
	struct msv_trace_writer *log;
	int device_seen[MSV_MAX_DEVICES];
	int baseline_emitted;
} T = {.lock = PTHREAD_MUTEX_INITIALIZER};

static __thread struct msv_tls tls;

static void join(char *out, size_t len, const char *sep, const char *item);
static void ck_rebase(uint64_t used);

struct msv_tls *_msv_tls(void)
{
	return &tls;
}

int _msv_tracer_active(void)
{
	return T.state == 1;
}

const struct msv_policy *_msv_tracer_policy(void)
{
	return T.policy;
}

struct msv_trace_writer *_msv_tracer_log(void)
{
	return T.log;
}

void _msv_tracer_record(const struct msv_rec *r)
{
	if (T.state == 1)
		_msv_trace_append(T.log, r);
}

static void meta_str(int key, const char *s)
{
	struct msv_rec r = {.type = MSV_REC_META, .api = (uint8_t)key};
	r.site = _msv_trace_intern(T.log, s);
	_msv_trace_append(T.log, &r);
}

static void meta_num(int key, uint64_t v)
{
	struct msv_rec r = {.type = MSV_REC_META, .api = (uint8_t)key, .size = v};
	_msv_trace_append(T.log, &r);
}

/* The rank of a distributed engine, from the launchers' usual variables. */
static int rank_from_env(void)
{
	static const char *const vars[] = {"RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID"};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *v = getenv(vars[i]);
		if (v && *v)
			return atoi(v);
	}
	return -1;
}

static void atexit_handler(void);

/* A child forked without exec shares the parent's trace file and report
 * path and cannot use CUDA anyway: memsaver steps aside in it. */
static void forked_child(void)
{
	if (T.state == 1) {
		T.state = -1;
		_msv_trace_writer_detach(T.log);
	}
	pthread_mutex_init(&T.lock, NULL);
}

int _msv_tracer_init(void)
{
	int rc = 0;
	pthread_mutex_lock(&T.lock);
	if (T.state != 0) {
		rc = T.state == 1 ? 0 : -ECANCELED;
		goto out;
	}
	const struct msv_options *o = _msv_options();
	char err[1024];
	if (o->policy[0]) {
		if (_msv_policy_load(o->policy, &T.policy, err, sizeof(err)) != 0) {
			/* Inside a running engine a bad policy turns memsaver off: the
			 * engine keeps running exactly as without us. */
			MSV_ERROR("%s; memsaver is disabled in this process", err);
			T.state = -1;
			rc = -ECANCELED;
			goto out;
		}
	} else {
		T.policy = _msv_policy_default();
	}
	char path[4096];
	const char *trace = NULL;
	if (o->trace[0] && _msv_expand_path(o->trace, getpid(), path, sizeof(path)) == 0)
		trace = path;
	if (_msv_trace_writer_new(trace, getpid(), &T.log) != 0 && !T.log) {
		MSV_ERROR("out of memory creating the event log; memsaver is disabled");
		T.state = -1;
		rc = -ECANCELED;
		goto out;
	}
	char cmd[2048], host[256] = "";
	if (!_msv_proc_cmdline(0, cmd, sizeof(cmd)))
		snprintf(cmd, sizeof(cmd), "%s", program_invocation_name);
	gethostname(host, sizeof(host) - 1);
	meta_str(MSV_META_CMDLINE, cmd);
	meta_str(MSV_META_HOSTNAME, host);
	json_t *pj = _msv_policy_to_json(T.policy);
	char *ptext = pj ? json_dumps(pj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	meta_str(MSV_META_POLICY, ptext ? ptext : "{}");
	free(ptext);
	json_decref(pj);
	int rank = rank_from_env();
	if (rank >= 0)
		meta_num(MSV_META_RANK, (uint64_t)rank);
	_msv_callsite_init();
	T.state = 1;
	atexit(atexit_handler);
	pthread_atfork(NULL, NULL, forked_child);
	pthread_mutex_unlock(&T.lock);
	if (_msv_ready_hook)
		_msv_ready_hook();
	return 0;
out:
	pthread_mutex_unlock(&T.lock);
	return rc;
}

static atomic_int cupti_attached, cupti_said;

int _msv_tracer_cupti(void)
{
	return atomic_load_explicit(&cupti_attached, memory_order_relaxed);
}

void _msv_tracer_set_cupti(int attached, const char *why)
{
	atomic_store(&cupti_attached, attached);
	if (T.state != 1)
		return;
	atomic_store(&cupti_said, 1);
	struct msv_rec r = {.type = MSV_REC_META, .api = MSV_META_CUPTI, .size = (uint64_t)attached};
	r.site = _msv_trace_intern(T.log, why);
	_msv_trace_append(T.log, &r);
}

/* The baseline: device memory used before this process created a context,
 * by NVML (the only source that needs no context).  Unknown without NVML. */
static struct msv_reading baseline[MSV_MAX_DEVICES];
static uint64_t baseline_t;
static int baseline_taken;

void _msv_tracer_baseline(void)
{
	pthread_mutex_lock(&T.lock);
	if (!baseline_taken) {
		baseline_taken = 1;
		baseline_t = _msv_now_ns();
		for (unsigned i = 0; i < MSV_MAX_DEVICES; i++) {
			baseline[i].used = MSV_NO_VALUE;
			baseline[i].total = MSV_NO_VALUE;
			baseline[i].proc_used = MSV_NO_VALUE;
		}
		if (_msv_nvml_init() == 0)
			for (unsigned i = 0; i < MSV_MAX_DEVICES; i++)
				if (_msv_nvml_reading_fast(NULL, i, &baseline[i]) != 0)
					break;
	}
	pthread_mutex_unlock(&T.lock);
}

uint64_t _msv_tracer_used_now(void)
{
	struct msv_reading r;
	MSV_BUSY_BEGIN();
	int rc = _msv_reading_current_fast(&r);
	MSV_BUSY_END();
	return rc == 0 ? r.used : MSV_NO_VALUE;
}

static void phase_at(const char *label, const struct msv_reading *r, uint64_t t, int device)
{
	struct msv_rec p = {.type = MSV_REC_PHASE, .t_ns = t, .size = r->total, .aux = r->used,
			    .aux2 = r->proc_used, .device = (uint8_t)device};
	p.site = _msv_trace_intern(T.log, label);
	_msv_trace_append(T.log, &p);
}

static void context_ready(void);

void _msv_tracer_context_ready(CUcontext ctx)
{
	const struct msv_driver *dv = _msv_drv();
	if (T.state != 1 || !dv || !dv->cuCtxGetDevice)
		return;
	/* A context just created need not be current (primary contexts are
	 * retained, not made current): read it with it pushed. */
	int pushed = 0;
	if (ctx && dv->cuCtxPushCurrent && dv->cuCtxPopCurrent) {
		MSV_BUSY_BEGIN();
		pushed = dv->cuCtxPushCurrent(ctx) == CUDA_SUCCESS;
		MSV_BUSY_END();
	}
	context_ready();
	if (pushed) {
		CUcontext old;
		MSV_BUSY_BEGIN();
		dv->cuCtxPopCurrent(&old);
		MSV_BUSY_END();
	}
}

static void context_ready(void)
{
	const struct msv_driver *dv = _msv_drv();
	CUdevice dev;
	MSV_BUSY_BEGIN();
	CUresult cr = dv->cuCtxGetDevice(&dev);
	MSV_BUSY_END();
	if (cr != CUDA_SUCCESS || dev < 0 || dev >= MSV_MAX_DEVICES)
		return;
	pthread_mutex_lock(&T.lock);
	int first = !T.device_seen[dev];
	T.device_seen[dev] = 1;
	int emit_baseline = first && !T.baseline_emitted;
	if (emit_baseline)
		T.baseline_emitted = 1;
	pthread_mutex_unlock(&T.lock);
	if (!first)
		return;
	_msv_tracer_baseline();
	char name[256] = "";
	size_t total = 0;
	size_t gran = 0;
	MSV_BUSY_BEGIN();
	if (dv->cuDeviceGetName)
		dv->cuDeviceGetName(name, sizeof(name), dev);
	if (dv->cuDeviceTotalMem)
		dv->cuDeviceTotalMem(&total, dev);
	if (dv->cuMemGetAllocationGranularity) {
		CUmemAllocationProp prop = {.type = CU_MEM_ALLOCATION_TYPE_PINNED,
					    .location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = dev}};
		dv->cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM);
	}
	MSV_BUSY_END();
	struct msv_rec r = {.type = MSV_REC_META, .api = MSV_META_DEVICE_NAME, .device = (uint8_t)dev};
	r.site = _msv_trace_intern(T.log, name);
	_msv_trace_append(T.log, &r);
	r = (struct msv_rec){.type = MSV_REC_META, .api = MSV_META_DEVICE_TOTAL, .size = total,
			     .device = (uint8_t)dev};
	_msv_trace_append(T.log, &r);
	meta_num(MSV_META_GRANULARITY, gran);
	if (!emit_baseline)
		return;
	/* The report names the mode it ran in, injected or not. */
	if (!atomic_load(&cupti_said))
		_msv_tracer_set_cupti(0, "no CUPTI injection (CUDA_INJECTION64_PATH unset)");
	/* NVML numbers devices without CUDA_VISIBLE_DEVICES remapping; under a
	 * remap the baseline is that of the NVML device with the same ordinal,
	 * which is why the report keeps baseline and context apart. */
	struct msv_reading b = baseline[dev];
	phase_at("baseline", &b, baseline_t, dev);
	struct msv_reading now;
	MSV_BUSY_BEGIN();
	int rc = _msv_reading_current(&now);
	MSV_BUSY_END();
	if (rc == 0 && b.used != MSV_NO_VALUE && now.used != MSV_NO_VALUE)
		_msv_tracer_driver(MSV_DRV_CONTEXT, (int64_t)(now.used - b.used));
	if (rc == 0)
		phase_at("context", &now, _msv_now_ns(), dev);
	if (rc == 0 && now.used != MSV_NO_VALUE)
		ck_rebase(now.used);
}

/* Checkpoints: readings at rare events (module loads, stream creation,
 * capture, instantiation) that bound the device memory no driver call
 * explains.  The lock keeps each reading and its record in trace order, so
 * the analyzer can charge every interval to the checkpoint that ends it.
 * ck_used/ck_alloc give the tracer's own estimate (.size), for --dump. */
static pthread_mutex_t ck_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t ck_used = MSV_NO_VALUE, ck_alloc;

static void ck_rebase(uint64_t used)
{
	pthread_mutex_lock(&ck_lock);
	ck_used = used;
	ck_alloc = _msv_tracer_allocated();
	pthread_mutex_unlock(&ck_lock);
}

/* NVTX stack, Python frames and native library of the calling thread, as
 * string ids (the same fields an allocation carries). */
static void site_strings(void *caller, struct msv_rec *r)
{
	static __thread char frames[32][MSV_PYFRAME_LEN];
	static __thread char buf[32 * MSV_PYFRAME_LEN];
	buf[0] = '\0';
	int n = tls.n_nvtx < MSV_NVTX_DEPTH ? tls.n_nvtx : MSV_NVTX_DEPTH;
	for (int i = 0; i < n; i++)
		join(buf, sizeof(buf), "/", tls.nvtx[i].name);
	r->nvtx = _msv_trace_intern(T.log, buf);
	buf[0] = '\0';
	const struct msv_options *o = _msv_options();
	if (o->python_frames) {
		int np = _msv_pyframes_read(frames, o->python_depth < 32 ? o->python_depth : 32);
		for (int i = 0; i < np; i++)
			join(buf, sizeof(buf), "\n", frames[i]);
	}
	r->pysite = _msv_trace_intern(T.log, buf);
	char lib[256];
	_msv_callsite_library(caller, lib, sizeof(lib));
	r->site = _msv_trace_intern(T.log, lib);
}

void _msv_tracer_checkpoint(int cause, int mark, void *caller)
{
	if (T.state != 1)
		return;
	struct msv_rec r = {.type = MSV_REC_DRIVER, .api = (uint8_t)cause, .addr = (uint64_t)mark,
			    .flags = MSV_F_READING};
	site_strings(caller, &r);
	const struct msv_driver *dv = _msv_drv();
	CUdevice dev = 0;
	MSV_BUSY_BEGIN();
	if (dv && dv->cuCtxGetDevice && dv->cuCtxGetDevice(&dev) != CUDA_SUCCESS)
		dev = 0;
	MSV_BUSY_END();
	r.device = (uint8_t)dev;
	pthread_mutex_lock(&ck_lock);
	uint64_t used = _msv_tracer_used_now();
	if (used != MSV_NO_VALUE) {
		uint64_t alloc = _msv_tracer_allocated();
		r.aux = used;
		r.size = ck_used == MSV_NO_VALUE ? 0 : (used - ck_used) - (alloc - ck_alloc);
		ck_used = used;
		ck_alloc = alloc;
		r.t_ns = _msv_now_ns();
		_msv_trace_append(T.log, &r);
	}
	pthread_mutex_unlock(&ck_lock);
}

void _msv_tracer_phase(const char *label)
{
	if (T.state != 1)
		return;
	struct msv_reading r;
	int dev = 0, got;
	const struct msv_driver *dv = _msv_drv();
	CUdevice d;
	MSV_BUSY_BEGIN();
	got = _msv_reading_current(&r) == 0;
	if (dv && dv->cuCtxGetDevice && dv->cuCtxGetDevice(&d) == CUDA_SUCCESS)
		dev = d;
	if (!got && dv) {
		/* No context on this thread (the control thread's `ctl snapshot`):
		 * NVML reads the first device the process used by its PCI id,
		 * which needs none (by index, as at exit, without the id). */
		char pci[32] = "";
		pthread_mutex_lock(&T.lock);
		int seen = -1;
		for (int i = 0; i < MSV_MAX_DEVICES && seen < 0; i++)
			if (T.device_seen[i])
				seen = i;
		pthread_mutex_unlock(&T.lock);
		if (seen >= 0 && dv->cuDeviceGetPCIBusId &&
		    dv->cuDeviceGetPCIBusId(pci, sizeof(pci), seen) != CUDA_SUCCESS)
			pci[0] = '\0';
		if (seen >= 0 && _msv_nvml_reading(pci[0] ? pci : NULL, (unsigned)seen, &r) == 0)
			got = 1, dev = seen;
	}
	if (!got)
		r.total = r.used = r.proc_used = MSV_NO_VALUE;
	MSV_BUSY_END();
	phase_at(label, &r, _msv_now_ns(), dev);
	if (r.used != MSV_NO_VALUE)
		ck_rebase(r.used);
}

void _msv_tracer_driver(int cause, int64_t bytes)
{
	if (T.state != 1)
		return;
	struct msv_rec r = {.type = MSV_REC_DRIVER, .api = (uint8_t)cause, .size = (uint64_t)bytes};
	_msv_trace_append(T.log, &r);
}

void _msv_tracer_capture_begin(void)
{
	tls.capturing++;
}

void _msv_tracer_capture_end(void)
{
	if (tls.capturing > 0)
		tls.capturing--;
}

static void join(char *out, size_t len, const char *sep, const char *item)
{
	size_t o = strlen(out);
	if (o && o + strlen(sep) < len)
		strcat(out + o, sep), o += strlen(sep);
	size_t n = strlen(item);
	if (o + n >= len)
		n = o < len ? len - o - 1 : 0;
	memcpy(out + o, item, n);
	out[o + n] = '\0';
}

/* An allocation site tends to repeat (a loop of cudaMalloc from one place):
 * the id of the thread's last string of each kind skips the shared table. */
struct last_string {
	uint32_t id;
	char s[32 * MSV_PYFRAME_LEN];
};
static __thread struct last_string last_nvtx, last_py, last_lib;

static uint32_t intern_cached(struct last_string *c, const char *s)
{
	if (c->id && strcmp(c->s, s) == 0)
		return c->id;
	uint32_t id = _msv_trace_intern(T.log, s);
	if (id && strlen(s) < sizeof(c->s)) {
		strcpy(c->s, s);
		c->id = id;
	}
	return id;
}

void _msv_tracer_decide(uint64_t bytes, int stream_capturing, void *caller, struct msv_decision *d)
{
	memset(d, 0, sizeof(*d));
	d->cat = MSV_CAT_OTHER;
	if (T.state != 1)
		return;
	const struct msv_options *o = _msv_options();
	const char *nvtx[MSV_NVTX_DEPTH];
	size_t n_nvtx = (size_t)(tls.n_nvtx < MSV_NVTX_DEPTH ? tls.n_nvtx : MSV_NVTX_DEPTH);
	for (size_t i = 0; i < n_nvtx; i++)
		nvtx[i] = tls.nvtx[i].name;
	static __thread char frames[32][MSV_PYFRAME_LEN];
	const char *py[32];
	int n_py = 0;
	if (o->python_frames) {
		int max = o->python_depth < 32 ? o->python_depth : 32;
		n_py = _msv_pyframes_read(frames, max);
		for (int i = 0; i < n_py; i++)
			py[i] = frames[i];
	}
	char lib[256];
	_msv_callsite_library(caller, lib, sizeof(lib));
	struct msv_site s = {
		.nvtx = nvtx, .n_nvtx = n_nvtx, .python = py, .n_python = (size_t)n_py,
		.library = lib[0] ? lib : NULL, .capturing = tls.capturing > 0 || stream_capturing,
		.bytes = bytes, .region = tls.region1 - 1,
	};
	enum msv_reason why;
	int rule;
	d->cat = _msv_classify(T.policy, &s, &why, &rule);
	d->rule = _msv_classify_rule_code(why, rule);
	if (s.capturing)
		d->flags |= MSV_F_CAPTURING;
	if (why == MSV_BY_REGION)
		d->flags |= MSV_F_REGION;
	char buf[MSV_NVTX_DEPTH * MSV_NVTX_NAME];
	buf[0] = '\0';
	for (size_t i = 0; i < n_nvtx; i++)
		join(buf, sizeof(buf), "/", nvtx[i]);
	d->nvtx = intern_cached(&last_nvtx, buf);
	static __thread char pbuf[32 * MSV_PYFRAME_LEN];
	pbuf[0] = '\0';
	for (int i = 0; i < n_py; i++)
		join(pbuf, sizeof(pbuf), "\n", py[i]);
	d->pysite = intern_cached(&last_py, pbuf);
	d->site = intern_cached(&last_lib, lib);
}

/* Device bytes the recorded allocations hold (mapped size for wrapped ones):
 * a device-memory delta minus the change of this counter is what the driver
 * took for itself. */
static atomic_llong allocated_bytes;

uint64_t _msv_tracer_allocated(void)
{
	return (uint64_t)atomic_load(&allocated_bytes);
}

void _msv_tracer_alloc(const struct msv_decision *d, int api, uint64_t addr, uint64_t size,
		       uint64_t mapped, uint64_t stream, uint8_t flags)
{
	if (T.state != 1)
		return;
	atomic_fetch_add(&allocated_bytes, (long long)(mapped ? mapped : size));
	CUdevice dev = 0;
	const struct msv_driver *dv = _msv_drv();
	if (dv && dv->cuCtxGetDevice)
		dv->cuCtxGetDevice(&dev);
	struct msv_rec r = {.type = MSV_REC_ALLOC, .category = (uint8_t)d->cat, .api = (uint8_t)api,
			    .addr = addr, .size = size, .aux = mapped, .site = d->site,
			    .pysite = d->pysite, .nvtx = d->nvtx, .rule = d->rule,
			    .flags = (uint8_t)(d->flags | flags), .device = (uint8_t)dev, .aux2 = stream};
	_msv_trace_append(T.log, &r);
}

void _msv_tracer_free(int api, uint64_t addr, uint64_t size, uint64_t held, int cat)
{
	if (T.state != 1)
		return;
	atomic_fetch_sub(&allocated_bytes, (long long)held);
	struct msv_rec r = {.type = MSV_REC_FREE, .api = (uint8_t)api, .addr = addr, .size = size,
			    .category = (uint8_t)cat};
	_msv_trace_append(T.log, &r);
}

void _msv_tracer_vmm(int type, uint64_t addr, uint64_t size, uint64_t handle)
{
	if (T.state != 1)
		return;
	struct msv_rec r = {.type = (uint16_t)type, .api = MSV_API_MEM_CREATE, .addr = addr, .size = size,
			    .aux = handle};
	/* App-owned physical memory is named by who created it (libnccl for
	 * NCCL's own buffers, libc10_cuda for expandable segments): a stack walk
	 * per cuMemCreate, which comes once per segment, not per allocation. */
	if (type == MSV_REC_VMM_CREATE)
		site_strings(NULL, &r);
	_msv_trace_append(T.log, &r);
}

int _msv_tracer_device_seen(void)
{
	int any = 0;
	pthread_mutex_lock(&T.lock);
	for (int d = 0; d < MSV_MAX_DEVICES && !any; d++)
		any = T.device_seen[d];
	pthread_mutex_unlock(&T.lock);
	return any;
}

void (*_msv_exit_hook)(void);
void (*_msv_ready_hook)(void);

static void atexit_handler(void)
{
	if (T.state != 1)
		return;
	/* At exit only NVML is safe: the CUDA runtime may already be tearing
	 * its contexts down. */
	struct msv_reading r = {MSV_NO_VALUE, MSV_NO_VALUE, MSV_NO_VALUE};
	for (int d = 0; d < MSV_MAX_DEVICES; d++) {
		if (!T.device_seen[d])
			continue;
		if (_msv_nvml_reading(NULL, (unsigned)d, &r) != 0)
			r.total = r.used = r.proc_used = MSV_NO_VALUE;
		phase_at("exit", &r, _msv_now_ns(), d);
		break;
	}
	if (_msv_exit_hook)
		_msv_exit_hook();
}
