/* One self-contained HTML page.  The unreclaimed residue comes first, at its
 * own scale: the footprint bar with the residue's sliver, the residue split
 * by source, and one bar per source split by call site (nested bars rather
 * than a treemap: the reader compares lengths on one axis, and long call
 * sites wrap under the bar instead of being cut to fit a tile).  Then the
 * timeline of resident bytes per category with the pause and resume marks,
 * the stacked bar per phase and the report's tables.  Hover details are
 * <title> elements and title attributes; legends are HTML so they wrap
 * instead of being clipped.  No scripts, no fonts, no network: it must open
 * from a mail attachment on an air-gapped machine and look the same. */
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

/* The legend of the per-category series, in HTML so it wraps. */
static void legend(FILE *out, int n)
{
	fputs("<ul class=\"legend\">", out);
	for (int s = 0; s < n; s++)
		fprintf(out, "<li class=\"fit\"><span class=\"sw\" style=\"background:%s\"></span>%s</li>",
			colours[s], series_name(s));
	fputs("</ul>\n", out);
}

static const char *source_colour(const char *src)
{
	static const struct {
		const char *name, *colour;
	} fixed[] = {{"app_vmm", "#b07aa1"},	      {"driver:context", "#9c755f"},
		     {"driver:modules", "#c4a287"},   {"driver:graph_exec", "#7a5844"},
		     {"driver:library", "#dcc3ae"},   {"saver:overhead", "#ff9da7"},
		     {"unattributed", "#bab0ac"}};
	if (strncmp(src, "category:", 9) == 0) {
		int c = _msv_category_parse(src + 9);
		return c >= 0 ? colours[c] : "#888";
	}
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		if (strcmp(src, fixed[i].name) == 0)
			return fixed[i].colour;
	return "#888";
}

static double share(double part, double whole)
{
	return whole > 0 ? part / whole * 100.0 : 0;
}

/* The residue at its own scale: a footprint bar whose unreclaimed sliver is
 * drawn at least 2px wide, the unreclaimed bar split by source, then one row
 * per source split by call site.  Widths are percentages of the larger of U
 * and the positive sources' sum (a negative `unattributed` has no bar; its
 * row says so). */
