/* Device-memory readings: cuMemGetInfo for the current context, NVML for
 * device-wide and per-process used memory (libnvidia-ml.so.1, optional,
 * dlopen()ed).  NVML works before any CUDA context exists, which is how the
 * baseline "before CUDA init" is taken.  Thread-safe. */
#ifndef MSV_READINGS_H
#define MSV_READINGS_H

#include <stdint.h>

struct msv_reading {
	uint64_t total;     /* device bytes, MSV_NO_VALUE when unknown */
	uint64_t used;      /* device used bytes (all processes) */
	uint64_t proc_used; /* this process's bytes by NVML, or MSV_NO_VALUE */
};

/* Load NVML once; 0 when present.  Never fails the caller otherwise. */
int _msv_nvml_init(void);
/* Device used bytes by NVML for NVML device `index` (before CUDA init: the
 * ordinal without CUDA_VISIBLE_DEVICES remapping is unknown, so pass the
 * PCI bus id when known, else NULL for index).  Returns 0 or -ENOENT. */
int _msv_nvml_reading(const char *pci_bus_id, unsigned index, struct msv_reading *r);
/* The same without the per-process figure (proc_used = MSV_NO_VALUE): listing
 * the device's processes costs milliseconds, a plain reading microseconds. */
int _msv_nvml_reading_fast(const char *pci_bus_id, unsigned index, struct msv_reading *r);
/* A reading for the current context's device: NVML when present (the same
 * source as the baseline), else cuMemGetInfo.  Returns 0 or a negative error. */
int _msv_reading_current(struct msv_reading *r);
/* Device used bytes only (no per-process figure): for deltas on hot paths. */
int _msv_reading_current_fast(struct msv_reading *r);

#endif
