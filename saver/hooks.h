/* The driver entry points memsaver interposes, and how a lookup finds them.
 *
 * An application reaches the driver through dlsym (versioned names such as
 * cuMemAlloc_v2, as cuBLAS does) or through cuGetProcAddress (base name,
 * version, flags, as libcudart does).  Each hook names both forms; the real
 * pointer the driver returned is kept in the hook's slot and the wrapper
 * calls exactly that.  Table in saver/wrappers.c, lookups in
 * saver/interpose.c. */
#ifndef MSV_HOOKS_H
#define MSV_HOOKS_H

struct msv_hook {
	const char *name;   /* as asked through cuGetProcAddress: "cuMemAlloc" */
	const char *symbol; /* exported versioned symbol: "cuMemAlloc_v2" */
	int ptsz;           /* per-thread-default-stream variant */
	int min_version;    /* first cudaVersion at which `name` has this ABI */
	void *wrapper;
	void **real;
};

extern const struct msv_hook _msv_hooks[];
extern const unsigned _msv_n_hooks;

/* The hook for a cuGetProcAddress lookup, or NULL. */
const struct msv_hook *_msv_hook_for_proc(const char *name, int version, unsigned long long flags);
/* The hook for a dlsym of an exported symbol, or NULL. */
const struct msv_hook *_msv_hook_for_symbol(const char *symbol);

#endif
