/* Trace -> attribution report (layout in docs/report.md).
 *
 * One pass replays the trace: live allocations, app-owned VMM handles,
 * driver deltas, pause state.  The state is frozen at the reading that
 * follows the latest pause, because that reading is what the unreclaimed
 * bytes were measured from; everything still resident there is a source.
 * Whatever the measured number holds that no record explains is reported
 * as "unattributed", sign included: a negative value means the records
 * claim more than the device showed, and hiding it would hide a tracer bug.
 *
 * The output depends only on the trace bytes (no clock, no hash order), so
 * the live report and `memsaver analyze` of the file are the same JSON. */
#include "analyzer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "tracer/categories.h"
#include "tracer/classify.h"

#ifndef MSV_VERSION_STR
#define MSV_VERSION_STR "0.0.0"
#endif

#define MIB (1024ll * 1024)
#define MAX_TOP_SITES 5
#define MAX_TIMELINE 2000
/* Below these a recommendation is noise. */
#define REC_RULE_MIN (16 * MIB)
#define REC_DRIVER_MIN (64 * MIB)
/* Slots of struct state.driver: enum msv_driver_cause values are below it. */
#define DRV_SLOTS 8

enum reason {
	R_KEEP,
	R_EXCLUDED,
	R_WRAP_FAILED,
	R_NOT_REDIRECTED,
	R_KEPT_WRAPPED,
	R_PAUSE_FAILED,
	R_AFTER_PAUSE,
	R_OBSERVED,
	R_COUNT
};

static const char *const reason_text[R_COUNT] = {
	[R_KEEP] = "not wrapped by policy (action keep)",
	[R_EXCLUDED] = "excluded from this pause",
	[R_WRAP_FAILED] = "wrap failed",
	[R_NOT_REDIRECTED] = "not wrapped (allocation path not redirected)",
	[R_KEPT_WRAPPED] = "wrapped but kept (action keep)",
	[R_PAUSE_FAILED] = "pause failed",
	[R_AFTER_PAUSE] = "allocated after the pause",
	[R_OBSERVED] = "observed by memsaver attach (nothing redirected or released)",
};

struct alloc {
	uint64_t addr;
	uint64_t size, mapped;
	size_t idx; /* record index of the ALLOC */
	int cat;
	unsigned flags;
	uint16_t rule;
	uint32_t site, pysite, nvtx;
	int released;
	unsigned shared; /* 1 << enum msv_share_kind while referenced outside memsaver */
	uint32_t share_site, share_pysite, share_nvtx; /* where it was first shared */
	uint64_t handle; /* MSV_F_APP_VMM: the application's handle it maps */
	UT_hash_handle hh;
};

/* An app-owned VMM handle counts as source app_vmm only while no mapping of
 * it is an allocation (MSV_F_APP_VMM): a mapped one is its category's. */
struct vmm {
	uint64_t handle, size;
	uint32_t site, pysite, nvtx;
	int maps;
	UT_hash_handle hh;
};

/* Byte sums are uint64_t: unsigned arithmetic wraps instead of overflowing
 * on a damaged trace, and a two's complement sum read back as int64_t is the
 * signed result (a negative driver delta, a negative unattributed). */
struct site_agg {
	char *key;
	uint64_t bytes;
	uint64_t count;
	UT_hash_handle hh;
};

struct bucket {
	uint64_t bytes;
	uint64_t count;
	struct site_agg *sites;
};

struct tpoint {
	int64_t t;
	uint64_t v[MSV_CAT_COUNT + 1]; /* per category resident, then app_vmm */
};

struct state {
	const struct msv_trace *t;
	struct alloc *allocs;
	struct vmm *vmms;
	int actions[MSV_CAT_COUNT];
	uint64_t allocated[MSV_CAT_COUNT], resident[MSV_CAT_COUNT];
	uint64_t count[MSV_CAT_COUNT];
	uint64_t vmm_bytes;
	uint64_t vmm_count;
	uint64_t driver[DRV_SLOTS]; /* by enum msv_driver_cause, signed sums */
	uint64_t ctx_trimmed;
	/* Checkpoints (MSV_F_READING, docs/report.md "Driver memory between
	 * events"): anchored at the "context" reading; ck_used and ck_explained
	 * are the device reading and what the records explained at the latest
	 * one; ck_prev names the event that opened the current interval. */
	int ck_on, ck_device;
	uint64_t ck_used, ck_explained;
	char *ck_prev;
	struct bucket drv_sites[DRV_SLOTS];
	struct tpoint *tl;
	size_t n_tl, cap_tl;
	int oom;
	/* counters */
	uint64_t n_alloc, n_free, n_free_unknown, n_wrap_fail, n_wrapped, n_vmm_create;
	/* legacy IPC refused on wrapped memory: count, bytes and first site */
	uint64_t n_ipc_refused, ipc_refused_bytes;
	int ipc_cat;
	uint32_t ipc_site, ipc_pysite, ipc_nvtx;
};

static json_t *jint(int64_t v)
{
	return json_integer((json_int_t)v);
}

static json_t *ju64(uint64_t v)
{
	return v == MSV_NO_VALUE ? json_null() : json_integer((json_int_t)v);
}

static json_t *jshare(int64_t part, int64_t whole)
{
	return whole ? json_real((double)part / (double)whole) : json_null();
}

static int64_t rel_ns(const struct msv_trace *t, const struct msv_rec *r)
{
	return (int64_t)(r->t_ns - t->hdr.start_mono_ns);
}

const char *_msv_fmt_bytes(long long bytes, char *buf, size_t len)
{
	unsigned long long a = bytes < 0 ? -(unsigned long long)bytes : (unsigned long long)bytes;
	const char *sign = bytes < 0 ? "-" : "";
	if (a >= (1ull << 30))
		snprintf(buf, len, "%s%.2f GiB", sign, (double)a / (1ull << 30));
	else if (a >= (1ull << 20))
		snprintf(buf, len, "%s%.1f MiB", sign, (double)a / (1ull << 20));
	else if (a >= (1ull << 10))
		snprintf(buf, len, "%s%.1f KiB", sign, (double)a / (1ull << 10));
	else
		snprintf(buf, len, "%s%llu B", sign, a);
	return buf;
}

const char *_msv_source_key(const json_t *source, char *buf, size_t len)
{
	const char *s = json_string_value(json_object_get(source, "source"));
	const char *r = json_string_value(json_object_get(source, "reason"));
	if (!s)
		s = "?";
	if (r && strncmp(s, "category:", 9) == 0)
		snprintf(buf, len, "%s (%s)", s, r);
	else
		snprintf(buf, len, "%s", s);
	return buf;
}

/* ---- replay ---------------------------------------------------------- */

static void policy_actions(struct state *st, const json_t *policy)
{
	json_t *acts = json_object_get(policy, "actions");
	for (int c = 0; c < MSV_CAT_COUNT; c++) {
		const char *a = json_string_value(json_object_get(acts, _msv_category_name(c)));
		int v = a ? _msv_action_parse(a) : -1;
		st->actions[c] = v >= 0 ? v : (int)_msv_category_default_action(c);
	}
}

static void tl_point(struct state *st, int64_t t)
{
	struct tpoint p = {.t = t};
	for (int c = 0; c < MSV_CAT_COUNT; c++)
		p.v[c] = st->resident[c];
	p.v[MSV_CAT_COUNT] = st->vmm_bytes;
	if (st->n_tl) {
		struct tpoint *last = &st->tl[st->n_tl - 1];
		if (memcmp(last->v, p.v, sizeof(p.v)) == 0)
			return;
		if (last->t >= t) { /* same instant: keep the latest values */
			memcpy(last->v, p.v, sizeof(p.v));
			return;
		}
	}
	if (st->n_tl == st->cap_tl) {
		size_t nc = st->cap_tl ? st->cap_tl * 2 : 256;
		struct tpoint *n = realloc(st->tl, nc * sizeof(*n));
		if (!n) {
			st->oom = 1;
			return;
		}
		st->tl = n;
		st->cap_tl = nc;
	}
	st->tl[st->n_tl++] = p;
}

