/* The libnvidia-ml double: its memory figures follow the driver double's
 * accounting.  The test binary does not link NVML (the Makefile links the
 * doubles of libcuda and libcupti only), so it is dlopen()ed like a tool
 * does. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "test_common.h"

typedef struct {
	unsigned long long total, free, used;
} nvml_memory;

typedef struct {
	unsigned int pid;
	unsigned long long usedGpuMemory;
	unsigned int gpuInstanceId, computeInstanceId;
} nvml_process;

static struct {
	int (*init)(void);
	int (*shutdown)(void);
	int (*count)(unsigned *);
	int (*handle)(unsigned, void **);
	int (*name)(void *, char *, unsigned);
	int (*mem)(void *, nvml_memory *);
	int (*procs)(void *, unsigned *, nvml_process *);
	const char *(*err)(int);
} nv;

static void load_nvml(void)
{
	void *h = dlopen("libnvidia-ml.so.1", RTLD_NOW);
	if (!h) { /* no LD_LIBRARY_PATH: the one next to the libcuda double */
		Dl_info info;
		char path[512];
		ck_assert(dladdr((void *)cuInit, &info) && info.dli_fname);
		snprintf(path, sizeof(path), "%s", info.dli_fname);
		char *slash = strrchr(path, '/');
		ck_assert_ptr_nonnull(slash);
		snprintf(slash + 1, sizeof(path) - (size_t)(slash + 1 - path), "libnvidia-ml.so.1");
		h = dlopen(path, RTLD_NOW);
	}
	ck_assert_msg(h != NULL, "%s", dlerror());
	*(void **)&nv.init = dlsym(h, "nvmlInit_v2");
	*(void **)&nv.shutdown = dlsym(h, "nvmlShutdown");
	*(void **)&nv.count = dlsym(h, "nvmlDeviceGetCount_v2");
	*(void **)&nv.handle = dlsym(h, "nvmlDeviceGetHandleByIndex_v2");
	*(void **)&nv.name = dlsym(h, "nvmlDeviceGetName");
	*(void **)&nv.mem = dlsym(h, "nvmlDeviceGetMemoryInfo");
	*(void **)&nv.procs = dlsym(h, "nvmlDeviceGetComputeRunningProcesses_v3");
	*(void **)&nv.err = dlsym(h, "nvmlErrorString");
	ck_assert(nv.init && nv.shutdown && nv.count && nv.handle && nv.name && nv.mem &&
		  nv.procs && nv.err);
}

START_TEST(test_nvml_accounting)
{
	load_nvml();
	void *dev;
	unsigned n = 0;
	char name[96];
	nvml_memory m;
	nvml_process p[4];
	ck_assert_int_eq(nv.count(&n), 1); /* NVML_ERROR_UNINITIALIZED */
	ck_assert_str_eq(nv.err(1), "Uninitialized");
	ck_assert_int_eq(nv.init(), 0);
	ck_assert_int_eq(nv.count(&n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(nv.handle(0, &dev), 0);
	ck_assert_int_eq(nv.name(dev, name, sizeof(name)), 0);
	ck_assert_ptr_nonnull(strstr(name, "H100"));
	ck_assert_int_eq(nv.name(dev, name, 4), 7); /* INSUFFICIENT_SIZE */

	/* Baseline before CUDA init: nothing used, no process. */
	ck_assert_int_eq(nv.mem(dev, &m), 0);
	ck_assert_uint_eq(m.used, 0);
	ck_assert_uint_eq(m.total, 80 * GiB);
	n = 4;
	ck_assert_int_eq(nv.procs(dev, &n, p), 0);
	ck_assert_uint_eq(n, 0);

	fc_setup();
	CUdeviceptr a;
	CU_OK(cuMemAlloc(&a, 100 * MiB));
	ck_assert_int_eq(nv.mem(dev, &m), 0);
	ck_assert_uint_eq(m.used, 612 * MiB);
	ck_assert_uint_eq(m.used, fc_used());
	ck_assert_uint_eq(m.free, m.total - m.used);
	n = 0;
	ck_assert_int_eq(nv.procs(dev, &n, p), 7);
	ck_assert_uint_eq(n, 1);
	n = 4;
	ck_assert_int_eq(nv.procs(dev, &n, p), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(p[0].pid, (unsigned)getpid());
	ck_assert_uint_eq(p[0].usedGpuMemory, 612 * MiB);
	CU_OK(cuMemFree(a));
	ck_assert_int_eq(nv.mem(dev, &m), 0);
	ck_assert_uint_eq(m.used, 512 * MiB);
	ck_assert_int_eq(nv.shutdown(), 0);
	ck_assert_int_eq(nv.shutdown(), 1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fakecuda_nvml");
	TCase *tc = tcase_create("nvml");
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_nvml_accounting);
	suite_add_tcase(s, tc);
	return fc_run_suite(s);
}
