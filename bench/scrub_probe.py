#!/usr/bin/env python3
"""Why a resume right after a pause restores at half speed: after device memory is
freed the driver clears it in the background, and a host-to-device copy issued
meanwhile runs at a fraction of its rate.  Times one pinned host-to-device copy
(SIZE GiB) on a quiet device, then right after BIG GiB were freed, two ways: by the
copy engines (Tensor.copy_) and by the SMs (a Triton kernel reading the pinned host
memory through its mapped address).  JSON lines.

usage: bench/scrub_probe.py [--gib 4.5] [--big-gib 70] [--delays 0,0.25,0.5]
"""
import argparse
import json
import time

import torch
import triton
import triton.language as tl


@triton.jit
def copy_kernel(dst, src, n, BLOCK: tl.constexpr):
    off = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = off < n
    tl.store(dst + off, tl.load(src + off, mask=m), mask=m)


class HostView:
    """A pinned host tensor passed to Triton by its mapped (UVA) address."""

    def __init__(self, t):
        self.t, self.dtype = t, t.dtype

    def data_ptr(self):
        return self.t.data_ptr()


def timed(fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=float, default=4.5)
    ap.add_argument("--big-gib", type=float, default=70)
    ap.add_argument("--delays", default="0,0.25,0.5")
    args = ap.parse_args()
    n = int(args.gib * (1 << 30)) // 8 * 8
    src = torch.empty(n // 8, dtype=torch.int64, pin_memory=True).random_()
    dst = torch.empty_like(src, device="cuda")
    words = n // 8

    def ce():
        dst.copy_(src, non_blocking=True)

    def sm():
        copy_kernel[(triton.cdiv(words, 8192),)](dst, HostView(src), words, BLOCK=8192)

    ways = {"copy_engine": ce, "sm_kernel": sm}
    for fn in ways.values():  # warm-up (Triton compiles here)
        fn()
    torch.cuda.synchronize()
    for delay in [None] + [float(x) for x in args.delays.split(",")]:
        for name, fn in ways.items():
            if delay is not None:
                big = torch.empty(int(args.big_gib * (1 << 30)), dtype=torch.uint8, device="cuda")
                big.fill_(1)
                torch.cuda.synchronize()
                del big
                torch.cuda.empty_cache()  # cudaFree: the driver clears the memory from here on
                time.sleep(delay)
            dst.zero_()
            s = timed(fn)
            ok = bool(torch.equal(dst[:: 1 << 16].cpu(), src[:: 1 << 16]))
            print(json.dumps({"bench": "scrub_probe", "way": name, "after_free_s": delay, "gib": args.gib,
                              "ms": round(s * 1e3, 2), "gbps": round(n / s / 1e9, 2), "equal": ok}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