static void vmm_mapped(struct state *st, uint64_t handle, int delta)
{
	struct vmm *v;
	HASH_FIND(hh, st->vmms, &handle, sizeof(handle), v);
	if (!v)
		return;
	if (delta > 0 && v->maps++ == 0) {
		st->vmm_bytes -= v->size;
		st->vmm_count--;
	} else if (delta < 0 && v->maps > 0 && --v->maps == 0) {
		st->vmm_bytes += v->size;
		st->vmm_count++;
	}
}

static void drop_alloc(struct state *st, struct alloc *a)
{
	if (a->flags & MSV_F_APP_VMM)
		vmm_mapped(st, a->handle, -1);
	if (a->cat >= 0 && a->cat < MSV_CAT_COUNT) {
		st->allocated[a->cat] -= a->size;
		if (!a->released)
			st->resident[a->cat] -= a->size;
		st->count[a->cat]--;
	}
	HASH_DEL(st->allocs, a);
	free(a);
}

/* Apply a pause (release = 1) or resume (release = 0) record. */
static void apply_pause(struct state *st, const struct msv_rec *r, int release)
{
	if (r->flags & MSV_F_FAILED)
		return; /* state unchanged, by contract */
	struct alloc *a, *tmp;
	HASH_ITER(hh, st->allocs, a, tmp)
	{
		if (a->cat < 0 || a->cat >= MSV_CAT_COUNT || !(r->addr & (1ull << a->cat)))
			continue;
		if (!(a->flags & MSV_F_WRAPPED) || st->actions[a->cat] == MSV_ACT_KEEP)
			continue;
		if (release && a->shared)
			continue; /* saver/shared.h: never released */
		if (release && !a->released) {
			a->released = 1;
			st->resident[a->cat] -= a->size;
		} else if (!release && a->released) {
			a->released = 0;
			st->resident[a->cat] += a->size;
		}
	}
}

static void apply_shared(struct state *st, const struct msv_rec *r)
{
	struct alloc *a;
	if (r->api == MSV_SHARE_IPC_REFUSED) {
		if (!st->n_ipc_refused++) {
			st->ipc_cat = r->category < MSV_CAT_COUNT ? r->category : MSV_CAT_OTHER;
			st->ipc_site = r->site, st->ipc_pysite = r->pysite, st->ipc_nvtx = r->nvtx;
		}
		st->ipc_refused_bytes += r->size;
		return;
	}
	HASH_FIND(hh, st->allocs, &r->addr, sizeof(r->addr), a);
	if (!a)
		return;
	if (r->api == MSV_SHARE_ENDED) {
		a->shared = 0;
		return;
	}
	if (!a->shared)
		a->share_site = r->site, a->share_pysite = r->pysite, a->share_nvtx = r->nvtx;
	a->shared |= 1u << (r->api & 31);
}

static void ck_driver(struct state *st, const struct msv_rec *r);
static void ck_phase(struct state *st, const struct msv_rec *r);

static void apply(struct state *st, const struct msv_rec *r, size_t idx)
{
	struct alloc *a;
	struct vmm *v;
	switch (r->type) {
	case MSV_REC_ALLOC:
		st->n_alloc++;
		HASH_FIND(hh, st->allocs, &r->addr, sizeof(r->addr), a);
		if (a) /* its free was missed; the address is reused */
			drop_alloc(st, a);
		a = calloc(1, sizeof(*a));
		if (!a) {
			st->oom = 1;
			return;
		}
		a->addr = r->addr;
		a->size = r->size;
		a->mapped = r->aux;
		a->idx = idx;
		a->cat = r->category < MSV_CAT_COUNT ? r->category : MSV_CAT_OTHER;
		a->flags = r->flags;
		a->rule = r->rule;
		a->site = r->site;
		a->pysite = r->pysite;
		a->nvtx = r->nvtx;
		if (a->flags & MSV_F_APP_VMM) {
			a->handle = r->aux2;
			vmm_mapped(st, a->handle, 1);
		}
		if (a->flags & MSV_F_WRAPPED)
			st->n_wrapped++;
		HASH_ADD(hh, st->allocs, addr, sizeof(a->addr), a);
		st->allocated[a->cat] += a->size;
		st->resident[a->cat] += a->size;
		st->count[a->cat]++;
		break;
	case MSV_REC_FREE:
		st->n_free++;
		HASH_FIND(hh, st->allocs, &r->addr, sizeof(r->addr), a);
		if (a)
			drop_alloc(st, a);
		else
			st->n_free_unknown++;
		break;
	case MSV_REC_VMM_CREATE:
		st->n_vmm_create++;
		HASH_FIND(hh, st->vmms, &r->addr, sizeof(r->addr), v);
		if (v) {
			if (!v->maps) {
				st->vmm_bytes -= v->size;
				st->vmm_count--;
			}
			HASH_DEL(st->vmms, v);
			free(v);
		}
		v = calloc(1, sizeof(*v));
		if (!v) {
			st->oom = 1;
			return;
		}
		v->handle = r->addr;
		v->size = r->size;
		v->site = r->site;
		v->pysite = r->pysite;
		v->nvtx = r->nvtx;
		HASH_ADD(hh, st->vmms, handle, sizeof(v->handle), v);
		st->vmm_bytes += v->size;
		st->vmm_count++;
		break;
	case MSV_REC_VMM_RELEASE:
		HASH_FIND(hh, st->vmms, &r->addr, sizeof(r->addr), v);
		if (v) {
			if (!v->maps) {
				st->vmm_bytes -= v->size;
				st->vmm_count--;
			}
			HASH_DEL(st->vmms, v);
			free(v);
		}
		break;
	case MSV_REC_DRIVER:
		if (r->flags & MSV_F_READING)
			ck_driver(st, r);
		else if (r->api >= 1 && r->api < DRV_SLOTS)
			st->driver[r->api] += r->size;
		break;
	case MSV_REC_PHASE:
		ck_phase(st, r);
		return;
	case MSV_REC_CONTEXT:
		st->ctx_trimmed += r->api == 0 ? r->size : -r->size;
		break;
	case MSV_REC_PAUSE:
		apply_pause(st, r, 1);
		break;
	case MSV_REC_RESUME:
		apply_pause(st, r, 0);
		break;
	case MSV_REC_WRAP_FAIL:
		st->n_wrap_fail++;
		break;
	case MSV_REC_SHARED:
		apply_shared(st, r);
		break;
	default:
		return;
	}
	if (r->type != MSV_REC_DRIVER && r->type != MSV_REC_CONTEXT && r->type != MSV_REC_WRAP_FAIL)
		tl_point(st, rel_ns(st->t, r));
}

/* ---- sources --------------------------------------------------------- */

/* The site a person recognises: innermost Python frame, else the native
 * library, else the NVTX stack. */
static char *site_key(const struct msv_trace *t, uint32_t py, uint32_t lib, uint32_t nvtx)
{
	const char *s = _msv_trace_string(t, py);
	if (s) {
		size_t n = strcspn(s, "\n");
		return strndup(s, n);
	}
	s = _msv_trace_string(t, lib);
	if (!s)
		s = _msv_trace_string(t, nvtx);
	return strdup(s ? s : "unknown");
}

static void bucket_add(struct bucket *b, const struct msv_trace *t, uint64_t bytes,
		       uint32_t py, uint32_t lib, uint32_t nvtx, int *oom)
{
	b->bytes += bytes;
	b->count++;
	char *k = site_key(t, py, lib, nvtx);
	if (!k) {
		*oom = 1;
		return;
	}
	struct site_agg *s;
	HASH_FIND_STR(b->sites, k, s);
	if (s) {
		free(k);
	} else {
		s = calloc(1, sizeof(*s));
		if (!s) {
			free(k);
			*oom = 1;
			return;
		}
		s->key = k;
		HASH_ADD_KEYPTR(hh, b->sites, s->key, strlen(s->key), s);
	}
	s->bytes += bytes;
	s->count++;
}

static int site_cmp(struct site_agg *a, struct site_agg *b)
{
	int64_t x = (int64_t)a->bytes, y = (int64_t)b->bytes;
	if (x != y)
		return x > y ? -1 : 1;
	return strcmp(a->key, b->key);
}

