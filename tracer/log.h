/* Logging for code that runs inside someone else's process.
 *
 * Messages go to stderr as "memsaver[PID]: LEVEL file:line: text".  Each call
 * site prints at most MSV_LOG_CAP times, then says once that it goes quiet,
 * so a warning in an allocation path cannot flood a server's log.
 * MEMSAVER_LOG=error|warn|info|debug sets the threshold (default warn). */
#ifndef MSV_LOG_H
#define MSV_LOG_H

#include <stdatomic.h>

#define MSV_LOG_CAP 16

enum msv_log_level { MSV_LOG_ERROR, MSV_LOG_WARN, MSV_LOG_INFO, MSV_LOG_DEBUG };

/* count: the call site's counter (the macros pass a static one); NULL = no cap. */
void _msv_log(enum msv_log_level level, atomic_int *count, const char *file, int line,
	      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Threshold from MEMSAVER_LOG, any case; read again on every call of
 * _msv_log_init; a bad value keeps the threshold and warns once. */
void _msv_log_init(void);
/* error/warn/info/debug (any case; "warning" too) -> its level; else -1. */
int _msv_log_parse(const char *name);
int _msv_log_enabled(enum msv_log_level level);

#define MSV_LOG_AT(level, ...)                                                      \
	do {                                                                        \
		static atomic_int msv_log_count_;                                   \
		_msv_log((level), &msv_log_count_, __FILE__, __LINE__, __VA_ARGS__); \
	} while (0)
#define MSV_ERROR(...) MSV_LOG_AT(MSV_LOG_ERROR, __VA_ARGS__)
#define MSV_WARN(...) MSV_LOG_AT(MSV_LOG_WARN, __VA_ARGS__)
#define MSV_INFO(...) MSV_LOG_AT(MSV_LOG_INFO, __VA_ARGS__)
#define MSV_DEBUG(...) MSV_LOG_AT(MSV_LOG_DEBUG, __VA_ARGS__)

#endif
