/* memsaver analyze TRACE... [-o REPORT] | analyze --dump TRACE
 *
 * Overhead: none on the engine; reads trace files.  One trace gives the
 * report of that process; several give one merged report (per-process
 * sections plus totals).  Example:
 *
 *   $ memsaver analyze /tmp/memsaver-4242.trace -o report.json
 *   $ memsaver analyze --dump /tmp/memsaver-4242.trace | head -2
 *   {"type":"meta","t_ns":1000000,"tid":100,"key":"cmdline","value":"python -m sglang..."}
 *   {"type":"phase","t_ns":4000000,"tid":100,"label":"baseline","device_used_bytes":1073741824,...}
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyzer/analyzer.h"
#include "tools/memsaver/commands.h"

static const char usage_text[] =
	"usage: memsaver analyze [-o REPORT] TRACE...\n"
	"       memsaver analyze --dump TRACE\n"
	"\n"
	"Build the attribution report (JSON, schema_version 1, docs/report.md) from\n"
	"trace files written by `memsaver run` (MEMSAVER_TRACE).  One trace: the report\n"
	"of that process.  Several (ranks, processes): one merged report with a\n"
	"\"processes\" list and \"totals\".  A torn tail (the process died mid-write) is\n"
	"skipped with a warning; a file that is not a memsaver trace is an error (exit 2).\n"
	"\n"
	"  -o, --output FILE  write the report to FILE instead of stdout\n"
	"      --dump         print every record of TRACE as one JSON object per line,\n"
	"                     strings resolved\n"
	"  -h, --help         this text\n"
	"\n"
	"Example:\n"
	"  $ memsaver analyze memsaver-4242.trace -o report.json && memsaver report report.json\n"
	"  $ memsaver analyze memsaver-4242.trace | jq .attribution.sources[0]\n"
	"  {\n"
	"    \"source\": \"app_vmm\",\n"
	"    \"bytes\": 1073741824,\n"
	"    \"share_of_unreclaimed\": 0.342,\n"
	"    \"top_sites\": [{\"site\": \"libnccl.so.2\", \"bytes\": 1073741824, \"count\": 1}],\n"
	"    ...\n"
	"  }\n";

static int usage(FILE *f, int rc)
{
	return _msv_usage(f, usage_text, "analyze", rc);
}

static int load(const char *path, struct msv_trace **t)
{
	char err[1024];
	if (_msv_trace_load(path, t, err, sizeof(err)) != 0) {
		fprintf(stderr, "memsaver analyze: %s\n", err);
		return MSV_EXIT_USAGE;
	}
	if ((*t)->torn)
		fprintf(stderr, "memsaver analyze: warning: %s\n", err);
	return MSV_EXIT_OK;
}

static int dump(const char *path)
{
	struct msv_trace *t;
	int rc = load(path, &t);
	if (rc != MSV_EXIT_OK)
		return rc;
	for (size_t i = 0; i < t->n; i++) {
		json_t *o = _msv_trace_record_json(t, &t->recs[i]);
		if (!o || json_dumpf(o, stdout, JSON_COMPACT) != 0) {
			json_decref(o);
			rc = MSV_EXIT_FAIL;
			break;
		}
		fputc('\n', stdout);
		json_decref(o);
	}
	_msv_trace_free(t);
	if (fflush(stdout) != 0 && rc == MSV_EXIT_OK) {
		fprintf(stderr, "memsaver analyze: write failed: %s\n", strerror(errno));
		rc = MSV_EXIT_FAIL;
	}
	return rc;
}

static int write_report(const json_t *r, const char *out)
{
	FILE *f = out ? fopen(out, "w") : stdout;
	if (!f) {
		fprintf(stderr, "memsaver analyze: cannot create %s: %s\n", out, strerror(errno));
		return MSV_EXIT_FAIL;
	}
	int bad = json_dumpf(r, f, JSON_INDENT(2)) != 0;
	fputc('\n', f);
	bad |= out ? fclose(f) != 0 : fflush(f) != 0;
	if (bad) {
		fprintf(stderr, "memsaver analyze: cannot write %s: %s\n", out ? out : "stdout",
			strerror(errno));
		return MSV_EXIT_FAIL;
	}
	return MSV_EXIT_OK;
}

int _msv_cmd_analyze(int argc, char **argv)
{
	static const struct option opts[] = {
		{"output", required_argument, NULL, 'o'},
		{"dump", no_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *out = NULL;
	int c, do_dump = 0, rc = MSV_EXIT_OK;

	optind = 0; /* glibc: reinitialise, the dispatcher may have used getopt */
	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'd': do_dump = 1; break;
		case 'h': return usage(stdout, MSV_EXIT_OK);
		default: return usage(stderr, MSV_EXIT_USAGE);
		}
	}
	int n = argc - optind;
	if (n < 1) {
		fprintf(stderr, "memsaver analyze: no trace file given\n");
		return usage(stderr, MSV_EXIT_USAGE);
	}
	if (do_dump) {
		if (n != 1 || out) {
			fprintf(stderr, "memsaver analyze: --dump takes one trace and writes stdout\n");
			return usage(stderr, MSV_EXIT_USAGE);
		}
		return dump(argv[optind]);
	}
	struct msv_trace **t = calloc((size_t)n, sizeof(*t));
	json_t *r = NULL;
	if (!t) {
		fprintf(stderr, "memsaver analyze: out of memory\n");
		return MSV_EXIT_FAIL;
	}
	for (int i = 0; i < n; i++)
		if ((rc = load(argv[optind + i], &t[i])) != MSV_EXIT_OK)
			goto cleanup;
	r = n == 1 ? _msv_report_build(t[0]) : _msv_report_merge(t, (size_t)n);
	if (!r) {
		fprintf(stderr, "memsaver analyze: out of memory building the report\n");
		rc = MSV_EXIT_FAIL;
		goto cleanup;
	}
	rc = write_report(r, out);
cleanup:
	json_decref(r);
	for (int i = 0; i < n; i++)
		_msv_trace_free(t[i]);
	free(t);
	return rc;
}
