/* Classifier: first match wins, every key must hold, any frame / any NVTX
 * range, explicit region first, built-in defaults in order, inclusive size
 * bounds, rule codes and their text. */
#include <check.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tracer/classify.h"

static struct msv_policy *policy(const char *text)
{
	char err[512];
	struct msv_policy *p = NULL;
	ck_assert_msg(_msv_policy_parse(text, "test", &p, err, sizeof(err)) == 0, "%s", err);
	return p;
}

static struct msv_site site(void)
{
	struct msv_site s = {.region = -1, .bytes = 4096};
	return s;
}

static enum msv_category classify(const struct msv_policy *p, const struct msv_site *s, int *rule,
				  enum msv_reason *why)
{
	enum msv_reason r2;
	int i2;
	return _msv_classify(p, s, why ? why : &r2, rule ? rule : &i2);
}

static const char BRIEF[] =
	"{\"version\":1,\"rules\":["
	"{\"category\":\"weights\",\"match\":{\"nvtx\":\"load_weights*\"}},"
	"{\"category\":\"kv\",\"match\":{\"python\":\"*/memory_pool.py:*\"}},"
	"{\"category\":\"workspace\",\"match\":{\"python\":\"*:alloc_workspace\",\"min_bytes\":1048576}},"
	"{\"category\":\"comm\",\"match\":{\"library\":\"libnccl*\"}}]}";

START_TEST(first_match_wins)
{
	struct msv_policy *p = policy(BRIEF);
	const char *nv[] = {"step", "load_weights:layer0"};
	const char *py[] = {"/srv/sglang/srt/mem_cache/memory_pool.py:120:_create_buffers"};
	struct msv_site s = site();
	s.nvtx = nv, s.n_nvtx = 2, s.python = py, s.n_python = 1;
	int rule;
	enum msv_reason why;
	/* Both rule 0 and rule 1 hold: the first one wins. */
	ck_assert_int_eq(classify(p, &s, &rule, &why), MSV_CAT_WEIGHTS);
	ck_assert_int_eq(why, MSV_BY_RULE);
	ck_assert_int_eq(rule, 0);
	s.n_nvtx = 1; /* only "step" open now */
	ck_assert_int_eq(classify(p, &s, &rule, &why), MSV_CAT_KV);
	ck_assert_int_eq(rule, 1);
	/* NULL out-pointers are allowed. */
	ck_assert_int_eq(_msv_classify(p, &s, NULL, NULL), MSV_CAT_KV);
	_msv_policy_free(p);
}
END_TEST

START_TEST(all_keys_must_hold)
{
	struct msv_policy *p = policy(BRIEF);
	const char *py[] = {"bench.py:40:alloc_workspace"};
	struct msv_site s = site();
	s.python = py, s.n_python = 1;
	int rule;
	enum msv_reason why;
	s.bytes = 1048575; /* python holds, min_bytes does not */
	ck_assert_int_eq(classify(p, &s, &rule, &why), MSV_CAT_OTHER);
	ck_assert_int_eq(why, MSV_BY_FALLBACK);
	ck_assert_int_eq(rule, -1);
	s.bytes = 1048576;
	ck_assert_int_eq(classify(p, &s, &rule, &why), MSV_CAT_WORKSPACE);
	ck_assert_int_eq(rule, 2);
	_msv_policy_free(p);

	p = policy("{\"version\":1,\"rules\":[{\"category\":\"kv\",\"match\":{\"nvtx\":\"kv\","
		   "\"python\":\"*:f\",\"library\":\"libtorch*\",\"capturing\":false}}]}");
	const char *nv[] = {"kv"};
	const char *py2[] = {"a.py:1:f"};
	s = site();
	s.nvtx = nv, s.n_nvtx = 1, s.python = py2, s.n_python = 1, s.library = "libtorch_cuda.so";
	ck_assert_int_eq(classify(p, &s, NULL, NULL), MSV_CAT_KV);
	s.library = NULL; /* unknown library never matches a library glob */
	ck_assert_int_eq(classify(p, &s, NULL, NULL), MSV_CAT_OTHER);
	s.library = "libtorch_cuda.so", s.capturing = 1;
	ck_assert_int_eq(classify(p, &s, NULL, NULL), MSV_CAT_GRAPH); /* default: capturing */
	s.capturing = 0, s.n_nvtx = 0;
	ck_assert_int_eq(classify(p, &s, NULL, NULL), MSV_CAT_OTHER);
	s.n_nvtx = 1, s.n_python = 0;
	ck_assert_int_eq(classify(p, &s, NULL, NULL), MSV_CAT_OTHER);
	_msv_policy_free(p);
}
END_TEST