static json_t *bucket_sites(struct bucket *b)
{
	json_t *arr = json_array();
	HASH_SORT(b->sites, site_cmp);
	int n = 0;
	for (struct site_agg *s = b->sites; s && n < MAX_TOP_SITES; s = s->hh.next, n++) {
		json_array_append_new(arr, json_pack("{s:s, s:I, s:I}", "site", s->key, "bytes",
						     (json_int_t)s->bytes, "count",
						     (json_int_t)s->count));
	}
	return arr;
}

static void bucket_clear(struct bucket *b)
{
	struct site_agg *s, *tmp;
	HASH_ITER(hh, b->sites, s, tmp)
	{
		HASH_DEL(b->sites, s);
		free(s->key);
		free(s);
	}
}

/* ---- driver memory between events ------------------------------------ */

/* What the records explain at this point of the replay, in device bytes:
 * the same quantities the sources count (an allocation's size plus its
 * rounding when wrapped, app VMM handles, driver deltas, minus the context
 * trim), so that a checkpoint's charge is exactly what the sources lack. */
static uint64_t explained(const struct state *st)
{
	uint64_t sum = st->vmm_bytes - st->ctx_trimmed;
	for (int c = 1; c < DRV_SLOTS; c++)
		sum += st->driver[c];
	const struct alloc *a, *tmp;
	HASH_ITER(hh, st->allocs, a, tmp)
	{
		if (a->released)
			continue;
		sum += a->size;
		if ((a->flags & MSV_F_WRAPPED) && a->mapped > a->size)
			sum += a->mapped - a->size;
	}
	return sum;
}

static char *ck_site(const struct msv_trace *t, const struct msv_rec *r)
{
	const char *lib = _msv_trace_string(t, r->site);
	char *py = _msv_trace_string(t, r->pysite) ? site_key(t, r->pysite, 0, 0) : NULL;
	char *out = NULL;
	if (lib && py) {
		size_t n = strlen(lib) + strlen(py) + 5;
		out = malloc(n);
		if (out)
			snprintf(out, n, "%s at %s", lib, py);
	} else {
		out = site_key(t, r->pysite, r->site, r->nvtx);
	}
	free(py);
	return out;
}

/* The event a checkpoint was taken at, as a person reads it: "first launch
 * in libcublasLt.so.13 at model.py:97:forward", "graph capture at ...". */
static char *ck_event(const struct msv_trace *t, const struct msv_rec *r)
{
	static const char *const what[] = {
		[MSV_MARK_NONE] = "an event",
		[MSV_MARK_MODULE_LOADED] = "first launch in",
		[MSV_MARK_STREAM_CREATED] = "stream creation at",
		[MSV_MARK_CAPTURE_BEGIN] = "graph capture at",
		[MSV_MARK_CAPTURE_END] = "graph capture at",
		[MSV_MARK_INSTANTIATE_BEGIN] = "graph instantiation at",
		[MSV_MARK_INSTANTIATE_END] = "graph instantiation at",
		[MSV_MARK_LOAD_BEGIN] = "module load at",
		[MSV_MARK_LOAD_END] = "module load at",
		[MSV_MARK_FIRST_LAUNCH] = "first launch in",
	};
	const char *w = r->addr < sizeof(what) / sizeof(what[0]) ? what[r->addr] : what[0];
	char *site = ck_site(t, r);
	size_t n = strlen(w) + (site ? strlen(site) : 7) + 2;
	char *out = malloc(n);
	if (out)
		snprintf(out, n, "%s %s", w, site ? site : "unknown");
	free(site);
	return out;
}

static void bucket_add_key(struct bucket *b, char *key, uint64_t bytes, int *oom)
{
	b->bytes += bytes;
	b->count++;
	if (!key) {
		*oom = 1;
		return;
	}
	struct site_agg *s;
	HASH_FIND_STR(b->sites, key, s);
	if (s) {
		free(key);
	} else {
		s = calloc(1, sizeof(*s));
		if (!s) {
			free(key);
			*oom = 1;
			return;
		}
		s->key = key;
		HASH_ADD_KEYPTR(hh, b->sites, s->key, strlen(s->key), s);
	}
	s->bytes += bytes;
	s->count++;
}

static void ck_set_prev(struct state *st, char *what)
{
	free(st->ck_prev);
	st->ck_prev = what;
}

static void ck_rebase(struct state *st, uint64_t used)
{
	st->ck_used = used;
	st->ck_explained = explained(st);
}

/* Charge the interval that ends at reading `used` to `cause`: device memory
 * that appeared since the previous checkpoint minus what the records added
 * meanwhile.  Signed: memory the driver gave back shows as negative. */
static void ck_charge(struct state *st, int cause, uint64_t used, char *key)
{
	uint64_t ex = explained(st);
	uint64_t d = (used - st->ck_used) - (ex - st->ck_explained);
	st->driver[cause] += d;
	bucket_add_key(&st->drv_sites[cause], key, d, &st->oom);
	st->ck_used = used;
	st->ck_explained = ex + d;
}

static void ck_driver(struct state *st, const struct msv_rec *r)
{
	if (r->api < 1 || r->api >= DRV_SLOTS)
		return;
	const struct msv_trace *t = st->t;
	if (!st->ck_on || r->device != st->ck_device || r->aux == MSV_NO_VALUE) {
		/* No anchor (a trace without a "context" reading): the tracer's
		 * estimate.  Another device's readings do not bound this one's. */
		if (!st->ck_on) {
			st->driver[r->api] += r->size;
			bucket_add_key(&st->drv_sites[r->api], ck_site(t, r), r->size, &st->oom);
		}
		return;
	}
	char *key;
	if (r->api == MSV_DRV_UNOBSERVED) {
		char *ev = ck_event(t, r);
		size_t n = (ev ? strlen(ev) : 0) + (st->ck_prev ? strlen(st->ck_prev) : 0) + 32;
		key = malloc(n);
		if (key)
			snprintf(key, n, "before %s, since %s", ev ? ev : "?",
				 st->ck_prev ? st->ck_prev : "the context");
		free(ev);
	} else if (r->api == MSV_DRV_GRAPH_EXEC || r->api == MSV_DRV_MODULES) {
		key = ck_event(t, r);
	} else {
		key = ck_site(t, r);
	}
	ck_charge(st, r->api, r->aux, key);
	ck_set_prev(st, ck_event(t, r));
}

/* Readings at phase markers: "context" anchors the ledger; "pause" and
 * "resume" only move it (what changed there is memsaver's own release and
 * restore, which unattributed must keep showing); any other label closes an
 * interval that no driver call explains. */
static void ck_phase(struct state *st, const struct msv_rec *r)
{
	const char *l = _msv_trace_string(st->t, r->site);
	/* The checkpoint readings are the ctl's, by NVML index: they bracket
	 * the driver's checkpoint, not anything the records explain. */
	if (!l || r->aux == MSV_NO_VALUE || strcmp(l, "baseline") == 0 ||
	    strcmp(l, "before_checkpoint") == 0 || strcmp(l, "checkpointed") == 0)
		return;
	if (!st->ck_on) {
		if (strcmp(l, "context") != 0)
			return;
		st->ck_on = 1;
		st->ck_device = r->device;
		ck_rebase(st, r->aux);
		ck_set_prev(st, strdup("context creation"));
		return;
	}
	if (r->device != st->ck_device)
		return;
	size_t n = strlen(l) + 24;
	char *ev = malloc(n);
	if (ev)
		snprintf(ev, n, "phase \"%s\"", l);
	if (!strcmp(l, "pause") || !strcmp(l, "resume") || !strcmp(l, "exit") || !strcmp(l, "context")) {
		ck_rebase(st, r->aux);
		ck_set_prev(st, ev);
		return;
	}
	size_t kn = (ev ? strlen(ev) : 0) + (st->ck_prev ? strlen(st->ck_prev) : 0) + 32;
	char *key = malloc(kn);
	if (key)
		snprintf(key, kn, "before %s, since %s", ev ? ev : "?", st->ck_prev ? st->ck_prev : "?");
	ck_charge(st, MSV_DRV_UNOBSERVED, r->aux, key);
	ck_set_prev(st, ev);
}

static json_t *source_new(const char *name, int64_t bytes, uint64_t count, const char *reason,
			  json_t *sites)
{
	json_t *o = json_object();
	json_object_set_new(o, "source", json_string(name));
	json_object_set_new(o, "bytes", jint(bytes));
	json_object_set_new(o, "count", json_integer((json_int_t)count));
	json_object_set_new(o, "reason", json_string(reason));
	json_object_set_new(o, "top_sites", sites ? sites : json_array());
	return o;
}

