#!/usr/bin/env python3
"""Allocation pairs: cudaMalloc + cudaFree through libcudart (--path cudart, the
default: ctypes releases the GIL around each call, as PyTorch does before dispatch),
or PyTorch's own (--path torch: torch.empty of a new size class then
torch.cuda.empty_cache, so its caching allocator calls cudaMalloc and cudaFree from
C++ under Python frames).  Prints one JSON line: microseconds per pair, the best of
5 blocks.  Run it plain and under `memsaver run` to get the tracer's cost per
allocation (bench/benchutil.py alloc_pair_overhead does both).

With --driver LIB (build/lib/bench-driver_pair.so) the blocks alternate with blocks of
cuMemAlloc + cuMemFree called straight into the driver, which no interposer sees, and
the line adds their time and the difference: what libcudart and memsaver add to a pair
in this process.  The driver's own time per pair drifts from process to process (62 or
88 us on one H200, plain); the difference within one process does not carry that drift.

usage: alloc_pairs.py [PAIRS [BYTES]] [--path cudart|torch] [--driver LIB]
"""
import argparse
import ctypes
import json
import sys
import time


def time_block(alloc, free, ptr, size, pairs, blocks_out):
    t = time.perf_counter()
    for _ in range(pairs):
        if alloc(ctypes.byref(ptr), ctypes.c_size_t(size)) != 0:
            sys.exit("allocation failed")
        free(ptr)
    blocks_out.append((time.perf_counter() - t) / pairs * 1e6)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pairs", nargs="?", type=int, default=20000)
    ap.add_argument("bytes", nargs="?", type=int, default=1 << 20)
    ap.add_argument("--path", choices=("cudart", "torch"), default="cudart")
    ap.add_argument("--driver", metavar="LIB", help="bench-driver_pair.so: alternate with direct driver pairs")
    args = ap.parse_args()
    if args.path == "torch":
        import torch
        torch.zeros(1, device="cuda")  # context

        def alloc(ref, size):
            alloc.t = torch.empty(size.value, dtype=torch.uint8, device="cuda")
            return 0

        def free(_):
            del alloc.t
            torch.cuda.empty_cache()

        paths = {"torch": (alloc, free, ctypes.c_void_p())}
    else:
        rt = ctypes.CDLL("libcudart.so.13")
        assert rt.cudaFree(ctypes.c_void_p(0)) == 0  # context
        paths = {"cudart": (rt.cudaMalloc, rt.cudaFree, ctypes.c_void_p())}
    if args.driver:
        d = ctypes.CDLL(args.driver)
        d.bench_driver_free.argtypes = [ctypes.c_ulonglong]
        paths["driver"] = (d.bench_driver_alloc, d.bench_driver_free, ctypes.c_ulonglong())
    for alloc, free, ptr in paths.values():  # warm-up
        time_block(alloc, free, ptr, args.bytes, 200, [])
    blocks = {k: [] for k in paths}
    for _ in range(5):
        for k, (alloc, free, ptr) in paths.items():
            time_block(alloc, free, ptr, args.bytes, args.pairs // 5, blocks[k])
    line = {"bench": "alloc_pairs", "pairs": args.pairs, "bytes": args.bytes,
            "path": args.path,
            "us_per_pair": round(min(blocks[args.path]), 3)}
    if args.driver:
        line["us_per_driver_pair"] = round(min(blocks["driver"]), 3)
        line["us_added"] = round(line["us_per_pair"] - line["us_per_driver_pair"], 3)
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
