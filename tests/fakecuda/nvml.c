/* The libnvidia-ml.so.1 double.  The toolkit ships no nvml.h here, so the
 * few types and prototypes used are declared below with the real layout
 * and signatures (nvml.h of driver 580).  Memory figures come from the
 * driver double's accounting (fakecuda_get_usage), so NVML and
 * cuMemGetInfo agree; before any context exists used is 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>

#include "fakecuda.h"

#define EXPORT __attribute__((visibility("default")))

typedef enum nvmlReturn_enum {
	NVML_SUCCESS = 0,
	NVML_ERROR_UNINITIALIZED = 1,
	NVML_ERROR_INVALID_ARGUMENT = 2,
	NVML_ERROR_NOT_SUPPORTED = 3,
	NVML_ERROR_NO_PERMISSION = 4,
	NVML_ERROR_ALREADY_INITIALIZED = 5,
	NVML_ERROR_NOT_FOUND = 6,
	NVML_ERROR_INSUFFICIENT_SIZE = 7,
	NVML_ERROR_INSUFFICIENT_POWER = 8,
	NVML_ERROR_DRIVER_NOT_LOADED = 9,
	NVML_ERROR_TIMEOUT = 10,
	NVML_ERROR_IRQ_ISSUE = 11,
	NVML_ERROR_LIBRARY_NOT_FOUND = 12,
	NVML_ERROR_FUNCTION_NOT_FOUND = 13,
	NVML_ERROR_CORRUPTED_INFOROM = 14,
	NVML_ERROR_GPU_IS_LOST = 15,
	NVML_ERROR_RESET_REQUIRED = 16,
	NVML_ERROR_OPERATING_SYSTEM = 17,
	NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18,
	NVML_ERROR_IN_USE = 19,
	NVML_ERROR_MEMORY = 20,
	NVML_ERROR_NO_DATA = 21,
	NVML_ERROR_VGPU_ECC_NOT_SUPPORTED = 22,
	NVML_ERROR_INSUFFICIENT_RESOURCES = 23,
	NVML_ERROR_FREQ_NOT_SUPPORTED = 24,
	NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
	NVML_ERROR_DEPRECATED = 26,
	NVML_ERROR_NOT_READY = 27,
	NVML_ERROR_GPU_NOT_FOUND = 28,
	NVML_ERROR_INVALID_STATE = 29,
	NVML_ERROR_UNKNOWN = 999
} nvmlReturn_t;

typedef struct nvmlDevice_st *nvmlDevice_t;

typedef struct nvmlMemory_st {
	unsigned long long total;
	unsigned long long free;
	unsigned long long used;
} nvmlMemory_t;

typedef struct nvmlMemory_v2_st {
	unsigned int version;
	unsigned long long total;
	unsigned long long reserved;
	unsigned long long free;
	unsigned long long used;
} nvmlMemory_v2_t;

#define NVML_STRUCT_VERSION(data, ver) (unsigned int)(sizeof(nvml##data##_v##ver##_t) | ((ver) << 24U))
#define nvmlMemory_v2 NVML_STRUCT_VERSION(Memory, 2)

typedef struct nvmlProcessInfo_st {
	unsigned int pid;
	unsigned long long usedGpuMemory;
	unsigned int gpuInstanceId;
	unsigned int computeInstanceId;
} nvmlProcessInfo_t;

#define NVML_DEVICE_NAME_V2_BUFFER_SIZE 96

struct nvmlDevice_st {
	int index;
};

static struct nvmlDevice_st g_dev0 = { 0 };
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_refs;

static int inited(void)
{
	pthread_mutex_lock(&g_lock);
	int r = g_refs > 0;
	pthread_mutex_unlock(&g_lock);
	return r;
}

EXPORT nvmlReturn_t nvmlInit_v2(void)
{
	pthread_mutex_lock(&g_lock);
	g_refs++;
	pthread_mutex_unlock(&g_lock);
	return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int flags)
{
	(void)flags;
	return nvmlInit_v2();
}

EXPORT nvmlReturn_t nvmlShutdown(void)
{
	nvmlReturn_t r = NVML_SUCCESS;
	pthread_mutex_lock(&g_lock);
	if (g_refs > 0)
		g_refs--;
	else
		r = NVML_ERROR_UNINITIALIZED;
	pthread_mutex_unlock(&g_lock);
	return r;
}

EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count)
{
	if (!inited())
		return NVML_ERROR_UNINITIALIZED;
	if (!count)
		return NVML_ERROR_INVALID_ARGUMENT;
	*count = 1;
	return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
	if (!inited())
		return NVML_ERROR_UNINITIALIZED;
	if (!device || index != 0)
		return NVML_ERROR_INVALID_ARGUMENT;
	*device = &g_dev0;
	return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
	static const char n[] = "NVIDIA H100 80GB HBM3";
	if (!inited())
		return NVML_ERROR_UNINITIALIZED;
	if (device != &g_dev0 || !name)
		return NVML_ERROR_INVALID_ARGUMENT;
	if (length < sizeof(n))
		return NVML_ERROR_INSUFFICIENT_SIZE;
	memcpy(name, n, sizeof(n));
	return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory)
{
	struct fakecuda_usage u;
	if (!inited())
		return NVML_ERROR_UNINITIALIZED;
	if (device != &g_dev0 || !memory)
		return NVML_ERROR_INVALID_ARGUMENT;
	fakecuda_get_usage(&u);
	fakecuda_device_used(&u.used, NULL);
	memory->total = u.total;
	memory->used = u.used;
	memory->free = u.used < u.total ? u.total - u.used : 0;
	return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
	const char *v = getenv("FAKECUDA_DRIVER_RELEASE");
	if (!v || !*v)
		v = "580.159.04";
	if (!version)
		return NVML_ERROR_INVALID_ARGUMENT;
	if (strlen(v) >= length)
		return NVML_ERROR_INSUFFICIENT_SIZE;
	strcpy(version, v);
	return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory)
{
	struct fakecuda_usage u;
	if (!inited())
		return NVML_ERROR_UNINITIALIZED;
	if (device != &g_dev0 || !memory)
		return NVML_ERROR_INVALID_ARGUMENT;
	if (memory->version != nvmlMemory_v2)
		return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
	fakecuda_get_usage(&u);
	fakecuda_device_used(&u.used, NULL);
	memory->total = u.total;
	memory->reserved = 0;
	memory->used = u.used;
	memory->free = u.used < u.total ? u.total - u.used : 0;
	return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device,
							    unsigned int *infoCount,
							    nvmlProcessInfo_t *infos)
{
	struct fakecuda_usage u;
	if (!inited())
		return NVML_ERROR_UNINITIALIZED;
	if (device != &g_dev0 || !infoCount)
		return NVML_ERROR_INVALID_ARGUMENT;
	fakecuda_get_usage(&u);
	unsigned int n = u.contexts ? 1 : 0;
	if (*infoCount < n) {
		*infoCount = n;
		return NVML_ERROR_INSUFFICIENT_SIZE;
	}
	*infoCount = n;
	if (n) {
		if (!infos)
			return NVML_ERROR_INVALID_ARGUMENT;
		infos[0].pid = (unsigned int)getpid();
		infos[0].usedGpuMemory = u.used;
		infos[0].gpuInstanceId = 0xFFFFFFFF;
		infos[0].computeInstanceId = 0xFFFFFFFF;
	}
	return NVML_SUCCESS;
}

EXPORT const char *nvmlErrorString(nvmlReturn_t result)
{
	switch (result) {
	case NVML_SUCCESS: return "Success";
	case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
	case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
	case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
	case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
	case NVML_ERROR_ALREADY_INITIALIZED: return "Already Initialized";
	case NVML_ERROR_NOT_FOUND: return "Not Found";
	case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
	case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
	case NVML_ERROR_TIMEOUT: return "Timeout";
	case NVML_ERROR_LIBRARY_NOT_FOUND: return "NVML Shared Library Not Found";
	case NVML_ERROR_FUNCTION_NOT_FOUND: return "Function Not Found";
	case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
	case NVML_ERROR_MEMORY: return "Insufficient Memory";
	case NVML_ERROR_NO_DATA: return "No data";
	case NVML_ERROR_ARGUMENT_VERSION_MISMATCH: return "Argument version mismatch";
	default: return "Unknown Error";
	}
}