START_TEST(any_frame_any_range)
{
	struct msv_policy *p = policy(
		"{\"version\":1,\"rules\":["
		"{\"category\":\"weights\",\"match\":{\"python\":\"*:load_model\"}},"
		"{\"category\":\"kv\",\"match\":{\"nvtx\":\"kv_init\"}}]}");
	/* Innermost frame is a torch helper; the matching frame is deeper. */
	const char *py[] = {"/t/torch/nn/modules/module.py:1160:to", "/t/x/loader.py:30:_init",
			    "/t/x/loader.py:12:load_model", "/t/main.py:5:<module>"};
	const char *nv[] = {"startup", "kv_init", "layer"};
	struct msv_site s = site();
	s.python = py, s.n_python = 4;
	int rule;
	ck_assert_int_eq(classify(p, &s, &rule, NULL), MSV_CAT_WEIGHTS);
	ck_assert_int_eq(rule, 0);
	s.n_python = 2; /* load_model frame not captured (depth limit) */
	ck_assert_int_eq(classify(p, &s, NULL, NULL), MSV_CAT_OTHER);
	s.nvtx = nv, s.n_nvtx = 3; /* middle of the stack */
	ck_assert_int_eq(classify(p, &s, &rule, NULL), MSV_CAT_KV);
	ck_assert_int_eq(rule, 1);
	/* A glob must match a whole string: "kv_init" is not "kv_init_x". */
	const char *nv2[] = {"kv_init_x"};
	s.nvtx = nv2, s.n_nvtx = 1;
	ck_assert_int_eq(classify(p, &s, NULL, NULL), MSV_CAT_OTHER);
	/* NULL entries in the arrays are skipped, not dereferenced. */
	const char *nv3[] = {NULL, "kv_init"};
	s.nvtx = nv3, s.n_nvtx = 2;
	ck_assert_int_eq(classify(p, &s, NULL, NULL), MSV_CAT_KV);
	_msv_policy_free(p);
}
END_TEST

START_TEST(region_wins)
{
	struct msv_policy *p = policy(BRIEF);
	const char *nv[] = {"load_weights"};
	struct msv_site s = site();
	s.nvtx = nv, s.n_nvtx = 1, s.capturing = 1, s.library = "libnccl.so.2";
	s.region = MSV_CAT_KV;
	int rule;
	enum msv_reason why;
	ck_assert_int_eq(classify(p, &s, &rule, &why), MSV_CAT_KV);
	ck_assert_int_eq(why, MSV_BY_REGION);
	ck_assert_int_eq(rule, -1);
	/* An out-of-range region is ignored rather than trusted. */
	s.region = MSV_CAT_COUNT;
	ck_assert_int_eq(classify(p, &s, &rule, &why), MSV_CAT_WEIGHTS);
	ck_assert_int_eq(why, MSV_BY_RULE);
	_msv_policy_free(p);
}
END_TEST

