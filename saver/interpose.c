/* The interposer: memsaver's exported dlsym.  libcudart, cuBLAS, cuBLASLt
 * and NCCL each dlopen libcuda.so.1 and dlsym cuGetProcAddress_v2 (cuBLAS
 * also versioned names such as cuMemAlloc_v2); LD_PRELOAD puts this dlsym
 * first, so those lookups get memsaver's wrappers (saver/wrappers.c) and
 * every other lookup gets exactly what glibc would have answered. */
#include <dlfcn.h>
#include <link.h>
#include <stdatomic.h>
#include <string.h>

#include "hooks.h"
#include "tracer/driver.h"
#include "tracer/log.h"
#include "tracer/options.h"

/* glibc resolves RTLD_NEXT, and RTLD_DEFAULT's scope, from the caller's return
 * address, so every lookup that is not for a CUDA name ("cu...") must reach
 * glibc with our frame gone: a tail jump, in assembly so that no compiler
 * setting (-O0, sanitizers) can turn it into a call.  Only "cu" names on a
 * handle other than RTLD_NEXT come to _msv_dlsym_impl.
 *
 * Before our constructor has run (another preloaded library's constructor
 * runs first when it comes later in LD_PRELOAD, and `memsaver run` puts the
 * library first) the real dlsym is not known yet: it is found by a plain call
 * with the caller's arguments saved, and the lookup then leaves by the same
 * tail jump.  Calling into C and answering from there instead would resolve
 * RTLD_NEXT from memsaver's frame: the next object after memsaver, which may
 * be the caller itself, gets its own symbol back.
 *
 * No portable C can forward a caller's return address (emulating RTLD_NEXT
 * from dladdr and the link map would differ from glibc on scopes, namespaces
 * and symbol versions), so the jump is written for each architecture the CUDA
 * driver ships for: x86_64 and aarch64 (sbsa, GH200). */
#if defined(__x86_64__)
__asm__(".text\n"
	".globl dlsym\n"
	".type dlsym,%function\n"
	"dlsym:\n"
	"	.cfi_startproc\n"
	"	movq _msv_real_dlsym(%rip), %rax\n"
	"	testq %rax, %rax\n"
	"	jne 3f\n"
	"	pushq %rdi\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	pushq %rsi\n"
	"	.cfi_adjust_cfa_offset 8\n"
	"	subq $8, %rsp\n" /* the call needs a 16-byte aligned stack */
	"	.cfi_adjust_cfa_offset 8\n"
	"	call _msv_real_dlsym_init\n"
	"	addq $8, %rsp\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	popq %rsi\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	popq %rdi\n"
	"	.cfi_adjust_cfa_offset -8\n"
	"	movq _msv_real_dlsym(%rip), %rax\n"
	"	testq %rax, %rax\n"
	"	je 2f\n" /* no real dlsym at all: _msv_dlsym_impl answers NULL */
	"3:	cmpq $-1, %rdi\n"
	"	je 1f\n"
	"	testq %rsi, %rsi\n"
	"	je 1f\n"
	"	cmpb $0x63, (%rsi)\n"
	"	jne 1f\n"
	"	cmpb $0x75, 1(%rsi)\n"
	"	jne 1f\n"
	"2:	jmp _msv_dlsym_impl\n"
	"1:	jmp *%rax\n"
	"	.cfi_endproc\n"
	".size dlsym, .-dlsym\n");
#elif defined(__aarch64__)
/* x16 (IP0) carries the target: a BTI landing pad ("bti c") accepts a BR
 * through x16/x17, and nothing of the caller's lives there. */
