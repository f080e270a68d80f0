/* One self-contained HTML page: inline SVG (a stacked bar per phase) and the
 * report's tables.  No scripts, no fonts, no network: it must open from a
 * mail attachment on an air-gapped machine and look the same. */
#include "analyzer.h"

#include <errno.h>
#include <string.h>

#include "tracer/categories.h"

static json_int_t iget(const json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static void esc(FILE *out, const char *s)
{
	for (; s && *s; s++) {
		switch (*s) {
		case '<': fputs("&lt;", out); break;
		case '>': fputs("&gt;", out); break;
		case '&': fputs("&amp;", out); break;
		case '"': fputs("&quot;", out); break;
		default: fputc(*s, out);
		}
	}
}

static const char *sget(const json_t *o, const char *k, const char *dflt)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : dflt;
}

static const char *pct(char *buf, size_t len, const json_t *v)
{
	if (json_is_number(v))
		snprintf(buf, len, "%.1f%%", json_number_value(v) * 100.0);
	else
		snprintf(buf, len, "-");
	return buf;
}

/* Per category colours (Tableau 10), then app_vmm, driver, unexplained. */
static const char *const colours[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
				      "#edc948", "#b07aa1", "#9c755f", "#bab0ac"};
#define N_SERIES (MSV_CAT_COUNT + 3)

static const char *series_name(int i)
{
	if (i < MSV_CAT_COUNT)
		return _msv_category_name(i);
	return i == MSV_CAT_COUNT ? "app_vmm" : i == MSV_CAT_COUNT + 1 ? "driver" : "unexplained";
}

static void chart(const json_t *phases, FILE *out)
{
	size_t n = json_array_size(phases), i;
	json_t *p;
	double max = 1;
	char b[32];
	if (!n) {
		fputs("<p>No phase readings in this trace.</p>\n", out);
		return;
	}
	/* Heights: resident bytes of each series; "unexplained" is whatever of the
	 * footprint the series do not cover (only when positive). */
	json_array_foreach(phases, i, p)
	{
		double sum = 0;
		json_t *cats = json_object_get(p, "categories");
		for (int c = 0; c < MSV_CAT_COUNT; c++)
			sum += (double)iget(json_object_get(cats, _msv_category_name(c)),
					    "resident_bytes");
		sum += (double)iget(p, "app_vmm_bytes");
		sum += (double)(iget(p, "driver_bytes") > 0 ? iget(p, "driver_bytes") : 0);
		double f = (double)iget(p, "footprint_bytes");
		if (f > sum)
			sum = f;
		if (sum > max)
			max = sum;
	}
	const int bw = 60, gap = 30, h = 260, top = 20, left = 70;
	int w = left + (int)n * (bw + gap) + 20;
	fprintf(out,
		"<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
		"role=\"img\" aria-label=\"resident bytes per phase\">\n",
		w, h + top + 60);
	fprintf(out, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n", left,
		top + h, w - 10, top + h);
	for (int k = 0; k <= 4; k++) {
		double v = max * k / 4;
		int y = top + h - (int)(h * k / 4);
		fprintf(out,
			"<text x=\"%d\" y=\"%d\" font-size=\"10\" text-anchor=\"end\">%s</text>\n",
			left - 4, y + 3, _msv_fmt_bytes((long long)v, b, sizeof(b)));
		fprintf(out, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#ddd\"/>\n",
			left, y, w - 10, y);
	}
	json_array_foreach(phases, i, p)
	{
		json_t *cats = json_object_get(p, "categories");
		double v[N_SERIES], sum = 0;
		for (int c = 0; c < MSV_CAT_COUNT; c++)
			v[c] = (double)iget(json_object_get(cats, _msv_category_name(c)),
					    "resident_bytes");
		v[MSV_CAT_COUNT] = (double)iget(p, "app_vmm_bytes");
		v[MSV_CAT_COUNT + 1] = iget(p, "driver_bytes") > 0 ? (double)iget(p, "driver_bytes") : 0;
		for (int s = 0; s < N_SERIES - 1; s++)
			sum += v[s];
		double f = (double)iget(p, "footprint_bytes");
		v[N_SERIES - 1] = f > sum ? f - sum : 0;
		int x = left + 10 + (int)i * (bw + gap);
		double y = top + h;
		for (int s = 0; s < N_SERIES; s++) {
			double hh = v[s] / max * h;
			if (v[s] <= 0)
				continue;
			y -= hh;
			fprintf(out,
				"<rect class=\"bar\" data-series=\"%s\" x=\"%d\" y=\"%.2f\" width=\"%d\" "
				"height=\"%.2f\" fill=\"%s\"><title>",
				series_name(s), x, y, bw, hh < 0.5 ? 0.5 : hh, colours[s]);
			esc(out, sget(p, "label", ""));
			fprintf(out, ": %s %s</title></rect>\n", series_name(s),
				_msv_fmt_bytes((long long)v[s], b, sizeof(b)));
		}
		fprintf(out, "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">",
			x + bw / 2, top + h + 14);
		esc(out, sget(p, "label", ""));
		fputs("</text>\n", out);
	}
	/* Legend. */
	for (int s = 0; s < N_SERIES; s++) {
		int x = left + (s % 5) * 110, y = top + h + 30 + (s / 5) * 16;
		fprintf(out,
			"<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>"
			"<text x=\"%d\" y=\"%d\" font-size=\"11\">%s</text>\n",
			x, y, colours[s], x + 14, y + 9, series_name(s));
	}
	fputs("</svg>\n", out);
}

