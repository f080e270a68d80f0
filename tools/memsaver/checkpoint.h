/* The driver's process checkpoint and NVML, seen from the CLI.
 *
 * The checkpoint (cuCheckpointProcessLock/Checkpoint/Restore/Unlock/GetState,
 * driver >= 570, CUDA 12.8 headers) must be called by ANOTHER process than
 * the one it acts on, after cuInit; nothing more (no context, so the CLI
 * costs no device memory).  Nothing is linked: libcuda.so.1 is dlopen()ed,
 * cuGetProcAddress_v2 is the one symbol taken with dlsym, and the API is
 * resolved through it, so a driver without it is a sentence, not a crash.
 * NVML (libnvidia-ml.so.1, also dlopen()ed) gives device-wide used and free
 * memory, without a context, and the driver release.
 *
 * Functions return 0, a CUresult (> 0) from the driver, or a negative errno;
 * on failure `why` holds one sentence naming the call, the pid and the
 * driver's error name.  Not thread-safe (its own NVML thread aside); one
 * handle per command. */
#ifndef MSV_CHECKPOINT_H
#define MSV_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#define MSV_CKPT_MAX_DEVICES 16

/* cuda.h's CUprocessState values, and a name for each. */
enum { MSV_CKPT_RUNNING, MSV_CKPT_LOCKED, MSV_CKPT_CHECKPOINTED, MSV_CKPT_FAILED };
const char *_msv_ckpt_state_name(int state);

struct msv_ckpt;

/* Load the driver and resolve the API.  nvml: the command will read memory,
 * so NVML loads on a thread meanwhile (joined by the first call that needs
 * it, or by _msv_ckpt_free); 0 leaves NVML until a call needs it (status
 * needs none).  -ENOSYS: this driver has no process checkpoint (why says
 * which).  *out is NULL on failure. */
int _msv_ckpt_open(struct msv_ckpt **out, int nvml, char *why, size_t len);
void _msv_ckpt_free(struct msv_ckpt *c); /* NULL is fine */

int _msv_ckpt_get_state(struct msv_ckpt *c, int pid, int *state, char *why, size_t len);
/* timeout_ms 0: wait for the process's CUDA calls in flight forever. */
int _msv_ckpt_lock(struct msv_ckpt *c, int pid, unsigned timeout_ms, char *why, size_t len);
int _msv_ckpt_checkpoint(struct msv_ckpt *c, int pid, char *why, size_t len);
int _msv_ckpt_restore(struct msv_ckpt *c, int pid, char *why, size_t len);
int _msv_ckpt_unlock(struct msv_ckpt *c, int pid, char *why, size_t len);

/* Device memory by NVML index: *n devices, used and free bytes each.
 * -ENOENT when NVML is not there (why says so). */
int _msv_ckpt_memory(struct msv_ckpt *c, int *n, uint64_t used[MSV_CKPT_MAX_DEVICES],
		     uint64_t free_b[MSV_CKPT_MAX_DEVICES], char *why, size_t len);
/* How long the open took: dlopen + cuInit, and NVML's load + init beside
 * it (waits for that thread). */
struct msv_ckpt_times {
	long long cuinit_ms, nvml_ms;
};
void _msv_ckpt_times(struct msv_ckpt *c, struct msv_ckpt_times *out);

/* The driver release's major number (580 for 580.159.04), or a negative
 * errno when NVML cannot say. */
int _msv_ckpt_driver_major(struct msv_ckpt *c);

#endif
