/* App-owned VMM: physical memory the application itself creates and maps
 * (cuMemCreate + cuMemMap, as PyTorch's expandable segments, vLLM's
 * CuMemAllocator and NCCL do), classified and released like memsaver's own
 * regions.
 *
 * Two tables, one lock (the regions lock, saver/regions.h):
 *   - the handle table: the handle value the application holds -> the
 *     current physical handle, its size and allocation properties, the
 *     application's reference count (cuMemCreate + cuMemRetainAllocationHandle
 *     - cuMemRelease), its mappings and its category;
 *   - each mapping (cuMemMap of va, size, offset) is a region of the region
 *     table (struct msv_region with ->app set), so pause.c and copy.c back
 *     it up, unmap and re-map it like any region.  Its access descriptors
 *     are those the application set (cuMemSetAccess), re-applied after
 *     every map.
 * A pause unmaps a mapping and, once no mapping of the handle is left
 * mapped, releases the physical memory; a resume creates new physical
 * memory with the original's allocation properties and maps it at the same
 * address and offset.  The application keeps its handle value: every entry
 * point that takes a handle (cuMemMap, cuMemRelease, cuMemExportToShareableHandle,
 * cuMemGetAllocationPropertiesFromHandle) translates it, and
 * cuMemRetainAllocationHandle returns it.  The application's references are
 * counted here, not in the driver: the driver sees one reference per
 * physical handle plus one per mapping, so a released and re-created handle
 * needs no bookkeeping of retains in the driver.
 *
 * Ownership: entries and mapping regions are created and freed here only.
 * Handles of the application that memsaver did not see created (created
 * before the tracer started, imported) pass through untouched.
 * Functions at the CUDA boundary return 0 or a CUresult; all are
 * thread-safe and take the regions lock themselves unless marked locked. */
#ifndef MSV_APP_VMM_H
#define MSV_APP_VMM_H

#include <cuda.h>
#include <stddef.h>

#include "regions.h"
#include "tracer/tracer.h"

/* cuMemCreate by the application returned `h`: remember it.  -EEXIST when
 * h equals a handle value the application still holds for other memory
 * (the driver reused a value that memsaver released in a pause): the caller
 * must create again and give the application another value. */
int _msv_app_vmm_created(CUmemGenericAllocationHandle h, size_t size, const CUmemAllocationProp *prop,
			 unsigned long long flags);
/* Whether h is an application handle memsaver translates. */
int _msv_app_vmm_known(CUmemGenericAllocationHandle h);

/* cuMemMap(va, size, off, h, flags) by the application, h known: maps the
 * current physical memory and registers the mapping as a region of category
 * d->cat (or the category the handle already has, written back into d->cat);
 * *wrapped: whether pauses release it (policy action not keep).  A handle
 * whose memory is released (paused) cannot be mapped again until resumed:
 * CUDA_ERROR_ILLEGAL_STATE. */
CUresult _msv_app_vmm_map_app(CUdeviceptr va, size_t size, size_t off, CUmemGenericAllocationHandle h,
			      unsigned long long flags, struct msv_decision *d, int *wrapped);
/* cuMemUnmap(va, size) by the application.  Returns 1 with *rc set when
 * the range held mappings of known handles (each gets a FREE record),
 * 0 when it is not memsaver's (the caller passes the call through).  A
 * range a pause or resume is working on waits for it. */
int _msv_app_vmm_unmap_app(CUdeviceptr va, size_t size, CUresult *rc);
/* cuMemRelease(h) by the application: 1 with *rc set when h is (or was)
 * memsaver's to answer, 0 to pass through.  A handle released more often
 * than it was created and retained gets CUDA_ERROR_INVALID_VALUE, as from
 * the driver. */
int _msv_app_vmm_release_app(CUmemGenericAllocationHandle h, CUresult *rc);
/* cuMemRetainAllocationHandle(addr) inside a known mapping: 1 with the
 * application's handle value in *h (one reference more; the handle is
 * shared until released again, saver/shared.h), else 0.  caller: the
 * call site for the trace. */
int _msv_app_vmm_retain_app(void *addr, CUmemGenericAllocationHandle *h, void *caller);
/* cuMemGetAllocationPropertiesFromHandle: 1 with *rc when h is known. */
int _msv_app_vmm_props_app(CUmemAllocationProp *prop, CUmemGenericAllocationHandle h, CUresult *rc);
/* cuMemExportToShareableHandle of a known handle: exports the current
 * physical memory and marks the handle shared for good (saver/shared.h).
 * 1 with *rc when h is known. */
int _msv_app_vmm_export_app(void *sh, CUmemGenericAllocationHandle h, CUmemAllocationHandleType type,
			    unsigned long long flags, void *caller, CUresult *rc);
/* cuMemSetAccess succeeded on [va, va + size): remember the descriptors
 * for the mappings in the range. */
void _msv_app_vmm_access(CUdeviceptr va, size_t size, const CUmemAccessDesc *desc, size_t count);

/* For saver/regions.c, on a pinned mapping region, without the lock:
 * map physical memory (the current one, or new memory with the original's
 * properties when it was released) and re-apply the access descriptors;
 * *h gets the physical handle. */
CUresult _msv_app_vmm_map(struct msv_region *r, CUmemGenericAllocationHandle *h);
/* Unmap; release the physical memory once no mapping of it is mapped. */
CUresult _msv_app_vmm_unmap(struct msv_region *r);
/* Whether blocks of another category may live in the mapping (locked):
 * a mapping whose next page was mapped for another category.  discard and
 * zero keep such a mapping whole (the segment-tail rule of expandable
 * segments, docs/saver.md). */
int _msv_app_vmm_mixed(const struct msv_region *r);

#endif