static void residue(const json_t *a, FILE *out)
{
	char b1[32], b2[32], b3[32];
	size_t i, j;
	json_t *x, *st;
	const json_t *sources = json_object_get(a, "sources");
	double f = (double)iget(a, "footprint_bytes"), u = (double)iget(a, "unreclaimed_bytes");
	double scale = u, pos = 0;
	json_array_foreach(sources, i, x)
		if (iget(x, "bytes") > 0)
			pos += (double)iget(x, "bytes");
	if (pos > scale)
		scale = pos;
	fprintf(out,
		"<section id=\"residue\"><h2>What was not reclaimed: %s (%.2f%% of the footprint)</h2>\n"
		"<div class=\"zoom\"><div class=\"caption fit\">footprint %s</div>"
		"<div class=\"track\" id=\"footprint-bar\"><div class=\"seg reclaimed\" style=\"width:%.4f%%\" "
		"title=\"reclaimed %s\"></div><div class=\"seg unreclaimed\" style=\"width:%.4f%%\" "
		"title=\"unreclaimed %s\"></div></div>"
		"<div class=\"caption fit\">unreclaimed %s, drawn below at its own scale</div></div>\n",
		_msv_fmt_bytes((long long)u, b1, sizeof(b1)), share(u, f),
		_msv_fmt_bytes((long long)f, b2, sizeof(b2)), f > 0 ? share(f - u, f) : 0,
		_msv_fmt_bytes((long long)(f - u), b3, sizeof(b3)), share(u, f), b1, b1);
	if (scale <= 0) {
		fputs("<p>Nothing is left: every byte of the footprint was reclaimed.</p></section>\n", out);
		return;
	}
	fputs("<div class=\"track big\" id=\"residue-bar\">", out);
	json_array_foreach(sources, i, x)
	{
		double v = (double)iget(x, "bytes");
		if (v <= 0)
			continue;
		fprintf(out, "<div class=\"seg source\" data-source=\"");
		esc(out, sget(x, "source", "?"));
		fprintf(out, "\" style=\"width:%.4f%%;background:%s\" title=\"", share(v, scale),
			source_colour(sget(x, "source", "")));
		esc(out, sget(x, "source", "?"));
		fprintf(out, ": %s, %.1f%% of unreclaimed\"></div>", _msv_fmt_bytes((long long)v, b1, sizeof(b1)),
			share(v, u));
	}
	fputs("</div>\n<ul class=\"legend\">", out);
	json_array_foreach(sources, i, x)
	{
		fprintf(out, "<li class=\"fit\"><span class=\"sw\" style=\"background:%s\"></span>",
			source_colour(sget(x, "source", "")));
		esc(out, sget(x, "source", "?"));
		fprintf(out, " %s</li>", _msv_fmt_bytes(iget(x, "bytes"), b1, sizeof(b1)));
	}
	fputs("</ul>\n<h3>By source and call site</h3>\n<div id=\"residue-sources\">\n", out);
	json_array_foreach(sources, i, x)
	{
		const char *src = sget(x, "source", "?"), *col = source_colour(src);
		double v = (double)iget(x, "bytes"), sites = 0;
		fputs("<div class=\"row\"><div class=\"name fit\"><b>", out);
		esc(out, src);
		fputs("</b><br><small>", out);
		esc(out, sget(x, "reason", ""));
		fputs("</small></div><div class=\"track\">", out);
		if (v > 0) {
			json_array_foreach(json_object_get(x, "top_sites"), j, st)
			{
				double sb = (double)iget(st, "bytes");
				if (sb <= 0 || sites + sb > v)
					continue;
				sites += sb;
				fprintf(out, "<div class=\"seg site\" style=\"width:%.4f%%;background:%s;opacity:%.2f\" title=\"",
					share(sb, scale), col, 1.0 - 0.15 * (double)(j % 4));
				esc(out, sget(st, "site", "?"));
				fprintf(out, ": %s in %lld allocations\"></div>", _msv_fmt_bytes((long long)sb, b1, sizeof(b1)),
					(long long)iget(st, "count"));
			}
			if (v > sites)
				fprintf(out, "<div class=\"seg rest\" style=\"width:%.4f%%;border-color:%s\" "
					     "title=\"%s with no call site (measured, not allocated)\"></div>",
					share(v - sites, scale), col, _msv_fmt_bytes((long long)(v - sites), b1, sizeof(b1)));
		}
		fprintf(out, "</div><div class=\"num fit\">%s<br><small>%.1f%%</small></div></div>\n",
			_msv_fmt_bytes((long long)v, b1, sizeof(b1)), share(v, u));
		if (v < 0)
			fputs("<p class=\"note\">Negative: the records claim more than the device showed "
			      "(a tracer or reading problem).</p>\n",
			      out);
		if (json_array_size(json_object_get(x, "top_sites"))) {
			fputs("<ol class=\"sites\">", out);
			json_array_foreach(json_object_get(x, "top_sites"), j, st)
			{
				fputs("<li class=\"fit\"><code>", out);
				esc(out, sget(st, "site", "?"));
				fprintf(out, "</code> %s, %lld allocations</li>",
					_msv_fmt_bytes(iget(st, "bytes"), b1, sizeof(b1)), (long long)iget(st, "count"));
			}
			fputs("</ol>\n", out);
		}
	}
	fputs("</div></section>\n", out);
}

/* Resident bytes per category over the run (the report's `timeline`, a step
 * function) as stacked areas, with a mark at every pause and resume. */
