/* The slice of NVML's ABI that memsaver calls through dlopen/dlsym
 * (tracer/readings.c in the library, memsaver attach in the CLI): the real
 * layouts, since nvml.h is not in every toolkit.  Types only. */
#ifndef MSV_NVML_ABI_H
#define MSV_NVML_ABI_H

typedef struct nvmlDevice_st *nvmlDevice_t;
typedef struct {
	unsigned long long total, free, used;
} nvmlMemory_t;
typedef struct {
	unsigned int pid;
	unsigned long long usedGpuMemory;
	unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;

#endif
