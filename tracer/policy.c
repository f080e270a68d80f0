#include "policy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify.h"

/* A policy file larger than this is a mistake (a trace, a model config),
 * not a policy; refusing it keeps a typo in MEMSAVER_POLICY cheap. */
#define MAX_FILE_BYTES (16u << 20)

struct msv_policy {
	struct msv_rule *rules;
	char **descr; /* per rule "description", or NULL */
	struct msv_rule_hint *hints;
	size_t n_rules;
	char *description;
	enum msv_action actions[MSV_CAT_COUNT];
	enum msv_context_mode context;
	enum msv_residue_mode residue;
	char *warnings; /* "FILE:LINE:COL: warning: ...\n" lines, or NULL */
};

static const char CATEGORY_LIST[] = "weights, kv, graph, workspace, comm, other";
static const char ACTION_LIST[] = "keep, discard, zero, backup";
static const char TOP_KEYS[] = "version, rules, actions, context, residue, description, comment";
static const char RULE_KEYS[] = "category, match, description, comment";
static const char MATCH_KEYS[] = "nvtx, python, library, capturing, min_bytes, max_bytes";

/* ---- positions --------------------------------------------------------
 * jansson keeps no positions of values, so semantic errors find theirs by
 * walking the text again along the path of the offending value.  The walk
 * runs only on text jansson has accepted (and with duplicates rejected), so
 * it can assume well-formed JSON and unique keys; where it is surprised it
 * gives up and the message carries position 0:0 rather than a wrong one. */