static int source_cmp(const void *pa, const void *pb)
{
	const json_t *a = *(const json_t *const *)pa, *b = *(const json_t *const *)pb;
	json_int_t x = json_integer_value(json_object_get(a, "bytes"));
	json_int_t y = json_integer_value(json_object_get(b, "bytes"));
	if (x != y)
		return x > y ? -1 : 1;
	char ka[256], kb[256];
	return strcmp(_msv_source_key(a, ka, sizeof(ka)), _msv_source_key(b, kb, sizeof(kb)));
}

/* Sort a sources array largest first and fill in the shares. */
void _msv_sources_finish(json_t *arr, long long unreclaimed, long long footprint)
{
	size_t n = json_array_size(arr);
	json_t **v = calloc(n ? n : 1, sizeof(*v));
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		v[i] = json_incref(json_array_get(arr, i));
	qsort(v, n, sizeof(*v), source_cmp);
	json_array_clear(arr);
	for (size_t i = 0; i < n; i++) {
		int64_t b = json_integer_value(json_object_get(v[i], "bytes"));
		json_object_set_new(v[i], "share_of_unreclaimed", jshare(b, unreclaimed));
		json_object_set_new(v[i], "share_of_footprint", jshare(b, footprint));
		json_array_append_new(arr, v[i]);
	}
	free(v);
}

static int is_no_rule(uint16_t rule)
{
	return rule == 0 || rule == (0x8000 | MSV_BY_FALLBACK);
}

static enum reason alloc_reason(const struct state *st, const struct alloc *a,
				const struct msv_rec *pause, size_t pause_idx)
{
	if (a->idx > pause_idx)
		return R_AFTER_PAUSE;
	if (a->flags & MSV_F_WRAP_FAILED)
		return R_WRAP_FAILED;
	if (!(a->flags & MSV_F_WRAPPED))
		return st->actions[a->cat] == MSV_ACT_KEEP ? R_KEEP : R_NOT_REDIRECTED;
	if (!(pause->addr & (1ull << a->cat)))
		return R_EXCLUDED;
	if (st->actions[a->cat] == MSV_ACT_KEEP)
		return R_KEPT_WRAPPED;
	return R_PAUSE_FAILED;
}

struct pause_view {
	size_t p, bp, ap; /* record indices; SIZE_MAX = none */
	/* A deep pause: its "checkpointed" and "before_checkpoint" readings. */
	size_t ck, before;
	/* memsaver attach (observe only, no pause): the "attach" reading; p, bp
	 * and ap are then the last reading.  SIZE_MAX otherwise. */
	size_t attach;
	int64_t baseline;
	int baseline_known;
};

static json_t *recommendation(const char *action, const char *what_key, const char *what,
			      int64_t bytes, const char *why)
{
	json_t *o = json_object();
	json_object_set_new(o, "action", json_string(action));
	json_object_set_new(o, what_key, json_string(what));
	json_object_set_new(o, "reclaimable_bytes", jint(bytes));
	json_object_set_new(o, "why", json_string(why));
	return o;
}

static int rec_cmp(const void *pa, const void *pb)
{
	const json_t *a = *(const json_t *const *)pa, *b = *(const json_t *const *)pb;
	json_int_t x = json_integer_value(json_object_get(a, "reclaimable_bytes"));
	json_int_t y = json_integer_value(json_object_get(b, "reclaimable_bytes"));
	if (x != y)
		return x > y ? -1 : 1;
	return strcmp(json_string_value(json_object_get(a, "action")),
		      json_string_value(json_object_get(b, "action")));
}

static void sort_recs(json_t *arr)
{
	size_t n = json_array_size(arr);
	json_t **v = calloc(n ? n : 1, sizeof(*v));
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		v[i] = json_incref(json_array_get(arr, i));
	qsort(v, n, sizeof(*v), rec_cmp);
	json_array_clear(arr);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, v[i]);
	free(v);
}

