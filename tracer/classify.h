/* The classifier: which category an allocation belongs to, and why.
 *
 * Pure function of the policy and what the tracer knows about the call site;
 * no CUDA, no locks, no allocation.  Used by the saver before it allocates
 * and by the tracer when it records. */
#ifndef MSV_CLASSIFY_H
#define MSV_CLASSIFY_H

#include <stddef.h>
#include <stdint.h>

#include "policy.h"

/* What is known about one allocation's call site.  All strings borrowed. */
struct msv_site {
	const char *const *nvtx;   /* NVTX ranges open on the thread, outermost first */
	size_t n_nvtx;
	const char *const *python; /* frames rendered FILE:LINE:FUNCTION, innermost first */
	size_t n_python;
	const char *library;       /* basename of the native caller library, or NULL */
	int capturing;             /* the thread (or the stream) is capturing a graph */
	uint64_t bytes;
	int region;                /* explicit msv_region_begin category, or -1 */
};

/* Why the category was chosen. */
enum msv_reason {
	MSV_BY_REGION,   /* explicit region */
	MSV_BY_RULE,     /* policy rule number *rule (0-based) */
	MSV_BY_CAPTURE,  /* default: capturing -> graph */
	MSV_BY_LIBRARY,  /* default: libnccl -> comm, cuBLAS/cuBLASLt/cuDNN -> workspace */
	MSV_BY_FALLBACK, /* default: other */
};

/* Returns the category; *reason and *rule (rule index or -1) when non-NULL. */
enum msv_category _msv_classify(const struct msv_policy *p, const struct msv_site *s,
				enum msv_reason *reason, int *rule);

/* Trace encoding of the decision (struct msv_rec.rule): rule index + 1, or
 * 0x8000 | reason for the built-in cases. */
uint16_t _msv_classify_rule_code(enum msv_reason reason, int rule);
/* Human-readable form of a rule code: "rule 3", "default: capturing", ... */
const char *_msv_classify_rule_text(uint16_t code, char *buf, size_t len);

/* Added by the classifier (nothing above changed). */

/* Rule codes in text: "rule N" names the 0-based index N, the "index" of the
 * rule in the effective policy (_msv_policy_to_json); code 0 reads "default". */

/* Whether every condition of the rule holds for the site.  Globs match with
 * fnmatch(3), flags 0, byte-wise (C locale): '*' also matches '/'. */
int _msv_rule_matches(const struct msv_rule *r, const struct msv_site *s);

/* The built-in defaults tried after the policy's rules, in order; the last
 * one matches everything (other).  Static table; *n gets its length. */
struct msv_default_rule {
	struct msv_rule rule;
	enum msv_reason reason;
};
const struct msv_default_rule *_msv_classify_defaults(size_t *n);

#endif
