#!/usr/bin/env python3
"""The bandwidth memsaver's backup is measured against: a plain pinned copy of
N GiB device->host and host->device through PyTorch, best of 3.  One JSON line."""
import json
import sys

import torch

gib = float(sys.argv[1]) if len(sys.argv) > 1 else 4
n = int(gib * 2**30)
d = torch.empty(n, dtype=torch.uint8, device="cuda")
h = torch.empty(n, dtype=torch.uint8, pin_memory=True)
res = {}
for name, dst, src in (("dtoh_gbps", h, d), ("htod_gbps", d, h)):
    best = 0.0
    for _ in range(3):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        dst.copy_(src, non_blocking=True)
        e.record()
        torch.cuda.synchronize()
        best = max(best, n / (s.elapsed_time(e) / 1e3) / 1e9)
    res[name] = round(best, 2)
print(json.dumps({"bench": "pinned_copy", "bytes": n, **res}), flush=True)