/* Freeze the state at the post-pause reading and explain it. */
static json_t *attribution(struct state *st, const struct pause_view *pv, json_t *recs)
{
	const struct msv_trace *t = st->t;
	const struct msv_rec *p = &t->recs[pv->p];
	json_t *o = json_object(), *notes = json_array(), *sources = json_array();
	char buf[512], b1[32];

	int observe = pv->attach != SIZE_MAX;
	if (observe)
		json_array_append_new(notes, json_string(
			"memsaver attach: observed only, nothing was released; memory that existed "
			"before the attach is one source, NVTX ranges and Python frames were not seen"));
	else if (!pv->baseline_known)
		json_array_append_new(notes, json_string(
			"baseline device memory before CUDA init is unknown; footprint counts from 0 "
			"and includes memory used by other processes"));
	uint64_t used_before = pv->bp != SIZE_MAX ? t->recs[pv->bp].aux : MSV_NO_VALUE;
	uint64_t used_after = pv->ap != SIZE_MAX ? t->recs[pv->ap].aux : MSV_NO_VALUE;
	if (pv->bp != SIZE_MAX && !observe) {
		const char *l = _msv_trace_string(t, t->recs[pv->bp].site);
		if (!l || strcmp(l, "before_pause") != 0) {
			snprintf(buf, sizeof(buf),
				 "no \"before_pause\" reading; the footprint is taken from phase \"%s\"",
				 l ? l : "?");
			json_array_append_new(notes, json_string(buf));
		}
	}
	if (used_before == MSV_NO_VALUE && observe)
		json_array_append_new(notes, json_string(
			"NVML has no reading of this process: the footprint is what the records hold"));
	else if (used_before == MSV_NO_VALUE)
		json_array_append_new(notes, json_string(
			"device memory before the pause is unknown; footprint taken as 0"));
	int64_t F = used_before != MSV_NO_VALUE ? (int64_t)(used_before - (uint64_t)pv->baseline) : 0;
	int64_t R;
	if (observe) {
		R = 0;
	} else if (used_after != MSV_NO_VALUE && used_before != MSV_NO_VALUE) {
		R = (int64_t)(used_before - used_after);
	} else {
		R = (p->flags & MSV_F_FAILED) ? 0 : (int64_t)p->size;
		json_array_append_new(notes, json_string(
			"no device reading after the pause; reclaimed bytes are the bytes the pause "
			"reported released"));
	}
	int64_t U = (int64_t)((uint64_t)F - (uint64_t)R);
	if (p->flags & MSV_F_FAILED)
		json_array_append_new(notes, json_string("the latest pause failed; nothing was released"));

	json_object_set_new(o, "pause_index", json_null()); /* filled by the caller */
	json_object_set_new(o, "t_ns", jint(rel_ns(t, p)));
	json_object_set_new(o, "paused_categories", _msv_mask_json(p->addr));
	json_object_set_new(o, "pause_failed", json_boolean(p->flags & MSV_F_FAILED));
	json_object_set_new(o, "baseline_known", json_boolean(pv->baseline_known));
	json_object_set_new(o, "baseline_bytes", jint(pv->baseline));
	json_object_set_new(o, "footprint_bytes", jint(F));
	json_object_set_new(o, "reclaimed_bytes", jint(R));
	json_object_set_new(o, "reclaimed_share", jshare(R, F));
	json_object_set_new(o, "unreclaimed_bytes", jint(U));

	/* Category sources, split by reason. */
	struct bucket cats[MSV_CAT_COUNT][R_COUNT];
	struct bucket overhead = {0}, vmm = {0}, shared = {0};
	struct bucket norule = {0};
	unsigned shared_kinds = 0;
	memset(cats, 0, sizeof(cats));
	struct alloc *a, *tmp;
	HASH_ITER(hh, st->allocs, a, tmp)
	{
		if (a->released)
			continue;
		enum reason why = observe ? R_OBSERVED : alloc_reason(st, a, p, pv->p);
		if (a->shared && why == R_PAUSE_FAILED && !(p->flags & MSV_F_FAILED)) {
			bucket_add(&shared, t, a->size, a->share_pysite, a->share_site, a->share_nvtx, &st->oom);
			shared_kinds |= a->shared;
		} else {
			bucket_add(&cats[a->cat][why], t, a->size, a->pysite, a->site, a->nvtx, &st->oom);
		}
		if ((a->flags & MSV_F_WRAPPED) && a->mapped > a->size)
			bucket_add(&overhead, t, a->mapped - a->size, a->pysite, a->site,
				   a->nvtx, &st->oom);
		if (a->cat == MSV_CAT_OTHER && is_no_rule(a->rule))
			bucket_add(&norule, t, a->size, a->pysite, a->site, a->nvtx,
				   &st->oom);
	}
	struct vmm *v, *vt;
	HASH_ITER(hh, st->vmms, v, vt)
		if (!v->maps)
			bucket_add(&vmm, t, v->size, v->pysite, v->site, v->nvtx, &st->oom);

	uint64_t sum = 0;
	for (int c = 0; c < MSV_CAT_COUNT; c++) {
		for (int r = 0; r < R_COUNT; r++) {
			struct bucket *b = &cats[c][r];
			if (!b->count)
				continue;
			char name[64];
			snprintf(name, sizeof(name), "category:%s", _msv_category_name(c));
			json_t *s = source_new(name, (int64_t)b->bytes, b->count, reason_text[r], bucket_sites(b));
			json_object_set_new(s, "category", json_string(_msv_category_name(c)));
			json_object_set_new(s, "action", json_string(_msv_action_name(st->actions[c])));
			json_array_append_new(sources, s);
			sum += b->bytes;
			const char *cn = _msv_category_name(c);
			if (r == R_KEEP && c == MSV_CAT_COMM) {
				/* NCCL exports its buffers to the other ranks: released memory
				 * would be duplicated, not freed (docs/saver.md, the sharing
				 * rule).  Only the driver's checkpoint takes it. */
			} else if (r == R_KEEP) {
				char act[96];
				snprintf(act, sizeof(act), "set actions.%s to %s", cn,
					 c == MSV_CAT_KV ? "discard" : "backup");
				snprintf(buf, sizeof(buf),
					 "%s of %s stayed mapped because the policy keeps it; "
					 "with a releasing action it is wrapped and released on pause%s",
					 _msv_fmt_bytes((long long)b->bytes, b1, sizeof(b1)), cn,
					 c == MSV_CAT_KV ? "" :
					 " (use discard if its contents are not needed after resume)");
				json_array_append_new(recs, recommendation(act, "category", cn,
									   (int64_t)b->bytes, buf));
			} else if (r == R_EXCLUDED) {
				char act[96];
				snprintf(act, sizeof(act), "include %s in the pause", cn);
				snprintf(buf, sizeof(buf),
					 "%s of %s is wrapped but the pause did not name it",
					 _msv_fmt_bytes((long long)b->bytes, b1, sizeof(b1)), cn);
				json_array_append_new(recs, recommendation(act, "category", cn,
									   (int64_t)b->bytes, buf));
			} else if (r == R_WRAP_FAILED) {
				snprintf(buf, sizeof(buf),
					 "%s of %s could not be wrapped and fell back to plain "
					 "allocations; see the wrap_fail records (memsaver analyze --dump)",
					 _msv_fmt_bytes((long long)b->bytes, b1, sizeof(b1)), cn);
				json_array_append_new(recs, recommendation("investigate wrap failures",
									   "category", cn, (int64_t)b->bytes,
									   buf));
			}
		}
	}
	if (shared.count) {
		char why[256] = "wrapped, but its physical memory is referenced outside memsaver (";
		for (unsigned k = MSV_SHARE_RETAINED; k <= MSV_SHARE_DMABUF; k++)
			if (shared_kinds & (1u << k))
				snprintf(why + strlen(why), sizeof(why) - strlen(why), "%s%s",
					 why[strlen(why) - 1] == '(' ? "" : ", ", _msv_share_kind_name(k));
		snprintf(why + strlen(why), sizeof(why) - strlen(why),
			 "): never released, a resume would duplicate it; sites are where it was shared");
		json_t *sites = bucket_sites(&shared);
		const char *top = json_string_value(json_object_get(json_array_get(sites, 0), "site"));
		char top_site[256];
		snprintf(top_site, sizeof(top_site), "%s", top ? top : "unknown");
		json_array_append_new(sources, source_new("shared", (int64_t)shared.bytes, shared.count, why, sites));
		sum += shared.bytes;
		if (shared_kinds & (1u << MSV_SHARE_RETAINED)) {
			snprintf(buf, sizeof(buf),
				 "%s stayed because a handle to it was retained (NCCL registers the buffers of "
				 "collectives captured in CUDA graphs); with NCCL_GRAPH_REGISTER=0 (memsaver run sets it "
				 "unless you did) NCCL copies instead and the memory is released",
				 _msv_fmt_bytes((long long)shared.bytes, b1, sizeof(b1)));
			json_array_append_new(recs, recommendation("set NCCL_GRAPH_REGISTER=0", "site", top_site,
								   (int64_t)shared.bytes, buf));
		}
	}
	if (st->n_ipc_refused) {
		char *site = site_key(t, st->ipc_pysite, st->ipc_site, st->ipc_nvtx);
		snprintf(buf, sizeof(buf),
			 "cuIpcGetMemHandle was refused %llu time(s) on wrapped memory of %s (first at %s): legacy "
			 "CUDA IPC cannot share VMM memory; a first policy rule {\"category\": \"comm\", \"match\": "
			 "{\"python\": \"*%s*\"}} keeps such buffers unwrapped",
			 (unsigned long long)st->n_ipc_refused, _msv_category_name(st->ipc_cat),
			 site ? site : "an unknown site", site ? site : "FILE.py:FUNCTION");
		json_array_append_new(notes, json_string(buf));
		json_array_append_new(recs, recommendation("keep IPC-shared buffers unwrapped", "category",
							   _msv_category_name(st->ipc_cat), 0, buf));
		free(site);
	}
	if (vmm.count) {
		json_array_append_new(sources, source_new("app_vmm", (int64_t)vmm.bytes, vmm.count,
							  "app-owned cuMemCreate handles alive (observed, "
							  "not redirected)",
							  bucket_sites(&vmm)));
		sum += vmm.bytes;
	}
	/* Driver-internal memory, measured as device-memory deltas. */
	int64_t ctx_total = (int64_t)st->driver[MSV_DRV_CONTEXT];
	int64_t ctx_res = (int64_t)(st->driver[MSV_DRV_CONTEXT] - st->ctx_trimmed);
	if (ctx_total || st->ctx_trimmed) {
		json_t *s = source_new("driver:context", ctx_res, 0,
				       "CUDA context (measured around context creation, minus what "
				       "the pause trimmed)",
				       NULL);
		json_object_set_new(s, "created_bytes", jint(ctx_total));
		json_object_set_new(s, "trimmed_bytes", jint((int64_t)st->ctx_trimmed));
		json_object_set_new(s, "resident_bytes", jint(ctx_res));
		json_array_append_new(sources, s);
		sum += (uint64_t)ctx_res;
	}
	static const struct {
		int cause;
		const char *name, *reason;
	} drv[] = {
		{MSV_DRV_MODULES, "driver:modules", "modules loaded by the driver (kernels, globals)"},
		{MSV_DRV_GRAPH_EXEC, "driver:graph_exec",
		 "CUDA graph capture and instantiation (driver-internal, not in the graph pool)"},
		{MSV_DRV_LIBRARY, "driver:library", "library handles (cuBLAS, cuDNN, NCCL) creation"},
		{MSV_DRV_LAZY_LOAD, "driver:lazy_load",
		 "kernels loaded at their first launch (CUDA_MODULE_LOADING=LAZY), with what the library "
		 "set up since the previous reading (handles, streams); sites are the library whose launch "
		 "loaded them and the line that ran it"},
		{MSV_DRV_UNOBSERVED, "driver:unobserved",
		 "device memory that appeared between two observed events with no driver call memsaver "
		 "sees (library handles, streams, memory pools, functions loaded within an already loaded "
		 "module); each site is the interval, named by the events that bound it"},
	};
	for (size_t i = 0; i < sizeof(drv) / sizeof(drv[0]); i++) {
		uint64_t b = st->driver[drv[i].cause];
		struct bucket *bk = &st->drv_sites[drv[i].cause];
		if (!b && !bk->count)
			continue;
		json_t *s = source_new(drv[i].name, (int64_t)b, bk->count, drv[i].reason, bucket_sites(bk));
		if (st->ck_on)
			json_object_set_new(s, "measured",
					    json_string(drv[i].cause == MSV_DRV_MODULES ||
								drv[i].cause == MSV_DRV_GRAPH_EXEC ||
								drv[i].cause == MSV_DRV_LIBRARY ?
							"device-memory delta around the call, minus allocations "
							"recorded meanwhile" :
							"device-memory delta since the previous reading (an "
							"observed event), minus allocations recorded meanwhile"));
		json_array_append_new(sources, s);
		sum += b;
	}
	if (observe) {
		uint64_t b = t->recs[pv->attach].aux2;
		json_t *s = source_new("before_attach", b == MSV_NO_VALUE ? 0 : (int64_t)b, 0,
				       b == MSV_NO_VALUE ?
					       "memory held when memsaver attached; size unknown (NVML has "
					       "no per-process reading of this process)" :
					       "memory held when memsaver attached (NVML per-process "
					       "reading); its call sites and categories were not seen",
				       NULL);
		json_object_set_new(s, "known", json_boolean(b != MSV_NO_VALUE));
		json_array_append_new(sources, s);
		if (b != MSV_NO_VALUE)
			sum += b;
		if (used_before == MSV_NO_VALUE) {
			F = U = (int64_t)sum;
			json_object_set_new(o, "footprint_bytes", jint(F));
			json_object_set_new(o, "reclaimed_share", jshare(R, F));
			json_object_set_new(o, "unreclaimed_bytes", jint(U));
		}
	}
	if (overhead.count) {
		json_array_append_new(sources,
				      source_new("saver:overhead", (int64_t)overhead.bytes, overhead.count,
						 "granularity rounding of wrapped allocations "
						 "still mapped",
						 bucket_sites(&overhead)));
		sum += overhead.bytes;
	}
	json_array_append_new(sources,
			      source_new("unattributed", (int64_t)((uint64_t)U - sum), 0,
					 (int64_t)((uint64_t)U - sum) < 0 ? "records account for more than the device "
						       "reading shows (negative: over-attributed)" :
						       "device memory no record explains",
					 NULL));
	_msv_sources_finish(sources, U, F);
	json_object_set_new(o, "sources", sources);
	json_object_set_new(o, "notes", notes);

	/* Call sites in "other" that no rule matched. */
	HASH_SORT(norule.sites, site_cmp);
	int n = 0;
	for (struct site_agg *s = norule.sites; s && n < 3; s = s->hh.next, n++) {
		if ((int64_t)s->bytes < REC_RULE_MIN)
			break;
		snprintf(buf, sizeof(buf),
			 "%s in %" "llu" " allocation(s) from this site land in \"other\" because no "
			 "rule matches; a policy rule matching it puts it in a wrapped category",
			 _msv_fmt_bytes((long long)s->bytes, b1, sizeof(b1)), (unsigned long long)s->count);
		json_array_append_new(recs, recommendation("add a rule", "site", s->key, (int64_t)s->bytes,
							   buf));
	}
	int64_t g = (int64_t)st->driver[MSV_DRV_GRAPH_EXEC];
	if (g >= REC_DRIVER_MIN) {
		snprintf(buf, sizeof(buf),
			 "%s is held by instantiated CUDA graphs; capturing fewer batch sizes "
			 "(e.g. --cuda-graph-max-bs) shrinks it",
			 _msv_fmt_bytes(g, b1, sizeof(b1)));
		json_array_append_new(recs, recommendation("capture fewer batch sizes", "category",
							   "driver:graph_exec", g, buf));
	}
	int64_t m = (int64_t)st->driver[MSV_DRV_MODULES];
	if (m >= REC_DRIVER_MIN) {
		snprintf(buf, sizeof(buf),
			 "%s went to loaded modules; CUDA_MODULE_LOADING=LAZY loads only the "
			 "kernels that run",
			 _msv_fmt_bytes(m, b1, sizeof(b1)));
		json_array_append_new(recs, recommendation("set CUDA_MODULE_LOADING=LAZY",
							   "category", "driver:modules", m, buf));
	}
	int64_t un = (int64_t)st->driver[MSV_DRV_UNOBSERVED];
	if (un >= REC_DRIVER_MIN) {
		HASH_SORT(st->drv_sites[MSV_DRV_UNOBSERVED].sites, site_cmp);
		const struct site_agg *top = st->drv_sites[MSV_DRV_UNOBSERVED].sites;
		snprintf(buf, sizeof(buf),
			 "%s appeared where no driver call explains it (largest: %s); memsaver.snapshot(LABEL) "
			 "(msv_snapshot) around the code that runs there splits the interval and names it",
			 _msv_fmt_bytes(un, b1, sizeof(b1)), top ? top->key : "?");
		json_array_append_new(recs, recommendation("add snapshot markers", "category", "driver:unobserved",
							   0, buf));
	}
	/* Driver-internal memory stays until the context is destroyed; only the
	 * driver's process checkpoint (docs/deep-pause.md) releases it. */
	int64_t drv_all = ctx_res;
	for (size_t i = 0; i < sizeof(drv) / sizeof(drv[0]); i++)
		drv_all += (int64_t)st->driver[drv[i].cause];
	if (drv_all >= REC_DRIVER_MIN && !observe) {
		snprintf(buf, sizeof(buf),
			 "%s is the driver's own (context, loaded kernels, graphs, library state): no pause "
			 "inside the process releases it; memsaver run --deep-ready and memsaver ctl pause "
			 "--deep checkpoint it away with the context",
			 _msv_fmt_bytes(drv_all, b1, sizeof(b1)));
		json_array_append_new(recs, recommendation("pause --deep", "category", "driver", drv_all, buf));
	}

	for (int c = 0; c < MSV_CAT_COUNT; c++)
		for (int r = 0; r < R_COUNT; r++)
			bucket_clear(&cats[c][r]);
	bucket_clear(&overhead);
	bucket_clear(&vmm);
	bucket_clear(&norule);
	return o;
}

