/* The analyzer: trace bytes in, attribution report out.  Plain C + jansson,
 * no CUDA: linked into libmemsaver.so (live reports) and into the CLI
 * (offline reports), so both give the same JSON for the same trace.
 *
 * Ownership: a struct msv_trace owns its records and strings; json_t results
 * are new references the caller must json_decref.  err buffers receive one
 * line naming the input, the position and what was expected. */
#ifndef MSV_ANALYZER_H
#define MSV_ANALYZER_H

#include <jansson.h>
#include <stdio.h>

#include "tracer/trace_format.h"

#define MSV_REPORT_SCHEMA_VERSION 1

struct msv_trace {
	struct msv_trace_header hdr;
	struct msv_rec *recs; /* every record except STRING ones, in file order */
	size_t n;
	char **strings;       /* strings[id]; strings[0] is NULL */
	size_t n_strings;
	int torn;             /* a torn tail was skipped */
	char name[256];       /* file name or "live" */
};

/* Parse trace bytes.  A torn tail is skipped (t->torn = 1, a warning in err,
 * return 0); a bad header, wrong version or inconsistent record is an error
 * (-EINVAL).  */
int _msv_trace_parse(const void *buf, size_t len, const char *name, struct msv_trace **out,
		     char *err, size_t errlen);
int _msv_trace_load(const char *path, struct msv_trace **out, char *err, size_t errlen);
void _msv_trace_free(struct msv_trace *t); /* accepts NULL */
const char *_msv_trace_string(const struct msv_trace *t, uint32_t id); /* NULL for 0/unknown */

/* One record as a JSON object (for `memsaver analyze --dump`). */
json_t *_msv_trace_record_json(const struct msv_trace *t, const struct msv_rec *r);

/* The report of one process (docs/report.md).  NULL only on out of memory. */
json_t *_msv_report_build(const struct msv_trace *t);
/* Several processes/ranks merged: per-process sections plus totals. */
json_t *_msv_report_merge(struct msv_trace *const *traces, size_t n);

/* Validate a report read from disk: schema_version must equal
 * MSV_REPORT_SCHEMA_VERSION, sources must add up to unreclaimed_bytes.
 * Returns 0 or -EINVAL with the reason in err. */
int _msv_report_check(const json_t *report, const char *name, char *err, size_t errlen);

/* Renderers.  Return 0 or -errno. */
int _msv_render_text(const json_t *report, FILE *out);
int _msv_render_html(const json_t *report, FILE *out);
int _msv_render_perfetto(const json_t *report, FILE *out);
/* What changed between two reports, per source, as JSON (new reference). */
json_t *_msv_report_diff(const json_t *a, const json_t *b);
int _msv_render_diff_text(const json_t *diff, FILE *out);

/* Added helpers shared by the analyzer's files and the CLI. */
const char *_msv_rec_type_name(unsigned type);     /* "alloc", "phase", ... */
const char *_msv_meta_key_name(unsigned key);      /* "cmdline", ... */
const char *_msv_driver_cause_name(unsigned cause);/* "context", "modules", ... */
const char *_msv_share_kind_name(unsigned kind); /* "retained", "exported", ... */
json_t *_msv_flags_json(unsigned flags);           /* ["wrapped", ...] */
json_t *_msv_mask_json(uint64_t mask);             /* ["weights", ...] */
/* "1.50 GiB", "12.0 MiB", "512 B"; negative values keep their sign. */
const char *_msv_fmt_bytes(long long bytes, char *buf, size_t len);
/* The key a source is merged and diffed by: "category:kv (excluded from
 * this pause)" for category sources, the source name otherwise.  Returns
 * buf. */
const char *_msv_source_key(const json_t *source, char *buf, size_t len);
/* Parse a report file, then _msv_report_check it.  Returns a new reference
 * or NULL with the reason in err. */
/* Sort sources largest first (ties by key) and set share_of_unreclaimed
 * and share_of_footprint (null when the whole is 0). */
void _msv_sources_finish(json_t *sources, long long unreclaimed, long long footprint);
json_t *_msv_report_load(const char *path, char *err, size_t errlen);
/* The same from bytes in memory; name stands for the file in messages. */
json_t *_msv_report_parse(const char *text, size_t len, const char *name, char *err,
			  size_t errlen);

#endif
