/* The real CUDA driver, as memsaver itself calls it.
 *
 * memsaver never links libcuda: it dlopen()s libcuda.so.1 and resolves the
 * entry points below with the REAL dlsym, so its own calls bypass its own
 * interposer.  Every pointer may be NULL when the driver lacks the symbol;
 * callers check.  Resolved once (_msv_driver_load); read-only afterwards.
 *
 * While memsaver calls the driver on a thread it raises that thread's busy
 * count (MSV_DRIVER_BUSY_BEGIN/END) so the CUPTI callbacks it causes are
 * recognised as its own and not recorded as the application's. */
#ifndef MSV_DRIVER_H
#define MSV_DRIVER_H

#include <cuda.h>

/* The symbol version of the first dlsym glibc had on this architecture: the
 * one to ask for on a glibc older than 2.34 (libdl's dlsym), and a
 * compatibility symbol of libc afterwards.  Each port starts at its own. */
#if defined(__x86_64__)
#define MSV_GLIBC_BASE_VERSION "GLIBC_2.2.5"
#elif defined(__aarch64__)
#define MSV_GLIBC_BASE_VERSION "GLIBC_2.17"
#else
#error "name this architecture's first glibc symbol version (objdump -T libdl.so.2 | grep dlsym)"
#endif

/* X(cuda.h name): the versioned symbol comes from cuda.h's own #defines. */
#define MSV_DRIVER_FUNCS(X)               \
	X(cuGetErrorName)                 \
	X(cuGetErrorString)               \
	X(cuGetProcAddress)               \
	X(cuCtxGetCurrent)                \
	X(cuCtxSetCurrent)                \
	X(cuCtxGetDevice)                 \
	X(cuCtxPushCurrent)               \
	X(cuCtxPopCurrent)                \
	X(cuCtxSynchronize)               \
	X(cuCtxGetLimit)                  \
	X(cuCtxSetLimit)                  \
	X(cuDeviceGetName)                \
	X(cuDeviceTotalMem)               \
	X(cuDeviceGetPCIBusId)            \
	X(cuDeviceGetAttribute)           \
	X(cuMemGetInfo)                   \
	X(cuMemAlloc)                     \
	X(cuMemFree)                      \
	X(cuMemAddressReserve)            \
	X(cuMemAddressFree)               \
	X(cuMemCreate)                    \
	X(cuMemRelease)                   \
	X(cuMemMap)                       \
	X(cuMemUnmap)                     \
	X(cuMemSetAccess)                 \
	X(cuMemGetAllocationGranularity)  \
	X(cuMemcpyDtoHAsync)              \
	X(cuMemcpyHtoDAsync)              \
	X(cuMemcpyDtoH)                   \
	X(cuMemcpyHtoD)                   \
	X(cuMemsetD8Async)                \
	X(cuMemsetD8)                     \
	X(cuModuleLoadData)               \
	X(cuModuleGetFunction)            \
	X(cuModuleUnload)                 \
	X(cuLaunchKernel)                 \
	X(cuStreamCreate)                 \
	X(cuStreamDestroy)                \
	X(cuStreamSynchronize)            \
	X(cuEventCreate)                  \
	X(cuEventRecord)                  \
	X(cuEventSynchronize)             \
	X(cuEventDestroy)                 \
	X(cuMemHostAlloc)                 \
	X(cuMemFreeHost)                  \
	X(cuMemHostRegister)              \
	X(cuMemHostUnregister)            \
	X(cuMemHostGetDevicePointer)      \
	X(cuStreamGetCaptureInfo)         \
	X(cuThreadExchangeStreamCaptureMode)

struct msv_driver {
#define MSV_X(n) __typeof__(&n) n;
	MSV_DRIVER_FUNCS(MSV_X)
#undef MSV_X
	void *handle; /* dlopen handle of libcuda.so.1 */
};

/* The real dlsym (glibc's), found with dlvsym; never NULL after load. */
extern void *(*_msv_real_dlsym)(void *, const char *);

/* Load libcuda.so.1 (RTLD_NOLOAD first: the application's copy) and resolve
 * the table.  Returns 0, or -ENOENT without a driver.  Idempotent. */
int _msv_driver_load(void);
const struct msv_driver *_msv_drv(void); /* NULL until loaded */
void _msv_real_dlsym_init(void);

/* "CUDA_ERROR_OUT_OF_MEMORY (out of memory)" for messages; static buffer per thread. */
const char *_msv_cu_error(CUresult r);

#endif