START_TEST(defaults_order)
{
	struct msv_policy *p = _msv_policy_default();
	struct msv_site s = site();
	enum msv_reason why;
	int rule;
	static const struct {
		const char *lib;
		int capturing;
		enum msv_category cat;
		enum msv_reason why;
	} cases[] = {
		{NULL, 0, MSV_CAT_OTHER, MSV_BY_FALLBACK},
		{"libtorch_cuda.so", 0, MSV_CAT_OTHER, MSV_BY_FALLBACK},
		{"libnccl.so.2", 0, MSV_CAT_COMM, MSV_BY_LIBRARY},
		{"libcublas.so.13", 0, MSV_CAT_WORKSPACE, MSV_BY_LIBRARY},
		{"libcublasLt.so.13", 0, MSV_CAT_WORKSPACE, MSV_BY_LIBRARY},
		{"libcudnn_engines_precompiled.so.9", 0, MSV_CAT_WORKSPACE, MSV_BY_LIBRARY},
		/* capturing comes before the library defaults */
		{"libnccl.so.2", 1, MSV_CAT_GRAPH, MSV_BY_CAPTURE},
		{"libcublasLt.so.13", 1, MSV_CAT_GRAPH, MSV_BY_CAPTURE},
		{NULL, 1, MSV_CAT_GRAPH, MSV_BY_CAPTURE},
		{"mylibnccl.so", 0, MSV_CAT_OTHER, MSV_BY_FALLBACK},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		s.library = cases[i].lib, s.capturing = cases[i].capturing;
		ck_assert_msg(classify(p, &s, &rule, &why) == cases[i].cat, "case %zu", i);
		ck_assert_msg(why == cases[i].why, "case %zu: reason %d", i, why);
		ck_assert_int_eq(rule, -1);
	}
	/* A policy rule comes before every default. */
	struct msv_policy *q = policy("{\"version\":1,\"rules\":[{\"category\":\"kv\",\"match\":"
				      "{\"library\":\"libnccl*\"}}]}");
	s.library = "libnccl.so.2", s.capturing = 1;
	ck_assert_int_eq(classify(q, &s, &rule, &why), MSV_CAT_KV);
	ck_assert_int_eq(why, MSV_BY_RULE);
	_msv_policy_free(q);
	/* A NULL policy classifies by the defaults alone. */
	ck_assert_int_eq(classify(NULL, &s, NULL, NULL), MSV_CAT_GRAPH);
	_msv_policy_free(p);
}
END_TEST

START_TEST(byte_bounds_inclusive)
{
	struct msv_policy *p = policy("{\"version\":1,\"rules\":["
				      "{\"category\":\"kv\",\"match\":{\"min_bytes\":100,\"max_bytes\":200}},"
				      "{\"category\":\"weights\",\"match\":{\"max_bytes\":99}},"
				      "{\"category\":\"graph\",\"match\":{\"min_bytes\":201}}]}");
	static const struct {
		uint64_t bytes;
		enum msv_category cat;
	} cases[] = {
		{0, MSV_CAT_WEIGHTS},   {1, MSV_CAT_WEIGHTS},  {99, MSV_CAT_WEIGHTS},
		{100, MSV_CAT_KV},      {150, MSV_CAT_KV},     {200, MSV_CAT_KV},
		{201, MSV_CAT_GRAPH},   {UINT64_MAX, MSV_CAT_GRAPH},
	};
	struct msv_site s = site();
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		s.bytes = cases[i].bytes;
		ck_assert_msg(classify(p, &s, NULL, NULL) == cases[i].cat, "bytes %llu",
			      (unsigned long long)cases[i].bytes);
	}
	_msv_policy_free(p);
}
END_TEST

START_TEST(capturing_rule)
{
	struct msv_policy *p = policy("{\"version\":1,\"rules\":["
				      "{\"category\":\"workspace\",\"match\":{\"capturing\":true,\"library\":\"libcublas*\"}},"
				      "{\"category\":\"comm\",\"match\":{\"capturing\":false,\"nvtx\":\"*\"}}]}");
	const char *nv[] = {"x"};
	struct msv_site s = site();
	s.library = "libcublas.so.13", s.capturing = 1;
	ck_assert_int_eq(classify(p, &s, NULL, NULL), MSV_CAT_WORKSPACE);
	s.capturing = 7; /* any non-zero means capturing */
	ck_assert_int_eq(classify(p, &s, NULL, NULL), MSV_CAT_WORKSPACE);
	s.capturing = 0, s.nvtx = nv, s.n_nvtx = 1;
	ck_assert_int_eq(classify(p, &s, NULL, NULL), MSV_CAT_COMM);
	s.capturing = 1, s.library = NULL;
	ck_assert_int_eq(classify(p, &s, NULL, NULL), MSV_CAT_GRAPH);
	_msv_policy_free(p);
}
END_TEST

