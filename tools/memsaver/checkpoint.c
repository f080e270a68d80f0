/* The driver's process checkpoint and NVML for `memsaver ctl` (checkpoint.h).
 *
 * Why resolve at run time: the checkpoint API arrived with driver 570; a CLI
 * linked against it would not start on an older driver, and CI has no
 * driver at all (the fake in tests/fakecuda serves it there). */
#include "tools/memsaver/checkpoint.h"

#include <cuda.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* nvml.h is not in the toolkit: the few types used, with the real layout. */
typedef struct {
	unsigned long long total, free, used;
} msv_nvml_memory;
typedef void *msv_nvml_device;

struct msv_ckpt {
	void *cuda, *nvml;
	int nvml_tried, nvml_ok;
	pthread_t nvml_thread; /* NVML's init, beside cuInit; joined at first use */
	int nvml_started;
	struct msv_ckpt_times times;
	CUresult (*get_error_name)(CUresult, const char **);
	CUresult (*get_state)(int, CUprocessState *);
	CUresult (*lock)(int, CUcheckpointLockArgs *);
	CUresult (*checkpoint)(int, CUcheckpointCheckpointArgs *);
	CUresult (*restore)(int, CUcheckpointRestoreArgs *);
	CUresult (*unlock)(int, CUcheckpointUnlockArgs *);
	int (*nvml_count)(unsigned *);
	int (*nvml_handle)(unsigned, msv_nvml_device *);
	int (*nvml_memory)(msv_nvml_device, msv_nvml_memory *);
	int (*nvml_version)(char *, unsigned);
};

const char *_msv_ckpt_state_name(int state)
{
	static const char *const n[] = {"running", "locked", "checkpointed", "failed"};
	return state >= 0 && state < 4 ? n[state] : "unknown";
}

static int nvml_load_now(struct msv_ckpt *c);

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *nvml_thread(void *arg)
{
	long long t0 = now_ms();
	struct msv_ckpt *c = arg;
	nvml_load_now(c);
	c->times.nvml_ms = now_ms() - t0;
	return NULL;
}

/* NVML is needed by every command that checkpoints or restores; its init
 * and cuInit each take tens of milliseconds and do not depend on each
 * other. */
static void nvml_join(struct msv_ckpt *c)
{
	if (c->nvml_started) {
		pthread_join(c->nvml_thread, NULL);
		c->nvml_started = 0;
	}
}

void _msv_ckpt_times(struct msv_ckpt *c, struct msv_ckpt_times *out)
{
	nvml_join(c);
	*out = c->times;
}

void _msv_ckpt_free(struct msv_ckpt *c)
{
	if (!c)
		return;
	nvml_join(c);
	/* libcuda stays loaded: unloading a driver after cuInit is not
	 * something it supports. */
	if (c->nvml) {
		int (*shutdown)(void) = (int (*)(void))dlsym(c->nvml, "nvmlShutdown");
		if (c->nvml_ok && shutdown)
			shutdown();
		dlclose(c->nvml);
	}
	free(c);
}

int _msv_ckpt_open(struct msv_ckpt **out, int nvml, char *why, size_t len)
{
	static const struct {
		const char *name;
		size_t off;
	} fns[] = {
		{"cuCheckpointProcessGetState", offsetof(struct msv_ckpt, get_state)},
		{"cuCheckpointProcessLock", offsetof(struct msv_ckpt, lock)},
		{"cuCheckpointProcessCheckpoint", offsetof(struct msv_ckpt, checkpoint)},
		{"cuCheckpointProcessRestore", offsetof(struct msv_ckpt, restore)},
		{"cuCheckpointProcessUnlock", offsetof(struct msv_ckpt, unlock)},
	};
	struct msv_ckpt *c = calloc(1, sizeof(*c));
	int rc = 0;
	*out = NULL;
	if (!c) {
		snprintf(why, len, "out of memory");
		return -ENOMEM;
	}
	c->nvml_started = nvml && pthread_create(&c->nvml_thread, NULL, nvml_thread, c) == 0;
	long long t0 = now_ms();
	c->cuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!c->cuda) {
		snprintf(why, len, "libcuda.so.1 cannot be loaded (%s)", dlerror());
		rc = -ENOENT;
		goto cleanup;
	}
	CUresult (*gpa)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *) =
		(CUresult(*)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *))dlsym(
			c->cuda, "cuGetProcAddress_v2");
	CUresult (*init)(unsigned) = (CUresult(*)(unsigned))dlsym(c->cuda, "cuInit");
	if (!gpa || !init) {
		snprintf(why, len, "this driver has no cuGetProcAddress_v2 (older than CUDA 12.0): "
				   "no process checkpoint");
		rc = -ENOSYS;
		goto cleanup;
	}
	CUresult r = init(0);
	c->times.cuinit_ms = now_ms() - t0;
	if (r != CUDA_SUCCESS) {
		snprintf(why, len, "cuInit failed in the ctl process: CUresult %d", (int)r);
		rc = (int)r;
		goto cleanup;
	}
	CUdriverProcAddressQueryResult q;
	if (gpa("cuGetErrorName", (void **)&c->get_error_name, 6000, 0, &q) != CUDA_SUCCESS)
		c->get_error_name = NULL;
	for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
		void *fn = NULL;
		r = gpa(fns[i].name, &fn, 12080, CU_GET_PROC_ADDRESS_DEFAULT, &q);
		if (r != CUDA_SUCCESS || !fn || q != CU_GET_PROC_ADDRESS_SUCCESS) {
			int v = 0;
			CUresult (*ver)(int *) = (CUresult(*)(int *))dlsym(c->cuda, "cuDriverGetVersion");
			if (ver)
				ver(&v);
			snprintf(why, len, "this driver (CUDA %d.%d) has no %s: the process checkpoint needs "
					   "driver 570 or newer",
				 v / 1000, v % 1000 / 10, fns[i].name);
			rc = -ENOSYS;
			goto cleanup;
		}
		memcpy((char *)c + fns[i].off, &fn, sizeof(fn));
	}
	*out = c;
	return 0;
