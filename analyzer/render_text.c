/* The terminal table: what a person reads in ten seconds.  Footprint and
 * reclaimed share first, then where the rest went, then what to change. */
#include "analyzer.h"

#include <errno.h>
#include <string.h>

static json_int_t iget(const json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static const char *sget(const json_t *o, const char *k, const char *dflt)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : dflt;
}

static void pct(char *buf, size_t len, const json_t *v)
{
	if (json_is_number(v))
		snprintf(buf, len, "%.1f%%", json_number_value(v) * 100.0);
	else
		snprintf(buf, len, "-");
}

static void header(const json_t *r, FILE *out)
{
	const json_t *p = json_object_get(r, "process"), *d = json_object_get(r, "device");
	const json_t *t = json_object_get(r, "trace");
	char b[32];
	fprintf(out, "memsaver report: pid %lld", (long long)iget(p, "pid"));
	if (json_object_get(p, "rank"))
		fprintf(out, " rank %lld", (long long)iget(p, "rank"));
	fprintf(out, " on %s", sget(p, "hostname", "?"));
	fprintf(out, ", GPU %lld %s", (long long)iget(d, "index"), sget(d, "name", "(unknown)"));
	if (json_is_integer(json_object_get(d, "total_bytes")))
		fprintf(out, " (%s)", _msv_fmt_bytes(iget(d, "total_bytes"), b, sizeof(b)));
	fprintf(out, "\n");
	if (json_string_value(json_object_get(p, "cmdline")))
		fprintf(out, "command: %.200s\n", sget(p, "cmdline", ""));
	fprintf(out, "trace: %s%s\n", sget(t, "name", "?"),
		json_is_true(json_object_get(t, "torn")) ? " (TORN: tail skipped)" : "");
	const json_t *c = json_object_get(p, "cupti");
	if (json_is_boolean(json_object_get(c, "attached")))
		fprintf(out, "tracer: %s%s%s\n",
			json_is_true(json_object_get(c, "attached")) ? "CUPTI and interposer" : "interposer only",
			json_string_value(json_object_get(c, "why")) ? ": " : "", sget(c, "why", ""));
}

static void attribution(const json_t *a, FILE *out)
{
	char b1[32], b2[32], b3[32], p1[16], p2[16];
	if (!a) {
		fprintf(out, "\nNo pause in this trace: nothing was released, so there is no "
			     "attribution.\n");
		return;
	}
	pct(p1, sizeof(p1), json_object_get(a, "reclaimed_share"));
	fprintf(out, "\nFootprint %s   reclaimed %s (%s)   unreclaimed %s\n",
		_msv_fmt_bytes(iget(a, "footprint_bytes"), b1, sizeof(b1)),
		_msv_fmt_bytes(iget(a, "reclaimed_bytes"), b2, sizeof(b2)), p1,
		_msv_fmt_bytes(iget(a, "unreclaimed_bytes"), b3, sizeof(b3)));
	size_t i;
	json_t *x;
	json_array_foreach(json_object_get(a, "notes"), i, x)
		fprintf(out, "  note: %s\n", json_string_value(x) ? json_string_value(x) : "");
	fprintf(out, "\nWhere the unreclaimed memory is            %10s  %7s  %7s\n", "bytes",
		"unrecl", "footpr");
	json_array_foreach(json_object_get(a, "sources"), i, x)
	{
		pct(p1, sizeof(p1), json_object_get(x, "share_of_unreclaimed"));
		pct(p2, sizeof(p2), json_object_get(x, "share_of_footprint"));
		fprintf(out, "  %-40s %10s  %7s  %7s\n", sget(x, "source", "?"),
			_msv_fmt_bytes(iget(x, "bytes"), b1, sizeof(b1)), p1, p2);
		if (strncmp(sget(x, "source", ""), "category:", 9) == 0 ||
		    strcmp(sget(x, "source", ""), "unattributed") == 0 || iget(x, "bytes") < 0)
			fprintf(out, "      %s\n", sget(x, "reason", ""));
		if (json_object_get(x, "trimmed_bytes"))
			fprintf(out, "      created %s, trimmed on pause %s\n",
				_msv_fmt_bytes(iget(x, "created_bytes"), b1, sizeof(b1)),
				_msv_fmt_bytes(iget(x, "trimmed_bytes"), b2, sizeof(b2)));
		size_t j;
		json_t *s;
		json_array_foreach(json_object_get(x, "top_sites"), j, s)
		{
			if (j >= 3)
				break;
			fprintf(out, "      %-50.50s %10s  x%lld\n", sget(s, "site", "?"),
				_msv_fmt_bytes(iget(s, "bytes"), b1, sizeof(b1)),
				(long long)iget(s, "count"));
		}
	}
}

