#include "readings.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "driver.h"
#include "log.h"
#include "nvml_abi.h"
#include "trace_format.h"


static struct {
	int (*init)(void);
	int (*by_index)(unsigned, nvmlDevice_t *);
	int (*by_pci)(const char *, nvmlDevice_t *);
	int (*mem)(nvmlDevice_t, nvmlMemory_t *);
	int (*procs)(nvmlDevice_t, unsigned *, nvmlProcessInfo_t *);
	int ok;
} nvml;
static pthread_once_t nvml_once = PTHREAD_ONCE_INIT;

static void nvml_load(void)
{
	void *h = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return;
	void *(*sym)(void *, const char *) = _msv_real_dlsym ? _msv_real_dlsym : dlsym;
	nvml.init = (int (*)(void))sym(h, "nvmlInit_v2");
	nvml.by_index = (int (*)(unsigned, nvmlDevice_t *))sym(h, "nvmlDeviceGetHandleByIndex_v2");
	nvml.by_pci = (int (*)(const char *, nvmlDevice_t *))sym(h, "nvmlDeviceGetHandleByPciBusId_v2");
	nvml.mem = (int (*)(nvmlDevice_t, nvmlMemory_t *))sym(h, "nvmlDeviceGetMemoryInfo");
	nvml.procs = (int (*)(nvmlDevice_t, unsigned *, nvmlProcessInfo_t *))sym(
		h, "nvmlDeviceGetComputeRunningProcesses_v3");
	if (!nvml.init || !nvml.by_index || !nvml.mem) {
		MSV_INFO("libnvidia-ml.so.1 lacks the functions we use; per-process readings off");
		return;
	}
	int rc = nvml.init();
	if (rc != 0) {
		MSV_INFO("nvmlInit_v2 failed: %d; per-process readings off", rc);
		return;
	}
	nvml.ok = 1;
}

int _msv_nvml_init(void)
{
	pthread_once(&nvml_once, nvml_load);
	return nvml.ok ? 0 : -ENOENT;
}

static int nvml_device(const char *pci, unsigned index, nvmlDevice_t *d)
{
	if (_msv_nvml_init() != 0)
		return -ENOENT;
	if (pci && nvml.by_pci && nvml.by_pci(pci, d) == 0)
		return 0;
	return nvml.by_index(index, d) == 0 ? 0 : -ENOENT;
}

static uint64_t proc_bytes(nvmlDevice_t d)
{
	nvmlProcessInfo_t info[64];
	unsigned n = 64;
	if (!nvml.procs || nvml.procs(d, &n, info) != 0)
		return MSV_NO_VALUE;
	for (unsigned i = 0; i < n; i++)
		if (info[i].pid == (unsigned)getpid())
			return info[i].usedGpuMemory;
	return 0;
}

static int nvml_reading(const char *pci_bus_id, unsigned index, struct msv_reading *r, int with_proc)
{
	nvmlDevice_t d;
	nvmlMemory_t m;
	if (nvml_device(pci_bus_id, index, &d) != 0 || nvml.mem(d, &m) != 0)
		return -ENOENT;
	r->total = m.total;
	r->used = m.used;
	r->proc_used = with_proc ? proc_bytes(d) : MSV_NO_VALUE;
	return 0;
}

int _msv_nvml_reading(const char *pci_bus_id, unsigned index, struct msv_reading *r)
{
	return nvml_reading(pci_bus_id, index, r, 1);
}

int _msv_nvml_reading_fast(const char *pci_bus_id, unsigned index, struct msv_reading *r)
{
	return nvml_reading(pci_bus_id, index, r, 0);
}

static int reading_current(struct msv_reading *r, int with_proc)
{
	const struct msv_driver *dv = _msv_drv();
	r->total = r->used = r->proc_used = MSV_NO_VALUE;
	if (!dv)
		return -ENOENT;
	/* NVML first: the baseline before CUDA init can only come from NVML, and
	 * deltas are only meaningful between readings of the same source. */
	CUdevice dev;
	char pci[32];
	if (dv->cuCtxGetDevice && dv->cuCtxGetDevice(&dev) == CUDA_SUCCESS && dv->cuDeviceGetPCIBusId &&
	    dv->cuDeviceGetPCIBusId(pci, sizeof(pci), dev) == CUDA_SUCCESS &&
	    nvml_reading(pci, (unsigned)dev, r, with_proc) == 0)
		return 0;
	size_t fr = 0, tot = 0;
	if (!dv->cuMemGetInfo || dv->cuMemGetInfo(&fr, &tot) != CUDA_SUCCESS)
		return -EIO;
	r->total = tot;
	r->used = tot - fr;
	return 0;
}

int _msv_reading_current(struct msv_reading *r)
{
	return reading_current(r, 1);
}

int _msv_reading_current_fast(struct msv_reading *r)
{
	return reading_current(r, 0);
}
