/* The first call of each of memsaver's own threads that call the driver
 * (the pause's synchronize, the background preparation of backups and its
 * helpers): every signal blocked, so the host's handlers never run there,
 * and relaxed stream-capture mode, so that their "potentially unsafe" calls
 * (synchronize, cuMemHostRegister) go through without invalidating a
 * global-mode CUDA-graph capture on another thread (PyTorch captures in
 * global mode). */
#ifndef MSV_OWN_THREAD_H
#define MSV_OWN_THREAD_H

#include <pthread.h>
#include <signal.h>

#include "tracer/driver.h"

static inline void _msv_own_thread_start(void)
{
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	const struct msv_driver *d = _msv_drv();
	CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_RELAXED;
	if (d && d->cuThreadExchangeStreamCaptureMode)
		d->cuThreadExchangeStreamCaptureMode(&mode);
}

#endif
