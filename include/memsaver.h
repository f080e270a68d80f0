/* memsaver public C API, exported by libmemsaver.so.
 *
 * Every function returns 0 on success or a negative errno-style code
 * (-EINVAL bad argument, -ENOMEM out of device or host memory, -EAGAIN the
 * request conflicts with the current state, -ENODEV memsaver is inactive in
 * this process, -EIO a CUDA call failed).  After a failure msv_last_error()
 * returns a sentence naming what failed; the string belongs to the library
 * and stays valid until the next call on the same thread.  A pause or resume
 * that had nothing to do returns 0 and leaves a warning there.
 *
 * Category lists are comma-separated names (weights, kv, graph, workspace,
 * comm, other); NULL or "" means every category the policy wraps.  All
 * functions are thread-safe and never exit or abort the process. */
#ifndef MEMSAVER_H
#define MEMSAVER_H

#ifdef __cplusplus
extern "C" {
#endif

#define MSV_VERSION "0.1.0"

/* Release the physical memory of the listed categories, keeping every
 * virtual address; contents follow each category's action (discard, zero,
 * backup).  Waits for the GPU work of every context that owns wrapped
 * memory first.  Pausing what is already paused is a no-op with a warning. */
int msv_pause(const char *categories);

/* Map the listed categories again at the same addresses, zero-fill `zero`
 * categories, restore `backup` ones, then synchronize.  On out-of-memory
 * nothing stays mapped from this call, the state stays paused and the error
 * names the bytes needed and free; a later call may succeed. */
int msv_resume(const char *categories);

/* msv_pause, then have the driver checkpoint the rest of this process's
 * device memory (CUDA context included) to host memory: the deep pause of
 * docs/deep-pause.md.  The driver takes that call only from another
 * process, so this runs `memsaver ctl pause --deep` on this process
 * ($MEMSAVER_BIN, else bin/memsaver beside lib/libmemsaver.so) and waits
 * for it; the control socket must be on (MEMSAVER_CONTROL, the default).
 * Not for an engine started with `memsaver run --cupti`.  On success every CUDA call of the
 * process blocks until msv_resume (from any thread) or `memsaver ctl
 * resume`; do not call it from a CUDA callback or host function (the
 * driver's lock waits for that call).  On failure the process may be
 * normally paused; msv_last_error() says so and why (-EIO).  msv_pause,
 * msv_snapshot and another msv_pause_deep are refused (-EAGAIN) while deep
 * paused; msv_resume restores first (again through the CLI), then resumes. */
int msv_pause_deep(const char *categories);

/* Record a phase marker with a device-memory reading under `label`. */
int msv_snapshot(const char *label);

/* Write the JSON attribution report to `path` (NULL: MEMSAVER_REPORT). */
int msv_report_write(const char *path);

/* Allocations made by this thread until msv_region_end() get `category`,
 * overriding the policy rules.  Regions do not nest. */
int msv_region_begin(const char *category);
int msv_region_end(void);

const char *msv_last_error(void);

#ifdef __cplusplus
}
#endif
#endif
