/* Per-thread tracer state: what the tracer knows about the calling thread
 * when it allocates.  Lives in thread-local storage; only the owning thread
 * reads or writes it, so no locks. */
#ifndef MSV_THREAD_H
#define MSV_THREAD_H

#include <stdint.h>

#define MSV_NVTX_DEPTH 16
#define MSV_NVTX_NAME 96

struct msv_tls {
	int busy;         /* >0 while memsaver itself is inside the driver */
	int capturing;    /* captures begun by this thread and not yet ended */
	int region1;      /* explicit region category + 1; 0 = none */
	int n_nvtx;       /* ranges open (may exceed MSV_NVTX_DEPTH; deeper ones not kept) */
	struct {
		uint64_t id; /* nvtxRangeStart id, 0 for push/pop ranges */
		char name[MSV_NVTX_NAME];
	} nvtx[MSV_NVTX_DEPTH];
};

struct msv_tls *_msv_tls(void);

/* Bracket memsaver's own driver calls so that CUPTI callbacks they cause
 * are not mistaken for the application's. */
#define MSV_BUSY_BEGIN() (_msv_tls()->busy++)
#define MSV_BUSY_END() (_msv_tls()->busy--)

#endif
