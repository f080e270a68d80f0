/* The sharing rule: wrapped memory whose physical pages leave memsaver's
 * hands is never released by a pause.
 *
 * A pause unmaps and releases a region's physical memory and a resume maps
 * NEW memory at the same address.  When something else holds a reference
 * to the old memory — a handle the application retained
 * (cuMemRetainAllocationHandle, as NCCL does to register a buffer for a
 * captured graph), an export another process may import
 * (cuMemExportToShareableHandle), a dma-buf for a NIC
 * (cuMemGetHandleForAddressRange) — releasing it frees nothing (the
 * reference keeps it alive) and the resume duplicates it, with the holder
 * left on the old pages.  So such a region is marked shared in the region
 * table and stays resident; the trace records who shared it and from where
 * (MSV_REC_SHARED), and the report shows it as source "shared".
 *
 * A retained handle released again by the application (cuMemRelease of the
 * same handle value, as many times as it was retained) ends the sharing;
 * an export or a dma-buf never does (an importer may hold it forever).
 * Legacy CUDA IPC (cuIpcGetMemHandle) cannot work on VMM memory: the call
 * is refused, said once per call site, and recorded with the site so the
 * report names the rule that keeps that buffer unwrapped.
 * Thread-safe; takes the regions lock. */
#ifndef MSV_SHARED_H
#define MSV_SHARED_H

#include <cuda.h>

/* The region containing addr was shared (MSV_SHARE_RETAINED, _DMABUF,
 * _IPC_REFUSED), or, with addr 0, the region whose current physical handle
 * is `handle` (MSV_SHARE_EXPORTED).  caller: the return address into the
 * code that called the driver (call site).  Returns the region's category,
 * or -1 when no wrapped region matched (the memory is not memsaver's). */
int _msv_share_note(CUdeviceptr addr, CUmemGenericAllocationHandle handle, int kind, void *caller);
/* The application released `handle`: one retain fewer when it is a
 * region's handle. */
void _msv_share_release(CUmemGenericAllocationHandle handle);

#endif
