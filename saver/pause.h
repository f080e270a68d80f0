/* Pause and resume of wrapped categories: the state machine behind
 * msv_pause/msv_resume.  Thread-safe (one pause or resume at a time).
 * Returns 0 or a negative errno; err receives the sentence for
 * msv_last_error() — also on success when the call had nothing to do
 * (pausing what is paused), as a warning.  Never leaves a region half done: a failure rolls back
 * what the call changed, and backups are kept until a resume succeeds. */
#ifndef MSV_PAUSE_H
#define MSV_PAUSE_H

#include <stddef.h>
#include <stdint.h>

int _msv_saver_pause(unsigned mask, char *err, size_t errlen);
int _msv_saver_resume(unsigned mask, char *err, size_t errlen);
/* Categories currently paused (bit per category). */
unsigned _msv_saver_paused(void);

struct msv_timing {
	uint64_t t_ns, dur_ns, bytes, copy_bytes, copy_ns;
	uint64_t skipped_bytes; /* pause: backup bytes unchanged since the last backup, not copied */
	uint64_t map_ns; /* pause: unmap + release; resume: create + map + access */
	int by_kernel;   /* resume: pinned backups restored by memsaver's kernel (saver/copy.h) */
	int ok, valid;
};
void _msv_saver_last(struct msv_timing *pause, struct msv_timing *resume);

#endif
