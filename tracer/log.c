#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static atomic_int threshold = MSV_LOG_WARN;

int _msv_log_parse(const char *name)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	for (int i = 0; name && i < 4; i++)
		if (strcasecmp(name, names[i]) == 0 || (i == MSV_LOG_WARN && strcasecmp(name, "warning") == 0))
			return i;
	return -1;
}

void _msv_log_init(void)
{
	const char *v = getenv("MEMSAVER_LOG");
	if (!v || !*v)
		return;
	int level = _msv_log_parse(v);
	if (level >= 0) {
		atomic_store(&threshold, level);
		return;
	}
	/* Read again on every init; a bad value is worth one line per process, not one per init. */
	static atomic_int warned;
	if (atomic_exchange(&warned, 1) == 0)
		_msv_log(MSV_LOG_WARN, NULL, __FILE__, __LINE__,
			 "MEMSAVER_LOG=%s is not one of error, warn, info, debug; keeping %s", v,
			 (const char *const[]){"error", "warn", "info", "debug"}[atomic_load(&threshold)]);
}

int _msv_log_enabled(enum msv_log_level level)
{
	return (int)level <= atomic_load(&threshold);
}

void _msv_log(enum msv_log_level level, atomic_int *count, const char *file, int line,
	      const char *fmt, ...)
{
	static const char *const tags[] = {"error", "warning", "info", "debug"};
	if (!_msv_log_enabled(level))
		return;
	int n = count ? atomic_fetch_add(count, 1) : 0;
	if (n > MSV_LOG_CAP)
		return;
	/* One write(2) per message: lines from many threads stay whole. */
	char buf[1024];
	const char *base = strrchr(file, '/');
	int len = snprintf(buf, sizeof(buf), "memsaver[%d]: %s %s:%d: ", (int)getpid(), tags[level],
			   base ? base + 1 : file, line);
	if (n == MSV_LOG_CAP) {
		len += snprintf(buf + len, sizeof(buf) - len, "(further messages from here suppressed)\n");
	} else {
		va_list ap;
		va_start(ap, fmt);
		len += vsnprintf(buf + len, sizeof(buf) - len, fmt, ap);
		va_end(ap);
		if (len >= (int)sizeof(buf) - 1)
			len = sizeof(buf) - 2;
		buf[len++] = '\n';
	}
	ssize_t w = write(STDERR_FILENO, buf, len);
	(void)w;
}
