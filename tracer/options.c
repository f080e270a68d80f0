#include "options.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

enum kind { STR, BOOL, INT, SIZE };

/* The table: name, kind, default, where it lands, what it means. */
#define OPT(field) offsetof(struct msv_options, field), sizeof(((struct msv_options *)0)->field)
static const struct opt {
	const char *name;
	enum kind kind;
	const char *def;
	size_t off, len;
} table[] = {
	{"MEMSAVER_POLICY", STR, "", OPT(policy)},
	{"MEMSAVER_TRACE", STR, "", OPT(trace)},
	{"MEMSAVER_REPORT", STR, "", OPT(report)},
	{"MEMSAVER_SOCKET_DIR", STR, "", OPT(socket_dir)},
	{"MEMSAVER_SESSION", STR, "", OPT(session)},
	{"MEMSAVER_CUPTI", BOOL, "0", OPT(cupti)},
	{"MEMSAVER_REDIRECT", BOOL, "1", OPT(redirect)},
	{"MEMSAVER_CONTROL", BOOL, "1", OPT(control)},
	{"MEMSAVER_PYTHON_FRAMES", BOOL, "1", OPT(python_frames)},
	{"MEMSAVER_PYTHON_DEPTH", INT, "8", OPT(python_depth)},
	{"MEMSAVER_CHUNK", SIZE, "16MiB", OPT(chunk_bytes)},
	{"MEMSAVER_STREAMS", INT, "4", OPT(streams)},
	{"MEMSAVER_PREPIN", BOOL, "1", OPT(prepin)},
	{"MEMSAVER_PREP_THREADS", INT, "16", OPT(prep_threads)},
	{"MEMSAVER_HOST_RESERVE", SIZE, "1GiB", OPT(host_reserve)},
	{"MEMSAVER_PAUSE_TIMEOUT", INT, "30", OPT(pause_timeout)},
	{"MEMSAVER_GATE_TIMEOUT", INT, "600", OPT(gate_timeout)},
	{"MEMSAVER_SKIP_UNCHANGED", BOOL, "1", OPT(skip_unchanged)},
	{"MEMSAVER_RESTORE_KERNEL_MS", INT, "1000", OPT(restore_kernel_ms)},
	{"MEMSAVER_TRACE_MAX", SIZE, "256MiB", OPT(trace_max)},
};

int _msv_parse_bool(const char *s, int *out)
{
	static const char *const yes[] = {"1", "true", "on", "yes"};
	static const char *const no[] = {"0", "false", "off", "no"};
	for (int i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0)
			return *out = 1, 0;
		if (strcasecmp(s, no[i]) == 0)
			return *out = 0, 0;
	}
	return -EINVAL;
}

int _msv_parse_size(const char *s, uint64_t *out)
{
	static const struct {
		const char *suffix;
		unsigned shift;
	} units[] = {{"", 0}, {"B", 0}, {"K", 10}, {"KiB", 10}, {"KB", 10}, {"M", 20}, {"MiB", 20},
		     {"MB", 20}, {"G", 30}, {"GiB", 30}, {"GB", 30}, {"T", 40}, {"TiB", 40}};
	char *end;
	errno = 0;
	if (!*s || *s == '-')
		return -EINVAL;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(end, units[i].suffix) == 0) {
			if (units[i].shift && v > (UINT64_MAX >> units[i].shift))
				return -EINVAL;
			*out = (uint64_t)v << units[i].shift;
			return 0;
		}
	}
	return -EINVAL;
}

int _msv_expand_path(const char *tmpl, int pid, char *out, size_t len)
{
	size_t o = 0;
	for (const char *p = tmpl; *p; p++) {
		char piece[24];
		const char *add = piece;
		if (p[0] == '%' && p[1] == 'p') {
			snprintf(piece, sizeof(piece), "%d", pid);
			p++;
		} else {
			piece[0] = *p;
			piece[1] = '\0';
		}
		size_t n = strlen(add);
		if (o + n + 1 > len)
			return -ENAMETOOLONG;
		memcpy(out + o, add, n);
		o += n;
	}
	if (len == 0)
		return -ENAMETOOLONG;
	out[o] = '\0';
	return 0;
}

static int apply(struct msv_options *o, const struct opt *t, const char *v)
{
	char *dst = (char *)o + t->off;
	int b, rc = 0;
	uint64_t sz;
	switch (t->kind) {
	case STR:
		if (strlen(v) >= t->len)
			return -ENAMETOOLONG;
		strcpy(dst, v);
		break;
	case BOOL:
		if ((rc = _msv_parse_bool(v, &b)) == 0)
			*(int *)dst = b;
		break;
	case INT: {
		char *end;
		long n = strtol(v, &end, 10);
		if (*v == '\0' || *end || n < 0 || n > 1 << 20)
			return -EINVAL;
		*(int *)dst = (int)n;
		break;
	}
	case SIZE:
		if ((rc = _msv_parse_size(v, &sz)) == 0)
			*(uint64_t *)dst = sz;
		break;
	}
	return rc;
}

void _msv_options_parse(struct msv_options *o)
{
	memset(o, 0, sizeof(*o));
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		apply(o, &table[i], table[i].def);
		const char *v = getenv(table[i].name);
		if (v && apply(o, &table[i], v) != 0)
			MSV_WARN("%s=\"%s\" is not valid; using the default \"%s\"", table[i].name, v,
				 table[i].def);
	}
	if (o->streams < 1)
		o->streams = 1;
	if (o->prep_threads < 0)
		o->prep_threads = 0;
	if (o->chunk_bytes < (1u << 20))
		o->chunk_bytes = 1u << 20;
}

static struct msv_options options;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void)
{
	_msv_log_init();
	_msv_options_parse(&options);
}

const struct msv_options *_msv_options(void)
{
	pthread_once(&once, load);
	return &options;
}
