/* The libcuda double: device facts, contexts, accounting, VMM semantics,
 * cuGetProcAddress resolution and fault injection. */
#include <string.h>

#include "test_common.h"

START_TEST(test_errors_before_init)
{
	CUdeviceptr p;
	int v = 0;
	CU_IS(cuMemAlloc(&p, 1), CUDA_ERROR_NOT_INITIALIZED);
	CU_IS(cuDeviceGetCount(&v), CUDA_ERROR_NOT_INITIALIZED);
	CU_OK(cuDriverGetVersion(&v));
	ck_assert_int_eq(v, 13000);
	CU_OK(cuInit(0));
	CU_IS(cuMemAlloc(&p, 1), CUDA_ERROR_INVALID_CONTEXT);
	size_t f, t;
	CU_IS(cuMemGetInfo(&f, &t), CUDA_ERROR_INVALID_CONTEXT);
	const char *s;
	CU_OK(cuGetErrorName(CUDA_ERROR_OUT_OF_MEMORY, &s));
	ck_assert_str_eq(s, "CUDA_ERROR_OUT_OF_MEMORY");
	CU_OK(cuGetErrorString(CUDA_ERROR_INVALID_VALUE, &s));
	ck_assert_str_eq(s, "invalid argument");
	CU_IS(cuGetErrorName((CUresult)12345, &s), CUDA_ERROR_INVALID_VALUE);
}
END_TEST

START_TEST(test_device_facts)
{
	int n, v;
	char name[64];
	size_t total;
	CUdevice d;
	CU_OK(cuInit(0));
	CU_OK(cuDeviceGetCount(&n));
	ck_assert_int_eq(n, 1);
	CU_OK(cuDeviceGet(&d, 0));
	CU_IS(cuDeviceGet(&d, 1), CUDA_ERROR_INVALID_DEVICE);
	CU_OK(cuDeviceGetName(name, sizeof(name), 0));
	ck_assert_ptr_nonnull(strstr(name, "H100"));
	CU_OK(cuDeviceTotalMem(&total, 0));
	ck_assert_uint_eq(total, 80 * GiB);
	CU_OK(cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, 0));
	ck_assert_int_eq(v, 9);
	CU_OK(cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, 0));
	ck_assert_int_eq(v, 0);
	CU_OK(cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 0));
	ck_assert_int_eq(v, 132);
	CU_OK(cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING, 0));
	ck_assert_int_eq(v, 1);
	CU_OK(cuDeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, 0));
	ck_assert_int_eq(v, 1);
}
END_TEST

START_TEST(test_contexts)
{
	CUcontext prim, c2, cur;
	unsigned flags;
	int active;
	CU_OK(cuInit(0));
	CU_OK(cuDevicePrimaryCtxGetState(0, &flags, &active));
	ck_assert_int_eq(active, 0);
	prim = fc_setup();
	CU_OK(cuDevicePrimaryCtxGetState(0, &flags, &active));
	ck_assert_int_eq(active, 1);
	CU_OK(cuCtxGetCurrent(&cur));
	ck_assert_ptr_eq(cur, prim);
	CU_OK(cuCtxCreate(&c2, NULL, 0, 0));
	CU_OK(cuCtxGetCurrent(&cur));
	ck_assert_ptr_eq(cur, c2);
	CU_OK(cuCtxPopCurrent(&cur));
	ck_assert_ptr_eq(cur, c2);
	CU_OK(cuCtxGetCurrent(&cur));
	ck_assert_ptr_eq(cur, prim);
	CU_OK(cuCtxPushCurrent(c2));
	CUdevice d = -1;
	CU_OK(cuCtxGetDevice(&d));
	ck_assert_int_eq(d, 0);
	CU_OK(cuCtxDestroy(c2));
	CU_OK(cuCtxGetCurrent(&cur));
	ck_assert_ptr_eq(cur, prim);
	CU_IS(cuCtxPushCurrent(c2), CUDA_ERROR_INVALID_CONTEXT);
	CU_OK(cuCtxSynchronize());
	size_t lim;
	CU_OK(cuCtxGetLimit(&lim, CU_LIMIT_STACK_SIZE));
	ck_assert_uint_eq(lim, 1024);
	CU_OK(cuDevicePrimaryCtxRelease(0));
	CU_OK(cuDevicePrimaryCtxGetState(0, &flags, &active));
	ck_assert_int_eq(active, 0);
	CU_IS(cuCtxSynchronize(), CUDA_ERROR_INVALID_CONTEXT);
}
END_TEST