/* ---- build ----------------------------------------------------------- */

/* The readings of the pause record pv->p: "before_pause" (else the last
 * reading of its cycle before it) and "pause" (else the first reading after
 * it, before a resume). */
static void view_readings(const struct msv_trace *t, struct pause_view *pv)
{
	for (size_t i = pv->p; i-- > 0;) {
		const struct msv_rec *r = &t->recs[i];
		if (r->type == MSV_REC_PAUSE || r->type == MSV_REC_RESUME)
			break; /* an earlier cycle's readings are not this one's */
		if (r->type != MSV_REC_PHASE)
			continue;
		const char *l = _msv_trace_string(t, r->site);
		if (l && strcmp(l, "before_pause") == 0) {
			pv->bp = i;
			break;
		}
		if (pv->bp == SIZE_MAX)
			pv->bp = i; /* fallback: the last reading before the pause */
	}
	size_t first_after = SIZE_MAX;
	for (size_t i = pv->p + 1; i < t->n; i++) {
		const struct msv_rec *r = &t->recs[i];
		if (r->type == MSV_REC_RESUME)
			break;
		if (r->type != MSV_REC_PHASE)
			continue;
		const char *l = _msv_trace_string(t, r->site);
		if (first_after == SIZE_MAX)
			first_after = i;
		if (l && strcmp(l, "pause") == 0) {
			pv->ap = i;
			break;
		}
	}
	if (pv->ap == SIZE_MAX)
		pv->ap = first_after;
}

/* The latest deep pause: what the pause left, by source (the residue the
 * checkpoint took), and the device memory after the checkpoint.  The two
 * checkpoint readings are the ctl's (NVML, device-wide): they also count
 * other processes' memory, as every reading does. */
