#!/usr/bin/env python3
"""cudaMalloc + cudaFree pairs through libcudart (ctypes releases the GIL around each
call, as PyTorch does before dispatch).  Prints one JSON line: microseconds per pair.
Run it plain and under `memsaver run` to get the tracer's cost per allocation."""
import ctypes
import json
import sys
import time

n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
size = int(sys.argv[2]) if len(sys.argv) > 2 else 1 << 20
rt = ctypes.CDLL("libcudart.so.13")
ptr = ctypes.c_void_p()
assert rt.cudaFree(ctypes.c_void_p(0)) == 0  # context
for _ in range(200):
    rt.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(size))
    rt.cudaFree(ptr)
best = None
for _ in range(5):
    t = time.perf_counter()
    for _ in range(n // 5):
        if rt.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(size)) != 0:
            sys.exit("cudaMalloc failed")
        rt.cudaFree(ptr)
    us = (time.perf_counter() - t) / (n // 5) * 1e6
    best = us if best is None else min(best, us)
print(json.dumps({"bench": "alloc_pairs", "pairs": n, "bytes": size, "us_per_pair": round(best, 3)}), flush=True)
