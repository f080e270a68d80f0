/* The tracer: process-wide state and the one place where an allocation is
 * classified and recorded.
 *
 * Both observers feed it: the CUPTI subscriber (tracer/cupti.c) and the
 * interposer (saver/interpose.c).  The interposer brackets each real driver
 * call with the thread's busy count, so CUPTI ignores what the interposer
 * already recorded and records only what reached the driver some other way.
 *
 * _msv_tracer_init is idempotent and thread-safe; every other function is a
 * no-op until it succeeded.  Nothing here exits or aborts. */
#ifndef MSV_TRACER_H
#define MSV_TRACER_H

#include <stdint.h>

#include <cuda.h>

#include "categories.h"
#include "policy.h"
#include "trace_writer.h"

/* Load options and policy, open the trace, take the baseline reading.
 * Returns 0 when active, -ECANCELED when memsaver turned itself off (bad
 * policy inside a running process: said once, then a no-op). */
int _msv_tracer_init(void);
int _msv_tracer_active(void);
/* 1 once a CUDA context of this process was seen on some device; a process
 * that only called cuInit (a compile worker importing torch) never is. */
int _msv_tracer_device_seen(void);
const struct msv_policy *_msv_tracer_policy(void);
struct msv_trace_writer *_msv_tracer_log(void);

/* Which category an allocation of `bytes` made now by this thread gets, with
 * the call-site strings interned into the trace.  caller: the return address
 * into the code that called the driver, or NULL (then found by unwinding). */
struct msv_decision {
	enum msv_category cat;
	uint16_t rule;   /* _msv_classify_rule_code */
	uint8_t flags;   /* MSV_F_CAPTURING, MSV_F_REGION */
	uint32_t site, pysite, nvtx;
};
void _msv_tracer_decide(uint64_t bytes, int stream_capturing, void *caller, struct msv_decision *d);

/* Record an allocation (flags adds MSV_F_WRAPPED etc. to the decision's). */
void _msv_tracer_alloc(const struct msv_decision *d, int api, uint64_t addr, uint64_t size,
		       uint64_t mapped, uint64_t stream, uint8_t flags);
/* size: the bytes asked for; held: the device bytes it held (mapped size
 * when wrapped; 0 when unknown). */
void _msv_tracer_free(int api, uint64_t addr, uint64_t size, uint64_t held, int cat);
/* Device bytes held by recorded, live allocations. */
uint64_t _msv_tracer_allocated(void);
/* App-owned VMM. */
void _msv_tracer_vmm(int type, uint64_t addr, uint64_t size, uint64_t handle);

/* Phase marker with a reading of the current context's device. */
void _msv_tracer_phase(const char *label);
/* Driver-internal delta (enum msv_driver_cause). */
void _msv_tracer_driver(int cause, int64_t bytes);
/* Append a ready-made record (pause/resume/context records). */
void _msv_tracer_record(const struct msv_rec *r);

/* A checkpoint: a device-memory reading at a rare event (enum msv_mark),
 * recorded as MSV_REC_DRIVER with MSV_F_READING under `cause` together with
 * the calling thread's call site (caller as in _msv_tracer_decide).  The
 * analyzer charges the device memory that appeared since the previous
 * checkpoint, minus what the records explain, to this one.  Costs one
 * reading (NVML, microseconds) and a stack walk: never per allocation. */
void _msv_tracer_checkpoint(int cause, int mark, void *caller);

/* Called by the observers around events that cost driver-internal memory:
 * begin takes a reading, end records the delta under `cause`. */
uint64_t _msv_tracer_used_now(void); /* MSV_NO_VALUE when unknown */

/* The baseline reading (NVML, before any context).  Call before cuInit's
 * first context; once per process. */
void _msv_tracer_baseline(void);

/* Set by the saver: runs at process exit after the "exit" phase (report,
 * control socket). */
extern void (*_msv_exit_hook)(void);
/* Set by the saver: runs once after a successful _msv_tracer_init, outside
 * the tracer's lock (starts the control socket). */
extern void (*_msv_ready_hook)(void);

/* First context seen: device name/total/granularity meta, baseline and
 * context delta.  Safe to call repeatedly; acts once per device. */
void _msv_tracer_context_ready(CUcontext ctx); /* NULL: the current one */

/* Capture state of the calling thread (from BeginCapture/EndCapture/
 * ThreadExchangeStreamCaptureMode, whichever observer saw them). */
void _msv_tracer_capture_begin(void);
void _msv_tracer_capture_end(void);

/* Whether the CUPTI subscriber is attached (0/1), and the reason if not:
 * recorded in the trace (MSV_META_CUPTI), so the report names the mode. */
void _msv_tracer_set_cupti(int attached, const char *why);
/* 1 while CUPTI is attached.  0 before InitializeInjection, when it was
 * never called (no CUDA_INJECTION64_PATH), with MEMSAVER_CUPTI=0 and when
 * the slot was taken: then the interposer alone observes (tracer/events.h). */
int _msv_tracer_cupti(void);

#endif
