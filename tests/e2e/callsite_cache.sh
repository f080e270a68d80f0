#!/bin/bash
# The native call site of an allocation made through libcudart is the first
# frame outside it, found by unwinding; a thread that allocates again from
# the same chain of calls reuses the last answer (tracer/callsite.c).  Here
# two libraries, liba.so and libb.so, call a libcudart stand-in (skipped as
# libcudart is) through identical functions from one loop, so every call
# sits at the same stack depth and reaches the driver from the same return
# address: only the return addresses further up tell them apart.  They
# alternate, then each repeats; every allocation in the trace must name the
# library that made it (sizes tell which), both before and after a repeat.
. "$(dirname "$0")/common.bash"
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}

cat >"$T/rt.c" <<'C'
#include <cuda.h>
#include <dlfcn.h>
/* Reaches the driver as libcudart does: cuGetProcAddress from dlsym. */
static CUresult (*ma)(CUdeviceptr *, size_t), (*mf)(CUdeviceptr);
static void init(void)
{
	if (ma)
		return;
	void *h = dlopen("libcuda.so.1", RTLD_NOW);
	CUresult (*gpa)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *) =
		dlsym(h, "cuGetProcAddress_v2");
	CUresult (*ini)(unsigned) = dlsym(h, "cuInit");
	CUresult (*dg)(CUdevice *, int), (*rt)(CUcontext *, CUdevice), (*sc)(CUcontext);
	CUdriverProcAddressQueryResult q;
	ini(0);
	gpa("cuDeviceGet", (void **)&dg, 12000, 0, &q);
	gpa("cuDevicePrimaryCtxRetain", (void **)&rt, 12000, 0, &q);
	gpa("cuCtxSetCurrent", (void **)&sc, 12000, 0, &q);
	CUdevice d;
	CUcontext c;
	dg(&d, 0);
	rt(&c, d);
	sc(c);
	gpa("cuMemAlloc", (void **)&ma, 12000, 0, &q);
	gpa("cuMemFree", (void **)&mf, 12000, 0, &q);
}
int cudaMalloc(void **p, size_t n)
{
	init();
	CUdeviceptr d = 0;
	int r = ma(&d, n);
	*p = (void *)d;
	return r;
}
int cudaFree(void *p)
{
	init();
	return mf((CUdeviceptr)p);
}
C
for x in a b; do
	size=$([ $x = a ] && echo 4096 || echo 8192)
	cat >"$T/lib$x.c" <<C
int cudaMalloc(void **p, unsigned long n);
int cudaFree(void *p);
void *alloc_$x(void)
{
	void *p = 0;
	return cudaMalloc(&p, $size) ? 0 : p;
}
void free_$x(void *p)
{
	cudaFree(p);
}
C
done
cat >"$T/main.c" <<'C'
#include <stdio.h>
void *alloc_a(void), *alloc_b(void);
void free_a(void *), free_b(void *);
int main(void)
{
	/* a b a b ..., then a a a ..., then b b b ..., then a b again. */
	const char *order = "ababababababaaaaaaaabbbbbbbbabab";
	for (const char *c = order; *c; c++) {
		void *p = *c == 'a' ? alloc_a() : alloc_b();
		if (!p)
			return 1;
		*c == 'a' ? free_a(p) : free_b(p);
	}
	puts(order);
	return 0;
}
C
CC=${CC:-cc}
$CC -O2 -shared -fPIC -I"$CUDA_HOME/include" -o "$T/libcudart.so.99" "$T/rt.c" -ldl &&
	$CC -O2 -shared -fPIC -o "$T/liba.so" "$T/liba.c" -L"$T" -l:libcudart.so.99 -Wl,-rpath,"$T" &&
	$CC -O2 -shared -fPIC -o "$T/libb.so" "$T/libb.c" -L"$T" -l:libcudart.so.99 -Wl,-rpath,"$T" &&
	$CC -O2 -o "$T/main" "$T/main.c" -L"$T" -l:liba.so -l:libb.so -Wl,-rpath,"$T" ||
	fail "building the workload"

"$MS" run --no-python --trace "$T/t.trace" -- "$T/main" >"$T/out" 2>"$T/err" || { cat "$T/err"; fail "workload failed"; }
order=$(cat "$T/out")
"$MS" analyze --dump "$T/t.trace" >"$T/dump" || fail "analyze --dump"
py '
import json, sys
want = sys.argv[2]
got = [json.loads(l) for l in open(sys.argv[1])]
got = [r for r in got if r["type"] == "alloc" and r["size"] in (4096, 8192)]
libs = "".join("a" if r["library"] == "liba.so" else "b" if r["library"] == "libb.so" else "?" for r in got)
sizes = "".join("a" if r["size"] == 4096 else "b" for r in got)
if sizes != want:
    sys.exit("allocations in the trace %s, made %s" % (sizes, want))
if libs != want:
    sys.exit("libraries named %s, want %s (%s)" % (libs, want, sorted({r["library"] for r in got})))
print("ok: %d allocations, each named by the library that made it" % len(got))
' "$T/dump" "$order" || fail "call sites"
ok "same depth, same driver return address, two libraries: every allocation named right"