START_TEST(test_accounting_exact)
{
	struct fakecuda_usage u;
	CU_OK(cuInit(0));
	fakecuda_get_usage(&u);
	ck_assert_uint_eq(u.used, 0);
	fc_setup();
	ck_assert_uint_eq(fc_used(), 512 * MiB);

	CUdeviceptr a, b, pitched;
	size_t pitch;
	CU_OK(cuMemAlloc(&a, 1 * MiB)); /* rounded to 2 MiB */
	ck_assert_uint_eq(fc_used(), 514 * MiB);
	CU_OK(cuMemAlloc(&b, 3 * MiB + 1));
	ck_assert_uint_eq(fc_used(), 518 * MiB);
	CU_OK(cuMemAllocPitch(&pitched, &pitch, 1000, 1024, 4));
	ck_assert_uint_eq(pitch, 1024);
	ck_assert_uint_eq(fc_used(), 520 * MiB);
	CU_OK(cuMemFree(pitched));
	CU_OK(cuMemFree(b));
	ck_assert_uint_eq(fc_used(), 514 * MiB);
	CU_IS(cuMemFree(a + 16), CUDA_ERROR_INVALID_VALUE);
	CU_OK(cuMemFree(a));
	ck_assert_uint_eq(fc_used(), 512 * MiB);

	CUstream s;
	CU_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
	CU_OK(cuMemAllocAsync(&a, 6 * MiB, s));
	ck_assert_uint_eq(fc_used(), 518 * MiB);
	CU_OK(cuMemFreeAsync(a, s));
	ck_assert_uint_eq(fc_used(), 512 * MiB);

	/* VMM: counted from create until the last of release/unmap. */
	CUmemAllocationProp prop = { .type = CU_MEM_ALLOCATION_TYPE_PINNED,
				     .location = { .type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 0 } };
	CUmemGenericAllocationHandle h;
	CUdeviceptr va;
	CU_OK(cuMemCreate(&h, 8 * MiB, &prop, 0));
	ck_assert_uint_eq(fc_used(), 520 * MiB);
	CU_OK(cuMemAddressReserve(&va, 8 * MiB, 0, 0, 0));
	CU_OK(cuMemMap(va, 8 * MiB, 0, h, 0));
	CU_OK(cuMemRelease(h));
	ck_assert_uint_eq(fc_used(), 520 * MiB); /* still mapped */
	CU_OK(cuMemUnmap(va, 8 * MiB));
	ck_assert_uint_eq(fc_used(), 512 * MiB);
	CU_OK(cuMemAddressFree(va, 8 * MiB));

	/* Stack limit: the local-memory part of the context. */
	CU_OK(cuCtxSetLimit(CU_LIMIT_STACK_SIZE, 0));
	ck_assert_uint_eq(fc_used(), 256 * MiB);
	CU_OK(cuCtxSetLimit(CU_LIMIT_STACK_SIZE, 1024));
	ck_assert_uint_eq(fc_used(), 512 * MiB);

	/* Modules, libraries, graph execs. */
	static const char image[] = "fake cubin";
	CUmodule m;
	CUlibrary l;
	CU_OK(cuModuleLoadData(&m, image));
	ck_assert_uint_eq(fc_used(), 514 * MiB);
	CU_OK(cuLibraryLoadData(&l, image, NULL, NULL, 0, NULL, NULL, 0));
	ck_assert_uint_eq(fc_used(), 516 * MiB);
	CU_OK(cuModuleUnload(m));
	CU_OK(cuLibraryUnload(l));
	ck_assert_uint_eq(fc_used(), 512 * MiB);
	CUgraph g;
	CUgraphExec e;
	CU_OK(cuGraphCreate(&g, 0));
	CU_OK(cuGraphInstantiate(&e, g, 0));
	ck_assert_uint_eq(fc_used(), 516 * MiB);
	CU_OK(cuGraphExecDestroy(e));
	CU_OK(cuGraphDestroy(g));
	ck_assert_uint_eq(fc_used(), 512 * MiB);

	/* A second context costs another 512 MiB and takes its allocations. */
	CUcontext c2;
	CU_OK(cuCtxCreate(&c2, NULL, 0, 0));
	ck_assert_uint_eq(fc_used(), 1024 * MiB);
	CU_OK(cuMemAlloc(&a, 10 * MiB));
	ck_assert_uint_eq(fc_used(), 1034 * MiB);
	CU_OK(cuCtxDestroy(c2));
	ck_assert_uint_eq(fc_used(), 512 * MiB);
	fakecuda_get_usage(&u);
	ck_assert_uint_eq(u.used, 512 * MiB);
	ck_assert_uint_eq(u.contexts, 1);
	ck_assert_uint_eq(u.allocations, 0);
}
END_TEST

