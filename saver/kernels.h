/* memsaver's device kernels (saver/kernels.cu), loaded per context for one
 * pass and unloaded after it: a paused process holds no device memory of
 * ours.  A context where loading failed is remembered and never retried (it
 * says so once), unless it failed for want of device memory (then the next
 * pass tries again); without nvcc at build time the image is empty and every
 * lookup fails, so callers always have a way without kernels.
 *
 * Called from the pause/resume thread only. */
#ifndef MSV_KERNELS_H
#define MSV_KERNELS_H

#include <cuda.h>

#include "tracer/driver.h"

/* The kernel `name` ("msv_digest", "msv_restore") of ctx, which the caller
 * has made current, and a stream of memsaver's own to launch it on (*st may
 * be NULL).  The module is loaded on first use in this pass.  0 or the
 * CUresult of what failed. */
CUresult _msv_kernel(const struct msv_driver *d, CUcontext ctx, const char *name, CUfunction *fn, CUstream *st);
/* End of a pass: every loaded module is unloaded (streams are kept). */
void _msv_kernels_unload(const struct msv_driver *d);

#endif
