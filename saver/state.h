/* The one state a process under memsaver is in, as `ctl status` reports it:
 *
 *   running       nothing released
 *   paused        memsaver released the wrapped categories (saver/pause.c)
 *   locked        a `memsaver ctl` process holds the driver's checkpoint lock
 *                 on this pid: every CUDA call of the engine blocks in the
 *                 driver until it is unlocked
 *   checkpointed  the driver moved the rest of the device memory (context
 *                 included) to host memory; nothing of the process is left
 *                 on the GPU
 *
 * The checkpoint calls are made by the CLI process (the driver wants another
 * process: tools/memsaver/checkpoint.c), so the engine learns of locked and
 * checkpointed only through the control socket: the CLI sends the note
 * "locked" BEFORE it locks and "running" AFTER it unlocked, "checkpointed"
 * and "locked" in between.  A note is a claim, not a fact: a CLI killed in
 * between leaves one behind, so the CLI checks it against the driver
 * (cuCheckpointProcessGetState) before acting and reports the driver's
 * answer.  Nothing here calls CUDA: a locked process must still answer.
 *
 * Thread-safe; no allocation outlives the call except the stored detail. */
#ifndef MSV_STATE_H
#define MSV_STATE_H

#include <jansson.h>

enum msv_state {
	MSV_STATE_RUNNING,
	MSV_STATE_PAUSED,
	MSV_STATE_LOCKED,
	MSV_STATE_CHECKPOINTED,
};

/* "running", "paused", "locked", "checkpointed". */
const char *_msv_state_name(enum msv_state s);
/* Returns 0 and *out, or -EINVAL for another name. */
int _msv_state_parse(const char *name, enum msv_state *out);

/* Record the CLI's note.  s: LOCKED or CHECKPOINTED (deep), RUNNING or
 * PAUSED (the deep part is over).  cli_pid: who sent it.  detail: an object
 * the CLI wants back later (the device bytes the checkpoint holds), or
 * NULL; a new reference is taken.  Returns 0 or -EINVAL. */
int _msv_state_note(enum msv_state s, int cli_pid, json_t *detail);
/* LOCKED or CHECKPOINTED while a deep note stands, else RUNNING. */
enum msv_state _msv_state_deep(void);
/* Add to a status object (from _msv_status_json): "state" (the enum above;
 * paused when its "paused" list is not empty), "deep" (null, or the note:
 * {"state","cli_pid","since_ms","detail"}) and "cupti" (1 when this process
 * subscribed to CUPTI, which the driver's checkpoint refuses). */
void _msv_state_status(json_t *status);

#endif
