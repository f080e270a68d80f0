/* Chrome trace-event JSON drawn from the report alone (ui.perfetto.dev and
 * chrome://tracing open it): one counter track per category from the
 * timeline, device-used readings from the phases, instants for phases and
 * pause/resume.  ts is in microseconds, as the format wants. */
#include "analyzer.h"

#include <errno.h>
#include <string.h>

#include "tracer/categories.h"

static json_int_t iget(const json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static json_t *ev(const char *ph, const char *name, json_int_t pid, json_int_t t_ns, json_t *args)
{
	json_t *e = json_object();
	json_object_set_new(e, "ph", json_string(ph));
	json_object_set_new(e, "name", json_string(name));
	json_object_set_new(e, "pid", json_integer(pid));
	json_object_set_new(e, "tid", json_integer(0));
	json_object_set_new(e, "ts", json_real((double)t_ns / 1000.0));
	if (args)
		json_object_set_new(e, "args", args);
	return e;
}

static void one_process(const json_t *r, json_t *evs)
{
	const json_t *p = json_object_get(r, "process");
	json_int_t pid = iget(p, "pid");
	char name[512];
	const char *cmd = json_string_value(json_object_get(p, "cmdline"));
	snprintf(name, sizeof(name), "pid %lld%s%.200s", (long long)pid, cmd ? ": " : "",
		 cmd ? cmd : "");
	json_array_append_new(evs, ev("M", "process_name", pid, 0, json_pack("{s:s}", "name", name)));
	json_array_append_new(evs, ev("M", "thread_name", pid, 0,
				      json_pack("{s:s}", "name", "memsaver events")));

	size_t i;
	json_t *x;
	json_array_foreach(json_object_get(r, "timeline"), i, x)
	{
		json_int_t t = iget(x, "t_ns");
		for (int c = 0; c <= MSV_CAT_COUNT; c++) {
			const char *cn = c < MSV_CAT_COUNT ? _msv_category_name(c) : "app_vmm";
			char cname[64];
			snprintf(cname, sizeof(cname), "resident %s", cn);
			json_array_append_new(evs, ev("C", cname, pid, t,
						      json_pack("{s:I}", "bytes", iget(x, cn))));
		}
	}
	json_array_foreach(json_object_get(r, "phases"), i, x)
	{
		json_int_t t = iget(x, "t_ns");
		const char *l = json_string_value(json_object_get(x, "label"));
		json_t *e = ev("i", l ? l : "phase", pid, t,
			       json_pack("{s:O, s:O}", "device_used_bytes",
					 json_object_get(x, "device_used_bytes"), "footprint_bytes",
					 json_object_get(x, "footprint_bytes")));
		json_object_set_new(e, "s", json_string("p"));
		json_object_set_new(e, "cat", json_string("phase"));
		json_array_append_new(evs, e);
		if (json_is_integer(json_object_get(x, "device_used_bytes")))
			json_array_append_new(evs, ev("C", "device used", pid, t,
						      json_pack("{s:I}", "bytes",
								iget(x, "device_used_bytes"))));
	}
	json_array_foreach(json_object_get(r, "events"), i, x)
	{
		const char *k = json_string_value(json_object_get(x, "kind"));
		json_t *e = ev("i", k ? k : "event", pid, iget(x, "t_ns"), json_deep_copy(x));
		json_object_set_new(e, "s", json_string("p"));
		json_object_set_new(e, "cat", json_string("saver"));
		json_array_append_new(evs, e);
	}
}

int _msv_render_perfetto(const json_t *r, FILE *out)
{
	json_t *doc = json_object(), *evs = json_array();
	json_t *procs = json_object_get(r, "processes");
	if (procs) {
		size_t i;
		json_t *p;
		json_array_foreach(procs, i, p)
			one_process(p, evs);
	} else {
		one_process(r, evs);
	}
	json_object_set_new(doc, "traceEvents", evs);
	json_object_set_new(doc, "displayTimeUnit", json_string("ms"));
	int rc = json_dumpf(doc, out, JSON_COMPACT) == 0 ? 0 : -EIO;
	fputc('\n', out);
	json_decref(doc);
	return rc == 0 && !ferror(out) ? 0 : -EIO;
}