static void attribution(const json_t *a, FILE *out)
{
	char b1[32], b2[32], b3[32], p1[16], p2[16];
	size_t i;
	json_t *x;
	if (!a) {
		fputs("<p>No pause in this trace: nothing was released, so there is no "
		      "attribution.</p>\n",
		      out);
		return;
	}
	fprintf(out,
		"<p class=\"summary\">Footprint <b>%s</b>, reclaimed <b>%s</b> (<b>%s</b>), "
		"unreclaimed <b>%s</b></p>\n",
		_msv_fmt_bytes(iget(a, "footprint_bytes"), b1, sizeof(b1)),
		_msv_fmt_bytes(iget(a, "reclaimed_bytes"), b2, sizeof(b2)),
		pct(p1, sizeof(p1), json_object_get(a, "reclaimed_share")),
		_msv_fmt_bytes(iget(a, "unreclaimed_bytes"), b3, sizeof(b3)));
	json_array_foreach(json_object_get(a, "notes"), i, x)
	{
		fputs("<p class=\"note\">Note: ", out);
		esc(out, json_string_value(x));
		fputs("</p>\n", out);
	}
	fputs("<h2>Where the unreclaimed memory is</h2>\n<table id=\"sources\">\n"
	      "<tr><th>source</th><th>reason</th><th>bytes</th><th>of unreclaimed</th>"
	      "<th>of footprint</th><th>top sites</th></tr>\n",
	      out);
	json_array_foreach(json_object_get(a, "sources"), i, x)
	{
		fputs("<tr><td class=\"source\">", out);
		esc(out, sget(x, "source", "?"));
		fputs("</td><td>", out);
		esc(out, sget(x, "reason", ""));
		fprintf(out, "</td><td class=\"num\">%s</td><td class=\"num\">%s</td>"
			     "<td class=\"num\">%s</td><td>",
			_msv_fmt_bytes(iget(x, "bytes"), b1, sizeof(b1)),
			pct(p1, sizeof(p1), json_object_get(x, "share_of_unreclaimed")),
			pct(p2, sizeof(p2), json_object_get(x, "share_of_footprint")));
		size_t j;
		json_t *s;
		json_array_foreach(json_object_get(x, "top_sites"), j, s)
		{
			fputs(j ? "<br>" : "", out);
			esc(out, sget(s, "site", "?"));
			fprintf(out, " (%s, %lld)", _msv_fmt_bytes(iget(s, "bytes"), b1, sizeof(b1)),
				(long long)iget(s, "count"));
		}
		fputs("</td></tr>\n", out);
	}
	fputs("</table>\n", out);
}

static void recommendations(const json_t *recs, FILE *out)
{
	char b[32];
	size_t i;
	json_t *x;
	if (!json_array_size(recs))
		return;
	fputs("<h2>Recommendations</h2>\n<table id=\"recommendations\">\n"
	      "<tr><th>action</th><th>on</th><th>reclaimable</th><th>why</th></tr>\n",
	      out);
	json_array_foreach(recs, i, x)
	{
		const char *what = json_string_value(json_object_get(x, "category"));
		fputs("<tr><td>", out);
		esc(out, sget(x, "action", "?"));
		fputs("</td><td>", out);
		esc(out, what ? what : sget(x, "site", ""));
		fprintf(out, "</td><td class=\"num\">%s</td><td>",
			_msv_fmt_bytes(iget(x, "reclaimable_bytes"), b, sizeof(b)));
		esc(out, sget(x, "why", ""));
		fputs("</td></tr>\n", out);
	}
	fputs("</table>\n", out);
}