START_TEST(test_oom_and_env)
{
	setenv("FAKECUDA_TOTAL_BYTES", "1GiB", 1);
	setenv("FAKECUDA_CONTEXT_BYTES", "300MiB", 1);
	setenv("FAKECUDA_STACK_THREADS", "102400", 1); /* 100 MiB at 1024 */
	setenv("FAKECUDA_MODULE_BYTES", "1048576", 1);
	fc_setup();
	size_t f, t;
	CU_OK(cuMemGetInfo(&f, &t));
	ck_assert_uint_eq(t, 1 * GiB);
	ck_assert_uint_eq(t - f, 300 * MiB);
	CU_OK(cuCtxSetLimit(CU_LIMIT_STACK_SIZE, 0));
	ck_assert_uint_eq(fc_used(), 200 * MiB);
	CU_OK(cuCtxSetLimit(CU_LIMIT_STACK_SIZE, 1024));

	CUdeviceptr a, b;
	CU_IS(cuMemAlloc(&a, 800 * MiB), CUDA_ERROR_OUT_OF_MEMORY);
	CU_OK(cuMemAlloc(&a, 700 * MiB));
	CUmemAllocationProp prop = { .type = CU_MEM_ALLOCATION_TYPE_PINNED,
				     .location = { .type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 0 } };
	CUmemGenericAllocationHandle h;
	CU_IS(cuMemCreate(&h, 26 * MiB, &prop, 0), CUDA_ERROR_OUT_OF_MEMORY);
	CU_OK(cuMemCreate(&h, 22 * MiB, &prop, 0));
	ck_assert_uint_eq(fc_used(), 1022 * MiB);
	CU_IS(cuMemAlloc(&b, 4 * MiB), CUDA_ERROR_OUT_OF_MEMORY);
	CUmodule m;
	CU_OK(cuModuleLoadData(&m, "x"));
	CU_OK(cuModuleLoadData(&m, "x")); /* exactly full */
	ck_assert_uint_eq(fc_used(), 1 * GiB);
	CU_IS(cuModuleLoadData(&m, "x"), CUDA_ERROR_OUT_OF_MEMORY);
	CU_OK(cuMemRelease(h));
	CU_OK(cuMemAlloc(&b, 20 * MiB));
}
END_TEST

static CUmemAllocationProp dev_prop(void)
{
	CUmemAllocationProp prop;
	memset(&prop, 0, sizeof(prop));
	prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop.location.id = 0;
	return prop;
}

static void set_rw(CUdeviceptr va, size_t size)
{
	CUmemAccessDesc d;
	memset(&d, 0, sizeof(d));
	d.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	d.location.id = 0;
	d.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	CU_OK(cuMemSetAccess(va, size, &d, 1));
}

