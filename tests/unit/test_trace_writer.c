/* The trace writer's in-memory bound (MEMSAVER_TRACE_MAX): the copy never
 * grows past it, transient allocation/free pairs make room, and the report
 * built from the bounded copy attributes the same live memory as the one
 * built from the complete trace file.  Each test runs in its own forked
 * process (CK_FORK), so _msv_options() reads the environment set here. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analyzer/analyzer.h"
#include "tracer/categories.h"
#include "tracer/trace_writer.h"

#define MAX (64u << 10)

static char path[256];

static struct msv_trace_writer *open_writer(void)
{
	struct msv_trace_writer *w;
	setenv("MEMSAVER_TRACE_MAX", "64KiB", 1);
	setenv("MEMSAVER_LOG", "error", 1);
	snprintf(path, sizeof(path), "/tmp/msv-test-trace-%d.trace", (int)getpid());
	ck_assert_int_eq(_msv_trace_writer_new(path, 1, &w), 0);
	return w;
}

static void rec(struct msv_trace_writer *w, struct msv_rec r)
{
	static uint64_t t = 1000;
	r.t_ns = t += 1000;
	r.tid = 7;
	_msv_trace_append(w, &r);
}

static void alloc(struct msv_trace_writer *w, uint64_t addr, int cat, const char *py)
{
	rec(w, (struct msv_rec){.type = MSV_REC_ALLOC, .addr = addr, .size = 1 << 20,
				.aux = 2 << 20, .category = cat, .flags = MSV_F_WRAPPED,
				.pysite = _msv_trace_intern(w, py), .api = MSV_API_MEM_ALLOC});
}

static void phase(struct msv_trace_writer *w, const char *label, uint64_t used)
{
	rec(w, (struct msv_rec){.type = MSV_REC_PHASE, .site = _msv_trace_intern(w, label),
				.size = 80ull << 30, .aux = used, .aux2 = MSV_NO_VALUE});
}

static json_t *report_of(const void *buf, size_t len)
{
	struct msv_trace *t = NULL;
	char err[256];
	ck_assert_msg(_msv_trace_parse(buf, len, "t", &t, err, sizeof(err)) == 0, "%s", err);
	json_t *r = _msv_report_build(t);
	_msv_trace_free(t);
	ck_assert_ptr_nonnull(r);
	return r;
}

static json_t *report_of_file(void)
{
	FILE *f = fopen(path, "rb");
	ck_assert_ptr_nonnull(f);
	static unsigned char buf[8 << 20];
	size_t len = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	unlink(path);
	return report_of(buf, len);
}

/* 20,000 transient pairs (1.25 MiB of records) between phases, 40 live
 * allocations, a pause: the copy stays within 64 KiB and its report's
 * attribution equals the full file's. */
START_TEST(test_pairs_compacted)
{
	struct msv_trace_writer *w = open_writer();
	phase(w, "baseline", 1ull << 30);
	for (int i = 0; i < 20000; i++) {
		if (i % 500 == 0)
			alloc(w, 0x7f0000000000ull + (uint64_t)i * (4 << 20), MSV_CAT_KV, "live.py:1:kv");
		if (i % 1000 == 1) /* kept by policy: what the report must still name */
			rec(w, (struct msv_rec){.type = MSV_REC_ALLOC,
						.addr = 0x7e0000000000ull + (uint64_t)i * (4 << 20),
						.size = 1 << 20, .category = MSV_CAT_OTHER,
						.pysite = _msv_trace_intern(w, "model.py:3:buffers"),
						.api = MSV_API_MEM_ALLOC});
		uint64_t a = 0x100000000ull + (uint64_t)(i % 64) * (2 << 20);
		alloc(w, a, MSV_CAT_WORKSPACE, "step.py:9:scratch");
		rec(w, (struct msv_rec){.type = MSV_REC_FREE, .addr = a, .size = 1 << 20});
		if (i == 10000)
			phase(w, "loaded", 3ull << 30);
	}
	phase(w, "before_pause", 3ull << 30);
	rec(w, (struct msv_rec){.type = MSV_REC_PAUSE, .addr = 1ull << MSV_CAT_KV,
				.size = 80ull << 20});
	phase(w, "paused", 2ull << 30);
	void *buf;
	size_t len;
	ck_assert_int_eq(_msv_trace_copy(w, &buf, &len), 0);
	ck_assert_uint_le(len, MAX);
	json_t *mem = report_of(buf, len);
	free(buf);
	_msv_trace_writer_free(w);
	json_t *file = report_of_file();
	json_t *a = json_object_get(mem, "attribution"), *b = json_object_get(file, "attribution");
	ck_assert_ptr_nonnull(a);
	/* 20 live "other" allocations of 1 MiB: the source the report names. */
	json_t *src = json_array_get(json_object_get(a, "sources"), 1);
	ck_assert_str_eq(json_string_value(json_object_get(src, "source")), "category:other");
	ck_assert_int_eq(json_integer_value(json_object_get(src, "bytes")), 20 << 20);
	char *sa = json_dumps(a, JSON_SORT_KEYS), *sb = json_dumps(b, JSON_SORT_KEYS);
	ck_assert_str_eq(sa, sb);
	free(sa);
	free(sb);
	json_decref(mem);
	json_decref(file);
}
END_TEST

/* Nothing to drop (every allocation stays live): the copy stops at the
 * bound and is still a trace the analyzer reads whole. */
START_TEST(test_full_is_a_prefix)
{
	struct msv_trace_writer *w = open_writer();
	phase(w, "baseline", 1ull << 30);
	for (int i = 0; i < 5000; i++)
		alloc(w, 0x7f0000000000ull + (uint64_t)i * (2 << 20), MSV_CAT_KV, "live.py:1:kv");
	phase(w, "end", 2ull << 30);
	void *buf;
	size_t len;
	ck_assert_int_eq(_msv_trace_copy(w, &buf, &len), 0);
	ck_assert_uint_le(len, MAX);
	json_t *mem = report_of(buf, len);
	free(buf);
	_msv_trace_writer_free(w);
	json_decref(report_of_file());
	json_decref(mem);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("trace_writer");
	TCase *tc = tcase_create("bound");
	tcase_add_test(tc, test_pairs_compacted);
	tcase_add_test(tc, test_full_is_a_prefix);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
