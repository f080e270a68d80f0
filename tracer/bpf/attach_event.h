/* The record that crosses BPF -> user space for `memsaver attach`: one per
 * observed driver call, written to the ring buffer at the call's return (and
 * at entry for the calls whose driver-internal memory is measured).
 *
 * Fixed-width fields, no functions: included by attach.bpf.c (with
 * vmlinux.h) and by the loader (with <stdint.h>).  The loader turns each one
 * into the tracer's struct msv_rec (tracer/trace_format.h); nothing
 * downstream learns that a record came from BPF. */
#ifndef MSV_BPF_ATTACH_EVENT_H
#define MSV_BPF_ATTACH_EVENT_H

#define MSV_BPF_STACK_DEPTH 16

/* What a probed function is; with the msv_api / msv_driver_cause number it
 * forms the uprobe's cookie: kind << 8 | sub, plus a per-function id in the
 * upper 16 bits so that one thread's entry state is kept per function. */
enum msv_bpf_kind {
	MSV_BPF_ALLOC = 1,        /* sub = enum msv_api; out pointer in arg 1, size arg 2 */
	MSV_BPF_ALLOC_PITCH = 2,  /* cuMemAllocPitch_v2: size = *pitch * height */
	MSV_BPF_FREE = 3,         /* sub = enum msv_api; address in arg 1 */
	MSV_BPF_VMM_CREATE = 4,   /* cuMemCreate: handle out pointer arg 1, size arg 2 */
	MSV_BPF_VMM_RELEASE = 5,  /* cuMemRelease: handle arg 1 */
	MSV_BPF_VMM_MAP = 6,      /* cuMemMap: va arg 1, size arg 2, handle arg 4 */
	MSV_BPF_VMM_UNMAP = 7,    /* cuMemUnmap: va arg 1, size arg 2 */
	MSV_BPF_MEASURE = 8,      /* sub = enum msv_driver_cause: entry and exit events */
	MSV_BPF_CAPTURE_BEGIN = 9,/* cuStreamBeginCapture*: per-thread capture depth + 1 */
	MSV_BPF_CAPTURE_END = 10, /* cuStreamEndCapture*: depth - 1 */
	MSV_BPF_CTX_DESTROY = 11, /* a context (or primary context reference) released */
};

#define MSV_BPF_EV_ENTRY 0x01u     /* an entry event (MEASURE only) */
#define MSV_BPF_EV_CAPTURING 0x02u /* the thread was capturing a CUDA graph */

struct msv_bpf_event {
	__u64 t_ns;   /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 tid;
	__u16 kind;   /* enum msv_bpf_kind */
	__u8 sub;     /* enum msv_api or enum msv_driver_cause */
	__u8 flags;   /* MSV_BPF_EV_* */
	__u64 addr;   /* device pointer, or VMM handle for create/release */
	__u64 size;
	__u64 aux;    /* VMM map: handle */
	__s32 rc;     /* CUresult of the call (0 on entry events) */
	__u32 nframes;/* valid entries of stack */
	__u64 stack[MSV_BPF_STACK_DEPTH]; /* [0] return address of the driver
	                                     call, then the frame-pointer walk */
};

#endif
