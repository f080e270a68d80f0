/* Policy parser: data first.  tests/policy/bad/NAME.json is refused with
 * the message in NAME.expected ("LINE:COLUMN: fragment", the fragment a
 * substring of what follows the position); tests/policy/good/NAME.json gives
 * the effective policy in NAME.expected (JSON); every shipped policy in
 * tools/policies/ loads.  Paths are relative to $ROOT, else the cwd. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tracer/policy.h"

static const char *root(void)
{
	const char *r = getenv("ROOT");
	return r && *r ? r : ".";
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = malloc(1 << 16);
	if (!buf) {
		fclose(f);
		return NULL;
	}
	size_t n = fread(buf, 1, (1 << 16) - 1, f);
	fclose(f);
	buf[n] = '\0';
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	return buf;
}

static int has_suffix(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && !strcmp(s + a - b, suf);
}

/* Calls fn(dir, base name without .json) for each NAME.json; returns the count. */
static int each_json(const char *sub, void (*fn)(const char *dir, const char *name))
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/%s", root(), sub);
	DIR *d = opendir(dir);
	ck_assert_msg(d, "cannot open %s (run from the repository root or set ROOT)", dir);
	struct dirent *e;
	int n = 0;
	while ((e = readdir(d))) {
		if (!has_suffix(e->d_name, ".json"))
			continue;
		char name[256];
		snprintf(name, sizeof(name), "%.*s", (int)(strlen(e->d_name) - 5), e->d_name);
		fn(dir, name);
		n++;
	}
	closedir(d);
	return n;
}

static void check_bad(const char *dir, const char *name)
{
	char path[4096], exp_path[4096], err[1024] = "";
	snprintf(path, sizeof(path), "%s/%s.json", dir, name);
	snprintf(exp_path, sizeof(exp_path), "%s/%s.expected", dir, name);
	char *exp = slurp(exp_path);
	ck_assert_msg(exp, "%s: no sidecar %s", name, exp_path);
	/* "LINE:COLUMN: fragment" */
	char *colon = strchr(exp, ':');
	ck_assert_msg(colon, "%s: malformed sidecar", name);
	char *sep = strstr(colon + 1, ": ");
	ck_assert_msg(sep, "%s: malformed sidecar", name);
	*sep = '\0';
	const char *pos = exp, *frag = sep + 2;

	struct msv_policy *p = (struct msv_policy *)1;
	int rc = _msv_policy_load(path, &p, err, sizeof(err));
	ck_assert_msg(rc == -EINVAL, "%s: expected -EINVAL, got %d (%s)", name, rc, err);
	ck_assert_msg(p == NULL, "%s: policy returned on error", name);
	char prefix[4200];
	snprintf(prefix, sizeof(prefix), "%s:%s: ", path, pos);
	ck_assert_msg(!strncmp(err, prefix, strlen(prefix)), "%s: message\n  %s\ndoes not start with\n  %s",
		      name, err, prefix);
	ck_assert_msg(strstr(err + strlen(prefix), frag), "%s: message\n  %s\nlacks\n  %s", name, err,
		      frag);
	free(exp);
}

START_TEST(bad_files)
{
	int n = each_json("tests/policy/bad", check_bad);
	ck_assert_int_ge(n, 30);
}
END_TEST

static void check_good(const char *dir, const char *name)
{
	char path[4096], exp_path[4096], err[1024] = "";
	snprintf(path, sizeof(path), "%s/%s.json", dir, name);
	snprintf(exp_path, sizeof(exp_path), "%s/%s.expected", dir, name);
	struct msv_policy *p = NULL;
	int rc = _msv_policy_load(path, &p, err, sizeof(err));
	ck_assert_msg(rc == 0, "%s: %s", name, err);
	json_error_t je;
	json_t *want = json_load_file(exp_path, 0, &je);
	ck_assert_msg(want, "%s: %s:%d: %s", name, exp_path, je.line, je.text);
	json_t *got = _msv_policy_to_json(p);
	if (!json_equal(got, want)) {
		char *g = json_dumps(got, JSON_INDENT(2));
		ck_abort_msg("%s: effective policy differs from %s; got\n%s", name, exp_path, g);
	}
	json_decref(got);
	json_decref(want);
	_msv_policy_free(p);
}

START_TEST(good_files)
{
	int n = each_json("tests/policy/good", check_good);
	ck_assert_int_ge(n, 4);
}
END_TEST

