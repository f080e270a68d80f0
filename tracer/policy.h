/* The policy: ordered classification rules plus a pause action per category.
 *
 * Read from a version-1 JSON file (format in docs/policy.md).  A policy is
 * immutable once loaded and may be shared by any number of threads.
 * Errors are written to err as "FILE:LINE:COLUMN: what was expected" (line
 * and column are 1-based; 0 when the problem has no position, e.g. an
 * unreadable file). */
#ifndef MSV_POLICY_H
#define MSV_POLICY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "categories.h"

struct msv_policy;

/* One rule: every set condition must hold. */
struct msv_rule {
	enum msv_category category;
	const char *nvtx;     /* glob on any NVTX range of the thread's stack, or NULL */
	const char *python;   /* glob on any frame FILE:LINE:FUNCTION, or NULL */
	const char *library;  /* glob on the caller library's basename, or NULL */
	int capturing;        /* -1 any, 0 not capturing, 1 capturing */
	uint64_t min_bytes;   /* 0 = no bound */
	uint64_t max_bytes;   /* 0 = no bound */
	json_int_t line;      /* position in the file, for messages */
};

enum msv_context_mode { MSV_CONTEXT_TRIM, MSV_CONTEXT_KEEP };
/* "residue": what a plain `memsaver ctl pause` does with what the pause
 * leaves on the GPU: keep it (default), or have the driver checkpoint it
 * away, as `ctl pause --deep` does (docs/deep-pause.md).  The ctl reads it
 * from the engine's status. */
enum msv_residue_mode { MSV_RESIDUE_KEEP, MSV_RESIDUE_CHECKPOINT };

/* Load and validate.  Returns 0 and a new policy in *out, or -EINVAL (bad
 * content) / -errno (unreadable) with the message in err. */
int _msv_policy_load(const char *path, struct msv_policy **out, char *err, size_t errlen);
/* The same from text; `name` stands for the file in messages. */
int _msv_policy_parse(const char *text, const char *name, struct msv_policy **out, char *err,
		      size_t errlen);
/* No rules, default actions, context trim.  NULL only when out of memory. */
struct msv_policy *_msv_policy_default(void);
void _msv_policy_free(struct msv_policy *p); /* accepts NULL */
/* What loaded but is likely a mistake (graph zero or discard): lines of
 * "FILE:LINE:COL: warning: ...\n", owned by the policy; NULL when none. */
const char *_msv_policy_warnings(const struct msv_policy *p);

size_t _msv_policy_rule_count(const struct msv_policy *p);
const struct msv_rule *_msv_policy_rule(const struct msv_policy *p, size_t i);
enum msv_action _msv_policy_action(const struct msv_policy *p, enum msv_category c);
enum msv_context_mode _msv_policy_context(const struct msv_policy *p);
enum msv_residue_mode _msv_policy_residue(const struct msv_policy *p);
/* Whether any category has an action other than keep. */
int _msv_policy_wraps_any(const struct msv_policy *p);

/* The effective policy as JSON: {"version":1,"rules":[...],"defaults":[...],
 * "actions":{every category},"context":"trim","residue":"keep"}.  New reference. */
json_t *_msv_policy_to_json(const struct msv_policy *p);

/* Added by the policy parser (nothing above changed). */

/* A file with more rules is refused: rule codes in the trace are 15 bits. */
#define MSV_POLICY_MAX_RULES 4096

/* The rule's "description" from the file, or NULL.  Owned by the policy. */
const char *_msv_policy_rule_description(const struct msv_policy *p, size_t i);
/* The "match" object of a rule, keys in canonical order (nvtx, python,
 * library, capturing, min_bytes, max_bytes; unset ones left out).  New
 * reference, NULL when out of memory. */
json_t *_msv_rule_match_json(const struct msv_rule *r);
/* Syntax check of a glob as fnmatch(3) reads it with flags 0: NULL when
 * fine, else a reason (a static string or one written to why).  Refuses the
 * empty pattern, a trailing backslash, an unclosed '[' and unknown
 * [:class:] names, which fnmatch would silently treat as literals. */
const char *_msv_glob_check(const char *glob, char *why, size_t len);

/* Fast rejection for the classifier, computed at load from each glob of a
 * rule: the literal text every match must start with (prefix), end with
 * (suffix) and contain (needle, the longest literal run), each NULL when the
 * glob has none.  Owned by the policy; NULL for a policy without rules. */
struct msv_glob_hint {
	const char *prefix, *suffix, *needle;
	size_t prefix_len, suffix_len;
};
struct msv_rule_hint {
	struct msv_glob_hint nvtx, python, library;
};
const struct msv_rule_hint *_msv_policy_rule_hints(const struct msv_policy *p);

#endif
