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
 * handle other than RTLD_NEXT come to _msv_dlsym_impl. */
#if defined(__x86_64__)
__asm__(".text\n"
	".globl dlsym\n"
	".type dlsym,@function\n"
	"dlsym:\n"
	"	movq _msv_real_dlsym(%rip), %rax\n"
	"	testq %rax, %rax\n"
	"	je 2f\n"
	"	cmpq $-1, %rdi\n"
	"	je 1f\n"
	"	testq %rsi, %rsi\n"
	"	je 1f\n"
	"	cmpb $0x63, (%rsi)\n"
	"	jne 1f\n"
	"	cmpb $0x75, 1(%rsi)\n"
	"	jne 1f\n"
	"2:	jmp _msv_dlsym_impl\n"
	"1:	jmp *%rax\n"
	".size dlsym, .-dlsym\n");
#define DLSYM_IMPL _msv_dlsym_impl
#else
#define DLSYM_IMPL dlsym
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

__attribute__((visibility("hidden"), used)) void *DLSYM_IMPL(void *handle, const char *name)
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