/* What the pause left, by source, then what the checkpoint left. */
static void deep_pause(const json_t *d, const json_t *a, FILE *out)
{
	char b1[32], b2[32], b3[32];
	if (!d)
		return;
	json_t *pi = json_object_get(d, "pause_index"), *res = json_object_get(d, "residue_bytes");
	fprintf(out, "\nDeep pause (the driver's process checkpoint%s)\n",
		json_is_true(json_object_get(d, "resumed")) ? ", since resumed" : "");
	if (json_is_integer(res)) {
		fprintf(out, "  residue before the checkpoint %s", _msv_fmt_bytes(json_integer_value(res), b1, sizeof(b1)));
		if (a && json_equal(pi, json_object_get(a, "pause_index"))) {
			fprintf(out, ": the unreclaimed memory above, by source\n");
		} else {
			size_t i;
			json_t *x;
			fprintf(out, " (pause %lld), by source:\n", (long long)json_integer_value(pi));
			json_array_foreach(json_object_get(d, "sources"), i, x)
				fprintf(out, "    %-40s %10s\n", sget(x, "source", "?"),
					_msv_fmt_bytes(iget(x, "bytes"), b1, sizeof(b1)));
		}
	}
	json_t *u0 = json_object_get(d, "device_used_before_bytes"), *u1 = json_object_get(d, "device_used_after_bytes");
	json_t *ck = json_object_get(d, "checkpointed_bytes"), *left = json_object_get(d, "left_bytes");
	fprintf(out, "  device used %s before the checkpoint, %s after: checkpointed %s\n",
		json_is_integer(u0) ? _msv_fmt_bytes(json_integer_value(u0), b1, sizeof(b1)) : "unknown",
		json_is_integer(u1) ? _msv_fmt_bytes(json_integer_value(u1), b2, sizeof(b2)) : "unknown",
		json_is_integer(ck) ? _msv_fmt_bytes(json_integer_value(ck), b3, sizeof(b3)) : "unknown");
	if (json_is_integer(left))
		fprintf(out, "  left on the GPU while checkpointed: %s above the baseline%s\n",
			_msv_fmt_bytes(json_integer_value(left), b1, sizeof(b1)),
			json_is_true(json_object_get(d, "baseline_known")) ? "" : " (baseline unknown: 0)");
}

static void recommendations(const json_t *recs, FILE *out)
{
	char b[32];
	size_t i;
	json_t *x;
	if (!json_array_size(recs))
		return;
	fprintf(out, "\nRecommendations\n");
	json_array_foreach(recs, i, x)
	{
		const char *what = json_string_value(json_object_get(x, "category"));
		if (!what)
			what = sget(x, "site", "");
		fprintf(out, "  %zu. %s [%s]: up to %s\n     %s\n", i + 1, sget(x, "action", "?"), what,
			_msv_fmt_bytes(iget(x, "reclaimable_bytes"), b, sizeof(b)),
			sget(x, "why", ""));
	}
}

static void timings(const json_t *t, FILE *out)
{
	char b[32];
	json_t *pm = json_object_get(t, "pause_ms"), *rm = json_object_get(t, "resume_ms");
	if (!json_is_number(pm) && !json_is_number(rm))
		return;
	fprintf(out, "\nTimings\n");
	if (json_is_number(pm)) {
		fprintf(out, "  pause  %8.1f ms%s", json_number_value(pm),
			json_is_true(json_object_get(t, "pause_failed")) ? " FAILED" : "");
		if (iget(t, "backup_bytes"))
			fprintf(out, ", backed up %s",
				_msv_fmt_bytes(iget(t, "backup_bytes"), b, sizeof(b)));
		if (json_is_number(json_object_get(t, "backup_gbps")))
			fprintf(out, " at %.1f GB/s", json_number_value(json_object_get(t, "backup_gbps")));
		fprintf(out, "\n");
	}
	if (json_is_number(rm)) {
		fprintf(out, "  resume %8.1f ms%s", json_number_value(rm),
			json_is_true(json_object_get(t, "resume_failed")) ? " FAILED (still paused)" :
									     "");
		if (iget(t, "restore_bytes"))
			fprintf(out, ", restored %s",
				_msv_fmt_bytes(iget(t, "restore_bytes"), b, sizeof(b)));
		if (json_is_number(json_object_get(t, "restore_gbps")))
			fprintf(out, " at %.1f GB/s",
				json_number_value(json_object_get(t, "restore_gbps")));
		fprintf(out, "\n");
	}
}

static void phases(const json_t *ph, FILE *out)
{
	char b1[32], b2[32];
	size_t i;
	json_t *x;
	if (!json_array_size(ph))
		return;
	fprintf(out, "\nPhases                 %12s %12s\n", "device used", "footprint");
	json_array_foreach(ph, i, x)
	{
		json_t *u = json_object_get(x, "device_used_bytes"), *f = json_object_get(x, "footprint_bytes");
		fprintf(out, "  %-20.20s %12s %12s\n", sget(x, "label", "?"),
			json_is_integer(u) ? _msv_fmt_bytes(json_integer_value(u), b1, sizeof(b1)) :
					     "unknown",
			json_is_integer(f) ? _msv_fmt_bytes(json_integer_value(f), b2, sizeof(b2)) :
					     "unknown");
	}
}

