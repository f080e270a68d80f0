/* The launch gate: while a pause from outside the engine (`memsaver ctl`)
 * has memory released, the engine's work that could touch it waits for the
 * resume instead of faulting on unmapped memory.
 *
 * Gated (saver/wrappers.c): kernel and graph launches, async and sync
 * copies and memsets, each in its plain and per-thread-stream form.  A
 * gated wrapper costs one relaxed atomic load and a branch while the gate
 * is open (_msv_gate_shut); only when it is closed does it call
 * _msv_gate_wait.
 *
 * Who closes it: saver/pause.c, for a pause requested through the control
 * socket, BEFORE it synchronizes (so the work launched before is waited for
 * and nothing new starts).  A pause the application asks for itself
 * (msv_pause, the Python module) leaves it open: the application knows it
 * paused and may go on running work on the memory it kept (a training step
 * in the process whose rollout memory is released).  Who opens it: a
 * resume (whoever asks for it) after restoring, once nothing is paused; a
 * pause that fails with nothing paused.
 *
 * Never gated: memsaver's own driver calls (tracer/driver.h, the real
 * pointers: pause, resume, copies, digests), calls made while memsaver is
 * inside the driver on that thread (busy count), and launches and copies
 * into a stream that is capturing a CUDA graph (they record, they do not
 * run).  A waiting thread holds no memsaver lock: the gate is the first
 * thing a wrapper does (docs/saver.md, "The launch gate").
 *
 * Limit: a call that read the gate open an instant before it closed goes on
 * into the driver; the synchronize right after the close waits for it
 * unless that thread was descheduled between the load and the driver for
 * longer than the synchronize took.
 *
 * Thread-safe.  A fork child starts with the gate open (it cannot use the
 * parent's CUDA state anyway). */
#ifndef MSV_GATE_H
#define MSV_GATE_H

#include <cuda.h>
#include <stdatomic.h>

/* Nonzero while closed.  Read with _msv_gate_closed() only. */
extern atomic_int _msv_gate_shut;

static inline int _msv_gate_closed(void)
{
	return __builtin_expect(atomic_load_explicit(&_msv_gate_shut, memory_order_relaxed), 0);
}

/* Whether the calling thread asks on behalf of someone outside the engine
 * (the control socket's thread): its pause closes the gate. */
int _msv_gate_outside_caller(void);
/* Close (idempotent).  The next gated call waits; one log line per close. */
void _msv_gate_close(void);
/* Open (idempotent) and wake every waiting call. */
void _msv_gate_open(void);

/* The slow path of a gated wrapper: wait until the gate opens, at most
 * MEMSAVER_GATE_TIMEOUT seconds (0: no limit).  call: the entry point's
 * name for the log; s: its stream (ptsz: a per-thread-default-stream form,
 * where stream 0 means CU_STREAM_PER_THREAD; NULL for sync calls).
 * Returns CUDA_SUCCESS when the call may go on (gate open, capturing
 * stream, memsaver's own call), or CUDA_ERROR_TIMEOUT when the deadline
 * passed: the caller returns it without calling the driver. */
CUresult _msv_gate_wait(const char *call, CUstream s, int ptsz);

#endif
