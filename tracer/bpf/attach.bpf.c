// SPDX-License-Identifier: GPL-2.0
/* Uprobes on the target's libcuda.so.1 for `memsaver attach`.
 *
 * Every program is generic over the functions of one argument shape; the
 * attach cookie (tracer/bpf/attach_event.h) says which function and what it
 * means.  Entry programs keep the arguments and the user stack per thread and
 * function; the one exit program reads the results the call wrote (the new
 * pointer, handle or pitch) and sends one event.  pt_regs is read through
 * bpf_tracing.h with vmlinux.h, so the accesses are CO-RE relocations. */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "attach_event.h"

char LICENSE[] SEC("license") = "GPL";

struct entry {
	__u64 a1, a2, a3;
	__u32 nframes;
	__u32 pad;
	__u64 stack[MSV_BPF_STACK_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

/* (tid << 16 | function id) -> arguments seen at entry. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct entry);
} entries SEC(".maps");

/* tid -> depth of CUDA-graph captures open on the thread. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __s32);
} capturing SEC(".maps");

/* Events the ring buffer had no room for: user space reports them. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} dropped SEC(".maps");

static __always_inline __u64 entry_key(__u64 cookie)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	return ((__u64)tid << 16) | (cookie >> 16 & 0xffff);
}

static __always_inline void count_drop(void)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&dropped, &k);
	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline void emit_entry_event(__u64 cookie)
{
	struct msv_bpf_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop();
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->t_ns = bpf_ktime_get_ns();
	e->tid = (__u32)bpf_get_current_pid_tgid();
	e->kind = (__u16)(cookie >> 8 & 0xff);
	e->sub = (__u8)(cookie & 0xff);
	e->flags = MSV_BPF_EV_ENTRY;
	bpf_ringbuf_submit(e, 0);
}

static __always_inline int save(struct pt_regs *ctx, __u64 a1, __u64 a2, __u64 a3)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u64 key = entry_key(cookie);
	struct entry zero = {};
	if (bpf_map_update_elem(&entries, &key, &zero, BPF_ANY))
		return 0;
	struct entry *v = bpf_map_lookup_elem(&entries, &key);
	if (!v)
		return 0;
	v->a1 = a1;
	v->a2 = a2;
	v->a3 = a3;
	/* At the first instruction the return address is on top of the stack;
	 * the frame-pointer walk that follows starts one frame further out. */
	__u64 sp = PT_REGS_SP_CORE(ctx);
	bpf_probe_read_user(&v->stack[0], sizeof(v->stack[0]), (void *)sp);
	long n = bpf_get_stack(ctx, &v->stack[1], sizeof(v->stack) - sizeof(v->stack[0]),
			       BPF_F_USER_STACK);
	v->nframes = n > 0 ? 1 + (__u32)(n / sizeof(__u64)) : 1;
	if ((cookie >> 8 & 0xff) == MSV_BPF_MEASURE)
		emit_entry_event(cookie);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(enter_a12, __u64 a1, __u64 a2)
{
	return save(ctx, a1, a2, 0);
}

SEC("uprobe")
int BPF_KPROBE(enter_pitch, __u64 dptr, __u64 pitch, __u64 width, __u64 height)
{
	(void)width;
	return save(ctx, dptr, pitch, height);
}

SEC("uprobe")
int BPF_KPROBE(enter_map, __u64 va, __u64 size, __u64 offset, __u64 handle)
{
	(void)offset;
	return save(ctx, va, size, handle);
}

static __always_inline __u64 read_u64(__u64 uptr)
{
	__u64 v = 0;
	if (uptr)
		bpf_probe_read_user(&v, sizeof(v), (void *)uptr);
	return v;
}

SEC("uretprobe")
int BPF_KRETPROBE(leave, long ret)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u64 key = entry_key(cookie);
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u16 kind = (__u16)(cookie >> 8 & 0xff);
	__s32 rc = (__s32)ret;
	struct entry *v = bpf_map_lookup_elem(&entries, &key);
	if (!v)
		return 0; /* entered before the attach */

	if (kind == MSV_BPF_CAPTURE_BEGIN || kind == MSV_BPF_CAPTURE_END) {
		__s32 *d = bpf_map_lookup_elem(&capturing, &tid);
		if (kind == MSV_BPF_CAPTURE_BEGIN && rc == 0) {
			__s32 one = 1;
			if (d) /* only this thread touches its entry: no atomics */
				*d += 1;
			else
				bpf_map_update_elem(&capturing, &tid, &one, BPF_ANY);
		} else if (kind == MSV_BPF_CAPTURE_END && d && *d > 0) {
			/* A failed EndCapture still ends the capture. */
			*d -= 1;
		}
		bpf_map_delete_elem(&entries, &key);
		return 0;
	}

	struct msv_bpf_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop();
		bpf_map_delete_elem(&entries, &key);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->t_ns = bpf_ktime_get_ns();
	e->tid = tid;
	e->kind = kind;
	e->sub = (__u8)(cookie & 0xff);
	e->rc = rc;
	switch (kind) {
	case MSV_BPF_ALLOC:
		e->addr = rc == 0 ? read_u64(v->a1) : 0;
		e->size = v->a2;
		break;
	case MSV_BPF_ALLOC_PITCH:
		e->addr = rc == 0 ? read_u64(v->a1) : 0;
		e->size = rc == 0 ? read_u64(v->a2) * v->a3 : 0;
		break;
	case MSV_BPF_VMM_CREATE:
		e->addr = rc == 0 ? read_u64(v->a1) : 0;
		e->size = v->a2;
		break;
	case MSV_BPF_VMM_MAP:
		e->aux = v->a3;
		/* fallthrough */
	default:
		e->addr = v->a1;
		e->size = v->a2;
		break;
	}
	if (kind == MSV_BPF_ALLOC || kind == MSV_BPF_ALLOC_PITCH) {
		__s32 *d = bpf_map_lookup_elem(&capturing, &tid);
		if (d && *d > 0)
			e->flags |= MSV_BPF_EV_CAPTURING;
		__u32 n = v->nframes;
		if (n > MSV_BPF_STACK_DEPTH)
			n = MSV_BPF_STACK_DEPTH;
		e->nframes = n;
		__builtin_memcpy(e->stack, v->stack, sizeof(e->stack));
	}
	bpf_ringbuf_submit(e, 0);
	bpf_map_delete_elem(&entries, &key);
	return 0;
}