static void check_shipped(const char *dir, const char *name)
{
	char path[4096], err[1024] = "";
	snprintf(path, sizeof(path), "%s/%s.json", dir, name);
	struct msv_policy *p = NULL;
	ck_assert_msg(_msv_policy_load(path, &p, err, sizeof(err)) == 0, "shipped policy: %s", err);
	if (!strcmp(name, "default")) {
		/* default.json is the built-in policy written out. */
		struct msv_policy *d = _msv_policy_default();
		json_t *a = _msv_policy_to_json(p), *b = _msv_policy_to_json(d);
		json_object_del(a, "description");
		ck_assert_msg(json_equal(a, b), "default.json differs from the built-in policy");
		json_decref(a);
		json_decref(b);
		_msv_policy_free(d);
	} else {
		ck_assert_msg(_msv_policy_rule_count(p) > 0, "%s has no rules", name);
		for (size_t i = 0; i < _msv_policy_rule_count(p); i++)
			ck_assert_msg(_msv_policy_rule_description(p, i), "%s: rule %zu undescribed", name, i);
	}
	_msv_policy_free(p);
}

START_TEST(shipped_policies)
{
	int n = each_json("tools/policies", check_shipped);
	ck_assert_int_ge(n, 4);
}
END_TEST

START_TEST(unreadable)
{
	char err[1024];
	struct msv_policy *p = NULL;
	int rc = _msv_policy_load("/nonexistent/policy.json", &p, err, sizeof(err));
	ck_assert_int_eq(rc, -ENOENT);
	ck_assert_ptr_null(p);
	ck_assert_str_eq(err, "/nonexistent/policy.json:0:0: cannot read policy file: No such file or directory");
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/tests/policy/bad", root());
	rc = _msv_policy_load(dir, &p, err, sizeof(err));
	ck_assert_int_eq(rc, -EISDIR);
	ck_assert_ptr_nonnull(strstr(err, ":0:0: cannot read policy file: Is a directory"));
	/* err may be NULL: the caller only wants the status. */
	ck_assert_int_eq(_msv_policy_load("/nonexistent", &p, NULL, 0), -ENOENT);
}
END_TEST

START_TEST(parse_text)
{
	char err[512];
	struct msv_policy *p = NULL;
	const char *text = "{\"version\":1,\"rules\":[{\"category\":\"kv\",\"match\":"
			   "{\"python\":\"*:f\",\"min_bytes\":0,\"max_bytes\":9}}],"
			   "\"actions\":{\"kv\":\"zero\"},\"context\":\"keep\"}";
	ck_assert_int_eq(_msv_policy_parse(text, "inline", &p, err, sizeof(err)), 0);
	ck_assert_uint_eq(_msv_policy_rule_count(p), 1);
	const struct msv_rule *r = _msv_policy_rule(p, 0);
	ck_assert_int_eq(r->category, MSV_CAT_KV);
	ck_assert_str_eq(r->python, "*:f");
	ck_assert_ptr_null(r->nvtx);
	ck_assert_ptr_null(r->library);
	ck_assert_int_eq(r->capturing, -1);
	ck_assert_uint_eq(r->min_bytes, 0);
	ck_assert_uint_eq(r->max_bytes, 9);
	ck_assert_int_eq(r->line, 1);
	ck_assert_ptr_null(_msv_policy_rule(p, 1));
	ck_assert_ptr_null(_msv_policy_rule_description(p, 0));
	ck_assert_int_eq(_msv_policy_action(p, MSV_CAT_KV), MSV_ACT_ZERO);
	ck_assert_int_eq(_msv_policy_action(p, MSV_CAT_WEIGHTS), MSV_ACT_BACKUP);
	ck_assert_int_eq(_msv_policy_action(p, MSV_CAT_COMM), MSV_ACT_KEEP);
	ck_assert_int_eq(_msv_policy_context(p), MSV_CONTEXT_KEEP);
	ck_assert(_msv_policy_wraps_any(p));
	_msv_policy_free(p);

	ck_assert_int_eq(_msv_policy_parse("{\"version\":1,\"actions\":{\"weights\":\"keep\",\"kv\":\"keep\","
					   "\"graph\":\"keep\",\"workspace\":\"keep\"}}",
					   "inline", &p, err, sizeof(err)),
			 0);
	ck_assert(!_msv_policy_wraps_any(p));
	_msv_policy_free(p);

	/* A NULL name still gives a usable message. */
	ck_assert_int_eq(_msv_policy_parse("{}", NULL, &p, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "<policy>:1:1: missing \"version\" (expected \"version\": 1)");
	/* Positions on the second line after a CRLF, and columns in characters. */
	ck_assert_int_eq(_msv_policy_parse("{\"version\":1,\r\n \"context\":\"\xc3\xa9\"}", "crlf", &p, err,
					   sizeof(err)),
			 -EINVAL);
	ck_assert_str_eq(err, "crlf:2:12: bad context \"\xc3\xa9\" (expected \"trim\" or \"keep\")");
	/* A string full of escaped quotes and brackets before the offending value. */
	ck_assert_int_eq(_msv_policy_parse("{\"version\":1,\"description\":\"\\\"}]{[\\\\\",\"rules\":[[]]}",
					   "esc", &p, err, sizeof(err)),
			 -EINVAL);
	ck_assert_str_eq(err, "esc:1:48: rule 0 must be an object with \"category\" and \"match\", got an array");
	/* Truncated error buffers stay terminated. */
	char small[8];
	ck_assert_int_eq(_msv_policy_parse("[]", "x", &p, small, sizeof(small)), -EINVAL);
	ck_assert_uint_eq(strlen(small), 7);
}
END_TEST

START_TEST(defaults)
{
	struct msv_policy *p = _msv_policy_default();
	ck_assert_uint_eq(_msv_policy_rule_count(p), 0);
	for (int c = 0; c < MSV_CAT_COUNT; c++)
		ck_assert_int_eq(_msv_policy_action(p, c), _msv_category_default_action(c));
	ck_assert_int_eq(_msv_policy_context(p), MSV_CONTEXT_TRIM);
	json_t *j = _msv_policy_to_json(p);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "version")), 1);
	ck_assert_uint_eq(json_array_size(json_object_get(j, "rules")), 0);
	ck_assert_uint_eq(json_object_size(json_object_get(j, "actions")), MSV_CAT_COUNT);
	json_t *defs = json_object_get(j, "defaults");
	ck_assert_uint_ge(json_array_size(defs), 5);
	json_t *last = json_array_get(defs, json_array_size(defs) - 1);
	ck_assert_str_eq(json_string_value(json_object_get(last, "category")), "other");
	json_decref(j);
	_msv_policy_free(p);
	_msv_policy_free(NULL);
	/* A NULL policy reads as the defaults. */
	ck_assert_int_eq(_msv_policy_action(NULL, MSV_CAT_KV), MSV_ACT_DISCARD);
	ck_assert_uint_eq(_msv_policy_rule_count(NULL), 0);
}
END_TEST

