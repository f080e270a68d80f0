/* The deep pause as the engine's own code asks for it (msv_pause_deep, and
 * msv_resume of a deep-paused process), and the checkpoint in its trace.
 *
 * The driver's process checkpoint must be called from ANOTHER process
 * (docs/deep-pause.md), so this process runs `memsaver ctl` on itself and
 * waits for it: the ctl pauses through the control socket, locks and
 * checkpoints this pid, and on resume restores, unlocks and resumes.  The
 * calling thread waits in waitpid, not in a CUDA call, so the driver's lock
 * does not wait for it; the control thread serves the ctl meanwhile.
 *
 * Functions return 0 or a negative errno with one sentence in err. */
#ifndef MSV_DEEP_H
#define MSV_DEEP_H

#include <jansson.h>
#include <stddef.h>

/* Run `memsaver ctl --socket <this process's socket> VERB [--deep]
 * [--tags CATS]` and wait for it.  verb: "pause" (with --deep) or "resume".
 * The binary: $MEMSAVER_BIN, else ../bin/memsaver next to libmemsaver.so
 * (a build tree, an install prefix, the pip package), else memsaver next to
 * it.  The child gets this environment without LD_PRELOAD,
 * CUDA_INJECTION64_PATH and NVTX_INJECTION64_PATH (the ctl must not load
 * memsaver into itself).  0 when the ctl exited 0; -EIO otherwise, with the
 * ctl's last line of output in err; -ENOENT when no binary is found. */
int _msv_deep_ctl(const char *verb, const char *categories, char *err, size_t len);

/* The ctl's note "checkpointed" carries its NVML readings around the
 * checkpoint: detail {"device": {"index","total_bytes","used_before_bytes",
 * "used_after_bytes"}, "checkpoint_ms"}.  Add them to the trace as the
 * phases "before_checkpoint" and "checkpointed" (docs/report.md, "Deep
 * pause").  Makes no CUDA call: the process is locked.  A detail without
 * them is ignored. */
void _msv_deep_record_checkpoint(const json_t *detail);

#endif