START_TEST(glob_semantics)
{
	/* '*' crosses '/', brackets and escapes work, matching is byte-wise
	 * even when the process runs under a UTF-8 locale (as CPython does). */
	setlocale(LC_ALL, "C.UTF-8");
	struct msv_policy *p = policy("{\"version\":1,\"rules\":["
				      "{\"category\":\"kv\",\"match\":{\"python\":\"*/mem_cache/*.py:[0-9]*:_create_*\"}},"
				      "{\"category\":\"weights\",\"match\":{\"nvtx\":\"\\\\[w]*\"}},"
				      "{\"category\":\"comm\",\"match\":{\"nvtx\":\"r\u00e9gion?\"}}]}");
	const char *py[] = {"/a/b/sglang/srt/mem_cache/memory_pool.py:321:_create_buffers"};
	const char *py_bad[] = {"/a/mem_cache/memory_pool.py:x1:_create_buffers"};
	const char *nv_w[] = {"[w] layer 3"};
	const char *nv_region[] = {"r\xc3\xa9gion1"};
	struct msv_site s = site();
	s.python = py, s.n_python = 1;
	ck_assert_int_eq(classify(p, &s, NULL, NULL), MSV_CAT_KV);
	s.python = py_bad;
	ck_assert_int_eq(classify(p, &s, NULL, NULL), MSV_CAT_OTHER);
	s.n_python = 0, s.nvtx = nv_w, s.n_nvtx = 1;
	ck_assert_int_eq(classify(p, &s, NULL, NULL), MSV_CAT_WEIGHTS);
	s.nvtx = nv_region;
	ck_assert_int_eq(classify(p, &s, NULL, NULL), MSV_CAT_COMM);
	/* The caller's locale is left as it was. */
	ck_assert_ptr_nonnull(strstr(setlocale(LC_CTYPE, NULL), "UTF-8"));
	setlocale(LC_ALL, "C");
	_msv_policy_free(p);
}
END_TEST

START_TEST(rule_matches_single)
{
	struct msv_policy *p = policy(BRIEF);
	struct msv_site s = site();
	s.library = "libnccl.so.2";
	ck_assert(!_msv_rule_matches(_msv_policy_rule(p, 0), &s));
	ck_assert(_msv_rule_matches(_msv_policy_rule(p, 3), &s));
	size_t n;
	const struct msv_default_rule *d = _msv_classify_defaults(&n);
	ck_assert_uint_ge(n, 2);
	ck_assert_int_eq(d[0].reason, MSV_BY_CAPTURE);
	ck_assert_int_eq(d[n - 1].reason, MSV_BY_FALLBACK);
	ck_assert(_msv_rule_matches(&d[n - 1].rule, &s)); /* the fallback matches everything */
	_msv_policy_free(p);
}
END_TEST

START_TEST(rule_codes)
{
	char buf[64];
	ck_assert_uint_eq(_msv_classify_rule_code(MSV_BY_RULE, 0), 1);
	ck_assert_uint_eq(_msv_classify_rule_code(MSV_BY_RULE, 3), 4);
	ck_assert_uint_eq(_msv_classify_rule_code(MSV_BY_REGION, -1), 0x8000);
	ck_assert_uint_eq(_msv_classify_rule_code(MSV_BY_CAPTURE, -1), 0x8000 | MSV_BY_CAPTURE);
	ck_assert_uint_eq(_msv_classify_rule_code(MSV_BY_FALLBACK, -1), 0x8000 | MSV_BY_FALLBACK);
	ck_assert_str_eq(_msv_classify_rule_text(4, buf, sizeof(buf)), "rule 3");
	ck_assert_str_eq(_msv_classify_rule_text(1, buf, sizeof(buf)), "rule 0");
	ck_assert_str_eq(_msv_classify_rule_text(0, buf, sizeof(buf)), "default");
	ck_assert_str_eq(_msv_classify_rule_text(0x8000, buf, sizeof(buf)), "region");
	ck_assert_str_eq(_msv_classify_rule_text(0x8000 | MSV_BY_CAPTURE, buf, sizeof(buf)),
			 "default: capturing");
	ck_assert_str_eq(_msv_classify_rule_text(0x8000 | MSV_BY_LIBRARY, buf, sizeof(buf)),
			 "default: library");
	ck_assert_str_eq(_msv_classify_rule_text(0x8000 | MSV_BY_FALLBACK, buf, sizeof(buf)),
			 "default: other");
	ck_assert_str_eq(_msv_classify_rule_text(0x8123, buf, sizeof(buf)), "unknown (0x8123)");
	/* Round trip of every decision the classifier makes on a policy. */
	struct msv_policy *p = policy(BRIEF);
	struct msv_site s = site();
	s.library = "libnccl.so.2";
	enum msv_reason why;
	int rule;
	_msv_classify(p, &s, &why, &rule);
	ck_assert_str_eq(_msv_classify_rule_text(_msv_classify_rule_code(why, rule), buf, sizeof(buf)),
			 "rule 3");
	_msv_policy_free(p);
}
END_TEST

