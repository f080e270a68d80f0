/* The loader of `memsaver attach`: BPF uprobes on one process's
 * libcuda.so.1, events out of a ring buffer.
 *
 * Functions return 0 or a negative errno; err receives one line naming what
 * is missing (privilege, uprobe support, the library) instead of libbpf's
 * own messages, which go nowhere unless MEMSAVER_LOG=debug.  A struct
 * msv_attach owns the BPF objects and links; _msv_attach_free detaches and
 * accepts NULL.  Single-threaded: poll from one thread. */
#ifndef MSV_BPF_ATTACH_H
#define MSV_BPF_ATTACH_H

#include <linux/types.h>
#include <stddef.h>
#include <stdint.h>

#include "attach_event.h"

struct msv_attach;

/* Whether this process may load BPF programs and the kernel has uprobe
 * events: 0, or -EPERM / -ENOSYS with the reason in err. */
int _msv_attach_check(char *err, size_t errlen);

/* Load the programs and attach them to `lib` (a path to libcuda.so.1) for
 * process `pid` only.  Functions the library does not export are skipped
 * (_msv_attach_counts); none attached at all is an error. */
int _msv_attach_open(int pid, const char *lib, struct msv_attach **out, char *err, size_t errlen);
void _msv_attach_free(struct msv_attach *a);

/* Wait up to timeout_ms for events and hand each to cb; returns the number
 * handled or a negative errno (-EINTR when a signal interrupted it). */
typedef void (*msv_attach_cb)(const struct msv_bpf_event *e, void *arg);
int _msv_attach_poll(struct msv_attach *a, int timeout_ms, msv_attach_cb cb, void *arg);

/* Probed functions, exported names not found in the library, and events the
 * ring buffer had no room for. */
void _msv_attach_counts(const struct msv_attach *a, unsigned *probed, unsigned *missing,
			uint64_t *dropped);

#endif
