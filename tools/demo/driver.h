/* demo-engine's view of the CUDA driver, reached the way libcudart 13 reaches
 * it: dlopen("libcuda.so.1"), dlsym(handle, "cuGetProcAddress_v2"), then every
 * entry point through cuGetProcAddress_v2(name, 13000, flags).  Nothing here
 * links libcuda, so an interposer of dlsym/cuGetProcAddress (libmemsaver.so)
 * sees exactly the lookups a PyTorch process makes.
 *
 * Functions return 0 on success or a negative value; the CUresult of the
 * failing call is left in drv->last.  demo_driver_open() fills a table that
 * lives as long as the process (the library handle is never closed: the
 * driver does not survive dlclose). */
#ifndef DEMO_DRIVER_H
#define DEMO_DRIVER_H

#include <cuda.h>
#include <cudaTypedefs.h>

/* The CUDA version cudart 13.0 passes to cuGetProcAddress_v2. */
#define DEMO_CUDA_VERSION 13000

struct demo_driver {
	PFN_cuGetProcAddress_v12000 getProcAddress;
	PFN_cuInit_v2000 init;
	PFN_cuDriverGetVersion_v2020 driverGetVersion;     /* optional */
	PFN_cuDeviceGetCount_v2000 deviceGetCount;
	PFN_cuDeviceGet_v2000 deviceGet;
	PFN_cuDeviceGetName_v2000 deviceGetName;           /* optional */
	PFN_cuDevicePrimaryCtxRetain_v7000 primaryCtxRetain;
	PFN_cuDevicePrimaryCtxRelease_v11000 primaryCtxRelease;
	PFN_cuCtxSetCurrent_v4000 ctxSetCurrent;
	PFN_cuMemGetInfo_v3020 memGetInfo;
	PFN_cuMemAlloc_v3020 memAlloc;
	PFN_cuMemFree_v3020 memFree;
	PFN_cuMemcpyHtoD_v3020 memcpyHtoD;
	PFN_cuMemcpyDtoH_v3020 memcpyDtoH;
	PFN_cuMemsetD8_v3020 memsetD8;
	PFN_cuStreamCreate_v2000 streamCreate;
	PFN_cuStreamDestroy_v4000 streamDestroy;
	PFN_cuStreamSynchronize_v2000 streamSynchronize;
	PFN_cuThreadExchangeStreamCaptureMode_v10010 threadExchangeStreamCaptureMode;
	PFN_cuGraphInstantiateWithFlags_v11040 graphInstantiateWithFlags;
	PFN_cuGraphExecDestroy_v10000 graphExecDestroy;
	PFN_cuGraphDestroy_v10000 graphDestroy;
	PFN_cuGetErrorName_v6000 getErrorName;
	PFN_cuGetErrorString_v6000 getErrorString;         /* optional */
	/* Resolved with CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, as a
	 * cudart built with --default-stream per-thread (and PyTorch's capture
	 * path through it) gets them: the *_ptsz entry points. */
	PFN_cuStreamBeginCapture_v10010_ptsz streamBeginCapture_ptsz;
	PFN_cuStreamEndCapture_v10000_ptsz streamEndCapture_ptsz;
	PFN_cuMemsetD8Async_v7000_ptsz memsetD8Async_ptsz;
	PFN_cuMemcpyDtoDAsync_v7000_ptsz memcpyDtoDAsync_ptsz;
	PFN_cuGraphLaunch_v10000_ptsz graphLaunch_ptsz;

	CUresult last;          /* result of the last failing call */
	char error[256];        /* why demo_driver_open failed */
};

/* Load libcuda.so.1 and resolve the table.  Returns 0, or -1 with
 * drv->error set (library missing, cuGetProcAddress_v2 missing, or a
 * required name not found). */
int demo_driver_open(struct demo_driver *drv);

/* "CUDA_ERROR_X" for r, or "CUresult N" when the driver cannot name it.
 * The string is static or the driver's. */
const char *demo_cu_name(const struct demo_driver *drv, CUresult r);

#endif
