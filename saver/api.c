/* The public C API (include/memsaver.h), the status the control socket
 * reports, and the saver's part of the process lifecycle: control socket
 * at start, report at exit. */
#include "memsaver.h"

#include <errno.h>
#include <pthread.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analyzer/analyzer.h"
#include "control.h"
#include "deep.h"
#include "pause.h"
#include "regions.h"
#include "state.h"
#include "status.h"
#include "tracer/driver.h"
#include "tracer/log.h"
#include "tracer/options.h"
#include "tracer/thread.h"
#include "tracer/tracer.h"

#define MSV_API __attribute__((visibility("default")))

static __thread char last_error[1024];

static int fail(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	MSV_WARN("%s", last_error);
	return rc;
}

MSV_API const char *msv_last_error(void)
{
	return last_error;
}

static int ready(const char *what)
{
	last_error[0] = '\0';
	if (!_msv_tracer_active())
		return fail(-ENODEV, "%s: memsaver is not active in this process (not started under `memsaver "
				     "run`, no CUDA yet, or disabled by a bad policy)", what);
	return 0;
}

/* While the driver holds this process locked or checkpointed, a CUDA call
 * blocks until the unlock, which only a resume brings: refuse instead. */
static int not_deep(const char *what)
{
	enum msv_state s = _msv_state_deep();
	if (s == MSV_STATE_RUNNING)
		return 0;
	return fail(-EAGAIN, "%s: refused: the process is %s by the driver's process checkpoint (deep pause); "
			     "msv_resume or `memsaver ctl resume` restores it first", what, _msv_state_name(s));
}

/* The categories a pause or resume acts on: those named, or every category
 * the policy wraps. */
static int mask_of(const char *what, const char *cats, unsigned *mask)
{
	char bad[64];
	if (_msv_category_mask_parse(cats, mask, bad, sizeof(bad)) != 0)
		return fail(-EINVAL, "%s: unknown category \"%s\" (expected a comma-separated list of weights, "
				     "kv, graph, workspace, comm, other)", what, bad);
	unsigned wrapped = 0;
	for (int c = 0; c < MSV_CAT_COUNT; c++)
		if (_msv_policy_action(_msv_tracer_policy(), c) != MSV_ACT_KEEP)
			wrapped |= 1u << c;
	if (cats && *cats && (*mask & ~wrapped))
		MSV_WARN("%s: some of \"%s\" have action keep in the policy and are never released", what, cats);
	*mask &= wrapped;
	return 0;
}

/* The configured report follows every pause and resume; a note the call
 * left in last_error (nothing to do) outlives the report's own call. */
static void report_after_change(void)
{
	char note[sizeof(last_error)];
	if (!*_msv_options()->report)
		return;
	memcpy(note, last_error, sizeof(note));
	if (msv_report_write(NULL) == 0)
		memcpy(last_error, note, sizeof(note));
}

MSV_API int msv_pause(const char *categories)
{
	unsigned mask;
	int rc = ready("msv_pause");
	if (rc == 0)
		rc = not_deep("msv_pause");
	if (rc == 0)
		rc = mask_of("msv_pause", categories, &mask);
	if (rc == 0)
		rc = _msv_saver_pause(mask, last_error, sizeof(last_error));
	if (rc == 0)
		report_after_change();
	return rc;
}

MSV_API int msv_pause_deep(const char *categories)
{
	unsigned mask;
	char why[sizeof(last_error)];
	int rc = ready("msv_pause_deep");
	if (rc == 0)
		rc = not_deep("msv_pause_deep");
	if (rc == 0)
		rc = mask_of("msv_pause_deep", categories, &mask);
	if (rc)
		return rc;
	rc = _msv_deep_ctl("pause", categories, why, sizeof(why));
	if (_msv_state_deep() == MSV_STATE_CHECKPOINTED)
		return 0;
	return fail(rc ? rc : -EIO, "msv_pause_deep: %s%s", rc ? why : "the ctl left the process not checkpointed",
		    _msv_saver_paused() ? " (the process is normally paused: msv_resume brings it back)" : "");
}