__asm__(".text\n"
	".globl dlsym\n"
	".type dlsym,%function\n"
	".balign 4\n"
	"dlsym:\n"
	"	.cfi_startproc\n"
	"	hint 34\n" /* bti c */
	"	adrp x16, _msv_real_dlsym\n"
	"	ldr x16, [x16, :lo12:_msv_real_dlsym]\n"
	"	cbnz x16, 3f\n"
	"	stp x29, x30, [sp, #-32]!\n"
	"	.cfi_def_cfa_offset 32\n"
	"	.cfi_offset 29, -32\n"
	"	.cfi_offset 30, -24\n"
	"	mov x29, sp\n"
	"	stp x0, x1, [sp, #16]\n"
	"	bl _msv_real_dlsym_init\n"
	"	ldp x0, x1, [sp, #16]\n"
	"	ldp x29, x30, [sp], #32\n"
	"	.cfi_restore 29\n"
	"	.cfi_restore 30\n"
	"	.cfi_def_cfa_offset 0\n"
	"	adrp x16, _msv_real_dlsym\n"
	"	ldr x16, [x16, :lo12:_msv_real_dlsym]\n"
	"	cbz x16, 2f\n" /* no real dlsym at all: _msv_dlsym_impl answers NULL */
	"3:	cmn x0, #1\n"
	"	b.eq 1f\n"
	"	cbz x1, 1f\n"
	"	ldrb w17, [x1]\n"
	"	cmp w17, #0x63\n"
	"	b.ne 1f\n"
	"	ldrb w17, [x1, #1]\n"
	"	cmp w17, #0x75\n"
	"	b.ne 1f\n"
	"2:	b _msv_dlsym_impl\n"
	"1:	br x16\n"
	"	.cfi_endproc\n"
	".size dlsym, .-dlsym\n");
#else
#error "memsaver's dlsym needs its tail jump written for this architecture (x86_64 and aarch64 have one)"
#endif

static atomic_uintptr_t cuda_handle; /* dlopen handle of libcuda, once seen */

static int is_libcuda(void *handle)
{
	if (handle == RTLD_DEFAULT)
		return 1;
	if ((uintptr_t)handle == atomic_load(&cuda_handle))
		return 1;
	struct link_map *lm = NULL;
	if (dlinfo(handle, RTLD_DI_LINKMAP, &lm) != 0 || !lm || !lm->l_name)
		return 0;
	const char *base = strrchr(lm->l_name, '/');
	base = base ? base + 1 : lm->l_name;
	if (strncmp(base, "libcuda.so", 10) != 0)
		return 0;
	atomic_store(&cuda_handle, (uintptr_t)handle);
	return 1;
}

__attribute__((visibility("hidden"), used)) void *_msv_dlsym_impl(void *handle, const char *name)
{
	_msv_real_dlsym_init();
	if (!_msv_real_dlsym)
		return NULL;
	void *p = _msv_real_dlsym(handle, name);
	/* Only CUDA driver names on libcuda's handle (or the global scope) are
	 * redirected; no CUDA or NVML call happens in here. */
	if (!p || !name || name[0] != 'c' || name[1] != 'u' || handle == RTLD_NEXT)
		return p;
	const struct msv_hook *h = _msv_hook_for_symbol(name);
	if (!h || !_msv_options()->redirect || !is_libcuda(handle))
		return p;
	if (!*h->real)
		*h->real = p;
	return h->wrapper;
}

const struct msv_hook *_msv_hook_for_symbol(const char *symbol)
{
	for (unsigned i = 0; i < _msv_n_hooks; i++)
		if (strcmp(_msv_hooks[i].symbol, symbol) == 0)
			return &_msv_hooks[i];
	return NULL;
}

const struct msv_hook *_msv_hook_for_proc(const char *name, int version, unsigned long long flags)
{
	const struct msv_hook *best = NULL;
	int ptsz = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0;
	if (!_msv_options()->redirect)
		return NULL;
	for (unsigned i = 0; i < _msv_n_hooks; i++) {
		const struct msv_hook *h = &_msv_hooks[i];
		if (strcmp(h->name, name) != 0 || version < h->min_version)
			continue;
		if (h->ptsz != ptsz)
			continue;
		if (!best || h->min_version > best->min_version)
			best = h;
	}
	if (!best && ptsz) /* no per-thread variant: the plain one serves */
		for (unsigned i = 0; i < _msv_n_hooks; i++)
			if (strcmp(_msv_hooks[i].name, name) == 0 && !_msv_hooks[i].ptsz &&
			    version >= _msv_hooks[i].min_version &&
			    (!best || _msv_hooks[i].min_version > best->min_version))
				best = &_msv_hooks[i];
	return best;
}

__attribute__((constructor)) static void interpose_init(void)
{
	_msv_real_dlsym_init();
}
