/* Configuration: every MEMSAVER_* environment variable, its default and its
 * meaning, in one table (options.c).  Booleans accept 1/0/true/false/on/off/
 * yes/no; sizes accept plain bytes or a KiB/MiB/GiB (also K/M/G) suffix.
 * A bad value keeps the default and says so once.  Read once per process;
 * the result is immutable afterwards. */
#ifndef MSV_OPTIONS_H
#define MSV_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

struct msv_options {
	char policy[4096];    /* MEMSAVER_POLICY: policy file; "" = built-in defaults */
	char trace[4096];     /* MEMSAVER_TRACE: trace path, %p = pid; "" = no file */
	char report[4096];    /* MEMSAVER_REPORT: report path, %p = pid; "" = none at exit */
	char socket_dir[4096];/* MEMSAVER_SOCKET_DIR: control sockets; "" = runtime dir */
	char session[64];     /* MEMSAVER_SESSION: id shared by one `memsaver run` */
	int cupti;            /* MEMSAVER_CUPTI: subscribe to CUPTI callbacks */
	int redirect;         /* MEMSAVER_REDIRECT: interpose and wrap allocations */
	int control;          /* MEMSAVER_CONTROL: serve the control socket */
	int python_frames;    /* MEMSAVER_PYTHON_FRAMES: read Python frames per allocation */
	int python_depth;     /* MEMSAVER_PYTHON_DEPTH: frames kept per allocation */
	uint64_t chunk_bytes;   /* MEMSAVER_CHUNK: one staged copy */
	int streams;            /* MEMSAVER_STREAMS: copy streams for backup/restore */
	int prepin;             /* MEMSAVER_PREPIN: prepare backups in the background while the
	                           engine is idle (saver/copy.c; fast first pause; the host
	                           memory is committed before the first pause) */
	int prep_threads;       /* MEMSAVER_PREP_THREADS: threads that prepare backup host memory
	                           during a first pause (saver/host_backup.h); 0 = the pausing
	                           thread alone */
	uint64_t host_reserve;  /* MEMSAVER_HOST_RESERVE: host memory (MemAvailable) backups must
	                           leave free; a pause that would go below refuses, releasing
	                           nothing (saver/host_backup.h) */
	int skip_unchanged;     /* MEMSAVER_SKIP_UNCHANGED: a pause copies only backup chunks whose
	                           GPU digest changed since the last backup */
	int restore_kernel_ms;  /* MEMSAVER_RESTORE_KERNEL_MS: a resume that begins within this many
	                           ms of the end of the last pause restores pinned backups with
	                           memsaver's kernel, not the copy engines, which the driver is
	                           still using to clear the released memory (saver/copy.h); 0 =
	                           never */
	int pause_timeout;      /* MEMSAVER_PAUSE_TIMEOUT: seconds a pause waits for the GPU work
	                           in flight before it gives up, releasing nothing; 0 = forever */
	int gate_timeout;       /* MEMSAVER_GATE_TIMEOUT: seconds a launch or copy of the engine waits
	                           for the resume of a pause from outside before it fails with
	                           CUDA_ERROR_TIMEOUT (saver/gate.h); 0 = forever */
	uint64_t trace_max;     /* MEMSAVER_TRACE_MAX: bytes of the in-memory event log (the trace
	                           file is not bounded); tracer/trace_writer.h says what is kept */
};

/* Parse the environment (first call) and return the options. */
const struct msv_options *_msv_options(void);
/* Parse into *o without caching; for tests. */
void _msv_options_parse(struct msv_options *o);

/* Value parsers shared with the CLI.  Return 0, or -EINVAL. */
int _msv_parse_bool(const char *s, int *out);
int _msv_parse_size(const char *s, uint64_t *out);
/* Expand %p to the pid in a path.  Returns 0 or -ENAMETOOLONG. */
int _msv_expand_path(const char *tmpl, int pid, char *out, size_t len);

#endif
