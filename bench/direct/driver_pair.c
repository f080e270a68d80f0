/* cuMemAlloc and cuMemFree called straight into the driver, for
 * bench/alloc_pairs.py: this library is linked against libcuda.so.1, so the
 * dynamic linker binds these calls to the driver itself and no interposer
 * (memsaver's dlsym, cuGetProcAddress) sees them.  Timed in the same process
 * as cudaMalloc+cudaFree, which memsaver does see, the difference between the
 * two is what the CUDA runtime and memsaver add, free of the process-to-process
 * drift of the driver's own time.  Built by `make all` as
 * build/lib/bench-driver_pair.so; links against the fake driver's soname and
 * runs with whatever libcuda.so.1 the process has loaded. */
#include <stddef.h>

typedef unsigned long long CUdeviceptr;
int cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytes);
int cuMemFree_v2(CUdeviceptr dptr);

int bench_driver_alloc(CUdeviceptr *dptr, size_t bytes)
{
	return cuMemAlloc_v2(dptr, bytes);
}

int bench_driver_free(CUdeviceptr dptr)
{
	return cuMemFree_v2(dptr);
}
