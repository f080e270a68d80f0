/* Backup digests: a pause copies only the chunks of a backup that changed
 * since the last one.  Before a pause copies a region's kept range, a GPU
 * kernel (saver/kernels.cu msv_digest) digests it chunk by chunk at HBM speed; a chunk
 * whose digest equals the one taken when the backup last received it is
 * skipped (the backup already holds those bytes).  Any change to a chunk
 * changes its digest (saver/digest_mix.h), so RL weight updates between
 * pauses are always copied.  Without the kernel (no image built, module
 * load or launch failed, MEMSAVER_SKIP_UNCHANGED=0) everything is copied.
 *
 * Called from the pause thread only, on pinned regions, without the
 * regions lock.  The digest arrays live in the region (regions.h) and are
 * freed with it.  Returns 0 or a CUresult; a failure only means "copy
 * everything". */
#ifndef MSV_DIGEST_H
#define MSV_DIGEST_H

#include <cuda.h>
#include <stddef.h>

#include "regions.h"

/* Digest each region's kept range into r->digest_new (chunks of `chunk`
 * bytes) and wait.  Regions whose digests could not be taken get
 * r->digest_new == NULL. */
CUresult _msv_digest_take(struct msv_region **list, size_t n, size_t chunk);
/* Whether chunk k of r is unchanged since its backup (both digests known). */
int _msv_digest_unchanged(const struct msv_region *r, size_t k);
/* The copy of r succeeded: its new digests become the backup's. */
void _msv_digest_commit(struct msv_region *r);

#endif
