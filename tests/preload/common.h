/* Shared by the preload tests (tests/preload/test_*.c): each runs under
 * LD_PRELOAD=libmemsaver.so on the fake driver (tests/run.sh), reaches the
 * driver as libcudart does (dlopen + cuGetProcAddress_v2) and the msv_* API
 * through dlsym, and reads its own trace (MEMSAVER_TRACE) record by record. */
#ifndef PRELOAD_COMMON_H
#define PRELOAD_COMMON_H
#include <check.h>
#include <cuda.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tracer/categories.h"
#include "tracer/trace_format.h"

struct drv {
	CUresult (*init)(unsigned);
	CUresult (*deviceGet)(CUdevice *, int);
	CUresult (*retain)(CUcontext *, CUdevice);
	CUresult (*setCurrent)(CUcontext);
	CUresult (*alloc)(CUdeviceptr *, size_t);
	CUresult (*free)(CUdeviceptr);
	CUresult (*range)(CUdeviceptr *, size_t *, CUdeviceptr);
	CUresult (*attr)(void *, CUpointer_attribute, CUdeviceptr);
	CUresult (*ipc)(CUipcMemHandle *, CUdeviceptr);
	CUresult (*info)(size_t *, size_t *);
	CUresult (*htod)(CUdeviceptr, const void *, size_t);
	CUresult (*dtoh)(void *, CUdeviceptr, size_t);
	CUresult (*ctxCreate)(CUcontext *, unsigned, CUdevice);
	CUresult (*ctxSync)(void);
	CUresult (*streamCreate)(CUstream *, unsigned);
	CUresult (*beginCapture)(CUstream, CUstreamCaptureMode);
	CUresult (*endCapture)(CUstream, CUgraph *);
	CUresult (*memsetAsync)(CUdeviceptr, unsigned char, size_t, CUstream);
	CUresult (*retainHandle)(CUmemGenericAllocationHandle *, void *);
	CUresult (*handleProps)(CUmemAllocationProp *, CUmemGenericAllocationHandle);
	CUresult (*release)(CUmemGenericAllocationHandle);
	CUresult (*exchangeMode)(CUstreamCaptureMode *);
	CUresult (*exportHandle)(void *, CUmemGenericAllocationHandle, CUmemAllocationHandleType, unsigned long long);
	CUresult (*dmabuf)(void *, CUdeviceptr, size_t, CUmemRangeHandleType, unsigned long long);
	int (*pause)(const char *);
	int (*resume)(const char *);
	int (*region_begin)(const char *);
	int (*region_end)(void);
	const char *(*last_error)(void);
	int (*report_write)(const char *);
};
static struct drv D;
static CUcontext CTX;

static void *proc(CUresult (*gpa)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *),
		  const char *name, int ver)
{
	void *p = NULL;
	CUdriverProcAddressQueryResult st;
	if (gpa(name, &p, ver, CU_GET_PROC_ADDRESS_DEFAULT, &st) != CUDA_SUCCESS || !p) {
		fprintf(stderr, "cuGetProcAddress(%s) failed\n", name);
		exit(1);
	}
	return p;
}