START_TEST(hints_agree_with_fnmatch)
{
	/* The literal prefix/suffix/needle filters must never reject a string
	 * fnmatch accepts: every glob against every subject, with and without. */
	static const char *const globs[] = {
		"*", "abc", "a*", "*c", "a*c", "*b*", "a?c", "[ab]bc", "\\[x]*", "*\\*", "x\\?y",
		"*/memory_pool.py:*", "*:load_model", "ab[!c]*de", "*[[:digit:]]", "lib\\[x]*", "a*b*a",
		"aa*aa",
	};
	static const char *const subjects[] = {
		"", "abc", "abbc", "ac", "bbc", "[x]", "[x]yz", "*", "a*b", "x?y", "xzy", "aaa", "aba",
		"/p/sglang/srt/mem_cache/memory_pool.py:10:f", "m.py:3:load_model", "abde", "abxde",
		"abcde", "file9", "lib[x].so", "aaaa", "aaa", "abba",
	};
	for (size_t g = 0; g < sizeof(globs) / sizeof(*globs); g++) {
		json_t *j = json_pack("{s:i,s:[{s:s,s:{s:s}}]}", "version", 1, "rules", "category", "kv",
				      "match", "nvtx", globs[g]);
		char *t = json_dumps(j, 0);
		struct msv_policy *p = policy(t);
		for (size_t i = 0; i < sizeof(subjects) / sizeof(*subjects); i++) {
			const char *nv[] = {subjects[i]};
			struct msv_site s = site();
			s.nvtx = nv, s.n_nvtx = 1;
			int with = classify(p, &s, NULL, NULL) == MSV_CAT_KV;
			int without = _msv_rule_matches(_msv_policy_rule(p, 0), &s);
			ck_assert_msg(with == without, "glob \"%s\" on \"%s\": hints %d, fnmatch %d",
				      globs[g], subjects[i], with, without);
		}
		_msv_policy_free(p);
		free(t);
		json_decref(j);
	}
}
END_TEST

START_TEST(speed)
{
	/* Runs on every cudaMalloc: a 16-rule policy that falls through to the
	 * defaults, with 8 frames and 4 ranges, must stay in the microseconds. */
	char text[8192], *q = text;
	q += sprintf(q, "{\"version\":1,\"rules\":[");
	for (int i = 0; i < 16; i++)
		q += sprintf(q, "%s{\"category\":\"kv\",\"match\":{\"python\":\"*/pkg%d/*.py:*:f%d\"}}",
			     i ? "," : "", i, i);
	sprintf(q, "]}");
	struct msv_policy *p = policy(text);
	const char *py[8], *nv[4] = {"a", "b", "c", "d"};
	for (int i = 0; i < 8; i++)
		py[i] = "/usr/lib/python3/site-packages/torch/nn/modules/module.py:1160:_call_impl";
	struct msv_site s = site();
	s.python = py, s.n_python = 8, s.nvtx = nv, s.n_nvtx = 4, s.library = "libtorch_cuda.so";
	struct timespec a, b;
	int n = 20000;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(_msv_classify(p, &s, NULL, NULL), MSV_CAT_OTHER);
	clock_gettime(CLOCK_MONOTONIC, &b);
	double us = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 1e3 / n;
	fprintf(stderr, "classify: %.2f us per call (16 rules x 8 frames)\n", us);
	ck_assert_msg(us < 50.0, "classify takes %.1f us", us);
	_msv_policy_free(p);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("classify");
	TCase *tc = tcase_create("classify");
	tcase_add_test(tc, first_match_wins);
	tcase_add_test(tc, all_keys_must_hold);
	tcase_add_test(tc, any_frame_any_range);
	tcase_add_test(tc, region_wins);
	tcase_add_test(tc, defaults_order);
	tcase_add_test(tc, byte_bounds_inclusive);
	tcase_add_test(tc, capturing_rule);
	tcase_add_test(tc, glob_semantics);
	tcase_add_test(tc, rule_matches_single);
	tcase_add_test(tc, rule_codes);
	tcase_add_test(tc, hints_agree_with_fnmatch);
	tcase_add_test(tc, speed);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
