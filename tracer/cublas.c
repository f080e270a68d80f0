/* cuBLAS and cuBLASLt handle creation, measured.  A handle costs driver
 * memory that no driver call memsaver observes shows (66 MiB beyond the
 * workspace for the first bf16 GEMM of the bench engine on an H200, NVML
 * step by step), so memsaver exports the two entry points an engine links
 * against, takes a reading around the real call and records the delta as
 * driver:library.  The real functions are looked up in the cuBLAS the
 * process already loaded; nothing else changes. */
#include <dlfcn.h>
#include <stddef.h>

#include "driver.h"
#include "events.h"
#include "trace_format.h"

#define MSV_API __attribute__((visibility("default")))

/* cublasStatus_t: 0 = success; 1 = not initialized, what a missing cuBLAS gets. */
enum { STATUS_SUCCESS = 0, STATUS_NOT_INITIALIZED = 1 };

static void *resolve(const char *const *sonames, const char *name)
{
	void *(*sym)(void *, const char *) = _msv_real_dlsym ? _msv_real_dlsym : dlsym;
	for (; *sonames; sonames++) {
		/* dlsym on the library's own handle never finds our export. */
		void *h = dlopen(*sonames, RTLD_NOW | RTLD_NOLOAD);
		if (!h)
			continue;
		void *p = sym(h, name);
		dlclose(h);
		if (p)
			return p;
	}
	return NULL;
}

static int measured(int (*real)(void **), void **handle)
{
	if (!real)
		return STATUS_NOT_INITIALIZED;
	_msv_ev_measure_before();
	int st = real(handle);
	_msv_ev_measure_after(st == STATUS_SUCCESS ? CUDA_SUCCESS : CUDA_ERROR_UNKNOWN, MSV_DRV_LIBRARY);
	return st;
}

MSV_API int cublasCreate_v2(void **handle)
{
	static const char *const libs[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so", NULL};
	static int (*real)(void **);
	if (!real)
		real = (int (*)(void **))resolve(libs, "cublasCreate_v2");
	return measured(real, handle);
}

MSV_API int cublasLtCreate(void **handle)
{
	static const char *const libs[] = {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so", NULL};
	static int (*real)(void **);
	if (!real)
		real = (int (*)(void **))resolve(libs, "cublasLtCreate");
	return measured(real, handle);
}
