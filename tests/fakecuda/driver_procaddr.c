/* cuGetProcAddress[_v2] of the libcuda double: resolve BY NAME, VERSION and
 * FLAGS as libcudart asks, from one table.
 *
 * A row is one variant of a driver function: the base name callers ask for,
 * the CUDA version that introduced the variant, the symbol returned for
 * CU_GET_PROC_ADDRESS_DEFAULT / LEGACY_STREAM and the one returned for
 * PER_THREAD_DEFAULT_STREAM (the _ptsz/_ptds form, or the same symbol when
 * the function takes no stream).  For a request (name, version, flags) the
 * row with the highest version <= the requested one wins; a name whose rows
 * are all newer gives CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT.  The
 * 32-bit legacy v1 functions are not exported, so e.g. ("cuMemAlloc", 3000)
 * is VERSION_NOT_SUFFICIENT.
 *
 * FAKECUDA_TRACE_PROCADDR=1 prints every request and its answer on stderr
 * (the versions in this table are the ones libcudart 13 asks with). */
#include "driver_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct proc {
	const char *base;
	int version;
	const char *sym;
	void *fn;
	uint32_t cbid;
	const char *pt_sym;
	void *pt_fn;
	uint32_t pt_cbid;
};

#define P(base, ver, sym, pt)                                                     \
	{ #base, ver, #sym, (void *)sym, CUPTI_DRIVER_TRACE_CBID_##sym, #pt, (void *)pt, \
	  CUPTI_DRIVER_TRACE_CBID_##pt },
#define P1(base, ver, sym) P(base, ver, sym, sym)

static const struct proc g_procs[] = {
	P1(cuInit, 2000, cuInit)
	P1(cuDriverGetVersion, 2020, cuDriverGetVersion)
	P1(cuGetErrorName, 6000, cuGetErrorName)
	P1(cuGetErrorString, 6000, cuGetErrorString)
	P1(cuGetProcAddress, 11030, cuGetProcAddress)
	P1(cuGetProcAddress, 12000, cuGetProcAddress_v2)
	P1(cuDeviceGet, 2000, cuDeviceGet)
	P1(cuDeviceGetCount, 2000, cuDeviceGetCount)
	P1(cuDeviceGetName, 2000, cuDeviceGetName)
	P1(cuDeviceTotalMem, 3020, cuDeviceTotalMem_v2)
	P1(cuDeviceGetAttribute, 2000, cuDeviceGetAttribute)
	P1(cuDevicePrimaryCtxRetain, 7000, cuDevicePrimaryCtxRetain)
	P1(cuDevicePrimaryCtxRelease, 7000, cuDevicePrimaryCtxRelease)
	P1(cuDevicePrimaryCtxRelease, 11000, cuDevicePrimaryCtxRelease_v2)
	P1(cuDevicePrimaryCtxReset, 7000, cuDevicePrimaryCtxReset)
	P1(cuDevicePrimaryCtxReset, 11000, cuDevicePrimaryCtxReset_v2)
	P1(cuDevicePrimaryCtxGetState, 7000, cuDevicePrimaryCtxGetState)
	P1(cuDevicePrimaryCtxSetFlags, 11000, cuDevicePrimaryCtxSetFlags_v2)
	P1(cuCtxCreate, 3020, cuCtxCreate_v2)
	P1(cuCtxCreate, 11040, cuCtxCreate_v3)
	P1(cuCtxCreate, 12050, cuCtxCreate_v4)
	P1(cuCtxDestroy, 2000, cuCtxDestroy)
	P1(cuCtxDestroy, 4000, cuCtxDestroy_v2)
	P1(cuCtxSetCurrent, 4000, cuCtxSetCurrent)
	P1(cuCtxGetCurrent, 4000, cuCtxGetCurrent)
	P1(cuCtxGetDevice, 2000, cuCtxGetDevice)
	P1(cuCtxSynchronize, 2000, cuCtxSynchronize)
	P1(cuCtxPushCurrent, 2000, cuCtxPushCurrent)
	P1(cuCtxPushCurrent, 4000, cuCtxPushCurrent_v2)
	P1(cuCtxPopCurrent, 2000, cuCtxPopCurrent)
	P1(cuCtxPopCurrent, 4000, cuCtxPopCurrent_v2)
	P1(cuCtxGetLimit, 3010, cuCtxGetLimit)
	P1(cuCtxSetLimit, 3010, cuCtxSetLimit)
	P1(cuCtxGetStreamPriorityRange, 5050, cuCtxGetStreamPriorityRange)
	P1(cuMemGetInfo, 3020, cuMemGetInfo_v2)
	P1(cuCheckpointProcessGetRestoreThreadId, 12080, cuCheckpointProcessGetRestoreThreadId)
	P1(cuCheckpointProcessGetState, 12080, cuCheckpointProcessGetState)
	P1(cuCheckpointProcessLock, 12080, cuCheckpointProcessLock)
	P1(cuCheckpointProcessCheckpoint, 12080, cuCheckpointProcessCheckpoint)
	P1(cuCheckpointProcessRestore, 12080, cuCheckpointProcessRestore)
	P1(cuCheckpointProcessUnlock, 12080, cuCheckpointProcessUnlock)
	P1(cuMemAlloc, 3020, cuMemAlloc_v2)
	P1(cuMemFree, 3020, cuMemFree_v2)
	P1(cuMemAllocPitch, 3020, cuMemAllocPitch_v2)
	P1(cuMemAllocManaged, 6000, cuMemAllocManaged)
	P(cuMemAllocFromPoolAsync, 11020, cuMemAllocFromPoolAsync, cuMemAllocFromPoolAsync_ptsz)
	P(cuMemAllocAsync, 11020, cuMemAllocAsync, cuMemAllocAsync_ptsz)
	P(cuMemFreeAsync, 11020, cuMemFreeAsync, cuMemFreeAsync_ptsz)
	P1(cuMemGetAddressRange, 3020, cuMemGetAddressRange_v2)
	P1(cuPointerGetAttribute, 4000, cuPointerGetAttribute)
	P1(cuPointerGetAttributes, 7000, cuPointerGetAttributes)
	P1(cuIpcGetMemHandle, 4010, cuIpcGetMemHandle)
	P1(cuMemHostAlloc, 2020, cuMemHostAlloc)
	P1(cuMemAllocHost, 3020, cuMemAllocHost_v2)
	P1(cuMemFreeHost, 2000, cuMemFreeHost)
	P1(cuMemHostRegister, 6050, cuMemHostRegister_v2)
	P1(cuMemHostUnregister, 4000, cuMemHostUnregister)
	P1(cuMemHostGetDevicePointer, 3020, cuMemHostGetDevicePointer_v2)
	P1(cuMemAddressReserve, 10020, cuMemAddressReserve)
	P1(cuMemAddressFree, 10020, cuMemAddressFree)
	P1(cuMemCreate, 10020, cuMemCreate)
	P1(cuMemRelease, 10020, cuMemRelease)
	P1(cuMemMap, 10020, cuMemMap)
	P1(cuMemUnmap, 10020, cuMemUnmap)
	P1(cuMemSetAccess, 10020, cuMemSetAccess)
	P1(cuMemGetAccess, 10020, cuMemGetAccess)
	P1(cuMemRetainAllocationHandle, 11000, cuMemRetainAllocationHandle)
	P1(cuMemExportToShareableHandle, 10020, cuMemExportToShareableHandle)
	P1(cuMemGetHandleForAddressRange, 11070, cuMemGetHandleForAddressRange)
	P1(cuMemGetAllocationGranularity, 10020, cuMemGetAllocationGranularity)
	P1(cuMemGetAllocationPropertiesFromHandle, 10020, cuMemGetAllocationPropertiesFromHandle)
	P(cuMemcpyHtoD, 3020, cuMemcpyHtoD_v2, cuMemcpyHtoD_v2_ptds)
	P(cuMemcpyDtoH, 3020, cuMemcpyDtoH_v2, cuMemcpyDtoH_v2_ptds)
	P(cuMemcpyDtoD, 3020, cuMemcpyDtoD_v2, cuMemcpyDtoD_v2_ptds)
	P(cuMemcpyHtoDAsync, 3020, cuMemcpyHtoDAsync_v2, cuMemcpyHtoDAsync_v2_ptsz)
	P(cuMemcpyDtoHAsync, 3020, cuMemcpyDtoHAsync_v2, cuMemcpyDtoHAsync_v2_ptsz)
	P(cuMemcpyDtoDAsync, 3020, cuMemcpyDtoDAsync_v2, cuMemcpyDtoDAsync_v2_ptsz)
	P(cuMemcpy, 4000, cuMemcpy, cuMemcpy_ptds)
	P(cuMemcpyAsync, 4000, cuMemcpyAsync, cuMemcpyAsync_ptsz)
	P(cuMemsetD8, 3020, cuMemsetD8_v2, cuMemsetD8_v2_ptds)
	P(cuMemsetD16, 3020, cuMemsetD16_v2, cuMemsetD16_v2_ptds)
	P(cuMemsetD32, 3020, cuMemsetD32_v2, cuMemsetD32_v2_ptds)
	P(cuMemsetD8Async, 3020, cuMemsetD8Async, cuMemsetD8Async_ptsz)
	P(cuMemsetD16Async, 3020, cuMemsetD16Async, cuMemsetD16Async_ptsz)
	P(cuMemsetD32Async, 3020, cuMemsetD32Async, cuMemsetD32Async_ptsz)
	P1(cuStreamCreate, 2000, cuStreamCreate)
	P1(cuStreamCreateWithPriority, 5050, cuStreamCreateWithPriority)
	P1(cuStreamDestroy, 2000, cuStreamDestroy)
	P1(cuStreamDestroy, 4000, cuStreamDestroy_v2)
	P(cuStreamSynchronize, 2000, cuStreamSynchronize, cuStreamSynchronize_ptsz)
	P(cuStreamQuery, 2000, cuStreamQuery, cuStreamQuery_ptsz)
	P(cuStreamWaitEvent, 3020, cuStreamWaitEvent, cuStreamWaitEvent_ptsz)
	P1(cuEventCreate, 2000, cuEventCreate)
	P1(cuEventDestroy, 2000, cuEventDestroy)
	P1(cuEventDestroy, 4000, cuEventDestroy_v2)
	P(cuEventRecord, 2000, cuEventRecord, cuEventRecord_ptsz)
	P1(cuEventQuery, 2000, cuEventQuery)
	P1(cuEventSynchronize, 2000, cuEventSynchronize)
	P1(cuEventElapsedTime, 2000, cuEventElapsedTime)
	P1(cuEventElapsedTime, 12080, cuEventElapsedTime_v2)
	P(cuStreamBeginCapture, 10000, cuStreamBeginCapture, cuStreamBeginCapture_ptsz)
	P(cuStreamBeginCapture, 10010, cuStreamBeginCapture_v2, cuStreamBeginCapture_v2_ptsz)
	P(cuStreamEndCapture, 10000, cuStreamEndCapture, cuStreamEndCapture_ptsz)
	P(cuStreamIsCapturing, 10000, cuStreamIsCapturing, cuStreamIsCapturing_ptsz)
	P(cuStreamGetCaptureInfo, 10010, cuStreamGetCaptureInfo, cuStreamGetCaptureInfo_ptsz)
	P(cuStreamGetCaptureInfo, 11030, cuStreamGetCaptureInfo_v2, cuStreamGetCaptureInfo_v2_ptsz)
	P(cuStreamGetCaptureInfo, 12030, cuStreamGetCaptureInfo_v3, cuStreamGetCaptureInfo_v3_ptsz)
	P1(cuThreadExchangeStreamCaptureMode, 10010, cuThreadExchangeStreamCaptureMode)
	P1(cuGraphCreate, 10000, cuGraphCreate)
	P1(cuGraphDestroy, 10000, cuGraphDestroy)
	P1(cuGraphGetNodes, 10000, cuGraphGetNodes)
	P1(cuGraphInstantiate, 10000, cuGraphInstantiate)
	P1(cuGraphInstantiate, 11000, cuGraphInstantiate_v2)
	P1(cuGraphInstantiate, 12000, cuGraphInstantiateWithFlags)
	P1(cuGraphInstantiateWithFlags, 11040, cuGraphInstantiateWithFlags)
	P(cuGraphInstantiateWithParams, 12000, cuGraphInstantiateWithParams,
	  cuGraphInstantiateWithParams_ptsz)
	P1(cuGraphExecDestroy, 10000, cuGraphExecDestroy)
	P(cuGraphLaunch, 10000, cuGraphLaunch, cuGraphLaunch_ptsz)
	P1(cuModuleLoadData, 2000, cuModuleLoadData)
	P1(cuModuleGetFunction, 2000, cuModuleGetFunction)
	P(cuLaunchKernel, 4000, cuLaunchKernel, cuLaunchKernel_ptsz)
	P1(cuModuleLoadDataEx, 2010, cuModuleLoadDataEx)
	P1(cuModuleLoadFatBinary, 2000, cuModuleLoadFatBinary)
	P1(cuModuleUnload, 2000, cuModuleUnload)
	P1(cuLibraryLoadData, 12000, cuLibraryLoadData)
	P1(cuLibraryUnload, 12000, cuLibraryUnload)
};

#define NPROCS (sizeof(g_procs) / sizeof(g_procs[0]))

static CUresult proc_lookup(const char *symbol, void **pfn, int version, cuuint64_t flags,
			    CUdriverProcAddressQueryResult *status)
{
	const struct proc *best = NULL;
	int known = 0;
	if (status)
		*status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
	if (!symbol || !pfn)
		return CUDA_ERROR_INVALID_VALUE;
	if (flags & ~(cuuint64_t)(CU_GET_PROC_ADDRESS_LEGACY_STREAM |
				  CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM))
		return CUDA_ERROR_INVALID_VALUE;
	*pfn = NULL;
	for (size_t i = 0; i < NPROCS; i++) {
		if (strcmp(g_procs[i].base, symbol) || _fc_ckpt_hidden(symbol))
			continue;
		known = 1;
		if (g_procs[i].version <= version && (!best || g_procs[i].version > best->version))
			best = &g_procs[i];
	}
	if (getenv("FAKECUDA_TRACE_PROCADDR"))
		fprintf(stderr, "fakecuda: cuGetProcAddress(%s, %d, %llu): %s\n", symbol, version,
			(unsigned long long)flags,
			best ? ((flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) ? best->pt_sym
											 : best->sym)
			     : known ? "version not sufficient" : "not found");
	if (!best) {
		if (status && known)
			*status = CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT;
		return CUDA_ERROR_NOT_FOUND;
	}
	*pfn = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) ? best->pt_fn : best->fn;
	if (status)
		*status = CU_GET_PROC_ADDRESS_SUCCESS;
	return CUDA_SUCCESS;
}

