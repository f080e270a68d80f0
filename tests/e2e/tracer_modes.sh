#!/bin/bash
# Issue 19 on the fake driver: `memsaver run` traces from the interposer
# alone unless --cupti adds the CUPTI subscriber.  The same workload runs in
# both modes and the reports must agree: the bytes of every
# category, and the bytes of every source of the unreclaimed memory.  The
# workload reaches the driver as libcudart does (cuGetProcAddress_v2) and
# makes every event CUPTI reports: a context by cuCtxCreate, explicit module
# and library loads, a module loaded at its first launch
# (FAKECUDA_LAZY_LOADING), streams, a capture with an allocation in it, a
# graph instantiated through the name cudart 12+ asks ("cuGraphInstantiate"),
# managed, pitch and pool allocations, a pitch free.  The allowed differences
# are listed in ALLOWED below, each with its reason.
. "$(dirname "$0")/common.bash"
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}

cat >"$T/work.c" <<'C'
#include <cuda.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

static __typeof__(&cuGetProcAddress_v2) gpa;
static void *fn(const char *name, int version)
{
	void *p = NULL;
	CUdriverProcAddressQueryResult st;
	if (gpa(name, &p, version, CU_GET_PROC_ADDRESS_DEFAULT, &st) != CUDA_SUCCESS || !p) {
		fprintf(stderr, "work: no %s\n", name);
		exit(2);
	}
	return p;
}
#define F(name, ver, ...) ((CUresult(*)(__VA_ARGS__))fn(name, ver))
#define OK(x) do { CUresult r_ = (x); if (r_) { fprintf(stderr, "work: %s: %d\n", #x, r_); exit(3); } } while (0)
#define MiB (1ull << 20)

int main(void)
{
	void *cuda = dlopen("libcuda.so.1", RTLD_NOW);
	gpa = cuda ? (__typeof__(&cuGetProcAddress_v2))dlsym(cuda, "cuGetProcAddress_v2") : NULL;
	int (*region_begin)(const char *) = (int (*)(const char *))dlsym(RTLD_DEFAULT, "msv_region_begin");
	int (*region_end)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "msv_region_end");
	int (*pause)(const char *) = (int (*)(const char *))dlsym(RTLD_DEFAULT, "msv_pause");
	if (!gpa || !region_begin || !region_end || !pause)
		return fprintf(stderr, "work: not under memsaver run\n"), 2;
	CUcontext ctx;
	CUdevice dev;
	OK(F("cuInit", 2000, unsigned)(0));
	OK(F("cuDeviceGet", 2000, CUdevice *, int)(&dev, 0));
	OK(F("cuCtxCreate", 13000, CUcontext *, CUctxCreateParams *, unsigned, CUdevice)(&ctx, NULL, 0, dev));

	CUdeviceptr w, kv, pitch, managed, a1, a2, g;
	size_t pitch_bytes;
	region_begin("weights");
	OK(F("cuMemAlloc", 3020, CUdeviceptr *, size_t)(&w, 16 * MiB));
	region_end();
	region_begin("kv");
	OK(F("cuMemAlloc", 3020, CUdeviceptr *, size_t)(&kv, 32 * MiB));
	region_end();
	OK(F("cuMemAllocPitch", 3020, CUdeviceptr *, size_t *, size_t, size_t, unsigned)(&pitch, &pitch_bytes,
											  4096, 256, 4));
	OK(F("cuMemAllocManaged", 6000, CUdeviceptr *, size_t, unsigned)(&managed, 4 * MiB, 1));

	CUstream s, s2;
	OK(F("cuStreamCreate", 2000, CUstream *, unsigned)(&s, CU_STREAM_NON_BLOCKING));
	OK(F("cuStreamCreateWithPriority", 5050, CUstream *, unsigned, int)(&s2, 0, -1));
	OK(F("cuMemAllocAsync", 11020, CUdeviceptr *, size_t, CUstream)(&a1, 2 * MiB, s));
	OK(F("cuMemAllocFromPoolAsync", 11020, CUdeviceptr *, size_t, CUmemoryPool, CUstream)(&a2, 2 * MiB,
											      NULL, s2));

	CUlibrary lib;
	OK(F("cuLibraryLoadData", 12000, CUlibrary *, const void *, CUjit_option *, void **, unsigned,
	     CUlibraryOption *, void **, unsigned)(&lib, "library image", NULL, NULL, 0, NULL, NULL, 0));
	CUmodule mod;
	CUfunction k;
	OK(F("cuModuleLoadData", 2000, CUmodule *, const void *)(&mod, "module image"));
	OK(F("cuModuleGetFunction", 2000, CUfunction *, CUmodule, const char *)(&k, mod, "decode"));
	for (int i = 0; i < 3; i++)
		OK(F("cuLaunchKernel", 4000, CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
		     unsigned, unsigned, CUstream, void **, void **)(k, 1, 1, 1, 1, 1, 1, 0, s, NULL, NULL));

	CUgraph graph;
	CUgraphExec exec;
	OK(F("cuStreamBeginCapture", 10010, CUstream, CUstreamCaptureMode)(s, CU_STREAM_CAPTURE_MODE_RELAXED));
	OK(F("cuMemAlloc", 3020, CUdeviceptr *, size_t)(&g, 8 * MiB));
	OK(F("cuStreamEndCapture", 10000, CUstream, CUgraph *)(s, &graph));
	OK(F("cuGraphInstantiate", 12000, CUgraphExec *, CUgraph, unsigned long long)(&exec, graph, 0));

	OK(F("cuMemFree", 3020, CUdeviceptr)(pitch));
	OK(F("cuStreamSynchronize", 2000, CUstream)(s));
	if (pause(NULL) != 0)
		return fprintf(stderr, "work: pause failed\n"), 4;
	printf("work: done\n");
	return 0;
}
C
cc -std=gnu11 -Wall -Wextra -Werror -I"$CUDA_HOME/include" -o "$T/work" "$T/work.c" -ldl ||
	fail "building the workload"