START_TEST(test_vmm_semantics)
{
	fc_setup();
	CUmemAllocationProp prop = dev_prop();
	size_t gran;
	CU_OK(cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
	ck_assert_uint_eq(gran, 2 * MiB);

	/* The addr hint is honoured: reserve, free, reserve again there. */
	CUdeviceptr va, va2;
	const size_t sz = 4 * MiB;
	CU_OK(cuMemAddressReserve(&va, sz, 0, 0, 0));
	ck_assert_uint_eq(va % (2 * MiB), 0);
	CU_OK(cuMemAddressFree(va, sz));
	CU_OK(cuMemAddressReserve(&va2, sz, 0, va, 0));
	ck_assert_uint_eq(va2, va);
	ck_assert(fc_read_faults((unsigned char *)va));

	CUmemGenericAllocationHandle h1, h2, h3;
	CU_OK(cuMemCreate(&h1, sz, &prop, 0));
	CU_OK(cuMemMap(va, sz, 0, h1, 0));
	ck_assert(fc_read_faults((unsigned char *)va)); /* no access granted yet */
	unsigned char buf[64];
	CU_IS(cuMemcpyHtoD(va, buf, sizeof(buf)), CUDA_ERROR_ILLEGAL_ADDRESS);
	set_rw(va, sz);
	unsigned long long fl;
	CUmemLocation loc = { .type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 0 };
	CU_OK(cuMemGetAccess(&fl, &loc, va));
	ck_assert_uint_eq(fl, CU_MEM_ACCESS_FLAGS_PROT_READWRITE);
	/* Fresh memory is garbage, not zero. */
	ck_assert_uint_ne(((unsigned char *)va)[0], 0);
	memset((void *)va, 0x11, sz);
	CU_OK(cuMemsetD8(va + 100, 0x22, 4));
	CU_OK(cuMemcpyDtoH(buf, va + 98, 8));
	ck_assert_uint_eq(buf[0], 0x11);
	ck_assert_uint_eq(buf[2], 0x22);
	ck_assert_uint_eq(buf[6], 0x11);

	/* Retain gives the same handle and a reference to drop. */
	CU_OK(cuMemRetainAllocationHandle(&h3, (void *)(va + 5)));
	ck_assert_uint_eq(h3, h1);
	CU_OK(cuMemRelease(h3));

	/* cuMemFree and legacy IPC refuse VMM memory. */
	CU_IS(cuMemFree(va), CUDA_ERROR_INVALID_VALUE);
	CUipcMemHandle ipc;
	CU_IS(cuIpcGetMemHandle(&ipc, va), CUDA_ERROR_INVALID_VALUE);
	int legacy = 1;
	CU_OK(cuPointerGetAttribute(&legacy, CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE, va));
	ck_assert_int_eq(legacy, 0);
	CUdeviceptr start;
	size_t rsize;
	CU_OK(cuPointerGetAttribute(&start, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, va + 7));
	ck_assert_uint_eq(start, va);
	CU_OK(cuPointerGetAttribute(&rsize, CU_POINTER_ATTRIBUTE_RANGE_SIZE, va + 7));
	ck_assert_uint_eq(rsize, sz);

	/* Cannot free a reservation that is still mapped; cannot map twice. */
	CU_IS(cuMemAddressFree(va, sz), CUDA_ERROR_INVALID_VALUE);
	CU_IS(cuMemMap(va, sz, 0, h1, 0), CUDA_ERROR_ALREADY_MAPPED);

	/* Unmap: the address stays reserved and faults again. */
	CU_OK(cuMemUnmap(va, sz));
	ck_assert(fc_read_faults((unsigned char *)va));
	CU_IS(cuMemcpyDtoH(buf, va, 8), CUDA_ERROR_ILLEGAL_ADDRESS);
	CU_OK(cuMemRelease(h1));
	CU_IS(cuMemRelease(h1), CUDA_ERROR_INVALID_VALUE);

	/* Remap a fresh handle at the same address: old contents are gone. */
	CU_OK(cuMemCreate(&h2, sz, &prop, 0));
	CU_OK(cuMemMap(va, sz, 0, h2, 0));
	set_rw(va, sz);
	ck_assert_uint_ne(((unsigned char *)va)[0], 0x11);
	ck_assert_uint_ne(((unsigned char *)va)[0], 0);
	ck_assert_uint_ne(((unsigned char *)va)[sz - 1], 0x11);
	CU_OK(cuMemUnmap(va, sz));
	CU_OK(cuMemRelease(h2));
	CU_OK(cuMemAddressFree(va, sz));

	/* Two handles mapped back to back; a copy may span them. */
	CUdeviceptr big;
	CU_OK(cuMemAddressReserve(&big, 8 * MiB, 0, 0, 0));
	CU_OK(cuMemCreate(&h1, 4 * MiB, &prop, 0));
	CU_OK(cuMemCreate(&h2, 4 * MiB, &prop, 0));
	CU_OK(cuMemMap(big, 4 * MiB, 0, h1, 0));
	CU_OK(cuMemMap(big + 4 * MiB, 4 * MiB, 0, h2, 0));
	set_rw(big, 8 * MiB);
	CU_OK(cuMemsetD32(big + 4 * MiB - 8, 0xdeadbeef, 4));
	uint32_t w[4];
	CU_OK(cuMemcpyDtoH(w, big + 4 * MiB - 8, sizeof(w)));
	ck_assert_uint_eq(w[0], 0xdeadbeef);
	ck_assert_uint_eq(w[3], 0xdeadbeef);
	CU_IS(cuMemUnmap(big, 2 * MiB), CUDA_ERROR_INVALID_VALUE); /* part of a mapping */
	CU_OK(cuMemUnmap(big, 8 * MiB));
	CU_OK(cuMemRelease(h1));
	CU_OK(cuMemRelease(h2));
	CU_OK(cuMemAddressFree(big, 8 * MiB));
	struct fakecuda_usage u;
	fakecuda_get_usage(&u);
	ck_assert_uint_eq(u.vmm_bytes, 0);
	ck_assert_uint_eq(u.vmm_handles, 0);
	ck_assert_uint_eq(u.vmm_mappings, 0);
}
END_TEST

START_TEST(test_zero_fresh)
{
	setenv("FAKECUDA_ZERO_FRESH", "1", 1);
	fc_setup();
	CUmemAllocationProp prop = dev_prop();
	CUmemGenericAllocationHandle h;
	CUdeviceptr va, a;
	CU_OK(cuMemAddressReserve(&va, 2 * MiB, 0, 0, 0));
	CU_OK(cuMemCreate(&h, 2 * MiB, &prop, 0));
	CU_OK(cuMemMap(va, 2 * MiB, 0, h, 0));
	set_rw(va, 2 * MiB);
	ck_assert_uint_eq(((unsigned char *)va)[12345], 0);
	CU_OK(cuMemAlloc(&a, 4096));
	ck_assert_uint_eq(((unsigned char *)a)[100], 0);
}
END_TEST

START_TEST(test_alloc_memory_and_pointers)
{
	CUcontext ctx = fc_setup();
	CUdeviceptr a, base;
	size_t size;
	CU_OK(cuMemAlloc(&a, 1000));
	ck_assert_uint_ne(((unsigned char *)a)[0], 0); /* garbage, not zero */
	char in[1000], out[1000];
	for (int i = 0; i < 1000; i++)
		in[i] = (char)i;
	CU_OK(cuMemcpyHtoD(a, in, sizeof(in)));
	CU_OK(cuMemcpyDtoH(out, a, sizeof(out)));
	ck_assert_mem_eq(in, out, sizeof(in));
	CU_OK(cuMemGetAddressRange(&base, &size, a + 10));
	ck_assert_uint_eq(base, a);
	ck_assert_uint_eq(size, 1000);
	CUcontext pc;
	unsigned mt;
	int ord = -1, legacy = 0;
	CU_OK(cuPointerGetAttribute(&pc, CU_POINTER_ATTRIBUTE_CONTEXT, a));
	ck_assert_ptr_eq(pc, ctx);
	CU_OK(cuPointerGetAttribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, a));
	ck_assert_uint_eq(mt, CU_MEMORYTYPE_DEVICE);
	CU_OK(cuPointerGetAttribute(&ord, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, a));
	ck_assert_int_eq(ord, 0);
	CU_OK(cuPointerGetAttribute(&legacy, CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE, a));
	ck_assert_int_eq(legacy, 1);
	CUipcMemHandle ipc;
	CU_OK(cuIpcGetMemHandle(&ipc, a));
	CU_IS(cuPointerGetAttribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, (CUdeviceptr)in),
	      CUDA_ERROR_INVALID_VALUE);
	CU_IS(cuMemcpyHtoD((CUdeviceptr)out, in, 4), CUDA_ERROR_INVALID_VALUE);
	CU_IS(cuMemcpyHtoD(a, in, 4 * MiB), CUDA_ERROR_INVALID_VALUE);

	void *host;
	CU_OK(cuMemHostAlloc(&host, 4096, 0));
	CU_OK(cuPointerGetAttribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, (CUdeviceptr)host));
	ck_assert_uint_eq(mt, CU_MEMORYTYPE_HOST);
	CU_OK(cuMemcpyDtoD((CUdeviceptr)host, a, 16)); /* UVA: pinned host is addressable */
	ck_assert_mem_eq(host, in, 16);
	CU_OK(cuMemFreeHost(host));
	CU_OK(cuMemAllocHost(&host, 100));
	CU_OK(cuMemFreeHost(host));
	static char reg[8192];
	CU_OK(cuMemHostRegister(reg, sizeof(reg), 0));
	CU_IS(cuMemHostRegister(reg, sizeof(reg), 0), CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED);
	CU_OK(cuMemHostUnregister(reg));
	CU_OK(cuMemcpy((CUdeviceptr)out, a, 10)); /* unified copy to pageable memory */
	ck_assert_mem_eq(out, in, 10);
	CU_OK(cuMemsetD32(a, 0x01020304, 10));
	CU_OK(cuMemcpyDtoH(out, a, 8));
	ck_assert_uint_eq(((uint32_t *)(void *)out)[1], 0x01020304);
	CU_IS(cuMemsetD32(a + 1, 0, 1), CUDA_ERROR_INVALID_VALUE);
	CU_OK(cuMemFree(a));
}
END_TEST

