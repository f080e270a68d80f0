/* Resolution of the driver table; see driver.h for the contract. */
#include "driver.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

/* Resolve through cuGetProcAddress_v2 only: base names without the _v2/_ptsz
 * suffix, the driver picks the version for DEMO_CUDA_VERSION, as cudart does.
 * A required name that is missing fails the whole open (a driver older than
 * the toolkit would be the usual reason). */
static int resolve(struct demo_driver *drv, const char *name, void **slot,
		   cuuint64_t flags, int required)
{
	CUdriverProcAddressQueryResult status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
	CUresult r;

	*slot = NULL;
	r = drv->getProcAddress(name, slot, DEMO_CUDA_VERSION, flags, &status);
	if (r == CUDA_SUCCESS && status == CU_GET_PROC_ADDRESS_SUCCESS && *slot)
		return 0;
	*slot = NULL;
	if (!required)
		return 0;
	drv->last = r;
	snprintf(drv->error, sizeof(drv->error),
		 "cuGetProcAddress_v2(\"%s\", %d, %s) failed: CUresult %d, status %d",
		 name, DEMO_CUDA_VERSION,
		 flags ? "PER_THREAD_DEFAULT_STREAM" : "DEFAULT", (int)r, (int)status);
	return -1;
}

int demo_driver_open(struct demo_driver *drv)
{
	const cuuint64_t def = CU_GET_PROC_ADDRESS_DEFAULT;
	const cuuint64_t ptds = CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;
	void *lib;

	memset(drv, 0, sizeof(*drv));
	lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
	if (!lib) {
		snprintf(drv->error, sizeof(drv->error), "dlopen(libcuda.so.1) failed: %s", dlerror());
		return -1;
	}
	/* The handle-based lookup is the one the interposer has to catch. */
	*(void **)&drv->getProcAddress = dlsym(lib, "cuGetProcAddress_v2");
	if (!drv->getProcAddress) {
		snprintf(drv->error, sizeof(drv->error),
			 "dlsym(libcuda.so.1, cuGetProcAddress_v2) failed: %s", dlerror());
		return -1;
	}

#define REQ(field, name, fl) \
	if (resolve(drv, name, (void **)&drv->field, fl, 1)) \
		return -1
#define OPT(field, name) \
	(void)resolve(drv, name, (void **)&drv->field, def, 0)

	REQ(getErrorName, "cuGetErrorName", def);
	OPT(getErrorString, "cuGetErrorString");
	REQ(init, "cuInit", def);
	OPT(driverGetVersion, "cuDriverGetVersion");
	REQ(deviceGetCount, "cuDeviceGetCount", def);
	REQ(deviceGet, "cuDeviceGet", def);
	OPT(deviceGetName, "cuDeviceGetName");
	REQ(primaryCtxRetain, "cuDevicePrimaryCtxRetain", def);
	REQ(primaryCtxRelease, "cuDevicePrimaryCtxRelease", def);
	REQ(ctxSetCurrent, "cuCtxSetCurrent", def);
	REQ(memGetInfo, "cuMemGetInfo", def);
	REQ(memAlloc, "cuMemAlloc", def);
	REQ(memFree, "cuMemFree", def);
	REQ(memcpyHtoD, "cuMemcpyHtoD", def);
	REQ(memcpyDtoH, "cuMemcpyDtoH", def);
	REQ(memsetD8, "cuMemsetD8", def);
	REQ(streamCreate, "cuStreamCreate", def);
	REQ(streamDestroy, "cuStreamDestroy", def);
	REQ(streamSynchronize, "cuStreamSynchronize", def);
	REQ(threadExchangeStreamCaptureMode, "cuThreadExchangeStreamCaptureMode", def);
	REQ(graphInstantiateWithFlags, "cuGraphInstantiateWithFlags", def);
	REQ(graphExecDestroy, "cuGraphExecDestroy", def);
	REQ(graphDestroy, "cuGraphDestroy", def);
	REQ(streamBeginCapture_ptsz, "cuStreamBeginCapture", ptds);
	REQ(streamEndCapture_ptsz, "cuStreamEndCapture", ptds);
	REQ(memsetD8Async_ptsz, "cuMemsetD8Async", ptds);
	REQ(memcpyDtoDAsync_ptsz, "cuMemcpyDtoDAsync", ptds);
	REQ(graphLaunch_ptsz, "cuGraphLaunch", ptds);
#undef REQ
#undef OPT
	return 0;
}

const char *demo_cu_name(const struct demo_driver *drv, CUresult r)
{
	static __thread char buf[32];
	const char *s = NULL;

	if (drv->getErrorName && drv->getErrorName(r, &s) == CUDA_SUCCESS && s)
		return s;
	snprintf(buf, sizeof(buf), "CUresult %d", (int)r);
	return buf;
}
