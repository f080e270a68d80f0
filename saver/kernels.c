#include "kernels.h"

#include <string.h>

#include "tracer/log.h"

/* The image, generated from saver/kernels.cu at build time (empty when nvcc
 * was not there). */
extern const unsigned char _msv_kernels_image[];
extern const size_t _msv_kernels_image_len;

#define MAX_CTX 16

static struct {
	CUcontext ctx;
	CUmodule mod;
	CUstream stream;
	int failed; /* 1: for good; 2: out of device memory, until the pass ends */
} ctxs[MAX_CTX];

CUresult _msv_kernel(const struct msv_driver *d, CUcontext ctx, const char *name, CUfunction *fn, CUstream *st)
{
	int k = 0;
	while (k < MAX_CTX && ctxs[k].ctx && ctxs[k].ctx != ctx)
		k++;
	if (k == MAX_CTX)
		return CUDA_ERROR_NOT_SUPPORTED;
	if (ctxs[k].failed)
		return CUDA_ERROR_NOT_SUPPORTED;
	ctxs[k].ctx = ctx;
	CUresult r = CUDA_SUCCESS;
	if (!ctxs[k].mod) {
		r = _msv_kernels_image_len && d->cuModuleLoadData && d->cuModuleGetFunction && d->cuLaunchKernel &&
				    d->cuModuleUnload
			    ? d->cuModuleLoadData(&ctxs[k].mod, _msv_kernels_image)
			    : CUDA_ERROR_NOT_FOUND;
		if (r == CUDA_SUCCESS && !ctxs[k].stream)
			r = d->cuStreamCreate(&ctxs[k].stream, CU_STREAM_NON_BLOCKING);
	}
	if (r == CUDA_SUCCESS)
		r = d->cuModuleGetFunction(fn, ctxs[k].mod, name);
	if (r == CUDA_ERROR_OUT_OF_MEMORY) { /* this pass goes without; the next one tries again */
		ctxs[k].failed = 2;
		MSV_DEBUG("memsaver's kernels not loaded: out of device memory; this pass copies by the copy engines");
		return r;
	}
	if (r != CUDA_SUCCESS) {
		ctxs[k].failed = 1;
		MSV_INFO("memsaver's kernels unavailable (%s): every pause copies its whole backup and "
			 "resumes restore by the copy engines",
			 _msv_kernels_image_len ? _msv_cu_error(r) : "built without nvcc");
		return r;
	}
	if (st)
		*st = ctxs[k].stream;
	return CUDA_SUCCESS;
}

void _msv_kernels_unload(const struct msv_driver *d)
{
	for (int k = 0; k < MAX_CTX && ctxs[k].ctx; k++) {
		CUcontext old;
		if (ctxs[k].failed == 2)
			ctxs[k].failed = 0;
		if (!ctxs[k].mod || d->cuCtxPushCurrent(ctxs[k].ctx) != CUDA_SUCCESS)
			continue;
		d->cuModuleUnload(ctxs[k].mod);
		ctxs[k].mod = NULL;
		d->cuCtxPopCurrent(&old);
	}
}