static void *proc(const char *name, int ver, cuuint64_t flags, CUresult want,
		  CUdriverProcAddressQueryResult want_status)
{
	void *fn = (void *)1;
	CUdriverProcAddressQueryResult st = 99;
	CU_IS(cuGetProcAddress_v2(name, &fn, ver, flags, &st), want);
	ck_assert_msg(st == want_status, "%s status %d", name, (int)st);
	return fn;
}

START_TEST(test_get_proc_address)
{
	const cuuint64_t PT = CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;
	const CUdriverProcAddressQueryResult OK = CU_GET_PROC_ADDRESS_SUCCESS;
	ck_assert_ptr_eq(proc("cuMemAlloc", 13000, 0, CUDA_SUCCESS, OK), (void *)cuMemAlloc_v2);
	ck_assert_ptr_eq(proc("cuMemAlloc", 13000, PT, CUDA_SUCCESS, OK), (void *)cuMemAlloc_v2);
	ck_assert_ptr_eq(proc("cuMemAllocAsync", 13000, PT, CUDA_SUCCESS, OK),
			 dlsym(RTLD_DEFAULT, "cuMemAllocAsync_ptsz"));
	ck_assert_ptr_eq(proc("cuMemAllocAsync", 13000, CU_GET_PROC_ADDRESS_LEGACY_STREAM,
			      CUDA_SUCCESS, OK), dlsym(RTLD_DEFAULT, "cuMemAllocAsync"));
	ck_assert_ptr_eq(proc("cuMemcpyHtoD", 12000, PT, CUDA_SUCCESS, OK),
			 dlsym(RTLD_DEFAULT, "cuMemcpyHtoD_v2_ptds"));
	ck_assert_ptr_eq(proc("cuStreamBeginCapture", 13000, 0, CUDA_SUCCESS, OK),
			 dlsym(RTLD_DEFAULT, "cuStreamBeginCapture_v2"));
	ck_assert_ptr_eq(proc("cuStreamBeginCapture", 10000, 0, CUDA_SUCCESS, OK),
			 dlsym(RTLD_DEFAULT, "cuStreamBeginCapture"));
	ck_assert_ptr_eq(proc("cuStreamGetCaptureInfo", 12000, PT, CUDA_SUCCESS, OK),
			 dlsym(RTLD_DEFAULT, "cuStreamGetCaptureInfo_v2_ptsz"));
	ck_assert_ptr_eq(proc("cuStreamGetCaptureInfo", 13000, 0, CUDA_SUCCESS, OK),
			 dlsym(RTLD_DEFAULT, "cuStreamGetCaptureInfo_v3"));
	ck_assert_ptr_eq(proc("cuCtxCreate", 13000, 0, CUDA_SUCCESS, OK),
			 dlsym(RTLD_DEFAULT, "cuCtxCreate_v4"));
	ck_assert_ptr_eq(proc("cuGetProcAddress", 13000, 0, CUDA_SUCCESS, OK),
			 dlsym(RTLD_DEFAULT, "cuGetProcAddress_v2"));
	ck_assert_ptr_eq(proc("cuGraphInstantiate", 13000, 0, CUDA_SUCCESS, OK),
			 dlsym(RTLD_DEFAULT, "cuGraphInstantiateWithFlags"));
	ck_assert_ptr_eq(proc("cuGraphInstantiate", 11000, 0, CUDA_SUCCESS, OK),
			 dlsym(RTLD_DEFAULT, "cuGraphInstantiate_v2"));
	ck_assert_ptr_null(proc("cuMemAlloc", 3000, 0, CUDA_ERROR_NOT_FOUND,
				CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT));
	ck_assert_ptr_null(proc("cuMemCreate", 10010, 0, CUDA_ERROR_NOT_FOUND,
				CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT));
	ck_assert_ptr_null(proc("cuNoSuchThing", 13000, 0, CUDA_ERROR_NOT_FOUND,
				CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND));
	void *fn;
	CU_IS(cuGetProcAddress_v2("cuMemAlloc", &fn, 13000, 4, NULL), CUDA_ERROR_INVALID_VALUE);
	/* The old 4-argument entry point, found with dlsym as libcudart does. */
	CUresult (*old)(const char *, void **, int, cuuint64_t) =
		(CUresult (*)(const char *, void **, int, cuuint64_t))dlsym(RTLD_DEFAULT,
									     "cuGetProcAddress");
	ck_assert_ptr_nonnull(old);
	CU_OK(old("cuMemFree", &fn, 12000, 0));
	ck_assert_ptr_eq(fn, (void *)cuMemFree_v2);

	/* Every function of the brief is reachable at 13000, both flags. */
	static const char *const names[] = {
		"cuInit", "cuDriverGetVersion", "cuDeviceGet", "cuDeviceGetCount", "cuDeviceGetName",
		"cuDeviceTotalMem", "cuDeviceGetAttribute", "cuDevicePrimaryCtxRetain",
		"cuDevicePrimaryCtxRelease", "cuDevicePrimaryCtxGetState", "cuCtxCreate",
		"cuCtxDestroy", "cuCtxSetCurrent", "cuCtxGetCurrent", "cuCtxGetDevice",
		"cuCtxSynchronize", "cuCtxPushCurrent", "cuCtxPopCurrent", "cuCtxGetLimit",
		"cuCtxSetLimit", "cuGetErrorName", "cuGetErrorString", "cuMemGetInfo", "cuMemAlloc",
		"cuMemFree", "cuMemAllocPitch", "cuMemAllocAsync", "cuMemFreeAsync",
		"cuMemGetAddressRange", "cuPointerGetAttribute", "cuIpcGetMemHandle",
		"cuMemAddressReserve", "cuMemAddressFree", "cuMemCreate", "cuMemRelease", "cuMemMap",
		"cuMemUnmap", "cuMemSetAccess", "cuMemGetAccess", "cuMemRetainAllocationHandle",
		"cuMemGetAllocationGranularity", "cuMemcpyHtoD", "cuMemcpyDtoH", "cuMemcpyDtoD",
		"cuMemcpyHtoDAsync", "cuMemcpyDtoHAsync", "cuMemcpyDtoDAsync", "cuMemcpy",
		"cuMemcpyAsync", "cuMemsetD8", "cuMemsetD8Async", "cuMemsetD32", "cuMemsetD32Async",
		"cuMemHostAlloc", "cuMemAllocHost", "cuMemFreeHost", "cuMemHostRegister",
		"cuMemHostUnregister", "cuStreamCreate", "cuStreamCreateWithPriority",
		"cuStreamDestroy", "cuStreamSynchronize", "cuStreamQuery", "cuStreamWaitEvent",
		"cuEventCreate", "cuEventDestroy", "cuEventRecord", "cuEventQuery",
		"cuEventSynchronize", "cuEventElapsedTime", "cuStreamBeginCapture",
		"cuStreamEndCapture", "cuStreamIsCapturing", "cuStreamGetCaptureInfo",
		"cuThreadExchangeStreamCaptureMode", "cuGraphCreate", "cuGraphInstantiateWithFlags",
		"cuGraphLaunch", "cuGraphExecDestroy", "cuGraphDestroy", "cuModuleLoadData",
		"cuModuleUnload", "cuLibraryLoadData", "cuLibraryUnload", "cuGetProcAddress",
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		ck_assert_msg(proc(names[i], 13000, 0, CUDA_SUCCESS, OK) != NULL, "%s", names[i]);
		ck_assert_msg(proc(names[i], 13000, PT, CUDA_SUCCESS, OK) != NULL, "%s", names[i]);
	}
}
END_TEST