MSV_API int msv_resume(const char *categories)
{
	unsigned mask;
	char why[sizeof(last_error)];
	int rc = ready("msv_resume");
	if (rc == 0 && _msv_state_deep() != MSV_STATE_RUNNING) {
		/* The restore must come from another process, which then
		 * resumes through the control socket (deep.h). */
		if ((rc = _msv_deep_ctl("resume", categories, why, sizeof(why))) != 0)
			return fail(rc, "msv_resume: %s", why);
		return 0;
	}
	if (rc == 0)
		rc = mask_of("msv_resume", categories, &mask);
	if (rc == 0)
		rc = _msv_saver_resume(mask, last_error, sizeof(last_error));
	if (rc == 0)
		report_after_change();
	return rc;
}

MSV_API int msv_snapshot(const char *label)
{
	int rc = ready("msv_snapshot");
	if (rc)
		return rc;
	if (!label || !*label)
		return fail(-EINVAL, "msv_snapshot: a label is required");
	if ((rc = not_deep("msv_snapshot")) != 0)
		return rc;
	_msv_tracer_phase(label);
	return 0;
}

MSV_API int msv_region_begin(const char *category)
{
	int cat = _msv_category_parse(category);
	if (cat < 0)
		return fail(-EINVAL, "msv_region_begin: unknown category \"%s\" (expected weights, kv, graph, "
				     "workspace, comm or other)", category ? category : "(null)");
	struct msv_tls *t = _msv_tls();
	if (t->region1)
		return fail(-EAGAIN, "msv_region_begin: a region (%s) is already open on this thread; regions "
				     "do not nest", _msv_category_name(t->region1 - 1));
	t->region1 = cat + 1;
	return 0;
}

MSV_API int msv_region_end(void)
{
	struct msv_tls *t = _msv_tls();
	if (!t->region1)
		return fail(-EAGAIN, "msv_region_end: no region is open on this thread");
	t->region1 = 0;
	return 0;
}

/* The live report: the analyzer run over the very bytes of the trace. */
static json_t *live_report(char *err, size_t errlen)
{
	void *buf;
	size_t len;
	struct msv_trace *t = NULL;
	if (_msv_trace_copy(_msv_tracer_log(), &buf, &len) != 0) {
		snprintf(err, errlen, "out of memory copying the event log");
		return NULL;
	}
	int rc = _msv_trace_parse(buf, len, "live", &t, err, errlen);
	free(buf);
	if (rc != 0)
		return NULL;
	json_t *rep = _msv_report_build(t);
	_msv_trace_free(t);
	if (!rep)
		snprintf(err, errlen, "out of memory building the report");
	return rep;
}