FC_EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion,
				       cuuint64_t flags, CUdriverProcAddressQueryResult *symbolStatus)
TRACE(cuGetProcAddress_v2, proc_lookup(symbol, pfn, cudaVersion, flags, symbolStatus), symbol,
      pfn, cudaVersion, flags, symbolStatus)

FC_EXPORT CUresult cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion,
				    cuuint64_t flags)
TRACE(cuGetProcAddress, proc_lookup(symbol, pfn, cudaVersion, flags, NULL), symbol, pfn,
      cudaVersion, flags)

FC_EXPORT uint64_t fakecuda_call_count(const char *name)
{
	uint8_t seen[CUPTI_DRIVER_TRACE_CBID_SIZE];
	uint64_t sum = 0;
	if (!name)
		return 0;
	memset(seen, 0, sizeof(seen));
	for (size_t i = 0; i < NPROCS; i++) {
		const struct proc *p = &g_procs[i];
		if (_fc_name_matches(name, p->sym) && !seen[p->cbid]) {
			seen[p->cbid] = 1;
			sum += _fc_calls_by_cbid(p->cbid);
		}
		if (_fc_name_matches(name, p->pt_sym) && !seen[p->pt_cbid]) {
			seen[p->pt_cbid] = 1;
			sum += _fc_calls_by_cbid(p->pt_cbid);
		}
	}
	return sum;
}
