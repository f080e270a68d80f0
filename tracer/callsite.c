#include "callsite.h"

#include <dlfcn.h>
#include <errno.h>
#include <unwind.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Objects that sit between the application and the driver. */
static const char *const skip[] = {"libcuda.so", "libcudart.so", "libcupti.so", "libmemsaver.so",
				   "libnvidia-ml.so"};

static int skipped(const char *base)
{
	for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
		if (strncmp(base, skip[i], strlen(skip[i])) == 0)
			return 1;
	return 0;
}

static _Unwind_Reason_Code stop(struct _Unwind_Context *ctx, void *arg)
{
	(void)ctx;
	(void)arg;
	return _URC_END_OF_STACK;
}

void _msv_callsite_init(void)
{
	_Unwind_Backtrace(stop, NULL);
}

/* strlcpy: snprintf("%s") costs a printf per allocation. */
static void copy(char *dst, size_t len, const char *src)
{
	size_t n = strlen(src);
	if (n >= len)
		n = len - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* dladdr takes the loader's lock and walks the link maps; the same few
 * return addresses (cudart's, cuBLAS's) come back on every allocation, so a
 * small per-thread cache of address -> basename skips it. */
#define CACHE 64
static __thread struct {
	void *pc;
	char base[64];
} cache[CACHE];

static const char *basename_of(void *pc)
{
	unsigned k = (unsigned)(((uintptr_t)pc >> 4) * 2654435761u) % CACHE;
	if (cache[k].pc == pc)
		return cache[k].base;
	Dl_info info;
	if (!dladdr(pc, &info) || !info.dli_fname)
		return NULL;
	/* glibc names the main program "" in its link map. */
	const char *name = *info.dli_fname ? info.dli_fname : program_invocation_short_name;
	const char *base = strrchr(name, '/');
	base = base ? base + 1 : name;
	cache[k].pc = pc;
	copy(cache[k].base, sizeof(cache[k].base), base);
	return cache[k].base;
}

/* The last walk of this thread (x86_64): where each frame's return address
 * was read from the stack and its value, and the answer.  A call whose own
 * frame sits at the same address, for the same caller, with every one of
 * those slots still holding the same return address, comes up the same
 * chain of calls (a loop allocating from one place): the answer is reused
 * without unwinding, which costs about 2,300 instructions a frame, three
 * quarters of memsaver's work per cudaMalloc (callgrind, fake driver).
 * On x86_64 a frame's return address sits 8 bytes below its callee's CFA,
 * which is what _Unwind_GetCFA gives in the frame's callback (libgcc
 * updates the CFA after it); elsewhere every call unwinds. */
#define CHAIN_MAX 50
struct chain {
	uintptr_t here; /* address of a local of _msv_callsite_library */
	void *caller;
	int n;
	uintptr_t slot[CHAIN_MAX], ret[CHAIN_MAX];
	char lib[64];
};
static __thread struct chain last;

struct walk {
	char *buf;
	size_t len;
	int n;
	uintptr_t here;    /* _msv_callsite_library's frame: slots below it are the unwinder's */
	struct chain *rec; /* NULL: not recordable */
};

/* Record a frame's return address (pc) and where it was read.  Slots in
 * frames below ours (the unwinder's own, gone when the chain is checked)
 * are not recorded; the chain stops being recordable where a slot is not
 * known. */
static void record(struct walk *w, struct _Unwind_Context *ctx, uintptr_t pc)
{
#if defined(__x86_64__)
	uintptr_t cfa = _Unwind_GetCFA(ctx), slot = cfa - sizeof(uintptr_t);
	if (cfa && slot <= w->here)
		; /* a slot of the unwinder's */
	else if (cfa && w->rec && w->rec->n < CHAIN_MAX && *(const uintptr_t *)slot == pc) {
		w->rec->slot[w->rec->n] = slot;
		w->rec->ret[w->rec->n++] = pc;
	} else {
		w->rec = NULL;
	}
#else
	(void)ctx, (void)pc;
	w->rec = NULL;
#endif
}

static int same_chain(const struct chain *c, uintptr_t here, void *caller)
{
	if (!c->n || c->here != here || c->caller != caller)
		return 0;
	for (int i = 0; i < c->n; i++)
		if (*(const volatile uintptr_t *)c->slot[i] != c->ret[i])
			return 0;
	return 1;
}

/* Stop at the first frame outside the skipped objects: each frame costs
 * (see struct chain). */
static _Unwind_Reason_Code step(struct _Unwind_Context *ctx, void *arg)
{
	struct walk *w = arg;
	void *pc = (void *)_Unwind_GetIP(ctx);
	record(w, ctx, (uintptr_t)pc);
	if (w->n++ == 0) /* ourselves */
		return _URC_NO_REASON;
	const char *base = pc ? basename_of(pc) : NULL;
	if (base && *base && !skipped(base)) {
		copy(w->buf, w->len, base);
		return _URC_END_OF_STACK;
	}
	if (w->n > 48) {
		w->rec = NULL; /* not found: not worth keeping */
		return _URC_END_OF_STACK;
	}
	return _URC_NO_REASON;
}

const char *_msv_callsite_library(void *caller, char *buf, size_t len)
{
	buf[0] = '\0';
	/* The driver's caller itself, when the wrapper knows it: NCCL and
	 * cuBLAS link cudart statically and call the driver directly, so the
	 * common library cases need no unwinding at all. */
	const char *base = caller ? basename_of(caller) : NULL;
	if (base && *base && !skipped(base)) {
		copy(buf, len, base);
		return buf;
	}
	volatile char here;
	uintptr_t at = (uintptr_t)&here;
	if (same_chain(&last, at, caller)) {
		copy(buf, len, last.lib);
		return buf;
	}
	last.n = 0;
	struct walk w = {.buf = buf, .len = len, .here = at, .rec = &last};
	_Unwind_Backtrace(step, &w);
	if (w.rec && buf[0] && strlen(buf) < sizeof(last.lib)) {
		last.here = at;
		last.caller = caller;
		copy(last.lib, sizeof(last.lib), buf);
	} else {
		last.n = 0;
	}
	return buf;
}
