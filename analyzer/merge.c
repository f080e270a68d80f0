/* Several reports into one, the schema check, and the diff of two reports.
 *
 * Merged sources are keyed by _msv_source_key (source name, plus the reason
 * for category sources) so "category:kv (excluded)" of rank 0 adds to the
 * same of rank 1 but never to "category:kv (wrap failed)".  Because every
 * process's sources add up to its unreclaimed bytes, the sums do too. */
#include "analyzer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#ifndef MSV_VERSION_STR
#define MSV_VERSION_STR "0.0.0"
#endif

static json_int_t iget(const json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

/* Wrapping sums: a damaged report must give an error, not overflow. */
static json_int_t wadd(json_int_t a, json_int_t b)
{
	return (json_int_t)((unsigned long long)a + (unsigned long long)b);
}

static json_int_t wsub(json_int_t a, json_int_t b)
{
	return (json_int_t)((unsigned long long)a - (unsigned long long)b);
}

static json_t *jshare(json_int_t part, json_int_t whole)
{
	return whole ? json_real((double)part / (double)whole) : json_null();
}

/* Add one site list into a {site: {bytes, count}} object. */
static void add_sites(json_t *acc, const json_t *sites)
{
	size_t i;
	json_t *s;
	json_array_foreach(sites, i, s)
	{
		const char *k = json_string_value(json_object_get(s, "site"));
		if (!k)
			continue;
		json_t *e = json_object_get(acc, k);
		if (!e) {
			e = json_pack("{s:I, s:I}", "bytes", (json_int_t)0, "count", (json_int_t)0);
			json_object_set_new(acc, k, e);
		}
		json_object_set_new(e, "bytes", json_integer(wadd(iget(e, "bytes"), iget(s, "bytes"))));
		json_object_set_new(e, "count", json_integer(wadd(iget(e, "count"), iget(s, "count"))));
	}
}

static int site_cmp(const void *pa, const void *pb)
{
	const json_t *a = *(const json_t *const *)pa, *b = *(const json_t *const *)pb;
	json_int_t x = iget(a, "bytes"), y = iget(b, "bytes");
	if (x != y)
		return x > y ? -1 : 1;
	return strcmp(json_string_value(json_object_get(a, "site")),
		      json_string_value(json_object_get(b, "site")));
}

static json_t *top_sites(const json_t *acc)
{
	size_t n = json_object_size(acc), i = 0;
	json_t **v = calloc(n ? n : 1, sizeof(*v)), *arr = json_array();
	const char *k;
	json_t *e;
	if (!v)
		return arr;
	json_object_foreach((json_t *)acc, k, e)
		v[i++] = json_pack("{s:s, s:I, s:I}", "site", k, "bytes", iget(e, "bytes"), "count",
				   iget(e, "count"));
	qsort(v, n, sizeof(*v), site_cmp);
	for (i = 0; i < n; i++) {
		if (i < 5)
			json_array_append_new(arr, v[i]);
		else
			json_decref(v[i]);
	}
	free(v);
	return arr;
}

static const char *report_name(const json_t *r)
{
	const char *n = json_string_value(json_object_get(json_object_get(r, "trace"), "name"));
	return n ? n : "merged";
}

json_t *_msv_report_merge(struct msv_trace *const *traces, size_t n)
{
	json_t *rep = json_object(), *procs = json_array();
	json_t *acc = json_object(); /* key -> merged source */
	json_t *sites = json_object(); /* key -> {site: {bytes,count}} */
	json_t *recs = json_array(), *notes = json_array();
	json_int_t F = 0, R = 0, U = 0, with_pause = 0;
	char key[512];

	if (!rep || !procs || !acc || !sites || !recs || !notes)
		goto oom;
	for (size_t i = 0; i < n; i++) {
		json_t *r = _msv_report_build(traces[i]);
		if (!r)
			goto oom;
		json_array_append_new(procs, r);
		json_t *a = json_object_get(r, "attribution");
		json_int_t pid = iget(json_object_get(r, "process"), "pid");
		size_t j;
		json_t *x;
		json_array_foreach(json_object_get(r, "recommendations"), j, x)
		{
			json_t *c = json_deep_copy(x);
			json_object_set_new(c, "pid", json_integer(pid));
			json_object_set_new(c, "trace", json_string(report_name(r)));
			json_array_append_new(recs, c);
		}
		if (!a) {
			char b[512];
			snprintf(b, sizeof(b), "%s (pid %lld): no pause; not in the totals",
				 report_name(r), (long long)pid);
			json_array_append_new(notes, json_string(b));
			continue;
		}
		with_pause++;
		F = wadd(F, iget(a, "footprint_bytes"));
		R = wadd(R, iget(a, "reclaimed_bytes"));
		U = wadd(U, iget(a, "unreclaimed_bytes"));
		json_array_foreach(json_object_get(a, "notes"), j, x)
		{
			char b[768];
			snprintf(b, sizeof(b), "%s (pid %lld): %s", report_name(r), (long long)pid,
				 json_string_value(x) ? json_string_value(x) : "");
			json_array_append_new(notes, json_string(b));
		}
		json_array_foreach(json_object_get(a, "sources"), j, x)
		{
			_msv_source_key(x, key, sizeof(key));
			json_t *m = json_object_get(acc, key);
			if (!m) {
				m = json_object();
				json_object_set_new(m, "source", json_deep_copy(json_object_get(x, "source")));
				if (json_object_get(x, "reason"))
					json_object_set_new(m, "reason",
							    json_deep_copy(json_object_get(x, "reason")));
				if (json_object_get(x, "category"))
					json_object_set_new(m, "category",
							    json_deep_copy(json_object_get(x, "category")));
				json_object_set_new(m, "bytes", json_integer(0));
				json_object_set_new(m, "count", json_integer(0));
				json_object_set_new(acc, key, m);
				json_object_set_new(sites, key, json_object());
			}
			json_object_set_new(m, "bytes", json_integer(wadd(iget(m, "bytes"), iget(x, "bytes"))));
			json_object_set_new(m, "count", json_integer(wadd(iget(m, "count"), iget(x, "count"))));
			static const char *const extra[] = {"created_bytes", "trimmed_bytes",
							    "resident_bytes"};
			for (size_t e = 0; e < 3; e++)
				if (json_object_get(x, extra[e]))
					json_object_set_new(m, extra[e],
							    json_integer(wadd(iget(m, extra[e]),
									      iget(x, extra[e]))));
			add_sites(json_object_get(sites, key), json_object_get(x, "top_sites"));
		}
	}

	json_t *srcs = json_array(), *tot_src = json_object();
	const char *k;
	json_t *m;
	json_object_foreach(acc, k, m)
	{
		json_object_set_new(m, "top_sites", top_sites(json_object_get(sites, k)));
		json_object_set_new(tot_src, k, json_integer(iget(m, "bytes")));
		json_array_append(srcs, m);
	}
	_msv_sources_finish(srcs, U, F);

	json_object_set_new(rep, "schema_version", json_integer(MSV_REPORT_SCHEMA_VERSION));
	json_object_set_new(rep, "tool",
			    json_pack("{s:s, s:s}", "name", "memsaver", "version", MSV_VERSION_STR));
	json_object_set_new(rep, "merged", json_true());
	json_object_set_new(rep, "totals",
			    json_pack("{s:I, s:I, s:I, s:I, s:I, s:o, s:o}", "processes",
				      (json_int_t)n, "processes_with_pause", with_pause,
				      "footprint_bytes", F, "reclaimed_bytes", R,
				      "unreclaimed_bytes", U, "reclaimed_share", jshare(R, F),
				      "sources", tot_src));
	if (with_pause) {
		json_t *a = json_object();
		json_object_set_new(a, "footprint_bytes", json_integer(F));
		json_object_set_new(a, "reclaimed_bytes", json_integer(R));
		json_object_set_new(a, "reclaimed_share", jshare(R, F));
		json_object_set_new(a, "unreclaimed_bytes", json_integer(U));
		json_object_set_new(a, "sources", srcs);
		json_object_set_new(a, "notes", notes);
		json_object_set_new(rep, "attribution", a);
	} else {
		json_decref(srcs);
		json_decref(notes);
	}
	json_object_set_new(rep, "recommendations", recs);
	json_object_set_new(rep, "processes", procs);
	json_decref(acc);
	json_decref(sites);
	return rep;
oom:
	json_decref(rep);
	json_decref(procs);
	json_decref(acc);
	json_decref(sites);
	json_decref(recs);
	json_decref(notes);
	return NULL;
}

/* ---- check ----------------------------------------------------------- */

static int check_attr(const json_t *a, const char *name, const char *where, char *err,
		      size_t errlen)
{
	json_t *s = json_object_get(a, "sources");
	json_t *u = json_object_get(a, "unreclaimed_bytes");
	if (!json_is_array(s) || !json_is_integer(u)) {
		snprintf(err, errlen, "%s: %sattribution lacks sources or unreclaimed_bytes", name,
			 where);
		return -EINVAL;
	}
	json_int_t sum = 0;
	size_t i;
	json_t *x;
	json_array_foreach(s, i, x)
	{
		if (!json_is_integer(json_object_get(x, "bytes")) ||
		    !json_is_string(json_object_get(x, "source"))) {
			snprintf(err, errlen, "%s: %sattribution.sources[%zu] lacks source or bytes",
				 name, where, i);
			return -EINVAL;
		}
		sum = wadd(sum, iget(x, "bytes"));
	}
	if (sum != json_integer_value(u)) {
		snprintf(err, errlen,
			 "%s: %sattribution sources add up to %lld bytes but unreclaimed_bytes is %lld",
			 name, where, (long long)sum, (long long)json_integer_value(u));
		return -EINVAL;
	}
	json_t *f = json_object_get(a, "footprint_bytes"), *r = json_object_get(a, "reclaimed_bytes");
	if (json_is_integer(f) && json_is_integer(r) &&
	    wsub(json_integer_value(f), json_integer_value(r)) != json_integer_value(u)) {
		snprintf(err, errlen,
			 "%s: %sfootprint_bytes - reclaimed_bytes (%lld - %lld) != unreclaimed_bytes %lld",
			 name, where, (long long)json_integer_value(f), (long long)json_integer_value(r),
			 (long long)json_integer_value(u));
		return -EINVAL;
	}
	return 0;
}

int _msv_report_check(const json_t *report, const char *name, char *err, size_t errlen)
{
	if (!name)
		name = "report";
	if (!json_is_object(report)) {
		snprintf(err, errlen, "%s: not a memsaver report (not a JSON object)", name);
		return -EINVAL;
	}
	json_t *v = json_object_get(report, "schema_version");
	if (!v) {
		snprintf(err, errlen, "%s: no schema_version: not a memsaver report", name);
		return -EINVAL;
	}
	if (!json_is_integer(v) || json_integer_value(v) != MSV_REPORT_SCHEMA_VERSION) {
		char *found = json_dumps(v, JSON_ENCODE_ANY);
		snprintf(err, errlen,
			 "%s: schema_version %s is not supported; this memsaver reads schema_version %d",
			 name, found ? found : "?", MSV_REPORT_SCHEMA_VERSION);
		free(found);
		return -EINVAL;
	}
	json_t *a = json_object_get(report, "attribution");
	if (a && check_attr(a, name, "", err, errlen) != 0)
		return -EINVAL;
	json_t *procs = json_object_get(report, "processes");
	if (procs) {
		size_t i;
		json_t *p;
		json_int_t U = 0;
		json_array_foreach(procs, i, p)
		{
			char where[64];
			snprintf(where, sizeof(where), "processes[%zu].", i);
			json_t *pa = json_object_get(p, "attribution");
			if (pa && check_attr(pa, name, where, err, errlen) != 0)
				return -EINVAL;
			U = wadd(U, iget(pa, "unreclaimed_bytes"));
		}
		json_t *tot = json_object_get(report, "totals");
		if (tot && iget(tot, "unreclaimed_bytes") != U) {
			snprintf(err, errlen,
				 "%s: totals.unreclaimed_bytes %lld is not the sum over processes %lld",
				 name, (long long)iget(tot, "unreclaimed_bytes"), (long long)U);
			return -EINVAL;
		}
	}
	return 0;
}

static json_t *report_checked(json_t *r, const json_error_t *je, const char *name, char *err,
			      size_t errlen)
{
	if (!r) {
		snprintf(err, errlen, "%s:%d:%d: %s", name, je->line, je->column, je->text);
		return NULL;
	}
	if (_msv_report_check(r, name, err, errlen) != 0) {
		json_decref(r);
		return NULL;
	}
	return r;
}

json_t *_msv_report_parse(const char *text, size_t len, const char *name, char *err,
			  size_t errlen)
{
	json_error_t je;
	return report_checked(json_loadb(text, len, 0, &je), &je, name ? name : "report", err,
			      errlen);
}

json_t *_msv_report_load(const char *path, char *err, size_t errlen)
{
	json_error_t je;
	/* jansson reports an unopenable file as line -1, column -1. */
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	json_t *r = report_checked(json_loadf(f, 0, &je), &je, path, err, errlen);
	fclose(f);
	return r;
}

/* ---- diff ------------------------------------------------------------ */

static json_t *side(const json_t *r)
{
	const json_t *a = json_object_get(r, "attribution");
	json_t *o = json_object();
	json_object_set_new(o, "name", json_string(report_name(r)));
	json_object_set_new(o, "has_pause", json_boolean(a != NULL));
	static const char *const k[] = {"footprint_bytes", "reclaimed_bytes", "unreclaimed_bytes"};
	for (size_t i = 0; i < 3; i++)
		json_object_set_new(o, k[i], json_integer(iget(a, k[i])));
	json_t *s = json_object_get(a, "reclaimed_share");
	json_object_set_new(o, "reclaimed_share", s ? json_deep_copy(s) : json_null());
	return o;
}

static int change_cmp(const void *pa, const void *pb)
{
	const json_t *a = *(const json_t *const *)pa, *b = *(const json_t *const *)pb;
	json_int_t x = iget(a, "change_bytes"), y = iget(b, "change_bytes");
	x = x < 0 ? wsub(0, x) : x;
	y = y < 0 ? wsub(0, y) : y;
	if (x != y)
		return x > y ? -1 : 1;
	return strcmp(json_string_value(json_object_get(a, "source")),
		      json_string_value(json_object_get(b, "source")));
}

json_t *_msv_report_diff(const json_t *a, const json_t *b)
{
	json_t *d = json_object(), *sa = side(a), *sb = side(b), *ch = json_object();
	json_t *acc = json_object();
	char key[512];
	const json_t *rs[2] = {a, b};
	for (int w = 0; w < 2; w++) {
		size_t i;
		json_t *x;
		json_array_foreach(json_object_get(json_object_get(rs[w], "attribution"), "sources"), i,
				   x)
		{
			_msv_source_key(x, key, sizeof(key));
			json_t *e = json_object_get(acc, key);
			if (!e) {
				e = json_pack("{s:s, s:I, s:I}", "source", key, "a_bytes",
					      (json_int_t)0, "b_bytes", (json_int_t)0);
				json_object_set_new(acc, key, e);
			}
			const char *f = w ? "b_bytes" : "a_bytes";
			json_object_set_new(e, f, json_integer(wadd(iget(e, f), iget(x, "bytes"))));
		}
	}
	size_t n = json_object_size(acc), i = 0;
	json_t **v = calloc(n ? n : 1, sizeof(*v)), *srcs = json_array();
	const char *k;
	json_t *e;
	json_object_foreach(acc, k, e)
	{
		json_object_set_new(e, "change_bytes",
				    json_integer(wsub(iget(e, "b_bytes"), iget(e, "a_bytes"))));
		if (v)
			v[i++] = json_incref(e);
	}
	if (v) {
		qsort(v, i, sizeof(*v), change_cmp);
		for (size_t j = 0; j < i; j++)
			json_array_append_new(srcs, v[j]);
	}
	free(v);
	/* A report without a pause has no footprint to compare: its zeros are
	 * "not measured", and a difference against them would read as a change. */
	int both = json_is_true(json_object_get(sa, "has_pause")) && json_is_true(json_object_get(sb, "has_pause"));
	static const char *const kk[] = {"footprint_bytes", "reclaimed_bytes", "unreclaimed_bytes"};
	for (size_t j = 0; j < 3; j++)
		json_object_set_new(ch, kk[j], both ? json_integer(wsub(iget(sb, kk[j]), iget(sa, kk[j]))) :
						      json_null());
	json_t *ra = json_object_get(sa, "reclaimed_share"), *rb = json_object_get(sb, "reclaimed_share");
	json_object_set_new(ch, "reclaimed_share",
			    json_is_number(ra) && json_is_number(rb) ?
				    json_real(json_number_value(rb) - json_number_value(ra)) :
				    json_null());
	json_object_set_new(d, "schema_version", json_integer(MSV_REPORT_SCHEMA_VERSION));
	json_object_set_new(d, "kind", json_string("diff"));
	json_object_set_new(d, "a", sa);
	json_object_set_new(d, "b", sb);
	json_object_set_new(d, "change", ch);
	json_object_set_new(d, "sources", srcs);
	json_decref(acc);
	return d;
}
