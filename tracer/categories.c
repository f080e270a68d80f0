#include "categories.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *const cat_names[] = {
#define MSV_X(e, n, a) #n,
	MSV_CATEGORIES(MSV_X)
#undef MSV_X
};

static const enum msv_action cat_defaults[] = {
#define MSV_X(e, n, a) MSV_ACT_##a,
	MSV_CATEGORIES(MSV_X)
#undef MSV_X
};

static const char *const act_names[] = {
#define MSV_X(e, n) #n,
	MSV_ACTIONS(MSV_X)
#undef MSV_X
};

const char *_msv_category_name(int cat)
{
	return cat >= 0 && cat < MSV_CAT_COUNT ? cat_names[cat] : "?";
}

const char *_msv_action_name(int act)
{
	return act >= 0 && act < MSV_ACT_COUNT ? act_names[act] : "?";
}

int _msv_category_parse(const char *name)
{
	for (int i = 0; name && i < MSV_CAT_COUNT; i++)
		if (strcmp(name, cat_names[i]) == 0)
			return i;
	return -1;
}

int _msv_action_parse(const char *name)
{
	for (int i = 0; name && i < MSV_ACT_COUNT; i++)
		if (strcmp(name, act_names[i]) == 0)
			return i;
	return -1;
}

enum msv_action _msv_category_default_action(int cat)
{
	return cat >= 0 && cat < MSV_CAT_COUNT ? cat_defaults[cat] : MSV_ACT_KEEP;
}

int _msv_category_mask_parse(const char *list, unsigned *mask, char *bad, unsigned badlen)
{
	*mask = 0;
	if (!list || !*list) {
		*mask = (1u << MSV_CAT_COUNT) - 1;
		return 0;
	}
	const char *p = list;
	while (*p) {
		size_t n = strcspn(p, ",");
		char name[32];
		/* Tolerate spaces around names: "kv, graph" is what people type. */
		while (n && *p == ' ')
			p++, n--;
		size_t m = n;
		while (m && p[m - 1] == ' ')
			m--;
		if (m >= sizeof(name))
			m = sizeof(name) - 1;
		memcpy(name, p, m);
		name[m] = '\0';
		int cat = _msv_category_parse(name);
		if (cat < 0) {
			if (bad && badlen)
				snprintf(bad, badlen, "%s", name);
			return -EINVAL;
		}
		*mask |= 1u << cat;
		p += n;
		if (*p == ',')
			p++;
	}
	return 0;
}
