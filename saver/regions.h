/* Releasable regions: device allocations that memsaver backs with CUDA VMM
 * (cuMemAddressReserve + cuMemCreate + cuMemMap + cuMemSetAccess) so their
 * physical memory can be released and re-created at the same address.
 *
 * The table also remembers pass-through allocations (size and category) so
 * frees and status can be answered.  One mutex guards the table and the
 * fields other threads read (resident, stale, shared, backup, pinned, doomed);
 * functions marked "locked" expect the caller to hold it
 * (_msv_regions_lock).  The lock guards the table, never GPU work: a pause
 * or resume pins its regions under the lock, then synchronizes, copies,
 * maps and unmaps without it (see saver/pause.c).  A pinned region is not
 * destroyed: a free that meets one only marks it doomed and the operation
 * destroys it when it unpins.
 * Functions at the CUDA boundary return 0 or a CUresult. */
#ifndef MSV_REGIONS_H
#define MSV_REGIONS_H

#include <cuda.h>
#include <stddef.h>
#include <stdint.h>

#include "tracer/categories.h"
#include "uthash.h"

struct msv_app_map;

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
	int backup_pinned;    /* backup is registered with the driver (saver/copy.c) */
	size_t backup_len;    /* bytes the backup buffer was made for */
	void *ahead;          /* host memory touched for the backup ahead of the first pause but
			       * not registered yet (saver/copy.c), or NULL; never with backup */
	size_t ahead_len;     /* bytes it was made for */
	size_t keep_off, keep_len; /* what a pause keeps: see _msv_region_keep */
	/* Digests of the backup's chunks (saver/digest.h): two lanes a chunk. */
	uint64_t *digest, *digest_new; /* what the backup holds; what the memory holds now */
	size_t digest_n, digest_new_n, digest_chunk, digest_off;
	int stale;            /* resident, but the backup holds the true contents (a
			       * resume failed and could not unmap it again) */
	unsigned shared;      /* 1 << enum msv_share_kind: referenced outside memsaver,
			       * never released (saver/shared.h) */
	unsigned noted;       /* 1 << enum msv_share_kind already in the trace */
	int retains;          /* handles the application retained and not yet released */
	int pinned;           /* a pause or resume works on it outside the lock */
	int doomed;           /* freed while pinned: destroyed at unpin */
	struct msv_app_map *app; /* an application's own mapping (saver/app_vmm.h), else NULL */
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
/* Physical memory for an existing reservation (resume).  The region must be
 * pinned; sets resident under the lock.  Called without the lock. */
CUresult _msv_region_map(struct msv_region *r);
/* Unmap and release the physical memory, keep the reservation.  Pinned
 * region, called without the lock; clears resident under it. */
CUresult _msv_region_unmap(struct msv_region *r);
/* Let `dev` access memory of device `owner` from now on (cuCtxEnablePeerAccess
 * seen): wrapped regions of owner get the access now and after every map, as
 * cuMemAlloc memory does.  0 or the first failing CUresult. */
CUresult _msv_regions_grant_peer(CUdevice owner, CUdevice dev);

/* Add or remove a region of an application's own mapping (locked;
 * saver/app_vmm.c). */
void _msv_regions_add_locked(struct msv_region *r);
void _msv_regions_del_locked(struct msv_region *r);

/* Put back a region taken out by _msv_regions_take (its free failed). */
void _msv_regions_put(struct msv_region *r);
/* Remember a pass-through allocation. */
void _msv_regions_note(CUdeviceptr va, size_t size, enum msv_category cat);
/* Forget `va`: returns the region removed (caller frees it with
 * _msv_region_free) or NULL when unknown or an application's own mapping
 * (saver/app_vmm.c forgets those).  A pinned region is removed from the
 * table but marked doomed and *deferred set: the pause or resume that
 * pinned it destroys it, and the caller must not touch it. */
struct msv_region *_msv_regions_take(CUdeviceptr va, int *deferred);
/* Wait for the region's context (a kernel may still use the memory), then
 * _msv_region_destroy.  A failed synchronize is returned and nothing is
 * released (cuMemFree behaves the same on a context in error). */
CUresult _msv_region_free(struct msv_region *r);
/* Release what a region holds (mapping, handle, reservation, backup) and
 * free it.  Pass-through entries are only freed; an application's own
 * mapping (unmapped by saver/app_vmm.c) loses its backup and is freed. */
CUresult _msv_region_destroy(struct msv_region *r);
/* Mark every region of list pinned (locked). */
void _msv_regions_pin(struct msv_region **list, size_t n);
/* Unpin them and destroy those freed meanwhile (takes the lock itself). */
void _msv_regions_unpin(struct msv_region **list, size_t n);
/* The wrapped region containing addr (interior pointers too), or NULL.  Locked. */
struct msv_region *_msv_regions_find(CUdeviceptr addr);

/* Set r->keep_off/keep_len for a pause under `action`.  backup keeps the
 * whole allocation.  discard and zero keep what PyTorch's caching allocator
 * may have handed to other tensors (the segment-tail rule, docs/saver.md):
 *   - segments of exactly 2 MiB (small pool) or 20 MiB (large pool for
 *     requests between 1 and 10 MiB) serve many tensors: kept whole;
 *   - other segments of 10 MiB or more are a request of R bytes rounded up
 *     to 2 MiB; the remainder (under 2 MiB - 512 bytes, split off when over
 *     1 MiB) may serve another tensor: the last 2 MiB - 512 bytes are kept;
 *   - any other size is not a caching-allocator segment shape: nothing kept.
 * An application's own mapping has no tail: it is kept whole when blocks
 * of another category may live in it (_msv_app_vmm_mixed), else nothing.
 * zero zero-fills the rest on resume.  Returns the bytes kept. */
size_t _msv_region_keep(struct msv_region *r, int action);
/* Host bytes held for r's backup: the backup, or the memory touched ahead
 * for it.  Locked. */
size_t _msv_region_host_bytes(const struct msv_region *r);
/* The part of a segment of `size` bytes that the rule above keeps. */
void _msv_segment_shared(size_t size, size_t *off, size_t *len);

/* Granularity of the device (cached); 2 MiB when unknown. */
size_t _msv_granularity(CUdevice dev);

#endif
