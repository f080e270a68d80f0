#include "gate.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "tracer/driver.h"
#include "tracer/log.h"
#include "tracer/options.h"
#include "tracer/thread.h"

atomic_int _msv_gate_shut;

/* The flag is what the hot path reads; the mutex and condition variable
 * only order the slow path against open/close, so a wake-up is never lost
 * between a waiter's check and its wait. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond;
static pthread_once_t gate_once = PTHREAD_ONCE_INIT;
static int said; /* this close has logged its waiter (under gate_lock) */

/* A child forked while the gate was closed must not wait for a resume that
 * only its parent can receive. */
static void gate_child(void)
{
	pthread_mutex_init(&gate_lock, NULL);
	pthread_cond_destroy(&gate_cond);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&gate_cond, &ca);
	pthread_condattr_destroy(&ca);
	atomic_store(&_msv_gate_shut, 0);
}

static void gate_init(void)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&gate_cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_atfork(NULL, NULL, gate_child);
}

/* saver/control.c names its server thread so; the thread serves nobody in
 * the engine, so a pause it makes is one the engine did not ask for. */
int _msv_gate_outside_caller(void)
{
	char name[16] = "";
	return prctl(PR_GET_NAME, name, 0, 0, 0) == 0 && strcmp(name, "memsaver-ctl") == 0;
}

void _msv_gate_close(void)
{
	pthread_once(&gate_once, gate_init);
	pthread_mutex_lock(&gate_lock);
	if (!atomic_load(&_msv_gate_shut))
		said = 0;
	atomic_store(&_msv_gate_shut, 1);
	pthread_mutex_unlock(&gate_lock);
}

void _msv_gate_open(void)
{
	pthread_once(&gate_once, gate_init);
	pthread_mutex_lock(&gate_lock);
	atomic_store(&_msv_gate_shut, 0);
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
}

/* A launch or copy into a capturing stream records a node and runs nothing,
 * and blocking it would break the capture (a capture may be begun before a
 * pause and ended after it).  Asked of the driver, not of the tracer's
 * per-thread count: another thread may capture into this stream (relaxed
 * mode), and this thread may capture one stream and launch into another. */
static int capturing(CUstream s, int ptsz)
{
	const struct msv_driver *d = _msv_drv();
	CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;
	if (!s && ptsz)
		s = CU_STREAM_PER_THREAD;
	/* The legacy default stream cannot capture. */
	if (!s || s == CU_STREAM_LEGACY || !d || !d->cuStreamGetCaptureInfo)
		return 0;
	MSV_BUSY_BEGIN();
	CUresult r = d->cuStreamGetCaptureInfo(s, &st, NULL, NULL, NULL, NULL, NULL);
	MSV_BUSY_END();
	return r == CUDA_SUCCESS && st == CU_STREAM_CAPTURE_STATUS_ACTIVE;
}

CUresult _msv_gate_wait(const char *call, CUstream s, int ptsz)
{
	if (_msv_tls()->busy || capturing(s, ptsz))
		return CUDA_SUCCESS;
	pthread_once(&gate_once, gate_init);
	int timeout = _msv_options()->gate_timeout;
	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += timeout;
	int rc = 0;
	pthread_mutex_lock(&gate_lock);
	if (atomic_load(&_msv_gate_shut) && !said) {
		said = 1;
		MSV_WARN("the engine is paused from outside: a %s from thread %ld waits for resume (at most "
			 "%d s, MEMSAVER_GATE_TIMEOUT; 0 = no limit) instead of touching released memory",
			 call, (long)syscall(SYS_gettid), timeout);
	}
	while (atomic_load(&_msv_gate_shut) && rc != ETIMEDOUT)
		rc = timeout > 0 ? pthread_cond_timedwait(&gate_cond, &gate_lock, &dl)
				 : pthread_cond_wait(&gate_cond, &gate_lock);
	int still = atomic_load(&_msv_gate_shut);
	pthread_mutex_unlock(&gate_lock);
	if (!still)
		return CUDA_SUCCESS;
	MSV_WARN("%s from thread %ld waited %d s (MEMSAVER_GATE_TIMEOUT) and the engine is still paused: it "
		 "fails with CUDA_ERROR_TIMEOUT and did nothing; resume with `memsaver ctl resume`",
		 call, (long)syscall(SYS_gettid), timeout);
	return CUDA_ERROR_TIMEOUT;
}
