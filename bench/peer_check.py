#!/usr/bin/env python3
"""Peer access to wrapped memory, on 2 GPUs: run under `memsaver run` with a
policy that wraps everything (bench/policies/wrap-all.json).  A buffer made on
GPU 0 is read by a kernel on GPU 1 after peer access was enabled — as a
cudaMalloc buffer can be — before and after an in-process pause/resume (access
must be granted again after every map).  One JSON line.

usage: memsaver run -p bench/policies/wrap-all.json -- python3 bench/peer_check.py
"""
import ctypes
import json

import cupy as cp

SRC = r'''
extern "C" __global__ void sum(const float *a, float *out, int n) {
    float s = 0; for (int i = threadIdx.x; i < n; i += blockDim.x) s += a[i];
    atomicAdd(out, s);
}'''


def read_from_gpu1(a, n):
    with cp.cuda.Device(1):
        k = cp.RawKernel(SRC, "sum")
        out = cp.zeros(1, dtype=cp.float32)
        k((1,), (256,), (a.data.ptr, out, cp.int32(n)))
        cp.cuda.Device(1).synchronize()
        return float(out.get()[0])


def main():
    n = 1 << 22
    with cp.cuda.Device(0):
        a = cp.ones(n, dtype=cp.float32)
        cp.cuda.Device(0).synchronize()
    with cp.cuda.Device(1):
        cp.cuda.runtime.deviceEnablePeerAccess(0)
    res = {"bench": "peer_check", "n": n}
    try:
        res["before_pause"] = read_from_gpu1(a, n)
    except Exception as e:  # an illegal address when access is missing
        res["before_pause_error"] = repr(e)[:300]
        print(json.dumps(res), flush=True)
        return 1
    lib = ctypes.CDLL(None)
    lib.msv_last_error.restype = ctypes.c_char_p
    with cp.cuda.Device(0):
        res["pause_rc"] = lib.msv_pause(None)
        res["resume_rc"] = lib.msv_resume(None)
        res["msv_error"] = lib.msv_last_error().decode()
    try:
        res["after_resume"] = read_from_gpu1(a, n)
    except Exception as e:
        res["after_resume_error"] = repr(e)[:300]
    res["ok"] = res.get("before_pause") == n and res.get("after_resume") == n and res["pause_rc"] == 0
    print(json.dumps(res), flush=True)
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
