/* Releasable regions: device allocations that memsaver backs with CUDA VMM
 * (cuMemAddressReserve + cuMemCreate + cuMemMap + cuMemSetAccess) so their
 * physical memory can be released and re-created at the same address.
 *
 * The table also remembers pass-through allocations (size and category) so
 * frees and status can be answered.  One mutex guards the table; functions
 * marked "locked" expect the caller to hold it (_msv_regions_lock).
 * Functions at the CUDA boundary return 0 or a CUresult. */
#ifndef MSV_REGIONS_H
#define MSV_REGIONS_H

#include <cuda.h>
#include <stddef.h>
#include <stdint.h>

#include "tracer/categories.h"
#include "uthash.h"

struct msv_region {
	CUdeviceptr va;       /* reservation start = the pointer handed out */
	size_t size;          /* bytes the application asked for */
	size_t mapped;        /* size rounded up to the granularity */
	CUmemGenericAllocationHandle handle; /* valid while resident */
	CUdevice device;
	CUcontext ctx;        /* context current at allocation */
	enum msv_category cat;
	int wrapped;          /* 1 = VMM region; 0 = pass-through allocation */
	int resident;         /* physical memory mapped */
	void *backup;         /* host copy of [keep_off, keep_off + keep_len), or NULL */
	int backup_pinned;    /* backup came from cuMemHostAlloc */
	size_t keep_off, keep_len; /* what a pause keeps: see _msv_region_keep */
	UT_hash_handle hh;
};

void _msv_regions_lock(void);
void _msv_regions_unlock(void);
/* Head of the table for iteration (locked). */
struct msv_region *_msv_regions_all(void);

/* Reserve, create, map and grant access for `size` bytes on the current
 * context's device; registers the region.  0 or the failing CUresult (then
 * nothing is left behind). */
CUresult _msv_region_create(size_t size, enum msv_category cat, CUdeviceptr *out, size_t *mapped);
/* Physical memory for an existing reservation (resume).  Locked. */
CUresult _msv_region_map(struct msv_region *r);
/* Unmap and release the physical memory, keep the reservation.  Locked. */
CUresult _msv_region_unmap(struct msv_region *r);

/* Remember a pass-through allocation. */
void _msv_regions_note(CUdeviceptr va, size_t size, enum msv_category cat);
/* Forget `va`: returns the region removed (caller frees it with
 * _msv_region_destroy) or NULL when unknown. */
struct msv_region *_msv_regions_take(CUdeviceptr va);
/* Release what a region holds (mapping, handle, reservation, backup) and
 * free it.  Pass-through entries are only freed. */
CUresult _msv_region_destroy(struct msv_region *r);
/* The wrapped region containing addr (interior pointers too), or NULL.  Locked. */
struct msv_region *_msv_regions_find(CUdeviceptr addr);

/* Set r->keep_off/keep_len for a pause under `action`: backup keeps the
 * whole allocation; discard keeps the segment tail a caching allocator may
 * have handed to other tensors (PyTorch rounds segments over 20 MiB up to
 * 2 MiB and splits the rest off for later tensors, so the last 2 MiB of
 * such a segment may hold live data of another category; its 2 MiB and
 * 20 MiB segments are shared outright and are kept whole).  zero keeps
 * nothing: it promises zeros.  Returns the bytes kept. */
size_t _msv_region_keep(struct msv_region *r, int action);

/* Granularity of the device (cached); 2 MiB when unknown. */
size_t _msv_granularity(CUdevice dev);

#endif
