/* memsaver diff A.json B.json [--format text|json]
 *
 * Overhead: none; reads two reports.  Example:
 *
 *   $ memsaver diff before.json after.json
 *   A: before.trace
 *   B: after.trace
 *                                                   A            B       change
 *   footprint                                 14.18 GiB     3.10 GiB   -11.08 GiB
 *   ...
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "analyzer/analyzer.h"
#include "tools/memsaver/commands.h"

static const char usage_text[] =
	"usage: memsaver diff [--format text|json] [-o FILE] A.json B.json\n"
	"\n"
	"What changed from report A to report B: footprint, reclaimed and unreclaimed\n"
	"bytes, reclaimed share, and the bytes of each source in A, in B and the change\n"
	"(largest change first).  Category sources are keyed with their reason.\n"
	"\n"
	"  -f, --format FMT   text (default) or json\n"
	"  -o, --output FILE  write to FILE instead of stdout\n"
	"  -h, --help         this text\n"
	"\n"
	"Example:\n"
	"  $ memsaver diff keep-graph.json pause-graph.json\n"
	"  A: keep-graph.trace\n"
	"  B: pause-graph.trace\n"
	"\n"
	"                                                  A            B       change\n"
	"  footprint                                 14.18 GiB    14.18 GiB        0 B\n"
	"  reclaimed                                 11.26 GiB    11.76 GiB  511.0 MiB\n"
	"  unreclaimed                                2.92 GiB     2.42 GiB -511.0 MiB\n"
	"  reclaimed share                               79.4%        82.9%    +3.5 pts\n"
	"\n"
	"  Per source\n"
	"    category:graph (excluded from this pause)  511.0 MiB       0 B  -511.0 MiB\n";

static int usage(FILE *f, int rc)
{
	return _msv_usage(f, usage_text, "diff", rc);
}

int _msv_cmd_diff(int argc, char **argv)
{
	static const struct option opts[] = {
		{"format", required_argument, NULL, 'f'},
		{"output", required_argument, NULL, 'o'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *fmt = "text", *out = NULL;
	int c, rc = MSV_EXIT_OK;

	optind = 0; /* glibc: reinitialise, the dispatcher may have used getopt */
	while ((c = getopt_long(argc, argv, "f:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'o': out = optarg; break;
		case 'h': return usage(stdout, MSV_EXIT_OK);
		default: return usage(stderr, MSV_EXIT_USAGE);
		}
	}
	int json = strcmp(fmt, "json") == 0;
	if (!json && strcmp(fmt, "text") != 0) {
		fprintf(stderr, "memsaver diff: unknown format \"%s\" (expected text or json)\n", fmt);
		return usage(stderr, MSV_EXIT_USAGE);
	}
	if (argc - optind != 2) {
		fprintf(stderr, "memsaver diff: expected two report files\n");
		return usage(stderr, MSV_EXIT_USAGE);
	}
	char err[1024];
	json_t *a = _msv_report_load(argv[optind], err, sizeof(err)), *b = NULL, *d = NULL;
	if (!a) {
		fprintf(stderr, "memsaver diff: %s\n", err);
		return MSV_EXIT_USAGE;
	}
	b = _msv_report_load(argv[optind + 1], err, sizeof(err));
	if (!b) {
		fprintf(stderr, "memsaver diff: %s\n", err);
		rc = MSV_EXIT_USAGE;
		goto cleanup;
	}
	d = _msv_report_diff(a, b);
	/* A live report's trace is named "live"; the reader knows the files. */
	for (int w = 0; d && w < 2; w++)
		json_object_set_new(json_object_get(d, w ? "b" : "a"), "file", json_string(argv[optind + w]));
	FILE *f = out ? fopen(out, "w") : stdout;
	if (!d || !f) {
		fprintf(stderr, "memsaver diff: %s %s: %s\n", d ? "cannot create" : "out of memory",
			out ? out : "", strerror(errno));
		rc = MSV_EXIT_FAIL;
		goto cleanup;
	}
	int bad;
	if (json) {
		bad = json_dumpf(d, f, JSON_INDENT(2)) != 0;
		fputc('\n', f);
	} else {
		bad = _msv_render_diff_text(d, f) != 0;
	}
	bad |= out ? fclose(f) != 0 : fflush(f) != 0;
	if (bad) {
		fprintf(stderr, "memsaver diff: cannot write %s: %s\n", out ? out : "stdout",
			strerror(errno));
		rc = MSV_EXIT_FAIL;
	}
cleanup:
	json_decref(d);
	json_decref(b);
	json_decref(a);
	return rc;
}
