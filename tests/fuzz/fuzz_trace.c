/* Fuzz target: the trace reader (analyzer/trace_read.c) on torn, truncated
 * and hostile traces, then everything `memsaver analyze` does with what it
 * accepted: --dump of every record, the report, its text/HTML/Perfetto
 * renderings and a merge of the trace with itself (two ranks). */
#define FUZZ_NAME "trace"
#include "tests/fuzz/fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyzer/analyzer.h"

static void render_all(const json_t *r)
{
	FILE *f = fopen("/dev/null", "w");
	if (!f)
		return;
	_msv_render_text(r, f);
	_msv_render_html(r, f);
	_msv_render_perfetto(r, f);
	fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msv_trace *t = NULL;
	char err[1024];
	if (_msv_trace_parse(data, size, "fuzz.trace", &t, err, sizeof(err)) != 0) {
		if (!err[0])
			__builtin_trap(); /* a refusal always says why */
		return 0;
	}
	for (size_t i = 0; i < t->n; i++) {
		json_t *j = _msv_trace_record_json(t, &t->recs[i]);
		char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
		free(s);
		json_decref(j);
	}
	json_t *r = _msv_report_build(t);
	if (r) {
		char ck[1024];
		/* What the library writes, report and diff must read back. */
		if (_msv_report_check(r, "built", ck, sizeof(ck)) != 0) {
			fprintf(stderr, "built report fails its own check: %s\n", ck);
			__builtin_trap();
		}
		render_all(r);
		json_decref(r);
	}
	struct msv_trace *two[2] = {t, t};
	json_t *m = _msv_report_merge(two, 2);
	if (m) {
		render_all(m);
		json_decref(m);
	}
	_msv_trace_free(t);
	return 0;
}

#ifdef MSV_FUZZ_REPLAY
#include "tests/fuzz/replay.c"
#endif
