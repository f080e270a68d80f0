#!/usr/bin/env python3
"""Where the driver's own memory goes in the bench engine, step by step, without
memsaver: device memory used (NVML) minus what PyTorch's allocator reserved, after
each step that can make the driver allocate (context creation, first kernels of each
library, cuBLAS handles and workspaces, graph capture and instantiation).  One JSON
line per step; `driver_bytes` is the step's driver-internal growth."""
import json
import os
import sys

import pynvml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "engines"))
pynvml.nvmlInit()
H = pynvml.nvmlDeviceGetHandleByIndex(0)


def used():
    return pynvml.nvmlDeviceGetMemoryInfo(H).used


last = {"used": used(), "reserved": 0}


def step(name):
    import torch
    torch.cuda.synchronize() if torch.cuda.is_initialized() else None
    u = used()
    r = torch.cuda.memory_reserved() if torch.cuda.is_initialized() else 0
    du, dr = u - last["used"], r - last["reserved"]
    last.update(used=u, reserved=r)
    print(json.dumps({"bench": "driver_memory", "step": name, "used_delta": du, "reserved_delta": dr,
                      "driver_bytes": du - dr}), flush=True)


import torch  # noqa: E402
import qwen_like as q  # noqa: E402

step("import torch")
torch.cuda.init()
x = torch.zeros(1, device="cuda")
step("context (first tensor)")
w = q.load_weights(torch.device("cuda"), torch.bfloat16, 1)
step("load_weights (random init kernels)")
a = torch.randn(64, 1536, device="cuda", dtype=torch.bfloat16)
b = a @ w["layers"][0]["q"].t()
step("first bf16 matmul (cuBLAS/cuBLASLt handle, workspace, kernels)")
kv = torch.empty((q.LAYERS, 2, 16384, q.KV_HEADS, q.HEAD_DIM), device="cuda", dtype=torch.bfloat16)
step("kv pool (allocator only)")
batches, base = [], 0
for bs in (1, 2, 4, 8, 16, 32):
    batches.append(q.Batch(bs, base, torch.device("cuda")))
    base += bs * (q.PROMPT + 1)
step("static buffers")
with torch.inference_mode():
    batches[0].decode(w, kv)
    step("first decode step, eager (every other kernel, first use)")
    for bt in batches:
        bt.prefill(w, kv)
        bt.decode(w, kv)
    step("prefill + decode of every batch size, eager")
    torch.cuda.empty_cache()
    step("empty_cache")
    q.capture_graphs(w, kv, batches)
    step("capture_graphs (side-stream warm-up, capture, instantiate)")
    for bt in batches:
        bt.graph.replay()
    step("first replay of every graph")
