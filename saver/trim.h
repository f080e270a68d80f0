/* Context trim: while paused, lower the context limits whose memory the
 * driver gives back (the per-thread stack reservation is most of a CUDA
 * context: 526 -> 262 MiB on an H200 with CU_LIMIT_STACK_SIZE = 0), and
 * restore them on resume before anything else runs.  Policy "context":
 * "trim" (default) or "keep".  Called with the pause lock held. */
#ifndef MSV_TRIM_H
#define MSV_TRIM_H

#include <stddef.h>
#include <stdint.h>

#include <cuda.h>

#include "regions.h"

/* Trim the contexts owning the regions (their limits are remembered);
 * *trimmed gets the device bytes it freed (may be 0). */
void _msv_trim_context(struct msv_region **list, size_t n, uint64_t *trimmed);
/* Restore every trimmed limit.  Safe when nothing was trimmed.  *need gets
 * the device bytes the trims had freed.  A context whose limits cannot be
 * restored (out of memory) stays trimmed, its saved values kept; the first
 * failing CUresult is returned and the resume must fail. */
CUresult _msv_untrim_context(uint64_t *need);
/* Trim again what the last _msv_untrim_context restored (a resume that
 * failed later). */
void _msv_retrim_context(void);

#endif
