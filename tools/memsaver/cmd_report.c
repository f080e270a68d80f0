/* memsaver report REPORT.json [--format text|html|perfetto] [-o FILE]
 *
 * Overhead: none; reads one report.  Example (text, the default):
 *
 *   $ memsaver report report.json
 *   memsaver report: pid 4242 on node1, GPU 0 NVIDIA H100 80GB HBM3 (80.00 GiB)
 *   Footprint 14.18 GiB   reclaimed 11.26 GiB (79.4%)   unreclaimed 2.92 GiB
 *   Where the unreclaimed memory is                  bytes   unrecl   footpr
 *     app_vmm                                     1.00 GiB    34.2%     7.1%
 *     category:graph                             511.0 MiB    17.1%     3.5%
 *         excluded from this pause
 *   ...
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "analyzer/analyzer.h"
#include "tools/memsaver/commands.h"

static const char usage_text[] =
	"usage: memsaver report [--format text|html|perfetto] [-o FILE] REPORT.json\n"
	"\n"
	"Render a report made by `memsaver analyze` (or written by the library at exit,\n"
	"MEMSAVER_REPORT).  Reports of another schema_version are refused (exit 2).\n"
	"\n"
	"  -f, --format FMT   text      a terminal table (default)\n"
	"                     html      one self-contained page: a stacked bar per phase\n"
	"                               (inline SVG) and the tables; no scripts, no network\n"
	"                     perfetto  Chrome trace-event JSON: a counter track per category\n"
	"                               over time, instants for phases and pause/resume;\n"
	"                               open it in ui.perfetto.dev\n"
	"  -o, --output FILE  write to FILE instead of stdout\n"
	"  -h, --help         this text\n"
	"\n"
	"Example:\n"
	"  $ memsaver report report.json\n"
	"  memsaver report: pid 4242 on node1, GPU 0 NVIDIA H100 80GB HBM3 (80.00 GiB)\n"
	"  Footprint 14.18 GiB   reclaimed 11.26 GiB (79.4%)   unreclaimed 2.92 GiB\n"
	"\n"
	"  Where the unreclaimed memory is                 bytes   unrecl   footpr\n"
	"    app_vmm                                    1.00 GiB    34.2%     7.1%\n"
	"        libnccl.so.2                           1.00 GiB  x1\n"
	"    category:graph                           511.0 MiB    17.1%     3.5%\n"
	"        excluded from this pause\n"
	"    ...\n"
	"  Recommendations\n"
	"    1. include graph in the pause [graph]: up to 511.0 MiB\n"
	"  $ memsaver report --format html -o report.html report.json\n";

static int usage(FILE *f, int rc)
{
	return _msv_usage(f, usage_text, "report", rc);
}

int _msv_cmd_report(int argc, char **argv)
{
	static const struct option opts[] = {
		{"format", required_argument, NULL, 'f'},
		{"output", required_argument, NULL, 'o'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *fmt = "text", *out = NULL;
	int c;

	optind = 0; /* glibc: reinitialise, the dispatcher may have used getopt */
	while ((c = getopt_long(argc, argv, "f:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'o': out = optarg; break;
		case 'h': return usage(stdout, MSV_EXIT_OK);
		default: return usage(stderr, MSV_EXIT_USAGE);
		}
	}
	int (*render)(const json_t *, FILE *);
	if (strcmp(fmt, "text") == 0)
		render = _msv_render_text;
	else if (strcmp(fmt, "html") == 0)
		render = _msv_render_html;
	else if (strcmp(fmt, "perfetto") == 0)
		render = _msv_render_perfetto;
	else {
		fprintf(stderr, "memsaver report: unknown format \"%s\" (expected text, html or perfetto)\n",
			fmt);
		return usage(stderr, MSV_EXIT_USAGE);
	}
	if (argc - optind != 1) {
		fprintf(stderr, "memsaver report: expected one report file\n");
		return usage(stderr, MSV_EXIT_USAGE);
	}
	char err[1024];
	json_t *r = _msv_report_load(argv[optind], err, sizeof(err));
	if (!r) {
		fprintf(stderr, "memsaver report: %s\n", err);
		return MSV_EXIT_USAGE;
	}
	FILE *f = out ? fopen(out, "w") : stdout;
	if (!f) {
		fprintf(stderr, "memsaver report: cannot create %s: %s\n", out, strerror(errno));
		json_decref(r);
		return MSV_EXIT_FAIL;
	}
	int bad = render(r, f) != 0;
	bad |= out ? fclose(f) != 0 : fflush(f) != 0;
	json_decref(r);
	if (bad) {
		fprintf(stderr, "memsaver report: cannot write %s: %s\n", out ? out : "stdout",
			strerror(errno));
		return MSV_EXIT_FAIL;
	}
	return MSV_EXIT_OK;
}
