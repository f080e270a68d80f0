/* The synchronize a pause waits for, with a deadline.  Synchronizing may
 * never return (a rank blocked in a collective whose peer is paused, a
 * spinning kernel), so it runs on a thread of memsaver's and the pause
 * waits for it at most timeout_s seconds.  The thread lives across pauses:
 * one that creates a thread per pause makes the driver set up a new CUDA
 * thread each time.  A thread still stuck in a synchronize that a pause gave
 * up on is replaced by the next pause and ends when the GPU answers. */
#ifndef MSV_SYNC_H
#define MSV_SYNC_H

#include <cuda.h>
#include <stddef.h>

#include "regions.h"

/* Synchronize every distinct context of the regions (however many), in
 * relaxed capture mode.  0, the driver's error, or CUDA_ERROR_TIMEOUT when
 * the deadline passed (the GPU work is left running).  timeout_s <= 0, or
 * no thread: synchronously on the caller's thread. */
CUresult _msv_sync_contexts(struct msv_region **list, size_t n, int timeout_s);

#endif