static void timeline(const json_t *r, FILE *out)
{
	const json_t *tl = json_object_get(r, "timeline"), *ev = json_object_get(r, "events");
	size_t n = json_array_size(tl), i;
	json_t *p;
	char b[32];
	if (n == 0)
		return;
	const int series = MSV_CAT_COUNT + 1; /* categories and app_vmm */
	double t0 = (double)iget(json_array_get(tl, 0), "t_ns"), t1 = t0, max = 1;
	json_array_foreach(tl, i, p)
	{
		double sum = 0;
		for (int s = 0; s < series; s++)
			sum += (double)iget(p, series_name(s));
		if (sum > max)
			max = sum;
		if ((double)iget(p, "t_ns") > t1)
			t1 = (double)iget(p, "t_ns");
	}
	json_array_foreach(ev, i, p)
		if ((double)iget(p, "t_ns") > t1)
			t1 = (double)iget(p, "t_ns");
	t1 += (t1 - t0) * 0.02 + 1;
	const double W = 860, H = 200, left = 70, top = 22;
#define TX(t) (left + ((t) - t0) / (t1 - t0) * (W - left - 10))
#define TY(v) (top + H - (v) / max * H)
	fprintf(out,
		"<h3>Resident bytes over the run</h3>\n<svg id=\"timeline\" class=\"chart\" "
		"xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" height=\"%.0f\" "
		"role=\"img\" aria-label=\"resident bytes per category over time\">\n",
		W, top + H + 30, W, top + H + 30);
	for (int k = 0; k <= 4; k++) {
		double y = TY(max * k / 4);
		fprintf(out, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
			     "<text x=\"%.0f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"end\">%s</text>\n",
			left, y, W - 10, y, left - 4, y + 3, _msv_fmt_bytes((long long)(max * k / 4), b, sizeof(b)));
	}
	/* Each series: the polygon between the running sum below it and above
	 * it, drawn as steps (a value holds until the next point). */
	for (int s = 0; s < series; s++) {
		int any = 0;
		json_array_foreach(tl, i, p)
			any |= iget(p, series_name(s)) > 0;
		if (!any)
			continue;
		fprintf(out, "<polygon class=\"area\" data-series=\"%s\" fill=\"%s\" fill-opacity=\"0.85\" points=\"",
			series_name(s), colours[s]);
		for (int pass = 0; pass < 2; pass++) {
			/* pass 0: the top edge left to right; pass 1: the bottom edge back. */
			for (size_t k = 0; k < n; k++) {
				size_t idx = pass ? n - 1 - k : k;
				const json_t *pt = json_array_get(tl, idx);
				double below = 0;
				for (int q = 0; q < s; q++)
					below += (double)iget(pt, series_name(q));
				double v = below + (pass ? 0 : (double)iget(pt, series_name(s)));
				double ta = (double)iget(pt, "t_ns");
				double tb = idx + 1 < n ? (double)iget(json_array_get(tl, idx + 1), "t_ns") : t1;
				if (pass)
					fprintf(out, "%.1f,%.1f %.1f,%.1f ", TX(tb), TY(v), TX(ta), TY(v));
				else
					fprintf(out, "%.1f,%.1f %.1f,%.1f ", TX(ta), TY(v), TX(tb), TY(v));
			}
		}
		fprintf(out, "\"><title>%s</title></polygon>\n", series_name(s));
	}
	json_array_foreach(ev, i, p)
	{
		const char *kind = sget(p, "kind", "?");
		double x = TX((double)iget(p, "t_ns"));
		fprintf(out, "<line class=\"mark\" x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"%s\" "
			     "stroke-width=\"2\" stroke-dasharray=\"4 2\"><title>%s at %.3f s: %s",
			x, top - 4, x, top + H, strcmp(kind, "pause") == 0 ? "#c00" : "#080", kind,
			((double)iget(p, "t_ns") - t0) / 1e9,
			_msv_fmt_bytes(iget(p, "bytes"), b, sizeof(b)));
		fprintf(out, "%s</title></line><text class=\"mark-label\" x=\"%.1f\" y=\"%.0f\" font-size=\"10\" "
			     "text-anchor=\"%s\">%s</text>\n",
			json_is_true(json_object_get(p, "failed")) ? " (failed)" : "", x,
			top - 8 + (strcmp(kind, "pause") == 0 ? 0 : 10), x > W - 60 ? "end" : "middle", kind);
	}
	fprintf(out, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"10\">0 s</text>"
		     "<text x=\"%.0f\" y=\"%.0f\" font-size=\"10\" text-anchor=\"end\">%.2f s</text>\n</svg>\n",
		left, top + H + 14, W - 10, top + H + 14, (t1 - t0) / 1e9);
#undef TX
#undef TY
	legend(out, series);
}