START_TEST(glob_check)
{
	static const struct {
		const char *glob;
		const char *why; /* NULL = valid; else a fragment */
	} cases[] = {
		{"*", NULL},
		{"load_weights*", NULL},
		{"*/memory_pool.py:*", NULL},
		{"[abc]", NULL},
		{"[!abc]x", NULL},
		{"[^a-z]", NULL},
		{"[]]", NULL},
		{"[!]]", NULL},
		{"[[:alpha:][:digit:]_]*", NULL},
		{"\\[literal", NULL},
		{"a\\*b", NULL},
		{"[\\]]", NULL},
		{"[[.a.]]", NULL},
		{"", "empty"},
		{"[abc", "unbalanced '[' at offset 0"},
		{"x[", "unbalanced '[' at offset 1"},
		{"[]", "unbalanced"},
		{"[!]", "unbalanced"},
		{"abc\\", "trailing backslash"},
		{"[[:alpha]]", "unterminated '[:'"},
		{"[[:word:]]", "unknown character class \"[:word:]\""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		char why[160];
		const char *r = _msv_glob_check(cases[i].glob, why, sizeof(why));
		if (!cases[i].why)
			ck_assert_msg(!r, "\"%s\" refused: %s", cases[i].glob, r);
		else
			ck_assert_msg(r && strstr(r, cases[i].why), "\"%s\": expected \"%s\", got %s",
				      cases[i].glob, cases[i].why, r ? r : "(accepted)");
	}
}
END_TEST

static char *many_rules(size_t n)
{
	size_t cap = 64 + n * 80;
	char *t = malloc(cap), *q = t;
	ck_assert_ptr_nonnull(t);
	q += sprintf(q, "{\"version\": 1, \"rules\": [\n");
	for (size_t i = 0; i < n; i++)
		q += sprintf(q, "  {\"category\": \"kv\", \"match\": {\"nvtx\": \"r%zu\"}}%s\n", i,
			     i + 1 < n ? "," : "");
	sprintf(q, "]}\n");
	return t;
}

START_TEST(rule_limit)
{
	char err[512];
	struct msv_policy *p = NULL;
	char *t = many_rules(MSV_POLICY_MAX_RULES);
	clock_t t0 = clock();
	ck_assert_int_eq(_msv_policy_parse(t, "many", &p, err, sizeof(err)), 0);
	/* Rule lines come from one pass, not a walk per rule. */
	ck_assert_msg((double)(clock() - t0) / CLOCKS_PER_SEC < 1.0, "parsing 4096 rules is slow");
	ck_assert_int_eq(_msv_policy_rule(p, MSV_POLICY_MAX_RULES - 1)->line, MSV_POLICY_MAX_RULES + 1);
	_msv_policy_free(p);
	free(t);
	t = many_rules(MSV_POLICY_MAX_RULES + 1);
	ck_assert_int_eq(_msv_policy_parse(t, "many", &p, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "many:1:25: too many rules (4097, at most 4096)"));
	free(t);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("policy");
	TCase *tc = tcase_create("policy");
	tcase_add_test(tc, bad_files);
	tcase_add_test(tc, good_files);
	tcase_add_test(tc, shipped_policies);
	tcase_add_test(tc, unreadable);
	tcase_add_test(tc, parse_text);
	tcase_add_test(tc, defaults);
	tcase_add_test(tc, glob_check);
	tcase_add_test(tc, rule_limit);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
