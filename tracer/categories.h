/* Categories and pause actions: the one definition every part of memsaver uses.
 *
 * A category is the call-site class of a GPU allocation; an action is what a
 * pause does to the memory of that category.  Both cross every boundary
 * (policy file, trace file, report, control protocol), so their names are
 * defined here once and nowhere else.  Numeric values are part of the trace
 * format (tracer/trace_format.h): append new entries at the end only. */
#ifndef MSV_CATEGORIES_H
#define MSV_CATEGORIES_H

/* X(ENUM_SUFFIX, name, default action) */
#define MSV_CATEGORIES(X)            \
	X(WEIGHTS, weights, BACKUP)      \
	X(KV, kv, DISCARD)               \
	X(GRAPH, graph, BACKUP)          \
	X(WORKSPACE, workspace, BACKUP)  \
	X(COMM, comm, KEEP)              \
	X(OTHER, other, KEEP)

/* X(ENUM_SUFFIX, name) */
#define MSV_ACTIONS(X)   \
	X(KEEP, keep)        \
	X(DISCARD, discard)  \
	X(ZERO, zero)        \
	X(BACKUP, backup)

enum msv_category {
#define MSV_X(e, n, a) MSV_CAT_##e,
	MSV_CATEGORIES(MSV_X)
#undef MSV_X
	MSV_CAT_COUNT
};

enum msv_action {
#define MSV_X(e, n) MSV_ACT_##e,
	MSV_ACTIONS(MSV_X)
#undef MSV_X
	MSV_ACT_COUNT
};

/* Name of a category or action; "?" when out of range.  Static strings. */
const char *_msv_category_name(int cat);
const char *_msv_action_name(int act);
/* Parse a name; return the enum value or -1 when the name is unknown. */
int _msv_category_parse(const char *name);
int _msv_action_parse(const char *name);
/* Default action of a category (DESIGN.md: weights/graph/workspace backup,
 * kv discard, comm/other keep). */
enum msv_action _msv_category_default_action(int cat);
/* Parse a comma-separated category list ("kv,graph"); NULL or "" selects every
 * category.  Returns 0 and a bit mask (1u << cat) in *mask, or -EINVAL with
 * the first unknown name copied to bad (bad may be NULL). */
int _msv_category_mask_parse(const char *list, unsigned *mask, char *bad, unsigned badlen);

#endif