START_TEST(test_fault_injection)
{
	setenv("FAKECUDA_FAIL",
	       "cuMemCreate:3:CUDA_ERROR_OUT_OF_MEMORY,cuMemAlloc_v2:2:2,cuMemMap:2+:CUDA_ERROR_UNKNOWN,"
	       "bogus", 1);
	fc_setup();
	CUmemAllocationProp prop = dev_prop();
	CUmemGenericAllocationHandle h[4];
	CU_OK(cuMemCreate(&h[0], 2 * MiB, &prop, 0));
	CU_OK(cuMemCreate(&h[1], 2 * MiB, &prop, 0));
	CU_IS(cuMemCreate(&h[2], 2 * MiB, &prop, 0), CUDA_ERROR_OUT_OF_MEMORY);
	CU_OK(cuMemCreate(&h[3], 2 * MiB, &prop, 0));
	struct fakecuda_usage u;
	fakecuda_get_usage(&u);
	ck_assert_uint_eq(u.vmm_handles, 3); /* the failed call did nothing */
	ck_assert_uint_eq(fakecuda_call_count("cuMemCreate"), 4);

	CUdeviceptr a;
	CU_OK(cuMemAlloc(&a, 10));
	CU_IS(cuMemAlloc(&a, 10), CUDA_ERROR_OUT_OF_MEMORY);
	CU_OK(cuMemAlloc(&a, 10));
	ck_assert_uint_eq(fakecuda_call_count("cuMemAlloc"), 3);
	ck_assert_uint_eq(fakecuda_call_count("cuMemAlloc_v2"), 3);

	CUdeviceptr va;
	CU_OK(cuMemAddressReserve(&va, 8 * MiB, 0, 0, 0));
	CU_OK(cuMemMap(va, 2 * MiB, 0, h[0], 0));
	CU_IS(cuMemMap(va + 2 * MiB, 2 * MiB, 0, h[1], 0), CUDA_ERROR_UNKNOWN);
	CU_IS(cuMemMap(va + 4 * MiB, 2 * MiB, 0, h[3], 0), CUDA_ERROR_UNKNOWN);
}
END_TEST