static void timings(const json_t *t, FILE *out)
{
	static const char *const k[] = {"pause_ms", "resume_ms", "backup_bytes", "backup_gbps",
					"restore_gbps"};
	if (!t)
		return;
	fputs("<h2>Timings</h2>\n<table id=\"timings\">\n", out);
	for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++) {
		json_t *v = json_object_get(t, k[i]);
		fprintf(out, "<tr><th>%s</th><td class=\"num\">", k[i]);
		if (json_is_integer(v))
			fprintf(out, "%lld", (long long)json_integer_value(v));
		else if (json_is_number(v))
			fprintf(out, "%.2f", json_number_value(v));
		else
			fputs("-", out);
		fputs("</td></tr>\n", out);
	}
	fputs("</table>\n", out);
}

static void phase_table(const json_t *phases, FILE *out)
{
	char b[32];
	size_t i;
	json_t *p;
	fputs("<h2>Phases</h2>\n<table id=\"phases\">\n<tr><th>phase</th><th>device used</th>"
	      "<th>footprint</th>",
	      out);
	for (int c = 0; c < MSV_CAT_COUNT; c++)
		fprintf(out, "<th>%s resident</th>", _msv_category_name(c));
	fputs("</tr>\n", out);
	json_array_foreach(phases, i, p)
	{
		json_t *cats = json_object_get(p, "categories");
		fputs("<tr><td>", out);
		esc(out, sget(p, "label", ""));
		json_t *u = json_object_get(p, "device_used_bytes"), *f = json_object_get(p, "footprint_bytes");
		fprintf(out, "</td><td class=\"num\">%s</td>",
			json_is_integer(u) ? _msv_fmt_bytes(json_integer_value(u), b, sizeof(b)) : "unknown");
		fprintf(out, "<td class=\"num\">%s</td>",
			json_is_integer(f) ? _msv_fmt_bytes(json_integer_value(f), b, sizeof(b)) : "unknown");
		for (int c = 0; c < MSV_CAT_COUNT; c++)
			fprintf(out, "<td class=\"num\">%s</td>",
				_msv_fmt_bytes(iget(json_object_get(cats, _msv_category_name(c)),
						    "resident_bytes"),
					       b, sizeof(b)));
		fputs("</tr>\n", out);
	}
	fputs("</table>\n", out);
}

static void process_section(const json_t *r, FILE *out, int with_attr)
{
	const json_t *p = json_object_get(r, "process"), *d = json_object_get(r, "device");
	const json_t *t = json_object_get(r, "trace");
	char b[32];
	fprintf(out, "<section class=\"process\"><h2>pid %lld", (long long)iget(p, "pid"));
	if (json_object_get(p, "rank"))
		fprintf(out, ", rank %lld", (long long)iget(p, "rank"));
	fputs(" on ", out);
	esc(out, sget(p, "hostname", "?"));
	fprintf(out, ", GPU %lld ", (long long)iget(d, "index"));
	esc(out, sget(d, "name", "(unknown)"));
	if (json_is_integer(json_object_get(d, "total_bytes")))
		fprintf(out, " (%s)", _msv_fmt_bytes(iget(d, "total_bytes"), b, sizeof(b)));
	fputs("</h2>\n<p class=\"meta\">trace ", out);
	esc(out, sget(t, "name", "?"));
	if (json_is_true(json_object_get(t, "torn")))
		fputs(" <b>(torn: tail skipped)</b>", out);
	if (json_string_value(json_object_get(p, "cmdline"))) {
		fputs("<br>command: <code>", out);
		esc(out, sget(p, "cmdline", ""));
		fputs("</code>", out);
	}
	fputs("</p>\n", out);
	chart(json_object_get(r, "phases"), out);
	if (with_attr) {
		attribution(json_object_get(r, "attribution"), out);
		recommendations(json_object_get(r, "recommendations"), out);
	}
	timings(json_object_get(r, "timings"), out);
	phase_table(json_object_get(r, "phases"), out);
	fputs("</section>\n", out);
}

int _msv_render_html(const json_t *r, FILE *out)
{
	fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
	      "<title>memsaver report</title>\n<style>\n"
	      "body{font-family:sans-serif;margin:2em;color:#222}\n"
	      "table{border-collapse:collapse;margin:1em 0}\n"
	      "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}\n"
	      "td.num{text-align:right;font-family:monospace;white-space:nowrap}\n"
	      ".note{color:#a60}\n.summary{font-size:1.2em}\n"
	      "</style></head><body>\n<h1>memsaver report</h1>\n",
	      out);
	json_t *procs = json_object_get(r, "processes");
	if (procs) {
		fprintf(out, "<p>%zu processes merged.</p>\n", json_array_size(procs));
		attribution(json_object_get(r, "attribution"), out);
		recommendations(json_object_get(r, "recommendations"), out);
		size_t i;
		json_t *p;
		json_array_foreach(procs, i, p)
			process_section(p, out, 1);
	} else {
		process_section(r, out, 1);
	}
	fputs("</body></html>\n", out);
	return ferror(out) ? -EIO : 0;
}
