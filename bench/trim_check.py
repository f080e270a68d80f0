#!/usr/bin/env python3
"""Context trim check: what needs a context's local memory still runs correctly
after a pause trimmed the context and a resume restored it.  Run under
`memsaver run` (policy context "trim"); uses memsaver's Python module to pause
and resume itself between two identical runs of:
  - a CUDA kernel with a large per-thread stack array (local memory), via CuPy;
  - a Triton kernel;
  - a cuBLAS GEMM (torch.matmul, bf16);
  - a CUDA-graph replay of a small step.
Prints one JSON line: each output bitwise equal before and after, and the device
memory the pause freed (NVML)."""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "python"))
import memsaver  # noqa: E402

LOCAL_SRC = r"""
extern "C" __global__ void local_heavy(const int *in, int *out, int n) {
    int buf[2048];                     /* 8 KiB per thread: local memory */
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    for (int i = 0; i < 2048; i++) buf[i] = in[t] * 31 + i;
    int acc = 0;
    for (int i = 0; i < 2048; i++) acc += buf[(i * 7 + in[t]) & 2047];
    out[t] = acc;
}
"""


def run_all(g, static_in, static_out):
    import cupy
    import triton
    import triton.language as tl

    @triton.jit
    def axpy(x, y, o, n, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = i < n
        tl.store(o + i, 3.0 * tl.load(x + i, mask=m) + tl.load(y + i, mask=m), mask=m)

    res = {}
    k = cupy.RawKernel(LOCAL_SRC, "local_heavy")
    n = 1 << 16
    a = cupy.arange(n, dtype=cupy.int32)
    o = cupy.zeros(n, dtype=cupy.int32)
    k(((n + 255) // 256,), (256,), (a, o, cupy.int32(n)))
    cupy.cuda.Device().synchronize()
    res["local_memory_kernel"] = torch.as_tensor(cupy.asnumpy(o))
    x = torch.arange(1 << 20, device="cuda", dtype=torch.float32)
    y = torch.ones_like(x)
    z = torch.empty_like(x)
    axpy[(x.numel() // 1024,)](x, y, z, x.numel(), BLOCK=1024)
    res["triton"] = z.cpu()
    gen = torch.Generator(device="cuda").manual_seed(7)
    m1 = torch.randn(2048, 2048, device="cuda", dtype=torch.bfloat16, generator=gen)
    res["cublas_gemm"] = (m1 @ m1).cpu()
    g.replay()
    res["graph_replay"] = static_out.cpu()
    torch.cuda.synchronize()
    return res


def main():
    import pynvml
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    static_in = torch.randn(1024, 1024, device="cuda")
    w = torch.randn(1024, 1024, device="cuda")
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            static_out = torch.relu(static_in @ w) + 1
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        static_out = torch.relu(static_in @ w) + 1
    before = run_all(g, static_in, static_out)
    u0 = pynvml.nvmlDeviceGetMemoryInfo(h).used
    memsaver.pause()
    u1 = pynvml.nvmlDeviceGetMemoryInfo(h).used
    memsaver.resume()
    after = run_all(g, static_in, static_out)
    equal = {k: bool(torch.equal(before[k], after[k])) for k in before}
    print(json.dumps({"bench": "trim_check", "equal": equal, "all_equal": all(equal.values()),
                      "paused_freed_bytes": u0 - u1}), flush=True)
    return 0 if all(equal.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