START_TEST(test_fault_base_name_counts_ptsz)
{
	setenv("FAKECUDA_FAIL", "cuMemsetD8Async:2:CUDA_ERROR_LAUNCH_FAILED", 1);
	fc_setup();
	CUdeviceptr a;
	CU_OK(cuMemAlloc(&a, 64));
	CUresult (*ptsz)(CUdeviceptr, unsigned char, size_t, CUstream) =
		(CUresult (*)(CUdeviceptr, unsigned char, size_t, CUstream))dlsym(
			RTLD_DEFAULT, "cuMemsetD8Async_ptsz");
	CU_OK(cuMemsetD8Async(a, 1, 64, NULL));
	CU_IS(ptsz(a, 1, 64, NULL), CUDA_ERROR_LAUNCH_FAILED);
	CU_OK(ptsz(a, 1, 64, NULL));
	ck_assert_uint_eq(fakecuda_call_count("cuMemsetD8Async"), 3);
	ck_assert_uint_eq(fakecuda_call_count("cuMemsetD8Async_ptsz"), 2);
}
END_TEST

START_TEST(test_streams_events)
{
	fc_setup();
	CUstream s;
	CUevent e1, e2, nt;
	float ms = -1;
	CU_OK(cuStreamCreateWithPriority(&s, 0, -1));
	CU_OK(cuEventCreate(&e1, 0));
	CU_OK(cuEventCreate(&e2, 0));
	CU_OK(cuEventCreate(&nt, CU_EVENT_DISABLE_TIMING));
	CU_OK(cuEventRecord(e1, s));
	CU_OK(cuEventRecord(e2, s));
	CU_OK(cuEventRecord(nt, s));
	CU_OK(cuStreamWaitEvent(s, e1, 0));
	CU_OK(cuStreamSynchronize(s));
	CU_OK(cuStreamQuery(s));
	CU_OK(cuEventQuery(e2));
	CU_OK(cuEventSynchronize(e2));
	CU_OK(cuEventElapsedTime(&ms, e1, e2));
	ck_assert(ms >= 0);
	CU_IS(cuEventElapsedTime(&ms, e1, nt), CUDA_ERROR_INVALID_HANDLE);
	CU_OK(cuEventDestroy(e1));
	CU_IS(cuEventQuery(e1), CUDA_ERROR_INVALID_HANDLE);
	CU_OK(cuStreamDestroy(s));
	CU_IS(cuStreamSynchronize(s), CUDA_ERROR_INVALID_HANDLE);
	CU_OK(cuStreamSynchronize(NULL));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fakecuda_driver");
	TCase *tc = tcase_create("driver");
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_errors_before_init);
	tcase_add_test(tc, test_device_facts);
	tcase_add_test(tc, test_contexts);
	tcase_add_test(tc, test_accounting_exact);
	tcase_add_test(tc, test_oom_and_env);
	tcase_add_test(tc, test_vmm_semantics);
	tcase_add_test(tc, test_zero_fresh);
	tcase_add_test(tc, test_alloc_memory_and_pointers);
	tcase_add_test(tc, test_get_proc_address);
	tcase_add_test(tc, test_fault_injection);
	tcase_add_test(tc, test_fault_base_name_counts_ptsz);
	tcase_add_test(tc, test_streams_events);
	suite_add_tcase(s, tc);
	return fc_run_suite(s);
}
