#include "digest.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "tracer/driver.h"
#include "tracer/log.h"
#include "tracer/options.h"
#include "tracer/thread.h"

#define MAX_CTX 16
#define BLOCK_BYTES (512u << 10)

/* Per context: the kernel, memsaver's stream and the device buffer the
 * digests land in.  The buffer lives only for one digest pass
 * (_msv_digest_take), as the module does (saver/kernels.h). */
static struct {
	CUcontext ctx;
	CUfunction fn;
	CUstream stream;
	CUdeviceptr out;
	size_t out_chunks;
} ctxs[MAX_CTX];

/* ctx's slot with its kernel found (ctx is current), or -1. */
static int slot_for(const struct msv_driver *d, CUcontext ctx)
{
	int k = 0;
	while (k < MAX_CTX && ctxs[k].ctx && ctxs[k].ctx != ctx)
		k++;
	if (k == MAX_CTX || _msv_kernel(d, ctx, "msv_digest", &ctxs[k].fn, &ctxs[k].stream) != CUDA_SUCCESS)
		return -1;
	ctxs[k].ctx = ctx;
	return k;
}

static CUresult ensure_out(const struct msv_driver *d, int k, size_t chunks)
{
	if (ctxs[k].out_chunks >= chunks)
		return CUDA_SUCCESS;
	if (ctxs[k].out)
		d->cuMemFree(ctxs[k].out);
	ctxs[k].out = 0;
	ctxs[k].out_chunks = 0;
	CUresult r = d->cuMemAlloc(&ctxs[k].out, chunks * 16);
	if (r == CUDA_SUCCESS)
		ctxs[k].out_chunks = chunks;
	return r;
}

/* End of a pass: the buffers and the module go. */
static void release_all(const struct msv_driver *d)
{
	for (int k = 0; k < MAX_CTX && ctxs[k].ctx; k++) {
		CUcontext old;
		if (!ctxs[k].out || d->cuCtxPushCurrent(ctxs[k].ctx) != CUDA_SUCCESS)
			continue;
		d->cuMemFree(ctxs[k].out);
		ctxs[k].out = 0;
		ctxs[k].out_chunks = 0;
		d->cuCtxPopCurrent(&old);
	}
	_msv_kernels_unload(d);
}

/* One pass: every region's kernel is launched into one buffer per context,
 * then one read-back and one wait per context (a launch and a wait per
 * region cost 150 ms on the bench engine's ~150 regions). */
CUresult _msv_digest_take(struct msv_region **list, size_t n, size_t chunk)
{
	const struct msv_driver *d = _msv_drv();
	if (!_msv_options()->skip_unchanged || !d || !n)
		return CUDA_ERROR_NOT_SUPPORTED;
	int *slot = calloc(n, sizeof(*slot));
	size_t *at = calloc(n, sizeof(*at)), total[MAX_CTX] = {0};
	uint64_t *host[MAX_CTX] = {0};
	CUresult first = slot && at ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
	CUcontext old;
	MSV_BUSY_BEGIN();
	for (size_t i = 0; first == CUDA_SUCCESS && i < n; i++) {
		struct msv_region *r = list[i];
		free(r->digest_new);
		r->digest_new = NULL;
		if (r->digest_chunk != chunk || r->digest_off != r->keep_off) {
			/* The chunks moved: the old digests describe other bytes. */
			free(r->digest);
			r->digest = NULL;
			r->digest_chunk = chunk;
			r->digest_off = r->keep_off;
		}
		slot[i] = -1;
		if (d->cuCtxPushCurrent(r->ctx) != CUDA_SUCCESS)
			continue;
		slot[i] = slot_for(d, r->ctx);
		d->cuCtxPopCurrent(&old);
		if (slot[i] >= 0) {
			at[i] = total[slot[i]];
			total[slot[i]] += (r->keep_len + chunk - 1) / chunk;
		}
	}
	for (int k = 0; first == CUDA_SUCCESS && k < MAX_CTX; k++) {
		if (!total[k])
			continue;
		CUresult rc = d->cuCtxPushCurrent(ctxs[k].ctx);
		if (rc == CUDA_SUCCESS) {
			rc = ensure_out(d, k, total[k]);
			/* The blocks of a chunk add their lanes into it. */
			if (rc == CUDA_SUCCESS)
				rc = d->cuMemsetD8Async(ctxs[k].out, 0, total[k] * 16, ctxs[k].stream);
			d->cuCtxPopCurrent(&old);
		}
		if (rc == CUDA_SUCCESS && !(host[k] = malloc(total[k] * 16)))
			rc = CUDA_ERROR_OUT_OF_MEMORY;
		if (rc != CUDA_SUCCESS)
			first = rc;
	}
	for (size_t i = 0; first == CUDA_SUCCESS && i < n; i++) {
		struct msv_region *r = list[i];
		int k = slot[i];
		if (k < 0 || !r->keep_len)
			continue;
		CUdeviceptr base = r->va + r->keep_off, out = ctxs[k].out + at[i] * 16;
		unsigned long long len = r->keep_len, csz = chunk;
		/* Blocks of about 512 KiB: a region of one chunk still fills the GPU. */
		unsigned bpc = (unsigned)((csz + BLOCK_BYTES - 1) / BLOCK_BYTES);
		void *args[] = {&base, &len, &csz, &out, &bpc};
		CUresult rc = d->cuCtxPushCurrent(r->ctx);
		if (rc == CUDA_SUCCESS) {
			rc = d->cuLaunchKernel(ctxs[k].fn, (unsigned)((len + csz - 1) / csz) * bpc, 1, 1, 512, 1, 1, 0,
					       ctxs[k].stream, args, NULL);
			d->cuCtxPopCurrent(&old);
		}
		if (rc != CUDA_SUCCESS)
			first = rc;
	}
	for (int k = 0; first == CUDA_SUCCESS && k < MAX_CTX; k++) {
		if (!total[k])
			continue;
		CUresult rc = d->cuCtxPushCurrent(ctxs[k].ctx);
		if (rc == CUDA_SUCCESS) {
			rc = d->cuMemcpyDtoHAsync(host[k], ctxs[k].out, total[k] * 16, ctxs[k].stream);
			if (rc == CUDA_SUCCESS)
				rc = d->cuStreamSynchronize(ctxs[k].stream);
			d->cuCtxPopCurrent(&old);
		}
		if (rc != CUDA_SUCCESS)
			first = rc;
	}
	for (size_t i = 0; first == CUDA_SUCCESS && i < n; i++) {
		struct msv_region *r = list[i];
		size_t chunks = (r->keep_len + chunk - 1) / chunk;
		if (slot[i] < 0 || !chunks || !(r->digest_new = malloc(chunks * 16)))
			continue;
		memcpy(r->digest_new, host[slot[i]] + 2 * at[i], chunks * 16);
		r->digest_new_n = chunks;
	}
	release_all(d);
	MSV_BUSY_END();
	for (int k = 0; k < MAX_CTX; k++)
		free(host[k]);
	free(slot);
	free(at);
	return first;
}

int _msv_digest_unchanged(const struct msv_region *r, size_t k)
{
	return r->digest && r->digest_new && k < r->digest_n && k < r->digest_new_n &&
	       r->digest[2 * k] == r->digest_new[2 * k] && r->digest[2 * k + 1] == r->digest_new[2 * k + 1];
}

void _msv_digest_commit(struct msv_region *r)
{
	free(r->digest);
	r->digest = r->digest_new;
	r->digest_n = r->digest_new_n;
	r->digest_new = NULL;
}
