/* Host memory for backups.  A buffer is anonymous memory with transparent
 * huge pages, touched, then registered with the driver (page-locked, so
 * copies into it run at the copy engines' pace) in pieces of
 * _msv_host_piece() bytes, each registered on its own.  Pieces let several
 * threads prepare one buffer at once, and let a pause copy into the pieces
 * that are ready while the others are still being prepared.
 *
 * Measured on an H200 host (bench/pin_bw.c, 4 GiB): one thread, touch and
 * register 744-820 ms; 8 threads 163-198 ms, 16 threads 149-180 ms;
 * cuMemHostAlloc 2712 ms.  The touch scales with threads, the registration
 * (about 100 ms for 4 GiB) does not: the driver serializes it.
 *
 * A piece whose registration fails stays pageable; _msv_host_prep_finish then
 * unregisters the buffer's other pieces, so a buffer is either registered
 * whole (pinned) or not at all.  A copy must not span two pieces: pieces are
 * a whole number of copy chunks (MEMSAVER_CHUNK). */
#ifndef MSV_HOST_BACKUP_H
#define MSV_HOST_BACKUP_H

#include <cuda.h>
#include <stddef.h>

/* Bytes of one piece: the copy chunk times the smallest count reaching 64 MiB. */
size_t _msv_host_piece(void);

/* A buffer for a backup of len bytes, mapped and touched by the calling
 * thread but not registered: no driver call, so it can be made while the
 * engine launches (the background preparation, saver/copy.c).  NULL when out
 * of host memory or above the reserve (as _msv_host_prep_start).  Released
 * by _msv_host_free(buf, len, 0), or handed to _msv_host_prep_start. */
void *_msv_host_touch(size_t len);

/* Preparing the buffers of n backups of lens[i] bytes (0: none wanted),
 * registered while ctxs[i] is current, on up to `threads` threads. */
struct msv_host_prep;
/* Maps every buffer and starts the threads; NULL when out of host memory
 * (nothing left behind): also when the buffers would leave less than
 * MEMSAVER_HOST_RESERVE of the host's available memory (MemAvailable), so
 * that touching them cannot wake the OOM killer in the engine's process
 * (_msv_host_shortfall says by how much).  bufs (may be NULL): bufs[i], when
 * set, is a buffer from _msv_host_touch(lens[i]) to register instead of a new
 * one; it is p's from a successful start on, and stays the caller's when the
 * start fails.  With no thread started the caller's thread prepares
 * everything in _msv_host_prep_wait / _end. */
struct msv_host_prep *_msv_host_prep_start(const size_t *lens, const CUcontext *ctxs, void *const *bufs, size_t n,
					   int threads);
/* The buffer of item i (NULL when none was wanted). */
void *_msv_host_prep_buf(struct msv_host_prep *p, size_t i);
/* Wait until the piece holding byte `off` of item i is prepared: 1 when it
 * is registered (asynchronous copies may use it), 0 when pageable. */
int _msv_host_prep_wait(struct msv_host_prep *p, size_t i, size_t off);
/* Wait for every piece, stop the threads and free p.  pinned[i] gets 1 when
 * item i's buffer is registered whole, 0 when it is not registered at all.
 * Call only when no copy into a buffer is in flight.  The buffers are the
 * caller's (_msv_host_free). */
struct msv_prep_stats {
	unsigned long long bytes, touch_ns, register_ns; /* the times summed over threads */
	unsigned long long adopted_bytes;                 /* of bytes, touched before (bufs) */
	int threads;
};
void _msv_host_prep_finish(struct msv_host_prep *p, int *pinned, struct msv_prep_stats *st);

/* The last refusal of _msv_host_prep_start on this thread for lack of host
 * memory: the bytes it needed and the bytes available above the reserve.
 * 0 when it was not refused for that.  Reading clears it. */
int _msv_host_shortfall(unsigned long long *need, unsigned long long *avail);

/* Release a buffer made for len bytes (pinned: registered whole). */
void _msv_host_free(void *buf, size_t len, int pinned);

#endif