cleanup:
	_msv_ckpt_free(c);
	return rc;
}

static int ckpt_fail(struct msv_ckpt *c, CUresult r, const char *call, int pid, char *why, size_t len)
{
	const char *name = NULL;
	if (!c->get_error_name || c->get_error_name(r, &name) != CUDA_SUCCESS || !name)
		name = "unknown error";
	snprintf(why, len, "%s(pid %d) returned %s (%d)", call, pid, name, (int)r);
	return (int)r;
}

int _msv_ckpt_get_state(struct msv_ckpt *c, int pid, int *state, char *why, size_t len)
{
	CUprocessState s;
	CUresult r = c->get_state(pid, &s);
	if (r != CUDA_SUCCESS)
		return ckpt_fail(c, r, "cuCheckpointProcessGetState", pid, why, len);
	*state = (int)s;
	return 0;
}

int _msv_ckpt_lock(struct msv_ckpt *c, int pid, unsigned timeout_ms, char *why, size_t len)
{
	CUcheckpointLockArgs a;
	memset(&a, 0, sizeof(a));
	a.timeoutMs = timeout_ms;
	CUresult r = c->lock(pid, &a);
	return r == CUDA_SUCCESS ? 0 : ckpt_fail(c, r, "cuCheckpointProcessLock", pid, why, len);
}

int _msv_ckpt_checkpoint(struct msv_ckpt *c, int pid, char *why, size_t len)
{
	CUresult r = c->checkpoint(pid, NULL);
	return r == CUDA_SUCCESS ? 0 : ckpt_fail(c, r, "cuCheckpointProcessCheckpoint", pid, why, len);
}

int _msv_ckpt_restore(struct msv_ckpt *c, int pid, char *why, size_t len)
{
	CUresult r = c->restore(pid, NULL);
	return r == CUDA_SUCCESS ? 0 : ckpt_fail(c, r, "cuCheckpointProcessRestore", pid, why, len);
}

int _msv_ckpt_unlock(struct msv_ckpt *c, int pid, char *why, size_t len)
{
	CUresult r = c->unlock(pid, NULL);
	return r == CUDA_SUCCESS ? 0 : ckpt_fail(c, r, "cuCheckpointProcessUnlock", pid, why, len);
}

static int nvml_load_now(struct msv_ckpt *c)
{
	if (c->nvml_tried)
		return c->nvml_ok ? 0 : -ENOENT;
	c->nvml_tried = 1;
	c->nvml = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!c->nvml)
		return -ENOENT;
	int (*init)(void) = (int (*)(void))dlsym(c->nvml, "nvmlInit_v2");
	c->nvml_count = (int (*)(unsigned *))dlsym(c->nvml, "nvmlDeviceGetCount_v2");
	c->nvml_handle = (int (*)(unsigned, msv_nvml_device *))dlsym(c->nvml, "nvmlDeviceGetHandleByIndex_v2");
	c->nvml_memory = (int (*)(msv_nvml_device, msv_nvml_memory *))dlsym(c->nvml, "nvmlDeviceGetMemoryInfo");
	c->nvml_version = (int (*)(char *, unsigned))dlsym(c->nvml, "nvmlSystemGetDriverVersion");
	if (!init || !c->nvml_count || !c->nvml_handle || !c->nvml_memory || init() != 0)
		return -ENOENT;
	c->nvml_ok = 1;
	return 0;
}

static int nvml_load(struct msv_ckpt *c)
{
	nvml_join(c);
	return nvml_load_now(c);
}

int _msv_ckpt_memory(struct msv_ckpt *c, int *n, uint64_t used[MSV_CKPT_MAX_DEVICES],
		     uint64_t free_b[MSV_CKPT_MAX_DEVICES], char *why, size_t len)
{
	unsigned cnt = 0;
	*n = 0;
	if (nvml_load(c) != 0 || c->nvml_count(&cnt) != 0) {
		snprintf(why, len, "NVML (libnvidia-ml.so.1) is not usable: device memory unknown");
		return -ENOENT;
	}
	if (cnt > MSV_CKPT_MAX_DEVICES)
		cnt = MSV_CKPT_MAX_DEVICES;
	for (unsigned i = 0; i < cnt; i++) {
		msv_nvml_device d;
		msv_nvml_memory m;
		if (c->nvml_handle(i, &d) != 0 || c->nvml_memory(d, &m) != 0) {
			snprintf(why, len, "NVML cannot read the memory of GPU %u", i);
			return -EIO;
		}
		used[i] = m.used;
		free_b[i] = m.free;
	}
	*n = (int)cnt;
	return 0;
}

int _msv_ckpt_driver_major(struct msv_ckpt *c)
{
	char v[96];
	if (nvml_load(c) != 0 || !c->nvml_version || c->nvml_version(v, sizeof(v)) != 0)
		return -ENOENT;
	return atoi(v);
}
