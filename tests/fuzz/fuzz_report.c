/* Fuzz target: the report loader behind `memsaver report` and `memsaver
 * diff` (analyzer/merge.c: parse + _msv_report_check), then what those
 * commands do with an accepted report: the three renderings, and a diff
 * against itself and against a minimal report, as text and JSON. */
#define FUZZ_NAME "report"
#include "tests/fuzz/fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyzer/analyzer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[1024];
	json_t *r = _msv_report_parse((const char *)data, size, "fuzz.json", err, sizeof(err));
	if (!r) {
		if (!err[0])
			__builtin_trap(); /* a refusal always says why */
		return 0;
	}
	FILE *f = fopen("/dev/null", "w");
	json_t *min = json_pack("{s:i}", "schema_version", MSV_REPORT_SCHEMA_VERSION);
	if (f) {
		_msv_render_text(r, f);
		_msv_render_html(r, f);
		_msv_render_perfetto(r, f);
		json_t *d[3] = {_msv_report_diff(r, r), _msv_report_diff(min, r), _msv_report_diff(r, min)};
		for (int i = 0; i < 3; i++) {
			if (d[i]) {
				_msv_render_diff_text(d[i], f);
				json_dumpf(d[i], f, JSON_INDENT(2));
			}
			json_decref(d[i]);
		}
		fclose(f);
	}
	json_decref(min);
	json_decref(r);
	return 0;
}

#ifdef MSV_FUZZ_REPLAY
#include "tests/fuzz/replay.c"
#endif
