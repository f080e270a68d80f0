/* Bulk copies between device regions and host backups: chunked
 * asynchronous copies spread over several streams per context, so the
 * copy engines of both directions stay busy.  Host buffers
 * (saver/host_backup.h) are made on the first pause of a region, by
 * several threads while the copies into the pieces already prepared run
 * (or ahead of the pause, MEMSAVER_PREPIN), and kept for the next one; when
 * registration fails the copy falls back to pageable memory
 * (synchronous copies), and so it does when no copy stream can be created.
 * Called from the pause/resume thread only, on pinned regions, WITHOUT the
 * regions lock (they take it for the backup pointer). */
#ifndef MSV_COPY_H
#define MSV_COPY_H

#include <cuda.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "regions.h"

/* Device -> host of each region's kept range (keep_off, keep_len; backup
 * buffers allocated as needed), then wait.  Chunks unchanged since the
 * region's last backup are skipped (saver/digest.h).  *copied and *skipped
 * get the bytes of each.  0 or the first failing CUresult. */
CUresult _msv_copy_out(struct msv_region **list, size_t n, uint64_t *copied, uint64_t *skipped);
/* Host -> device from each region's backup into its kept range; returns
 * once issued (see _msv_copy_wait).  by_kernel: pinned backups are read by
 * memsaver's kernel (saver/kernels.cu) instead of the copy engines, which
 * the driver keeps busy for a while after a pause clearing the memory it
 * released (half the restore rate on an H200; docs/saver.md); chunks the
 * kernel cannot take, and every chunk without the kernel, go by the copy
 * engines. */
CUresult _msv_copy_in_async(struct msv_region **list, size_t n, int by_kernel);
/* Zero-fill each region up to its kept tail (nothing when it is kept
 * whole); returns once issued. */
CUresult _msv_copy_zero_async(struct msv_region **list, size_t n);
/* Wait for every issued copy and fill (memsaver's kernels are unloaded
 * then); the first failure, if any. */
CUresult _msv_copy_wait(void);
/* Pin the host backup of the region at va in the background (its keep_len
 * must be set); a pause that comes first pins it itself.  Never blocks. */
void _msv_copy_prepin(CUdeviceptr va);
/* Called on every allocation: background pinning waits for a quiet moment. */
void _msv_copy_note_alloc(void);
/* Called on every launch, copy and memset: background pinning runs only
 * while the engine launches nothing, since registering host memory holds
 * driver locks that a launch would wait for.  A relaxed load; the store
 * only when the pinner has cleared the flag, so a decoding engine's
 * launches leave the cache line shared. */
extern _Atomic int _msv_copy_launched;
static inline void _msv_copy_note_launch(void)
{
	if (!atomic_load_explicit(&_msv_copy_launched, memory_order_relaxed))
		atomic_store_explicit(&_msv_copy_launched, 1, memory_order_relaxed);
}

#endif