struct seg {
	const char *key; /* object member, or NULL for an array element */
	size_t idx;
};

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static int hexval(const char *p, const char *end, unsigned *out)
{
	unsigned v = 0;
	if (end - p < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static size_t utf8_encode(unsigned cp, char *b)
{
	if (cp < 0x80) {
		b[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		b[0] = (char)(0xC0 | (cp >> 6));
		b[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		b[0] = (char)(0xE0 | (cp >> 12));
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		b[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	b[0] = (char)(0xF0 | (cp >> 18));
	b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	b[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* p at the opening quote.  Returns the byte after the closing quote (NULL
 * on malformed text); *eq tells whether the decoded string equals want
 * (want may be NULL when only skipping). */
static const char *scan_string(const char *p, const char *end, const char *want, int *eq)
{
	const char *w = want;
	int same = want != NULL;
	if (p >= end || *p != '"')
		return NULL;
	p++;
	while (p < end && *p != '"') {
		char buf[4];
		size_t n = 1;
		if (*p != '\\') {
			buf[0] = *p++;
		} else {
			if (++p >= end)
				return NULL;
			char c = *p++;
			switch (c) {
			case 'b': buf[0] = '\b'; break;
			case 'f': buf[0] = '\f'; break;
			case 'n': buf[0] = '\n'; break;
			case 'r': buf[0] = '\r'; break;
			case 't': buf[0] = '\t'; break;
			case 'u': {
				unsigned cp, lo;
				if (hexval(p, end, &cp))
					return NULL;
				p += 4;
				if (cp >= 0xD800 && cp < 0xDC00 && end - p >= 6 && p[0] == '\\' &&
				    p[1] == 'u' && !hexval(p + 2, end, &lo) && lo >= 0xDC00 && lo < 0xE000) {
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
					p += 6;
				}
				n = utf8_encode(cp, buf);
				break;
			}
			default: buf[0] = c; break; /* \" \\ \/ */
			}
		}
		for (size_t i = 0; same && i < n; i++) {
			if (*w != buf[i])
				same = 0;
			else
				w++;
		}
	}
	if (p >= end)
		return NULL;
	if (eq)
		*eq = same && *w == '\0';
	return p + 1;
}

static const char *skip_value(const char *p, const char *end, int depth)
{
	p = skip_ws(p, end);
	if (p >= end || depth > 4096)
		return NULL;
	if (*p == '"')
		return scan_string(p, end, NULL, NULL);
	if (*p == '{' || *p == '[') {
		char close = *p == '{' ? '}' : ']';
		int obj = *p == '{';
		p = skip_ws(p + 1, end);
		if (p < end && *p == close)
			return p + 1;
		for (;;) {
			if (obj) {
				p = scan_string(skip_ws(p, end), end, NULL, NULL);
				if (!p)
					return NULL;
				p = skip_ws(p, end);
				if (p >= end || *p != ':')
					return NULL;
				p++;
			}
			p = skip_value(p, end, depth + 1);
			if (!p)
				return NULL;
			p = skip_ws(p, end);
			if (p < end && *p == ',') {
				p++;
				continue;
			}
			return p < end && *p == close ? p + 1 : NULL;
		}
	}
	/* number, true, false, null */
	while (p < end && !strchr(",]} \t\r\n", *p))
		p++;
	return p;
}

/* Start of the value at path (or of its key when at_key), or NULL. */
static const char *locate(const char *p, const char *end, const struct seg *path, int n, int at_key)
{
	p = skip_ws(p, end);
	if (n == 0)
		return p < end ? p : NULL;
	if (p >= end)
		return NULL;
	if (path->key) {
		if (*p != '{')
			return NULL;
		p = skip_ws(p + 1, end);
		while (p < end && *p == '"') {
			const char *kstart = p;
			int eq = 0;
			p = scan_string(p, end, path->key, &eq);
			if (!p)
				return NULL;
			p = skip_ws(p, end);
			if (p >= end || *p != ':')
				return NULL;
			p = skip_ws(p + 1, end);
			if (eq)
				return n == 1 && at_key ? kstart : locate(p, end, path + 1, n - 1, at_key);
			p = skip_ws(skip_value(p, end, 0), end);
			if (!p || p >= end || *p != ',')
				return NULL;
			p = skip_ws(p + 1, end);
		}
		return NULL;
	}
	if (*p != '[')
		return NULL;
	p = skip_ws(p + 1, end);
	for (size_t i = 0; p < end && *p != ']'; i++) {
		if (i == path->idx)
			return locate(p, end, path + 1, n - 1, at_key);
		p = skip_ws(skip_value(p, end, 0), end);
		if (!p || p >= end || *p != ',')
			return NULL;
		p = skip_ws(p + 1, end);
	}
	return NULL;
}

/* 1-based line and column; columns count characters, not bytes, the way
 * jansson counts them in its own messages. */
static void line_col(const char *text, const char *at, int *line, int *col)
{
	int l = 1, c = 1;
	for (const char *p = text; p < at; p++) {
		if (*p == '\n')
			l++, c = 1;
		else if ((*p & 0xC0) != 0x80)
			c++;
	}
	*line = l;
	*col = c;
}

/* ---- validation -------------------------------------------------------- */

struct ctx {
	const char *text;
	const char *end;
	const char *name;
	char *err;
	size_t errlen;
	struct seg path[8];
	int depth;
};

static int fail_at(struct ctx *c, int at_key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Message about the value (or key) at c->path. */
static int fail_at(struct ctx *c, int at_key, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	int line = 0, col = 0;
	const char *at = locate(c->text, c->end, c->path, c->depth, at_key);
	if (at)
		line_col(c->text, at, &line, &col);
	if (c->err && c->errlen)
		snprintf(c->err, c->errlen, "%s:%d:%d: %s", c->name, line, col, msg);
	return -EINVAL;
}

static void push_key(struct ctx *c, const char *key)
{
	c->path[c->depth].key = key;
	c->path[c->depth].idx = 0;
	c->depth++;
}

static void push_idx(struct ctx *c, size_t idx)
{
	c->path[c->depth].key = NULL;
	c->path[c->depth].idx = idx;
	c->depth++;
}

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a real number";
	case JSON_TRUE: return "true";
	case JSON_FALSE: return "false";
	case JSON_NULL: return "null";
	}
	return "?";
}

static const char *const char_classes[] = {
	"alnum", "alpha", "blank", "cntrl", "digit", "graph",
	"lower", "print", "punct", "space", "upper", "xdigit",
};

/* fnmatch(3) never reports a malformed pattern (an unclosed '[' silently
 * matches itself), so a typo would make a rule quietly match nothing; this
 * checks the syntax fnmatch with flags 0 accepts.  Returns NULL or why. */
const char *_msv_glob_check(const char *g, char *why, size_t len)
{
	if (!*g)
		return "empty pattern";
	for (const char *p = g; *p; p++) {
		if (*p == '\\') {
			if (!p[1])
				return "trailing backslash (escape it as \\\\)";
			p++;
			continue;
		}
		if (*p != '[')
			continue;
		const char *open = p;
		p++;
		if (*p == '!' || *p == '^')
			p++;
		if (*p == ']') /* a leading ']' is a member, not the end */
			p++;
		for (;; p++) {
			if (!*p) {
				snprintf(why, len, "unbalanced '[' at offset %d (close it with ']' or escape it as \\[)",
					 (int)(open - g));
				return why;
			}
			if (*p == ']')
				break;
			if (*p == '\\' && p[1]) {
				p++;
				continue;
			}
			if (*p == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
				char kind = p[1];
				const char *s = p + 2, *e = s;
				while (*e && !(e[0] == kind && e[1] == ']'))
					e++;
				if (!*e) {
					snprintf(why, len, "unterminated '[%c' at offset %d", kind,
						 (int)(p - g));
					return why;
				}
				if (kind == ':') {
					size_t n = (size_t)(e - s);
					int ok = 0;
					for (size_t i = 0; i < sizeof(char_classes) / sizeof(*char_classes); i++)
						if (strlen(char_classes[i]) == n && !memcmp(char_classes[i], s, n))
							ok = 1;
					if (!ok) {
						snprintf(why, len, "unknown character class \"[:%.*s:]\"",
							 (int)n, s);
						return why;
					}
				}
				p = e + 1;
			}
		}
	}
	return NULL;
}

/* Literal runs of a valid glob (escapes resolved): the run at the start,
 * the run at the end and the longest one.  Every match starts with the
 * first, ends with the second and contains the third, so memcmp/strstr
 * reject a subject before fnmatch backtracks over it. */
static int glob_hint(const char *g, struct msv_glob_hint *h)
{
	size_t n = strlen(g), cur_len = 0, best_len = 0;
	char *cur = malloc(n + 1), *best = malloc(n + 1);
	int rc = 0, at_start = 1;
	if (!cur || !best) {
		rc = -ENOMEM;
		goto cleanup;
	}
	for (const char *p = g;; p++) {
		int literal = *p && *p != '*' && *p != '?' && *p != '[';
		if (literal) {
			if (*p == '\\')
				p++;
			cur[cur_len++] = *p;
			continue;
		}
		cur[cur_len] = '\0';
		if (cur_len && at_start && !h->prefix) {
			if (!(h->prefix = strdup(cur)))
				rc = -ENOMEM;
			h->prefix_len = cur_len;
		}
		if (cur_len && !*p) {
			if (!(h->suffix = strdup(cur)))
				rc = -ENOMEM;
			h->suffix_len = cur_len;
		}
		if (cur_len > best_len) {
			memcpy(best, cur, cur_len + 1);
			best_len = cur_len;
		}
		cur_len = 0;
		at_start = 0;
		if (!*p)
			break;
		if (*p == '[') { /* skip the bracket expression as _msv_glob_check reads it */
			p++;
			if (*p == '!' || *p == '^')
				p++;
			if (*p == ']')
				p++;
			while (*p != ']') {
				if (*p == '\\' && p[1]) {
					p++;
				} else if (*p == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
					char kind = p[1];
					p += 2;
					while (!(p[0] == kind && p[1] == ']'))
						p++;
					p++;
				}
				p++;
			}
		}
	}
	/* A needle equal to the prefix or suffix would test the same thing twice. */
	if (best_len && !(h->prefix && best_len == h->prefix_len) &&
	    !(h->suffix && best_len == h->suffix_len) && !(h->needle = strdup(best)))
		rc = -ENOMEM;
cleanup:
	free(cur);
	free(best);
	return rc;
}

static void glob_hint_free(const struct msv_glob_hint *h)
{
	free((char *)h->prefix);
	free((char *)h->suffix);
	free((char *)h->needle);
}

static int check_glob(struct ctx *c, const char *key, json_t *v, const char **out)
{
	char why[160];
	const char *bad;
	if (!json_is_string(v))
		return fail_at(c, 0, "\"%s\" must be a glob string, got %s", key, type_name(v));
	const char *s = json_string_value(v);
	if ((bad = _msv_glob_check(s, why, sizeof(why))))
		return fail_at(c, 0, "bad glob \"%s\" for \"%s\": %s", s, key, bad);
	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

static int check_bytes(struct ctx *c, const char *key, json_t *v, uint64_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		if (json_is_integer(v))
			return fail_at(c, 0, "\"%s\" must be a non-negative integer (bytes), got %lld",
				       key, (long long)json_integer_value(v));
		return fail_at(c, 0, "\"%s\" must be a non-negative integer (bytes), got %s", key,
			       type_name(v));
	}
	/* 0 means "no bound" inside struct msv_rule; a literal max of 0 would
	 * silently mean the opposite of what was written. */
	if (json_integer_value(v) == 0 && !strcmp(key, "max_bytes"))
		return fail_at(c, 0, "\"max_bytes\" must be at least 1 (omit it for no upper bound)");
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int check_match(struct ctx *c, size_t i, json_t *m, struct msv_rule *r,
		       struct msv_rule_hint *h)
{
	const char *key;
	json_t *v;
	int rc;
	if (!json_is_object(m))
		return fail_at(c, 0, "\"match\" of rule %zu must be an object with at least one of %s, got %s",
			       i, MATCH_KEYS, type_name(m));
	if (json_object_size(m) == 0)
		return fail_at(c, 0, "\"match\" of rule %zu is empty (expected at least one of %s)", i,
			       MATCH_KEYS);
	int have_min = 0, have_max = 0;
	json_object_foreach(m, key, v) {
		push_key(c, key);
		if (!strcmp(key, "nvtx"))
			rc = check_glob(c, key, v, &r->nvtx) ?: glob_hint(r->nvtx, &h->nvtx);
		else if (!strcmp(key, "python"))
			rc = check_glob(c, key, v, &r->python) ?: glob_hint(r->python, &h->python);
		else if (!strcmp(key, "library"))
			rc = check_glob(c, key, v, &r->library) ?: glob_hint(r->library, &h->library);
		else if (!strcmp(key, "capturing")) {
			rc = json_is_boolean(v) ? 0
						: fail_at(c, 0, "\"capturing\" must be true or false, got %s",
							  type_name(v));
			r->capturing = json_is_true(v);
		} else if (!strcmp(key, "min_bytes")) {
			rc = check_bytes(c, key, v, &r->min_bytes);
			have_min = 1;
		} else if (!strcmp(key, "max_bytes")) {
			rc = check_bytes(c, key, v, &r->max_bytes);
			have_max = 1;
		} else
			rc = fail_at(c, 1, "unknown match key \"%s\" (expected one of %s)", key, MATCH_KEYS);
		c->depth--;
		if (rc)
			return rc;
	}
	if (have_min && have_max && r->min_bytes > r->max_bytes) {
		push_key(c, "max_bytes");
		rc = fail_at(c, 0, "max_bytes %llu is less than min_bytes %llu (bounds are inclusive)",
			     (unsigned long long)r->max_bytes, (unsigned long long)r->min_bytes);
		c->depth--;
		return rc;
	}
	return 0;
}

static int check_string(struct ctx *c, const char *key, json_t *v, char **out)
{
	if (!json_is_string(v))
		return fail_at(c, 0, "\"%s\" must be a string, got %s", key, type_name(v));
	if (out) {
		free(*out);
		*out = strdup(json_string_value(v));
		if (!*out)
			return -ENOMEM;
	}
	return 0;
}

static int check_rule(struct ctx *c, size_t i, json_t *o, struct msv_policy *p)
{
	struct msv_rule *r = &p->rules[i];
	const char *key;
	json_t *v;
	int rc = 0, have_cat = 0, have_match = 0;
	if (!json_is_object(o))
		return fail_at(c, 0, "rule %zu must be an object with \"category\" and \"match\", got %s", i,
			       type_name(o));
	r->capturing = -1;
	json_object_foreach(o, key, v) {
		push_key(c, key);
		if (!strcmp(key, "category")) {
			have_cat = 1;
			int cat = json_is_string(v) ? _msv_category_parse(json_string_value(v)) : -1;
			if (!json_is_string(v))
				rc = fail_at(c, 0, "\"category\" must be a string (one of %s), got %s",
					     CATEGORY_LIST, type_name(v));
			else if (cat < 0)
				rc = fail_at(c, 0, "unknown category \"%s\" (expected one of %s)",
					     json_string_value(v), CATEGORY_LIST);
			else
				r->category = (enum msv_category)cat;
		} else if (!strcmp(key, "match")) {
			have_match = 1;
			rc = check_match(c, i, v, r, &p->hints[i]);
		} else if (!strcmp(key, "description")) {
			rc = check_string(c, key, v, &p->descr[i]);
		} else if (!strcmp(key, "comment")) {
			rc = check_string(c, key, v, NULL);
		} else {
			rc = fail_at(c, 1, "unknown key \"%s\" in rule %zu (expected one of %s)", key, i,
				     RULE_KEYS);
		}
		c->depth--;
		if (rc)
			return rc;
	}
	if (!have_cat)
		return fail_at(c, 0, "rule %zu has no \"category\" (expected one of %s)", i, CATEGORY_LIST);
	if (!have_match)
		return fail_at(c, 0, "rule %zu has no \"match\" (expected an object with at least one of %s)",
			       i, MATCH_KEYS);
	return 0;
}

/* Start offsets of the elements of the array at c->path, in one pass (a
 * locate() per rule would make a large file quadratic). */
static void element_lines(struct ctx *c, struct msv_policy *p)
{
	const char *q = locate(c->text, c->end, c->path, c->depth, 0);
	if (!q || *q != '[')
		return;
	q = skip_ws(q + 1, c->end);
	int line = 1;
	const char *last = c->text;
	for (size_t i = 0; i < p->n_rules && q && q < c->end && *q != ']'; i++) {
		for (; last < q; last++)
			if (*last == '\n')
				line++;
		p->rules[i].line = line;
		q = skip_ws(skip_value(q, c->end, 0), c->end);
		if (!q || q >= c->end || *q != ',')
			break;
		q = skip_ws(q + 1, c->end);
	}
}

static int check_rules(struct ctx *c, json_t *a, struct msv_policy *p)
{
	if (!json_is_array(a))
		return fail_at(c, 0, "\"rules\" must be an array of rule objects, got %s", type_name(a));
	if (json_array_size(a) > MSV_POLICY_MAX_RULES)
		return fail_at(c, 0, "too many rules (%zu, at most %d)", json_array_size(a),
			       MSV_POLICY_MAX_RULES);
	size_t n = json_array_size(a);
	p->rules = calloc(n ? n : 1, sizeof(*p->rules));
	p->descr = calloc(n ? n : 1, sizeof(*p->descr));
	p->hints = calloc(n ? n : 1, sizeof(*p->hints));
	if (!p->rules || !p->descr || !p->hints)
		return -ENOMEM;
	p->n_rules = n;
	element_lines(c, p);
	for (size_t i = 0; i < n; i++) {
		push_idx(c, i);
		int rc = check_rule(c, i, json_array_get(a, i), p);
		c->depth--;
		if (rc)
			return rc;
	}
	return 0;
}

/* Valid but almost certainly wrong: noted in p->warnings, loading goes on. */
static void warn_at(struct ctx *c, struct msv_policy *p, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void warn_at(struct ctx *c, struct msv_policy *p, const char *fmt, ...)
{
	char msg[512], *all = NULL;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	int line = 0, col = 0;
	const char *at = locate(c->text, c->end, c->path, c->depth, 0);
	if (at)
		line_col(c->text, at, &line, &col);
	if (asprintf(&all, "%s%s:%d:%d: warning: %s\n", p->warnings ? p->warnings : "", c->name, line, col,
		     msg) < 0)
		return;
	free(p->warnings);
	p->warnings = all;
}

static int check_actions(struct ctx *c, json_t *o, struct msv_policy *p)
{
	const char *key;
	json_t *v;
	if (!json_is_object(o))
		return fail_at(c, 0, "\"actions\" must be an object mapping categories to actions, got %s",
			       type_name(o));
	json_object_foreach(o, key, v) {
		int rc = 0, cat = _msv_category_parse(key);
		push_key(c, key);
		if (cat < 0)
			rc = fail_at(c, 1, "unknown category \"%s\" in \"actions\" (expected one of %s)", key,
				     CATEGORY_LIST);
		else if (!json_is_string(v))
			rc = fail_at(c, 0, "action for \"%s\" must be a string (one of %s), got %s", key,
				     ACTION_LIST, type_name(v));
		else if (_msv_action_parse(json_string_value(v)) < 0)
			rc = fail_at(c, 0, "unknown action \"%s\" for category \"%s\" (expected one of %s)",
				     json_string_value(v), key, ACTION_LIST);
		else
			p->actions[cat] = (enum msv_action)_msv_action_parse(json_string_value(v));
		if (!rc && cat == MSV_CAT_GRAPH && (p->actions[cat] == MSV_ACT_ZERO || p->actions[cat] == MSV_ACT_DISCARD))
			warn_at(c, p, "graph \"%s\": a CUDA graph's replays read what its capture wrote to its "
				      "pool, so they break after a resume; keep graph \"backup\" (docs/policy.md)",
				json_string_value(v));
		c->depth--;
		if (rc)
			return rc;
	}
	return 0;
}

static int check_top(struct ctx *c, json_t *root, struct msv_policy *p)
{
	const char *key;
	json_t *v;
	int rc = 0;
	if (!json_is_object(root))
		return fail_at(c, 0, "expected a JSON object at the top level ({\"version\": 1, ...}), got %s",
			       type_name(root));
	/* The version comes first: a newer file's unknown keys deserve "wrong
	 * version", not "unknown key". */
	json_t *ver = json_object_get(root, "version");
	if (!ver)
		return fail_at(c, 0, "missing \"version\" (expected \"version\": 1)");
	push_key(c, "version");
	if (!json_is_integer(ver))
		rc = fail_at(c, 0, "\"version\" must be the integer 1, got %s", type_name(ver));
	else if (json_integer_value(ver) != 1)
		rc = fail_at(c, 0, "unsupported version %lld (expected 1)",
			     (long long)json_integer_value(ver));
	c->depth--;
	if (rc)
		return rc;
	json_object_foreach(root, key, v) {
		push_key(c, key);
		if (!strcmp(key, "version"))
			rc = 0;
		else if (!strcmp(key, "rules"))
			rc = check_rules(c, v, p);
		else if (!strcmp(key, "actions"))
			rc = check_actions(c, v, p);
		else if (!strcmp(key, "context")) {
			const char *s = json_string_value(v);
			if (s && !strcmp(s, "trim"))
				p->context = MSV_CONTEXT_TRIM;
			else if (s && !strcmp(s, "keep"))
				p->context = MSV_CONTEXT_KEEP;
			else if (s)
				rc = fail_at(c, 0, "bad context \"%s\" (expected \"trim\" or \"keep\")", s);
			else
				rc = fail_at(c, 0, "\"context\" must be the string \"trim\" or \"keep\", got %s",
					     type_name(v));
		} else if (!strcmp(key, "residue")) {
			const char *s = json_string_value(v);
			if (s && !strcmp(s, "keep"))
				p->residue = MSV_RESIDUE_KEEP;
			else if (s && !strcmp(s, "checkpoint"))
				p->residue = MSV_RESIDUE_CHECKPOINT;
			else if (s)
				rc = fail_at(c, 0, "bad residue \"%s\" (expected \"keep\" or \"checkpoint\")", s);
			else
				rc = fail_at(c, 0, "\"residue\" must be the string \"keep\" or \"checkpoint\", "
						   "got %s", type_name(v));
		} else if (!strcmp(key, "description"))
			rc = check_string(c, key, v, &p->description);
		else if (!strcmp(key, "comment"))
			rc = check_string(c, key, v, NULL);
		else
			rc = fail_at(c, 1, "unknown key \"%s\" (expected one of %s)", key, TOP_KEYS);
		c->depth--;
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- public ------------------------------------------------------------ */

struct msv_policy *_msv_policy_default(void)
{
	struct msv_policy *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	for (int i = 0; i < MSV_CAT_COUNT; i++)
		p->actions[i] = _msv_category_default_action(i);
	p->context = MSV_CONTEXT_TRIM;
	return p;
}

void _msv_policy_free(struct msv_policy *p)
{
	if (!p)
		return;
	for (size_t i = 0; p->rules && i < p->n_rules; i++) {
		free((char *)p->rules[i].nvtx);
		free((char *)p->rules[i].python);
		free((char *)p->rules[i].library);
		if (p->descr)
			free(p->descr[i]);
		if (p->hints) {
			glob_hint_free(&p->hints[i].nvtx);
			glob_hint_free(&p->hints[i].python);
			glob_hint_free(&p->hints[i].library);
		}
	}
	free(p->rules);
	free(p->descr);
	free(p->hints);
	free(p->description);
	free(p->warnings);
	free(p);
}

const char *_msv_policy_warnings(const struct msv_policy *p)
{
	return p ? p->warnings : NULL;
}

static int parse_buf(const char *text, size_t len, const char *name, struct msv_policy **out,
		     char *err, size_t errlen)
{
	json_error_t je;
	*out = NULL;
	if (!name)
		name = "<policy>";
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
	if (!root) {
		/* jansson places its errors on the last character of the token it
		 * names ("... near 'TOKEN'"); people look for the first. */
		int col = je.column;
		const char *near = strstr(je.text, "near '");
		size_t tl = near ? strlen(near + 6) : 0;
		const char *tok = near ? near + 6 : NULL;
		if (tok && tl >= 2 && tok[tl - 1] == '\'' && !memchr(tok, '\n', tl - 1)) {
			int chars = 0;
			for (size_t i = 0; i + 1 < tl; i++)
				chars += (tok[i] & 0xC0) != 0x80;
			if (chars <= col)
				col -= chars - 1;
		}
		if (col < 1 && je.line >= 1)
			col = 1;
		if (err && errlen) {
			if (json_error_code(&je) == json_error_duplicate_key && tok && tl >= 2)
				snprintf(err, errlen,
					 "%s:%d:%d: duplicate key %.*s (each key may appear once)", name,
					 je.line, col, (int)(tl - 1), tok);
			else
				snprintf(err, errlen, "%s:%d:%d: invalid JSON: %s", name, je.line, col,
					 je.text);
		}
		return -EINVAL;
	}
	struct ctx c = {.text = text, .end = text + len, .name = name, .err = err, .errlen = errlen};
	struct msv_policy *p = _msv_policy_default();
	int rc = p ? check_top(&c, root, p) : -ENOMEM;
	json_decref(root);
	if (rc) {
		if (rc == -ENOMEM && err && errlen)
			snprintf(err, errlen, "%s:0:0: out of memory", name);
		_msv_policy_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

int _msv_policy_parse(const char *text, const char *name, struct msv_policy **out, char *err,
		      size_t errlen)
{
	return parse_buf(text, strlen(text), name, out, err, errlen);
}

int _msv_policy_load(const char *path, struct msv_policy **out, char *err, size_t errlen)
{
	*out = NULL;
	/* Read the text ourselves rather than json_load_file: the position
	 * walk needs it, and errno gives a better message than jansson's. */
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0;
	int rc;
	if (!f) {
		rc = -errno;
		goto fail_errno;
	}
	buf = malloc(MAX_FILE_BYTES + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto fail_errno;
	}
	len = fread(buf, 1, MAX_FILE_BYTES + 1, f);
	if (ferror(f)) {
		rc = errno ? -errno : -EIO;
		goto fail_errno;
	}
	if (len > MAX_FILE_BYTES) {
		if (err && errlen)
			snprintf(err, errlen, "%s:0:0: file too large (more than %u bytes); not a policy?",
				 path, MAX_FILE_BYTES);
		rc = -EFBIG;
		goto cleanup;
	}
	rc = parse_buf(buf, len, path, out, err, errlen);
	goto cleanup;
fail_errno:
	if (err && errlen)
		snprintf(err, errlen, "%s:0:0: cannot read policy file: %s", path, strerror(-rc));
cleanup:
	free(buf);
	if (f)
		fclose(f);
	return rc;
}

size_t _msv_policy_rule_count(const struct msv_policy *p)
{
	return p ? p->n_rules : 0;
}

const struct msv_rule *_msv_policy_rule(const struct msv_policy *p, size_t i)
{
	return p && i < p->n_rules ? &p->rules[i] : NULL;
}

const struct msv_rule_hint *_msv_policy_rule_hints(const struct msv_policy *p)
{
	return p && p->n_rules ? p->hints : NULL;
}

const char *_msv_policy_rule_description(const struct msv_policy *p, size_t i)
{
	return p && i < p->n_rules && p->descr ? p->descr[i] : NULL;
}

enum msv_action _msv_policy_action(const struct msv_policy *p, enum msv_category c)
{
	if ((int)c < 0 || c >= MSV_CAT_COUNT)
		return MSV_ACT_KEEP;
	return p ? p->actions[c] : _msv_category_default_action(c);
}

enum msv_context_mode _msv_policy_context(const struct msv_policy *p)
{
	return p ? p->context : MSV_CONTEXT_TRIM;
}

enum msv_residue_mode _msv_policy_residue(const struct msv_policy *p)
{
	return p ? p->residue : MSV_RESIDUE_KEEP;
}

int _msv_policy_wraps_any(const struct msv_policy *p)
{
	for (int i = 0; i < MSV_CAT_COUNT; i++)
		if (_msv_policy_action(p, (enum msv_category)i) != MSV_ACT_KEEP)
			return 1;
	return 0;
}

json_t *_msv_rule_match_json(const struct msv_rule *r)
{
	json_t *m = json_object();
	if (!m)
		return NULL;
	if (r->nvtx)
		json_object_set_new(m, "nvtx", json_string(r->nvtx));
	if (r->python)
		json_object_set_new(m, "python", json_string(r->python));
	if (r->library)
		json_object_set_new(m, "library", json_string(r->library));
	if (r->capturing >= 0)
		json_object_set_new(m, "capturing", json_boolean(r->capturing));
	if (r->min_bytes)
		json_object_set_new(m, "min_bytes", json_integer((json_int_t)r->min_bytes));
	if (r->max_bytes)
		json_object_set_new(m, "max_bytes", json_integer((json_int_t)r->max_bytes));
	return m;
}

json_t *_msv_policy_to_json(const struct msv_policy *p)
{
	json_t *o = json_object(), *rules = json_array(), *defs = json_array(),
	       *acts = json_object();
	if (!o || !rules || !defs || !acts) {
		json_decref(o);
		json_decref(rules);
		json_decref(defs);
		json_decref(acts);
		return NULL;
	}
	json_object_set_new(o, "version", json_integer(1));
	if (p && p->description)
		json_object_set_new(o, "description", json_string(p->description));
	for (size_t i = 0; i < _msv_policy_rule_count(p); i++) {
		const struct msv_rule *r = &p->rules[i];
		json_t *j = json_object();
		json_object_set_new(j, "index", json_integer((json_int_t)i));
		json_object_set_new(j, "line", json_integer(r->line));
		json_object_set_new(j, "category", json_string(_msv_category_name(r->category)));
		json_object_set_new(j, "match", _msv_rule_match_json(r));
		if (p->descr[i])
			json_object_set_new(j, "description", json_string(p->descr[i]));
		json_array_append_new(rules, j);
	}
	json_object_set_new(o, "rules", rules);
	size_t nd = 0;
	const struct msv_default_rule *d = _msv_classify_defaults(&nd);
	for (size_t i = 0; i < nd; i++) {
		char buf[64];
		json_t *j = json_object();
		json_object_set_new(j, "category", json_string(_msv_category_name(d[i].rule.category)));
		json_object_set_new(j, "match", _msv_rule_match_json(&d[i].rule));
		json_object_set_new(
			j, "reason",
			json_string(_msv_classify_rule_text(_msv_classify_rule_code(d[i].reason, -1), buf,
							    sizeof(buf))));
		json_array_append_new(defs, j);
	}
	json_object_set_new(o, "defaults", defs);
	for (int c = 0; c < MSV_CAT_COUNT; c++)
		json_object_set_new(acts, _msv_category_name(c),
				    json_string(_msv_action_name(
					    _msv_policy_action(p, (enum msv_category)c))));
	json_object_set_new(o, "actions", acts);
	json_object_set_new(o, "context",
			    json_string(_msv_policy_context(p) == MSV_CONTEXT_KEEP ? "keep" : "trim"));
	json_object_set_new(o, "residue",
			    json_string(_msv_policy_residue(p) == MSV_RESIDUE_CHECKPOINT ? "checkpoint" : "keep"));
	return o;
}
