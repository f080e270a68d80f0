#include "digest.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tracer/driver.h"
#include "tracer/log.h"
#include "tracer/options.h"
#include "tracer/thread.h"

/* The kernel image, generated from saver/digest.cu at build time (empty
 * when nvcc was not there). */
extern const unsigned char _msv_digest_image[];
extern const size_t _msv_digest_image_len;

#define MAX_CTX 16

/* Per context: the module, the function, a stream and the device buffer
 * the digests land in.  Module and buffer live only for one digest pass
 * (_msv_digest_take): a paused process holds no device memory of ours.  A
 * context where loading failed is remembered and never retried. */
static struct {
	CUcontext ctx;
	CUmodule mod;
	CUfunction fn;
	CUstream stream;
	CUdeviceptr out;
	size_t out_chunks;
	int failed;
} ctxs[MAX_CTX];

static int slot_for(const struct msv_driver *d, CUcontext ctx)
{
	int k = 0;
	while (k < MAX_CTX && ctxs[k].ctx && ctxs[k].ctx != ctx)
		k++;
	if (k == MAX_CTX)
		return -1;
	if (ctxs[k].ctx && (ctxs[k].failed || ctxs[k].mod))
		return ctxs[k].failed ? -1 : k;
	ctxs[k].ctx = ctx;
	CUresult r = CUDA_ERROR_NOT_FOUND;
	if (_msv_digest_image_len && d->cuModuleLoadData && d->cuModuleGetFunction && d->cuLaunchKernel &&
	    d->cuModuleUnload && (r = d->cuModuleLoadData(&ctxs[k].mod, _msv_digest_image)) == CUDA_SUCCESS &&
	    (r = d->cuModuleGetFunction(&ctxs[k].fn, ctxs[k].mod, "msv_digest")) == CUDA_SUCCESS &&
	    !ctxs[k].stream)
		r = d->cuStreamCreate(&ctxs[k].stream, CU_STREAM_NON_BLOCKING);
	if (r != CUDA_SUCCESS) {
		ctxs[k].failed = 1;
		MSV_INFO("backup digests unavailable (%s); every pause copies its whole backup",
			 _msv_digest_image_len ? _msv_cu_error(r) : "built without nvcc");
		return -1;
	}
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

static CUresult take_one(const struct msv_driver *d, struct msv_region *r, size_t chunk)
{
	size_t chunks = (r->keep_len + chunk - 1) / chunk;
	int k = slot_for(d, r->ctx);
	if (k < 0 || !chunks)
		return CUDA_ERROR_NOT_SUPPORTED;
	CUresult rc = ensure_out(d, k, chunks);
	uint64_t *host = rc == CUDA_SUCCESS ? malloc(chunks * 16) : NULL;
	if (rc == CUDA_SUCCESS && !host)
		rc = CUDA_ERROR_OUT_OF_MEMORY;
	CUdeviceptr base = r->va + r->keep_off;
	unsigned long long len = r->keep_len, csz = chunk;
	void *args[] = {&base, &len, &csz, &ctxs[k].out};
	if (rc == CUDA_SUCCESS)
		rc = d->cuLaunchKernel(ctxs[k].fn, (unsigned)chunks, 1, 1, 512, 1, 1, 0, ctxs[k].stream, args, NULL);
	if (rc == CUDA_SUCCESS)
		rc = d->cuMemcpyDtoHAsync(host, ctxs[k].out, chunks * 16, ctxs[k].stream);
	if (rc == CUDA_SUCCESS)
		rc = d->cuStreamSynchronize(ctxs[k].stream);
	if (rc != CUDA_SUCCESS) {
		free(host);
		return rc;
	}
	free(r->digest_new);
	r->digest_new = host;
	r->digest_new_n = chunks;
	return CUDA_SUCCESS;
}

/* End of a pass: the module and the buffer go. */
static void release_all(const struct msv_driver *d)
{
	for (int k = 0; k < MAX_CTX && ctxs[k].ctx; k++) {
		CUcontext old;
		if ((!ctxs[k].mod && !ctxs[k].out) || d->cuCtxPushCurrent(ctxs[k].ctx) != CUDA_SUCCESS)
			continue;
		if (ctxs[k].out)
			d->cuMemFree(ctxs[k].out);
		if (ctxs[k].mod)
			d->cuModuleUnload(ctxs[k].mod);
		ctxs[k].out = 0;
		ctxs[k].out_chunks = 0;
		ctxs[k].mod = NULL;
		d->cuCtxPopCurrent(&old);
	}
}

CUresult _msv_digest_take(struct msv_region **list, size_t n, size_t chunk)
{
	const struct msv_driver *d = _msv_drv();
	CUresult first = CUDA_SUCCESS;
	if (!_msv_options()->skip_unchanged || !d)
		return CUDA_ERROR_NOT_SUPPORTED;
	MSV_BUSY_BEGIN();
	for (size_t i = 0; i < n; i++) {
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
		CUcontext old;
		CUresult rc = d->cuCtxPushCurrent(r->ctx);
		if (rc == CUDA_SUCCESS) {
			rc = take_one(d, r, chunk);
			d->cuCtxPopCurrent(&old);
		}
		if (rc != CUDA_SUCCESS && first == CUDA_SUCCESS)
			first = rc;
	}
	release_all(d);
	MSV_BUSY_END();
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
