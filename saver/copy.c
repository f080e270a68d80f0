#include "copy.h"

#include <stdlib.h>

#include "tracer/driver.h"
#include "tracer/log.h"
#include "tracer/options.h"
#include "tracer/thread.h"

#define MAX_CTX 16
#define MAX_STREAMS 16

/* Copy streams per context, created on first use and kept. */
static struct {
	CUcontext ctx;
	CUstream s[MAX_STREAMS];
	int n;
} pools[MAX_CTX];

static int streams_for(const struct msv_driver *d, CUcontext ctx, CUstream **out)
{
	for (int i = 0; i < MAX_CTX; i++) {
		if (pools[i].ctx == ctx && pools[i].n) {
			*out = pools[i].s;
			return pools[i].n;
		}
		if (!pools[i].ctx) {
			int want = _msv_options()->streams;
			if (want > MAX_STREAMS)
				want = MAX_STREAMS;
			int n = 0;
			while (n < want && d->cuStreamCreate(&pools[i].s[n], CU_STREAM_NON_BLOCKING) == CUDA_SUCCESS)
				n++;
			if (!n)
				return 0;
			pools[i].ctx = ctx;
			pools[i].n = n;
			*out = pools[i].s;
			return n;
		}
	}
	return 0;
}

enum dir { OUT, IN, ZERO };

static CUresult ensure_backup(const struct msv_driver *d, struct msv_region *r)
{
	if (r->backup)
		return CUDA_SUCCESS;
	if (d->cuMemHostAlloc && d->cuMemHostAlloc(&r->backup, r->size, 0) == CUDA_SUCCESS) {
		r->backup_pinned = 1;
		return CUDA_SUCCESS;
	}
	MSV_WARN("pinning %zu bytes of host memory failed; backing up through pageable memory (slower)",
		 r->size);
	r->backup = malloc(r->size ? r->size : 1);
	r->backup_pinned = 0;
	return r->backup ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

static CUresult run(struct msv_region **list, size_t n, enum dir dir)
{
	const struct msv_driver *d = _msv_drv();
	CUresult rc = CUDA_SUCCESS;
	size_t chunk = _msv_options()->chunk_bytes;
	MSV_BUSY_BEGIN();
	for (size_t i = 0; i < n && rc == CUDA_SUCCESS; i++) {
		struct msv_region *r = list[i];
		CUcontext old;
		if ((rc = d->cuCtxPushCurrent(r->ctx)) != CUDA_SUCCESS)
			break;
		CUstream *s = NULL;
		int ns = streams_for(d, r->ctx, &s);
		if (dir == OUT)
			rc = ensure_backup(d, r);
		/* Chunks round-robin over the streams: both copy engines and
		 * several DMA queues stay busy on large regions. */
		for (size_t off = 0, k = 0; rc == CUDA_SUCCESS && off < r->size; off += chunk, k++) {
			size_t len = r->size - off < chunk ? r->size - off : chunk;
			CUstream st = ns ? s[k % (size_t)ns] : NULL;
			char *host = (char *)r->backup + off;
			if (dir == ZERO)
				rc = d->cuMemsetD8Async(r->va + off, 0, len, st);
			else if (!r->backup_pinned)
				rc = dir == OUT ? d->cuMemcpyDtoH(host, r->va + off, len)
						: d->cuMemcpyHtoD(r->va + off, host, len);
			else
				rc = dir == OUT ? d->cuMemcpyDtoHAsync(host, r->va + off, len, st)
						: d->cuMemcpyHtoDAsync(r->va + off, host, len, st);
		}
		for (int k = 0; k < ns; k++) {
			CUresult sr = d->cuStreamSynchronize(s[k]);
			if (rc == CUDA_SUCCESS)
				rc = sr;
		}
		d->cuCtxPopCurrent(&old);
	}
	MSV_BUSY_END();
	return rc;
}

CUresult _msv_copy_out(struct msv_region **list, size_t n)
{
	return run(list, n, OUT);
}

CUresult _msv_copy_in(struct msv_region **list, size_t n)
{
	return run(list, n, IN);
}

CUresult _msv_copy_zero(struct msv_region **list, size_t n)
{
	return run(list, n, ZERO);
}