export FAKECUDA_LAZY_LOADING=1 FAKECUDA_MODULE_BYTES=6MiB FAKECUDA_GRAPH_EXEC_BYTES=10MiB
run_mode() { # tag, memsaver run options...
	local tag=$1
	shift
	"$MS" run "$@" --trace "$T/$tag.trace" -- "$T/work" >"$T/$tag.out" 2>"$T/$tag.err" ||
		{ cat "$T/$tag.out" "$T/$tag.err"; fail "$tag: workload under memsaver run failed"; }
	"$MS" analyze "$T/$tag.trace" -o "$T/$tag.json" 2>"$T/$tag.aerr" ||
		{ cat "$T/$tag.aerr"; fail "$tag: analyze failed"; }
	"$MS" report "$T/$tag.json" >"$T/$tag.txt" || fail "$tag: report failed"
}
run_mode cupti --cupti
run_mode interposer
grep -q '^tracer: CUPTI and interposer$' "$T/cupti.txt" || { cat "$T/cupti.txt"; fail "cupti: the report does not name its mode"; }
grep -q '^tracer: interposer only: MEMSAVER_CUPTI=0$' "$T/interposer.txt" ||
	{ cat "$T/interposer.txt"; fail "interposer: the report does not name its mode"; }
ok "each report names its tracer mode"

py '
import json, sys
MiB = 1 << 20
c, i = (json.load(open(p)) for p in sys.argv[1:3])
assert c["process"]["cupti"]["attached"] is True, c["process"]["cupti"]
assert i["process"]["cupti"]["attached"] is False, i["process"]["cupti"]

def cats(r):
    ph = [p for p in r["phases"] if p["label"] == "before_pause"][-1]
    return {k: v["allocated_bytes"] for k, v in ph["categories"].items() if v["allocated_bytes"]}

def sources(r):
    return {s["source"] + (" (%s)" % s["reason"] if s.get("reason") else ""): s for s in r["attribution"]["sources"]}

def sites(s):
    return sorted((t["site"], t["bytes"]) for t in s["top_sites"])

# What may differ between the modes, and why.  Only counts: the interposer
# takes its lazy-loading checkpoint at every function'"'"'s first launch, CUPTI
# at every module load (one module, three launches of one function here:
# the same count); nothing else.
ALLOWED = {}

diff = []
cc, ic = cats(c), cats(i)
for k in sorted(set(cc) | set(ic)):
    if cc.get(k) != ic.get(k):
        diff.append("category %s: cupti %s, interposer %s" % (k, cc.get(k), ic.get(k)))
cs, is_ = sources(c), sources(i)
for k in sorted(set(cs) | set(is_)):
    a, b = cs.get(k), is_.get(k)
    if not a or not b or a["bytes"] != b["bytes"]:
        diff.append("source %s: cupti %s, interposer %s" % (k, a and a["bytes"], b and b["bytes"]))
    elif sites(a) != sites(b):
        diff.append("source %s sites: cupti %s, interposer %s" % (k, sites(a), sites(b)))
    elif a["count"] != b["count"] and k not in ALLOWED:
        diff.append("source %s count: cupti %d, interposer %d" % (k, a["count"], b["count"]))
if diff:
    print("\n".join(diff)); sys.exit(1)

want = {"weights": 16 * MiB, "kv": 32 * MiB, "graph": 8 * MiB, "other": 8 * MiB}
assert cc == want, "categories %r, want %r" % (cc, want)
by_name = {s["source"]: s["bytes"] for s in c["attribution"]["sources"]}
got = {k: by_name.get(k) for k in ("driver:modules", "driver:lazy_load", "driver:graph_exec")}
assert got == {"driver:modules": 6 * MiB, "driver:lazy_load": 6 * MiB, "driver:graph_exec": 10 * MiB}, got
assert by_name["unattributed"] == 0 and by_name["driver:context"] > 0, by_name
lazy = [s for s in c["attribution"]["sources"] if s["source"] == "driver:lazy_load"][0]["top_sites"][0]["site"]
assert lazy.startswith("work"), "lazy_load site %r" % lazy
' "$T/cupti.json" "$T/interposer.json" || fail "the two modes differ"
ok "categories and sources equal in both modes (modules, lazy load, graph, context, unattributed 0)"
