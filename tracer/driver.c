#include "driver.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>

#include "log.h"

void *(*_msv_real_dlsym)(void *, const char *);
static struct msv_driver drv;
static int loaded;
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;

#define MSV_STR2(x) #x
#define MSV_STR(x) MSV_STR2(x)

void _msv_real_dlsym_init(void)
{
	if (_msv_real_dlsym)
		return;
	/* dlvsym is not interposed by us; the versioned lookup finds glibc's
	 * dlsym whichever glibc the host has (2.34 moved it into libc). */
	void *p = dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
	if (!p)
		p = dlvsym(RTLD_NEXT, "dlsym", MSV_GLIBC_BASE_VERSION);
	_msv_real_dlsym = (void *(*)(void *, const char *))p;
}

int _msv_driver_load(void)
{
	int rc = 0;
	pthread_mutex_lock(&load_lock);
	if (loaded)
		goto out;
	_msv_real_dlsym_init();
	if (!_msv_real_dlsym) {
		rc = -ENOSYS;
		goto out;
	}
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
	if (!h)
		h = dlopen("libcuda.so.1", RTLD_NOW);
	if (!h) {
		rc = -ENOENT;
		goto out;
	}
	drv.handle = h;
#define MSV_X(n) drv.n = (__typeof__(&n))_msv_real_dlsym(h, MSV_STR(n));
	MSV_DRIVER_FUNCS(MSV_X)
#undef MSV_X
	loaded = 1;
out:
	pthread_mutex_unlock(&load_lock);
	return rc;
}

const struct msv_driver *_msv_drv(void)
{
	return loaded ? &drv : NULL;
}

const char *_msv_cu_error(CUresult r)
{
	static __thread char buf[160];
	const char *name = NULL, *msg = NULL;
	if (loaded && drv.cuGetErrorName)
		drv.cuGetErrorName(r, &name);
	if (loaded && drv.cuGetErrorString)
		drv.cuGetErrorString(r, &msg);
	snprintf(buf, sizeof(buf), "%s (%s)", name ? name : "CUDA_ERROR_UNKNOWN", msg ? msg : "no message");
	if (!name)
		snprintf(buf, sizeof(buf), "CUresult %d", (int)r);
	return buf;
}