/* Bar heights of one phase: each category's resident bytes, app_vmm, driver,
 * and "unexplained" = what of the footprint the others do not cover.  The
 * driver figure is the last one measured; a phase whose footprint is known
 * and smaller (exit: the context is gone) cannot hold more of it than the
 * footprint leaves, or the bar would contradict the table under it. */
static void phase_series(const json_t *p, double v[N_SERIES])
{
	const json_t *cats = json_object_get(p, "categories");
	double sum = 0;
	for (int c = 0; c < MSV_CAT_COUNT; c++)
		sum += v[c] = (double)iget(json_object_get(cats, _msv_category_name(c)), "resident_bytes");
	sum += v[MSV_CAT_COUNT] = (double)iget(p, "app_vmm_bytes");
	double d = iget(p, "driver_bytes") > 0 ? (double)iget(p, "driver_bytes") : 0;
	const json_t *fp = json_object_get(p, "footprint_bytes");
	double f = json_is_integer(fp) ? (double)json_integer_value(fp) : 0;
	if (json_is_integer(fp) && d > f - sum)
		d = f > sum ? f - sum : 0;
	v[MSV_CAT_COUNT + 1] = d;
	sum += d;
	v[N_SERIES - 1] = f > sum ? f - sum : 0;
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
		double v[N_SERIES], sum = 0;
		phase_series(p, v);
		for (int s = 0; s < N_SERIES; s++)
			sum += v[s];
		if (sum > max)
			max = sum;
	}
	const int bw = 60, gap = 30, h = 260, top = 20, left = 70;
	int w = left + (int)n * (bw + gap) + 20;
	fprintf(out,
		"<h3>Resident bytes per phase</h3>\n"
		"<svg id=\"chart\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
		"height=\"%d\" role=\"img\" aria-label=\"resident bytes per phase\">\n",
		w, h + top + 24);
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
		double v[N_SERIES];
		phase_series(p, v);
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
	fputs("</svg>\n", out);
	legend(out, N_SERIES);
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
	residue(a, out);
	fputs("<h3>Sources</h3>\n<table id=\"sources\">\n"
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
	fputs("<h3>Recommendations</h3>\n<table id=\"recommendations\">\n"
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
	if (with_attr) {
		attribution(json_object_get(r, "attribution"), out);
		recommendations(json_object_get(r, "recommendations"), out);
	}
	timeline(r, out);
	chart(json_object_get(r, "phases"), out);
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
	      "section#residue{max-width:1100px}\n"
	      ".zoom{display:flex;align-items:center;gap:8px;margin:.5em 0}\n"
	      ".zoom .track{flex:1;height:14px}\n.caption{white-space:nowrap;font-size:.9em}\n"
	      ".track{display:flex;background:#f4f4f4;border:1px solid #ccc;height:22px;min-width:0;"
	      "overflow:hidden}\n"
	      ".track.big{height:40px}\n.seg{height:100%;flex:none;box-sizing:border-box;"
	      "border-right:1px solid #fff}\n"
	      ".seg.reclaimed{background:#cfd8dc}\n.seg.unreclaimed{background:#c00;min-width:2px}\n"
	      ".seg.rest{background:repeating-linear-gradient(45deg,#fff 0 3px,#ddd 3px 6px);"
	      "border:1px solid}\n"
	      ".seg:hover{outline:2px solid #222;outline-offset:-2px}\n"
	      ".row{display:grid;grid-template-columns:16em 1fr 7em;gap:8px;align-items:center;"
	      "margin-top:.6em}\n"
	      ".row .name{overflow-wrap:anywhere;min-width:0}\n.row .num{text-align:right;"
	      "font-family:monospace}\n"
	      "ol.sites{margin:.2em 0 .4em 17em;padding-left:1.5em;font-size:.85em}\n"
	      "ol.sites li,ol.sites code{overflow-wrap:anywhere}\n"
	      "ul.legend{display:flex;flex-wrap:wrap;gap:4px 16px;list-style:none;padding:0;"
	      "margin:.4em 0;max-width:1100px}\n"
	      "ul.legend li{white-space:nowrap;font-size:.9em}\n"
	      ".sw{display:inline-block;width:10px;height:10px;margin-right:4px}\n"
	      "svg.chart{max-width:100%;height:auto;display:block}\n"
	      "td.source{white-space:nowrap}\n"
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