int _msv_render_text(const json_t *r, FILE *out)
{
	json_t *procs = json_object_get(r, "processes");
	if (procs) {
		json_t *t = json_object_get(r, "totals");
		char b[32];
		fprintf(out, "memsaver report: %lld processes merged (%lld paused)\n",
			(long long)iget(t, "processes"), (long long)iget(t, "processes_with_pause"));
		attribution(json_object_get(r, "attribution"), out);
		recommendations(json_object_get(r, "recommendations"), out);
		fprintf(out, "\nPer process\n");
		size_t i;
		json_t *p;
		json_array_foreach(procs, i, p)
		{
			json_t *a = json_object_get(p, "attribution");
			char p1[16];
			pct(p1, sizeof(p1), json_object_get(a, "reclaimed_share"));
			fprintf(out, "  pid %-8lld %-30.30s unreclaimed %10s  reclaimed %s\n",
				(long long)iget(json_object_get(p, "process"), "pid"),
				sget(json_object_get(p, "trace"), "name", "?"),
				a ? _msv_fmt_bytes(iget(a, "unreclaimed_bytes"), b, sizeof(b)) : "-", p1);
		}
		return ferror(out) ? -EIO : 0;
	}
	header(r, out);
	attribution(json_object_get(r, "attribution"), out);
	deep_pause(json_object_get(r, "deep_pause"), json_object_get(r, "attribution"), out);
	recommendations(json_object_get(r, "recommendations"), out);
	timings(json_object_get(r, "timings"), out);
	phases(json_object_get(r, "phases"), out);
	return ferror(out) ? -EIO : 0;
}

int _msv_render_diff_text(const json_t *d, FILE *out)
{
	const json_t *a = json_object_get(d, "a"), *b = json_object_get(d, "b");
	const json_t *c = json_object_get(d, "change");
	char x1[32], x2[32], x3[32], p1[16], p2[16];
	const json_t *sides[2] = {a, b};
	for (int w = 0; w < 2; w++) {
		const char *file = sget(sides[w], "file", NULL), *name = sget(sides[w], "name", "?");
		if (file && strcmp(file, name) != 0)
			fprintf(out, "%c: %s (trace %s)\n", "AB"[w], file, name);
		else
			fprintf(out, "%c: %s\n", "AB"[w], name);
	}
	fputc('\n', out);
	int missing = 0;
	for (int w = 0; w < 2; w++)
		if (!json_is_true(json_object_get(sides[w], "has_pause"))) {
			fprintf(out, "%c has no pause: its footprint, reclaimed and unreclaimed memory were never "
				     "measured, so there is nothing to compare (pause the engine before writing the "
				     "report)\n",
				"AB"[w]);
			missing = 1;
		}
	if (missing)
		return ferror(out) ? -EIO : 0;
	fprintf(out, "%-62s %12s %12s %12s\n", "", "A", "B", "change");
	static const char *const k[] = {"footprint_bytes", "reclaimed_bytes", "unreclaimed_bytes"};
	static const char *const lbl[] = {"footprint", "reclaimed", "unreclaimed"};
	for (int i = 0; i < 3; i++)
		fprintf(out, "%-62s %12s %12s %12s\n", lbl[i],
			_msv_fmt_bytes(iget(a, k[i]), x1, sizeof(x1)),
			_msv_fmt_bytes(iget(b, k[i]), x2, sizeof(x2)),
			_msv_fmt_bytes(iget(c, k[i]), x3, sizeof(x3)));
	pct(p1, sizeof(p1), json_object_get(a, "reclaimed_share"));
	pct(p2, sizeof(p2), json_object_get(b, "reclaimed_share"));
	json_t *rs = json_object_get(c, "reclaimed_share");
	char p3[24];
	if (json_is_number(rs))
		snprintf(p3, sizeof(p3), "%+.1f pts", json_number_value(rs) * 100.0);
	else
		snprintf(p3, sizeof(p3), "-");
	fprintf(out, "%-62s %12s %12s %12s\n\nPer source\n", "reclaimed share", p1, p2, p3);
	size_t i;
	json_t *s;
	json_array_foreach(json_object_get(d, "sources"), i, s)
	{
		fprintf(out, "  %-60.60s %12s %12s %12s\n", sget(s, "source", "?"),
			_msv_fmt_bytes(iget(s, "a_bytes"), x1, sizeof(x1)),
			_msv_fmt_bytes(iget(s, "b_bytes"), x2, sizeof(x2)),
			_msv_fmt_bytes(iget(s, "change_bytes"), x3, sizeof(x3)));
	}
	return ferror(out) ? -EIO : 0;
}