static json_t *deep_pause_json(const struct msv_trace *t, const struct pause_view *dv, json_t *attr,
			       size_t pause_no)
{
	const struct msv_rec *ck = &t->recs[dv->ck];
	const struct msv_rec *b = dv->before != SIZE_MAX ? &t->recs[dv->before] : NULL;
	json_t *o = json_object();
	json_object_set_new(o, "t_ns", jint(rel_ns(t, ck)));
	json_object_set_new(o, "pause_index", attr ? json_integer((json_int_t)pause_no) : json_null());
	json_object_set_new(o, "residue_bytes",
			    attr ? json_incref(json_object_get(attr, "unreclaimed_bytes")) : json_null());
	json_object_set_new(o, "sources", attr ? json_incref(json_object_get(attr, "sources")) : json_array());
	int known = b && b->aux != MSV_NO_VALUE && ck->aux != MSV_NO_VALUE;
	json_object_set_new(o, "device_used_before_bytes", b ? ju64(b->aux) : json_null());
	json_object_set_new(o, "device_used_after_bytes", ju64(ck->aux));
	json_object_set_new(o, "checkpointed_bytes", known ? jint((int64_t)(b->aux - ck->aux)) : json_null());
	json_object_set_new(o, "left_bytes",
			    ck->aux == MSV_NO_VALUE ? json_null() : jint((int64_t)(ck->aux - (uint64_t)dv->baseline)));
	json_object_set_new(o, "baseline_known", json_boolean(dv->baseline_known));
	int restored = 0;
	for (size_t i = dv->ck + 1; i < t->n && !restored; i++)
		restored = t->recs[i].type == MSV_REC_RESUME;
	json_object_set_new(o, "resumed", json_boolean(restored));
	return o;
}

static json_t *phase_json(struct state *st, const struct msv_rec *r, const struct pause_view *pv)
{
	const struct msv_trace *t = st->t;
	const char *label = _msv_trace_string(t, r->site);
	json_t *o = json_object();
	json_object_set_new(o, "label", json_string(label ? label : ""));
	json_object_set_new(o, "t_ns", jint(rel_ns(t, r)));
	json_object_set_new(o, "device_total_bytes", ju64(r->size));
	json_object_set_new(o, "device_used_bytes", ju64(r->aux));
	json_object_set_new(o, "process_used_bytes", ju64(r->aux2));
	json_object_set_new(o, "footprint_bytes",
			    r->aux == MSV_NO_VALUE ? json_null() : jint((int64_t)(r->aux - (uint64_t)pv->baseline)));
	json_t *cats = json_object();
	for (int c = 0; c < MSV_CAT_COUNT; c++)
		json_object_set_new(cats, _msv_category_name(c),
				    json_pack("{s:I, s:I, s:I, s:I}", "allocated_bytes",
					      (json_int_t)st->allocated[c], "resident_bytes",
					      (json_int_t)st->resident[c], "released_bytes",
					      (json_int_t)(st->allocated[c] - st->resident[c]),
					      "count", (json_int_t)st->count[c]));
	json_object_set_new(o, "categories", cats);
	json_object_set_new(o, "app_vmm_bytes", jint((int64_t)st->vmm_bytes));
	uint64_t dsum = 0;
	for (int c = 1; c < DRV_SLOTS; c++)
		dsum += st->driver[c];
	int64_t drv = (int64_t)(dsum - st->ctx_trimmed);
	json_object_set_new(o, "driver_bytes", jint(drv));
	return o;
}

static json_t *timeline_json(struct state *st)
{
	json_t *arr = json_array();
	if (!st->n_tl)
		return arr;
	uint64_t t0 = (uint64_t)st->tl[0].t, t1 = (uint64_t)st->tl[st->n_tl - 1].t;
	uint64_t width = st->n_tl > MAX_TIMELINE ? (t1 - t0) / (MAX_TIMELINE - 1) + 1 : 0;
	for (size_t i = 0; i < st->n_tl; i++) {
		struct tpoint *p = &st->tl[i];
		/* Coalesce: keep the last point of each time bucket (and the first). */
		if (width && i && i + 1 < st->n_tl &&
		    ((uint64_t)st->tl[i + 1].t - t0) / width == ((uint64_t)p->t - t0) / width)
			continue;
		json_t *o = json_object();
		json_object_set_new(o, "t_ns", jint(p->t));
		for (int c = 0; c < MSV_CAT_COUNT; c++)
			json_object_set_new(o, _msv_category_name(c), jint((int64_t)p->v[c]));
		json_object_set_new(o, "app_vmm", jint((int64_t)p->v[MSV_CAT_COUNT]));
		json_array_append_new(arr, o);
	}
	return arr;
}

static json_t *event_json(const struct msv_trace *t, const struct msv_rec *r)
{
	json_t *o = json_object();
	int pause = r->type == MSV_REC_PAUSE;
	json_object_set_new(o, "kind", json_string(pause ? "pause" : "resume"));
	json_object_set_new(o, "t_ns", jint(rel_ns(t, r)));
	json_object_set_new(o, "categories", _msv_mask_json(r->addr));
	json_object_set_new(o, "bytes", jint((int64_t)r->size));
	json_object_set_new(o, "duration_ms", json_real((double)r->aux / 1e6));
	json_object_set_new(o, pause ? "backup_bytes" : "restored_bytes", jint((int64_t)r->aux2));
	if (pause)
		json_object_set_new(o, "backup_skipped_bytes", jint((int64_t)r->site << 10));
	json_object_set_new(o, "failed", json_boolean(r->flags & MSV_F_FAILED));
	return o;
}

static json_t *gbps(uint64_t bytes, uint32_t us)
{
	return us ? json_real((double)bytes / ((double)us * 1e3)) : json_null();
}

