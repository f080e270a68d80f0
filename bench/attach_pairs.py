#!/usr/bin/env python3
"""Per-call cost of memsaver attach's probes: cuMemAlloc_v2 + cuMemFree_v2
pairs straight on libcuda.so.1 (ctypes, no PyTorch), timed before and after
an attach.  Prints its pid, runs --pairs pairs ("phase":"before"), waits for
--go FILE (attach meanwhile), runs them again ("phase":"after").  JSON lines.
Works on a GPU and on the fake driver (LD_LIBRARY_PATH=build/fakecuda)."""
import argparse, ctypes, json, os, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--pairs", type=int, default=20000)
ap.add_argument("--size", type=int, default=1 << 20,
                help="bytes per allocation; 0 = calls that fail at once (probe cost alone)")
ap.add_argument("--go", required=True)
a = ap.parse_args()
cu = ctypes.CDLL("libcuda.so.1")
def ck(r, what):
    if r != 0:
        sys.exit("%s failed: CUresult %d" % (what, r))
ck(cu.cuInit(0), "cuInit")
dev, ctx = ctypes.c_int(), ctypes.c_void_p()
ck(cu.cuDeviceGet(ctypes.byref(dev), 0), "cuDeviceGet")
ck(cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
ck(cu.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
alloc, free = cu.cuMemAlloc_v2, cu.cuMemFree_v2
alloc.argtypes = [ctypes.POINTER(ctypes.c_uint64), ctypes.c_size_t]
free.argtypes = [ctypes.c_uint64]
p = ctypes.c_uint64()

def run(phase):
    for _ in range(min(1000, a.pairs)):  # warm-up
        alloc(ctypes.byref(p), a.size); free(p.value)
    t = time.perf_counter_ns()
    for _ in range(a.pairs):
        r = alloc(ctypes.byref(p), a.size)
        if a.size:
            ck(r, "cuMemAlloc_v2")
            ck(free(p.value), "cuMemFree_v2")
        else:
            free(0)
    us = (time.perf_counter_ns() - t) / 1e3 / a.pairs
    print(json.dumps({"bench": "attach_pairs", "phase": phase, "pairs": a.pairs,
                      "size": a.size, "us_per_pair": round(us, 3)}), flush=True)

print(json.dumps({"pid": os.getpid()}), flush=True)
run("before")
while not os.path.exists(a.go):
    time.sleep(0.01)
run("after")
