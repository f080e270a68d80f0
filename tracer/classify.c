#include "classify.h"

#include <fnmatch.h>
#include <locale.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* The built-in defaults.  One table serves the classifier and the
 * effective policy that `memsaver policy check` prints, so the two cannot
 * disagree.  cuBLASLt is listed although libcublas* covers it: people look
 * for it by name. */
static const struct msv_default_rule defaults[] = {
	{{MSV_CAT_GRAPH, NULL, NULL, NULL, 1, 0, 0, 0}, MSV_BY_CAPTURE},
	{{MSV_CAT_COMM, NULL, NULL, "libnccl*", -1, 0, 0, 0}, MSV_BY_LIBRARY},
	{{MSV_CAT_WORKSPACE, NULL, NULL, "libcublas*", -1, 0, 0, 0}, MSV_BY_LIBRARY},
	{{MSV_CAT_WORKSPACE, NULL, NULL, "libcublasLt*", -1, 0, 0, 0}, MSV_BY_LIBRARY},
	{{MSV_CAT_WORKSPACE, NULL, NULL, "libcudnn*", -1, 0, 0, 0}, MSV_BY_LIBRARY},
	{{MSV_CAT_OTHER, NULL, NULL, NULL, -1, 0, 0, 0}, MSV_BY_FALLBACK},
};
#define N_DEFAULTS (sizeof(defaults) / sizeof(*defaults))

const struct msv_default_rule *_msv_classify_defaults(size_t *n)
{
	*n = N_DEFAULTS;
	return defaults;
}

/* CPython calls setlocale(LC_CTYPE, ""), and under a UTF-8 locale glibc's
 * fnmatch converts both strings to wide characters (alloca, malloc past
 * 1 KiB) on every call.  Matching in the C locale keeps it byte-wise and
 * allocation-free; uselocale() only swaps a thread-local pointer.  glibc
 * returns its static C locale object here, so nothing is allocated either. */
static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
	c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

/* fnmatch backtracks on every '*' (a 16-rule policy over 8 frames cost
 * ~35 us per allocation); the glob's literal prefix, suffix and longest run,
 * tested with memcmp and strstr, reject nearly every frame first. */
static int glob_one(const char *glob, const struct msv_glob_hint *h, const char *v)
{
	if (!v)
		return 0;
	if (h->prefix && strncmp(v, h->prefix, h->prefix_len) != 0)
		return 0;
	if (h->suffix) {
		size_t n = strlen(v);
		if (n < h->suffix_len || memcmp(v + n - h->suffix_len, h->suffix, h->suffix_len) != 0)
			return 0;
	}
	if (h->needle && !strstr(v, h->needle))
		return 0;
	return fnmatch(glob, v, 0) == 0;
}

static int glob_any(const char *glob, const struct msv_glob_hint *h, const char *const *v,
		    size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (glob_one(glob, h, v[i]))
			return 1;
	return 0;
}

/* Cheap integer tests first: most rules are decided before any fnmatch. */
static int matches(const struct msv_rule *r, const struct msv_rule_hint *h,
		   const struct msv_site *s)
{
	static const struct msv_rule_hint none;
	if (!h)
		h = &none;
	if (r->capturing >= 0 && r->capturing != (s->capturing != 0))
		return 0;
	if (r->min_bytes && s->bytes < r->min_bytes)
		return 0;
	if (r->max_bytes && s->bytes > r->max_bytes)
		return 0;
	if (r->library && !glob_one(r->library, &h->library, s->library))
		return 0;
	if (r->nvtx && !glob_any(r->nvtx, &h->nvtx, s->nvtx, s->n_nvtx))
		return 0;
	if (r->python && !glob_any(r->python, &h->python, s->python, s->n_python))
		return 0;
	return 1;
}

int _msv_rule_matches(const struct msv_rule *r, const struct msv_site *s)
{
	pthread_once(&c_locale_once, c_locale_init);
	locale_t old = c_locale ? uselocale(c_locale) : (locale_t)0;
	int m = matches(r, NULL, s);
	if (old)
		uselocale(old);
	return m;
}

enum msv_category _msv_classify(const struct msv_policy *p, const struct msv_site *s,
				enum msv_reason *reason, int *rule)
{
	enum msv_category cat = MSV_CAT_OTHER;
	enum msv_reason why = MSV_BY_FALLBACK;
	int idx = -1;
	if (s->region >= 0 && s->region < MSV_CAT_COUNT) {
		cat = (enum msv_category)s->region;
		why = MSV_BY_REGION;
		goto out;
	}
	pthread_once(&c_locale_once, c_locale_init);
	locale_t old = c_locale ? uselocale(c_locale) : (locale_t)0;
	size_t n = _msv_policy_rule_count(p);
	const struct msv_rule_hint *hints = _msv_policy_rule_hints(p);
	for (size_t i = 0; i < n; i++) {
		const struct msv_rule *r = _msv_policy_rule(p, i);
		if (matches(r, hints ? &hints[i] : NULL, s)) {
			cat = r->category;
			why = MSV_BY_RULE;
			idx = (int)i;
			goto restore;
		}
	}
	for (size_t i = 0; i < N_DEFAULTS; i++) {
		if (matches(&defaults[i].rule, NULL, s)) {
			cat = defaults[i].rule.category;
			why = defaults[i].reason;
			break;
		}
	}
restore:
	if (old)
		uselocale(old);
out:
	if (reason)
		*reason = why;
	if (rule)
		*rule = idx;
	return cat;
}

uint16_t _msv_classify_rule_code(enum msv_reason reason, int rule)
{
	if (reason == MSV_BY_RULE && rule >= 0 && rule < 0x7fff)
		return (uint16_t)(rule + 1);
	return (uint16_t)(0x8000u | ((unsigned)reason & 0x7fffu));
}

const char *_msv_classify_rule_text(uint16_t code, char *buf, size_t len)
{
	if (code == 0)
		snprintf(buf, len, "default");
	else if (!(code & 0x8000u))
		snprintf(buf, len, "rule %u", (unsigned)code - 1);
	else {
		switch ((enum msv_reason)(code & 0x7fffu)) {
		case MSV_BY_REGION: snprintf(buf, len, "region"); break;
		case MSV_BY_RULE: snprintf(buf, len, "rule"); break;
		case MSV_BY_CAPTURE: snprintf(buf, len, "default: capturing"); break;
		case MSV_BY_LIBRARY: snprintf(buf, len, "default: library"); break;
		case MSV_BY_FALLBACK: snprintf(buf, len, "default: other"); break;
		default: snprintf(buf, len, "unknown (0x%04x)", (unsigned)code); break;
		}
	}
	return buf;
}