json_t *_msv_report_build(const struct msv_trace *t)
{
	struct state st;
	struct pause_view pv = {.p = SIZE_MAX, .bp = SIZE_MAX, .ap = SIZE_MAX, .attach = SIZE_MAX,
				.ck = SIZE_MAX, .before = SIZE_MAX};
	struct pause_view deep = pv;
	json_t *rep = json_object(), *policy = NULL;
	const char *cmdline = NULL, *hostname = NULL, *devname = NULL, *cupti_why = NULL;
	int64_t rank = -1, cupti = -1;
	uint64_t devtotal = MSV_NO_VALUE, gran = MSV_NO_VALUE, staging = MSV_NO_VALUE;
	int devindex = 0;
	size_t resume_idx = SIZE_MAX, baseline_idx = SIZE_MAX, n_pauses = 0;
	size_t attach_idx = SIZE_MAX, last_phase = SIZE_MAX;

	if (!rep)
		return NULL;
	memset(&st, 0, sizeof(st));
	st.t = t;
	for (int c = 0; c < MSV_CAT_COUNT; c++)
		st.actions[c] = _msv_category_default_action(c);

	/* First pass: metadata and where the latest pause and its readings are. */
	for (size_t i = 0; i < t->n; i++) {
		const struct msv_rec *r = &t->recs[i];
		if (r->type == MSV_REC_META) {
			const char *s = _msv_trace_string(t, r->site);
			switch (r->api) {
			case MSV_META_CMDLINE: cmdline = s; break;
			case MSV_META_HOSTNAME: hostname = s; break;
			case MSV_META_POLICY:
				json_decref(policy);
				policy = s ? json_loads(s, 0, NULL) : NULL;
				break;
			case MSV_META_DEVICE_NAME: devname = s; devindex = r->device; break;
			case MSV_META_DEVICE_TOTAL: devtotal = r->size; break;
			case MSV_META_RANK: rank = (int64_t)r->size; break;
			case MSV_META_CUPTI: cupti = (int64_t)r->size; cupti_why = s; break;
			case MSV_META_GRANULARITY: gran = r->size; break;
			case MSV_META_STAGING: staging = r->size; break;
			default: break;
			}
		} else if (r->type == MSV_REC_PHASE) {
			const char *l = _msv_trace_string(t, r->site);
			if (baseline_idx == SIZE_MAX && l && strcmp(l, "baseline") == 0)
				baseline_idx = i;
			if (attach_idx == SIZE_MAX && l && strcmp(l, "attach") == 0)
				attach_idx = i;
			last_phase = i;
			if (devtotal == MSV_NO_VALUE && r->size != MSV_NO_VALUE && r->size)
				devtotal = r->size;
			if (l && strcmp(l, "checkpointed") == 0)
				deep.ck = i;
		} else if (r->type == MSV_REC_PAUSE) {
			pv.p = i;
			n_pauses++;
		}
	}
	if (policy)
		policy_actions(&st, policy);
	if (baseline_idx != SIZE_MAX && t->recs[baseline_idx].aux != MSV_NO_VALUE) {
		pv.baseline = (int64_t)t->recs[baseline_idx].aux;
		pv.baseline_known = 1;
	}
	/* A trace of `memsaver attach` has no pause: its attribution is the
	 * state at the last reading, everything observed still resident. */
	if (pv.p == SIZE_MAX && attach_idx != SIZE_MAX) {
		pv.attach = attach_idx;
		pv.p = pv.bp = pv.ap = last_phase;
	} else if (pv.p != SIZE_MAX) {
		view_readings(t, &pv);
		for (size_t i = pv.p + 1; resume_idx == SIZE_MAX && i < t->n; i++)
			if (t->recs[i].type == MSV_REC_RESUME)
				resume_idx = i;
	}
	/* The latest deep pause: its "checkpointed" reading and the pause
	 * before it, explained like the latest pause (both may be one). */
	if (deep.ck != SIZE_MAX && pv.attach == SIZE_MAX) {
		for (size_t i = deep.ck; i-- > 0 && deep.p == SIZE_MAX;)
			if (t->recs[i].type == MSV_REC_PAUSE)
				deep.p = i;
		deep.baseline = pv.baseline;
		deep.baseline_known = pv.baseline_known;
		if (deep.p != SIZE_MAX)
			view_readings(t, &deep);
		for (size_t i = deep.ck; i-- > 0 && deep.before == SIZE_MAX;) {
			const char *l = _msv_trace_string(t, t->recs[i].site);
			if (t->recs[i].type == MSV_REC_PHASE && l && !strcmp(l, "before_checkpoint"))
				deep.before = i;
		}
	}

	/* Second pass: replay. */
	json_t *phases = json_array(), *events = json_array(), *recs = json_array();
	json_t *attr = NULL, *deep_attr = NULL, *scratch = json_array();
	size_t freeze = pv.ap != SIZE_MAX ? pv.ap : pv.p;
	size_t deep_freeze = deep.ap != SIZE_MAX ? deep.ap : deep.p;
	size_t pause_no = 0, deep_no = 0;
	for (size_t i = 0; i < t->n; i++) {
		const struct msv_rec *r = &t->recs[i];
		apply(&st, r, i);
		if (r->type == MSV_REC_PHASE)
			json_array_append_new(phases, phase_json(&st, r, &pv));
		if (r->type == MSV_REC_PAUSE || r->type == MSV_REC_RESUME)
			json_array_append_new(events, event_json(t, r));
		if (r->type == MSV_REC_PAUSE)
			pause_no++;
		if (i == freeze && pv.p != SIZE_MAX) {
			attr = attribution(&st, &pv, recs);
			json_object_set_new(attr, "pause_index", pv.attach != SIZE_MAX ? json_null() :
						  json_integer((json_int_t)pause_no - 1));
		}
		if (i == deep_freeze && deep.p != SIZE_MAX) {
			/* Its recommendations are the latest pause's business. */
			deep_attr = deep.p == pv.p ? json_incref(attr) : attribution(&st, &deep, scratch);
			deep_no = pause_no - 1;
		}
	}
	json_decref(scratch);
	sort_recs(recs);

	char vbuf[64];
	snprintf(vbuf, sizeof(vbuf), "%s", MSV_VERSION_STR);
	json_object_set_new(rep, "schema_version", json_integer(MSV_REPORT_SCHEMA_VERSION));
	json_object_set_new(rep, "tool", json_pack("{s:s, s:s}", "name", "memsaver", "version", vbuf));
	json_t *proc = json_object();
	json_object_set_new(proc, "pid", json_integer(t->hdr.pid));
	json_object_set_new(proc, "cmdline", cmdline ? json_string(cmdline) : json_null());
	json_object_set_new(proc, "hostname", hostname ? json_string(hostname) : json_null());
	if (rank >= 0)
		json_object_set_new(proc, "rank", jint(rank));
	json_object_set_new(proc, "cupti",
			    json_pack("{s:o, s:o}", "attached",
				      cupti < 0 ? json_null() : json_boolean(cupti > 0), "why",
				      cupti_why ? json_string(cupti_why) : json_null()));
	json_object_set_new(rep, "process", proc);
	json_object_set_new(rep, "device",
			    json_pack("{s:i, s:o, s:o}", "index", devindex, "name",
				      devname ? json_string(devname) : json_null(), "total_bytes",
				      ju64(devtotal)));
	json_object_set_new(rep, "policy", policy ? policy : json_null());
	json_object_set_new(rep, "trace",
			    json_pack("{s:s, s:b, s:I, s:I, s:I}", "name", t->name, "torn", t->torn,
				      "records", (json_int_t)t->n, "strings",
				      (json_int_t)(t->n_strings ? t->n_strings - 1 : 0),
				      "start_realtime_ns", (json_int_t)t->hdr.start_realtime_ns));
	json_object_set_new(rep, "saver",
			    json_pack("{s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:I}", "granularity_bytes",
				      ju64(gran), "staging_host_bytes", ju64(staging), "allocations",
				      (json_int_t)st.n_alloc, "wrapped_allocations",
				      (json_int_t)st.n_wrapped, "frees", (json_int_t)st.n_free,
				      "unmatched_frees", (json_int_t)st.n_free_unknown,
				      "wrap_failures", (json_int_t)st.n_wrap_fail, "app_vmm_handles",
				      (json_int_t)st.n_vmm_create));
	json_object_set_new(rep, "baseline",
			    json_pack("{s:b, s:I}", "known", pv.baseline_known, "device_used_bytes",
				      (json_int_t)pv.baseline));
	json_object_set_new(rep, "phases", phases);
	json_object_set_new(rep, "pauses", json_integer((json_int_t)n_pauses));
	if (attr)
		json_object_set_new(rep, "attribution", attr);
	if (deep.ck != SIZE_MAX && pv.attach == SIZE_MAX)
		json_object_set_new(rep, "deep_pause", deep_pause_json(t, &deep, deep_attr, deep_no));
	json_decref(deep_attr);
	json_object_set_new(rep, "recommendations", recs);

	json_t *tim = json_object();
	const struct msv_rec *pr = pv.p != SIZE_MAX && pv.attach == SIZE_MAX ? &t->recs[pv.p] : NULL;
	const struct msv_rec *rr = resume_idx != SIZE_MAX ? &t->recs[resume_idx] : NULL;
	json_object_set_new(tim, "pause_ms", pr ? json_real((double)pr->aux / 1e6) : json_null());
	json_object_set_new(tim, "resume_ms", rr ? json_real((double)rr->aux / 1e6) : json_null());
	json_object_set_new(tim, "backup_bytes", pr ? jint((int64_t)pr->aux2) : json_null());
	json_object_set_new(tim, "backup_skipped_bytes", pr ? jint((int64_t)pr->site << 10) : json_null());
	json_object_set_new(tim, "restore_bytes", rr ? jint((int64_t)rr->aux2) : json_null());
	json_object_set_new(tim, "backup_gbps", pr ? gbps(pr->aux2, pr->pysite) : json_null());
	json_object_set_new(tim, "restore_gbps", rr ? gbps(rr->aux2, rr->pysite) : json_null());
	json_object_set_new(tim, "pause_failed",
			    pr ? json_boolean(pr->flags & MSV_F_FAILED) : json_null());
	json_object_set_new(tim, "resume_failed",
			    rr ? json_boolean(rr->flags & MSV_F_FAILED) : json_null());
	json_object_set_new(rep, "timings", tim);
	json_object_set_new(rep, "events", events);
	json_object_set_new(rep, "timeline", timeline_json(&st));

	struct alloc *a, *at;
	HASH_ITER(hh, st.allocs, a, at)
	{
		HASH_DEL(st.allocs, a);
		free(a);
	}
	struct vmm *v, *vt;
	HASH_ITER(hh, st.vmms, v, vt)
	{
		HASH_DEL(st.vmms, v);
		free(v);
	}
	free(st.tl);
	for (int c = 0; c < DRV_SLOTS; c++)
		bucket_clear(&st.drv_sites[c]);
	free(st.ck_prev);
	if (st.oom) {
		json_decref(rep);
		return NULL;
	}
	return rep;
}