static void cuda_up(void)
{
	if (CTX)
		return;
	void *h = dlopen("libcuda.so.1", RTLD_NOW);
	if (!h) {
		fprintf(stderr, "%s\n", dlerror());
		exit(1);
	}
	CUresult (*gpa)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *) =
		(__typeof__(gpa))dlsym(h, "cuGetProcAddress_v2");
	if (!gpa)
		exit(1);
	D.init = proc(gpa, "cuInit", 2000);
	D.deviceGet = proc(gpa, "cuDeviceGet", 2000);
	D.retain = proc(gpa, "cuDevicePrimaryCtxRetain", 7000);
	D.setCurrent = proc(gpa, "cuCtxSetCurrent", 4000);
	D.alloc = proc(gpa, "cuMemAlloc", 3020);
	D.free = proc(gpa, "cuMemFree", 3020);
	D.range = proc(gpa, "cuMemGetAddressRange", 3020);
	D.attr = proc(gpa, "cuPointerGetAttribute", 4000);
	D.ipc = proc(gpa, "cuIpcGetMemHandle", 4010);
	D.info = proc(gpa, "cuMemGetInfo", 3020);
	D.htod = proc(gpa, "cuMemcpyHtoD", 3020);
	D.dtoh = proc(gpa, "cuMemcpyDtoH", 3020);
	D.ctxCreate = proc(gpa, "cuCtxCreate", 3020);
	D.ctxSync = proc(gpa, "cuCtxSynchronize", 2000);
	D.streamCreate = proc(gpa, "cuStreamCreate", 2000);
	D.beginCapture = proc(gpa, "cuStreamBeginCapture", 10010);
	D.endCapture = proc(gpa, "cuStreamEndCapture", 10000);
	D.memsetAsync = proc(gpa, "cuMemsetD8Async", 3020);
	D.retainHandle = proc(gpa, "cuMemRetainAllocationHandle", 11000);
	D.handleProps = proc(gpa, "cuMemGetAllocationPropertiesFromHandle", 10020);
	D.release = proc(gpa, "cuMemRelease", 10020);
	D.exchangeMode = proc(gpa, "cuThreadExchangeStreamCaptureMode", 10010);
	D.exportHandle = proc(gpa, "cuMemExportToShareableHandle", 10020);
	D.dmabuf = proc(gpa, "cuMemGetHandleForAddressRange", 11070);
	CUdevice dev;
	if (D.init(0) || D.deviceGet(&dev, 0) || D.retain(&CTX, dev) || D.setCurrent(CTX)) {
		fprintf(stderr, "CUDA init on the fake failed\n");
		exit(1);
	}
	D.pause = dlsym(RTLD_DEFAULT, "msv_pause");
	D.resume = dlsym(RTLD_DEFAULT, "msv_resume");
	D.region_begin = dlsym(RTLD_DEFAULT, "msv_region_begin");
	D.region_end = dlsym(RTLD_DEFAULT, "msv_region_end");
	D.last_error = dlsym(RTLD_DEFAULT, "msv_last_error");
	D.report_write = dlsym(RTLD_DEFAULT, "msv_report_write");
	if (!D.pause || !D.resume || !D.region_begin || !D.region_end || !D.last_error || !D.report_write) {
		fprintf(stderr, "libmemsaver.so is not preloaded\n");
		exit(1);
	}
}

static size_t used(void)
{
	size_t fr = 0, tot = 0;
	ck_assert_int_eq(D.info(&fr, &tot), CUDA_SUCCESS);
	return tot - fr;
}

/* Every non-string record of this process's trace; *n gets the count. */
static struct msv_rec *trace_records(size_t *n)
{
	const char *tp = getenv("MEMSAVER_TRACE");
	ck_assert_msg(tp && *tp, "MEMSAVER_TRACE is not set");
	char path[4096];
	const char *pp = strstr(tp, "%p");
	if (pp)
		snprintf(path, sizeof(path), "%.*s%d%s", (int)(pp - tp), tp, (int)getpid(), pp + 2);
	else
		snprintf(path, sizeof(path), "%s", tp);
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	struct msv_rec r, *out = NULL;
	size_t k = 0, cap = 0;
	ck_assert_int_eq(fseek(f, 64, SEEK_SET), 0);
	while (fread(&r, sizeof(r), 1, f) == 1) {
		if (r.type == MSV_REC_STRING) {
			fseek(f, (long)((r.size + 63) / 64 * 64), SEEK_CUR);
			continue;
		}
		if (k == cap) {
			cap = cap ? 2 * cap : 1024;
			out = realloc(out, cap * sizeof(*out));
		}
		out[k++] = r;
	}
	fclose(f);
	*n = k;
	return out;
}

/* The last ALLOC record of address p (NULL when none). */
static int find_alloc(CUdeviceptr p, struct msv_rec *got)
{
	size_t n;
	struct msv_rec *r = trace_records(&n);
	int found = 0;
	for (size_t i = 0; i < n; i++)
		if (r[i].type == MSV_REC_ALLOC && r[i].addr == p) {
			*got = r[i];
			found = 1;
		}
	free(r);
	return found;
}

#define CU_OK(call) ck_assert_msg((call) == CUDA_SUCCESS, "%s failed", #call)

/* A pattern of seed at [p, p+n), and whether it is still there. */
static void fill(CUdeviceptr p, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n);
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(i * 31 + seed);
	CU_OK(D.htod(p, b, n));
	free(b);
}

static int check(CUdeviceptr p, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n);
	int ok = D.dtoh(b, p, n) == CUDA_SUCCESS;
	for (size_t i = 0; ok && i < n; i++)
		ok = b[i] == (unsigned char)(i * 31 + seed);
	free(b);
	return ok;
}

/* Run fn with stderr going to a file; return what it wrote (malloc'd). */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
	char tmpl[] = "/tmp/msv-preload-XXXXXX";
	int fd = mkstemp(tmpl), saved = dup(2);
	fflush(stderr);
	dup2(fd, 2);
	fn(arg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	off_t len = lseek(fd, 0, SEEK_END);
	char *buf = calloc(1, (size_t)len + 1);
	pread(fd, buf, (size_t)len, 0);
	close(fd);
	unlink(tmpl);
	return buf;
}
#endif