MSV_API int msv_report_write(const char *path)
{
	int rc = ready("msv_report_write");
	if (rc)
		return rc;
	char exp[4096], tmp[4200], err[512];
	const char *tmpl = path && *path ? path : _msv_options()->report;
	if (!*tmpl)
		return fail(-EINVAL, "msv_report_write: no path given and MEMSAVER_REPORT is not set");
	if (_msv_expand_path(tmpl, getpid(), exp, sizeof(exp)) != 0)
		return fail(-ENAMETOOLONG, "msv_report_write: path too long: %s", tmpl);
	/* Write a private temporary file, then rename: a reader never sees half
	 * a report, and writers (control thread, application, exit handler)
	 * never share a file.  One writer at a time, so the report built last
	 * is the one that stays. */
	static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;
	pthread_mutex_lock(&write_lock);
	json_t *rep = live_report(err, sizeof(err));
	if (!rep) {
		pthread_mutex_unlock(&write_lock);
		return fail(-EIO, "msv_report_write: %s", err);
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", exp);
	errno = 0;
	int fd = mkstemp(tmp), e = 0;
	if (fd < 0)
		e = errno;
	/* mkstemp makes it 0600; reports were always 0644 under umask 022. */
	else if (fchmod(fd, 0644) != 0 || json_dumpfd(rep, fd, JSON_INDENT(2) | JSON_SORT_KEYS) != 0)
		e = errno ? errno : EIO;
	if (fd >= 0 && close(fd) != 0 && !e)
		e = errno;
	if (fd >= 0 && !e && rename(tmp, exp) != 0)
		e = errno;
	if (fd >= 0 && e)
		unlink(tmp);
	pthread_mutex_unlock(&write_lock);
	json_decref(rep);
	if (e)
		return fail(-EIO, "msv_report_write: cannot write %s: %s", exp, strerror(e));
	return 0;
}

json_t *_msv_status_json(void)
{
	struct {
		uint64_t wrapped, resident, released, passthrough, shared;
		unsigned count;
	} c[MSV_CAT_COUNT];
	uint64_t host = 0;
	memset(c, 0, sizeof(c));
	_msv_regions_lock();
	struct msv_region *r, *tmp;
	HASH_ITER(hh, _msv_regions_all(), r, tmp) {
		host += _msv_region_host_bytes(r);
		c[r->cat].shared += r->shared ? r->mapped : 0;
		c[r->cat].count++;
		if (!r->wrapped)
			c[r->cat].passthrough += r->size;
		else if (r->resident)
			c[r->cat].wrapped += r->mapped, c[r->cat].resident += r->mapped;
		else
			c[r->cat].wrapped += r->mapped, c[r->cat].released += r->mapped;
	}
	_msv_regions_unlock();
	unsigned paused = _msv_saver_paused();
	json_t *cats = json_object(), *plist = json_array();
	for (int i = 0; i < MSV_CAT_COUNT; i++) {
		json_object_set_new(cats, _msv_category_name(i),
				    json_pack("{s:I,s:I,s:I,s:I,s:I,s:i,s:s,s:s}", "wrapped_bytes", (json_int_t)c[i].wrapped,
					      "resident_bytes", (json_int_t)c[i].resident, "released_bytes",
					      (json_int_t)c[i].released, "passthrough_bytes",
					      (json_int_t)c[i].passthrough, "shared_bytes", (json_int_t)c[i].shared,
					      "count", (int)c[i].count, "action",
					      _msv_action_name(_msv_policy_action(_msv_tracer_policy(), i)), "state",
					      (paused & (1u << i)) ? "paused" : "resident"));
		if (paused & (1u << i))
			json_array_append_new(plist, json_string(_msv_category_name(i)));
	}
	struct msv_timing p, s;
	_msv_saver_last(&p, &s);
	json_t *st = json_pack("{s:i,s:s,s:o,s:o,s:b,s:b}", "pid", (int)getpid(), "session",
			       _msv_options()->session[0] ? _msv_options()->session : "default", "paused", plist,
			       "categories", cats, "active", _msv_tracer_active(), "redirect",
			       _msv_options()->redirect);
	json_t *lp = p.valid ? json_pack("{s:f,s:f,s:f,s:I,s:I,s:I,s:b}", "ms", p.dur_ns / 1e6, "copy_ms",
					 p.copy_ns / 1e6, "unmap_ms", p.map_ns / 1e6, "released_bytes",
					 (json_int_t)p.bytes, "backup_bytes", (json_int_t)p.copy_bytes,
					 "backup_skipped_bytes", (json_int_t)p.skipped_bytes, "ok", p.ok)
			     : json_null();
	json_t *lr = s.valid ? json_pack("{s:f,s:f,s:f,s:I,s:I,s:s,s:b}", "ms", s.dur_ns / 1e6, "copy_ms",
					 s.copy_ns / 1e6, "map_ms", s.map_ns / 1e6, "restored_bytes",
					 (json_int_t)s.bytes, "restore_bytes", (json_int_t)s.copy_bytes, "restore_by",
					 s.by_kernel ? "kernel" : "copy_engines", "ok", s.ok)
			     : json_null();
	json_object_set_new(st, "backup_host_bytes", json_integer((json_int_t)host));
	json_object_set_new(st, "residue",
			    json_string(_msv_policy_residue(_msv_tracer_policy()) == MSV_RESIDUE_CHECKPOINT
						? "checkpoint" : "keep"));
	json_object_set_new(st, "last_pause", lp);
	json_object_set_new(st, "last_resume", lr);
	return st;
}

static void on_ready(void)
{
	if (_msv_options()->control)
		_msv_control_start();
}

static void on_exit_hook(void)
{
	/* MEMSAVER_REPORT=%p.json reaches every child; one that never made a
	 * context has nothing to report, and an empty report only misleads. */
	if (*_msv_options()->report && _msv_tracer_device_seen() && msv_report_write(NULL) != 0)
		MSV_ERROR("the report at exit was not written: %s", last_error);
	_msv_control_stop();
}

__attribute__((constructor)) static void api_init(void)
{
	_msv_ready_hook = on_ready;
	_msv_exit_hook = on_exit_hook;
}
