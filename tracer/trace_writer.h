/* The event log writer: append-only, crash-safe, thread-safe.
 *
 * Records (tracer/trace_format.h) go to an optional file, each with one
 * write(2), and to an in-memory copy of the same bytes, so the live report
 * and an offline report from the file are built from identical input.
 * Strings are interned: the same text gets the same id and is written once.
 *
 * The in-memory copy holds at most MEMSAVER_TRACE_MAX bytes (default 256 MiB,
 * at least 64 KiB); the file is not bounded.  At the bound, allocation/free
 * pairs with no other record between them are dropped from memory (said
 * once), which leaves every phase, checkpoint, pause and resume seeing the
 * same live allocations; when that frees less than half, memory keeps no
 * more records (said once) and the live report covers the trace up to there.
 * The writer owns its buffer and file; _msv_trace_writer_free closes both. */
#ifndef MSV_TRACE_WRITER_H
#define MSV_TRACE_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "trace_format.h"

struct msv_trace_writer;

/* path: file to create (truncated), or NULL for memory only.  Returns 0 or a
 * negative errno; on a file error the writer is still made, memory-only. */
int _msv_trace_writer_new(const char *path, int pid, struct msv_trace_writer **out);
void _msv_trace_writer_free(struct msv_trace_writer *w); /* accepts NULL */

/* Append one record (its t_ns and tid are filled in when zero). */
void _msv_trace_append(struct msv_trace_writer *w, const struct msv_rec *r);
/* Intern a string; returns its id (0 for NULL or "", or when out of memory). */
uint32_t _msv_trace_intern(struct msv_trace_writer *w, const char *s);
/* A copy of everything written so far (header included); caller frees *buf. */
int _msv_trace_copy(struct msv_trace_writer *w, void **buf, size_t *len);

/* Stop writing to the file (a forked child must not append to its
 * parent's trace); memory recording goes on.  Async-signal-safe. */
void _msv_trace_writer_detach(struct msv_trace_writer *w);

uint64_t _msv_now_ns(void); /* CLOCK_MONOTONIC */

#endif
