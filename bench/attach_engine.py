#!/usr/bin/env python3
"""A small PyTorch engine for the attach proof: phase 1 (before the attach)
initialises CUDA and allocates; then it writes READY (its pid) and waits for
GO; phase 2 allocates weights-like tensors, a KV pool, runs cuBLAS and
captures a CUDA graph, so the allocations after GO can be compared between
`memsaver attach` and `memsaver run`.  Prints {"go_ns": CLOCK_MONOTONIC} when
phase 2 starts."""
import json, os, sys, time
import torch

ready, go = sys.argv[1], sys.argv[2]
dev = torch.device("cuda")
pre = [torch.empty(n << 20, dtype=torch.uint8, device=dev) for n in (64, 3, 200)]
torch.cuda.synchronize()
with open(ready + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(ready + ".tmp", ready)
while not os.path.exists(go):
    time.sleep(0.005)
print(json.dumps({"go_ns": time.monotonic_ns()}), flush=True)
w = [torch.randn(1536, 1536 * k, device=dev, dtype=torch.bfloat16) for k in (1, 2, 3, 4, 6)]
kv = torch.empty(1 << 30, dtype=torch.uint8, device=dev)
x = torch.randn(32, 1536, device=dev, dtype=torch.bfloat16)
y = x @ w[0]
s = torch.cuda.Stream()
s.wait_stream(torch.cuda.current_stream())
with torch.cuda.stream(s):
    for _ in range(3):
        y = x @ w[0]
torch.cuda.current_stream().wait_stream(s)
g = torch.cuda.CUDAGraph()
with torch.cuda.graph(g):
    y = x @ w[0]
g.replay()
torch.cuda.synchronize()
del pre[1]
print(json.dumps({"done": True, "reserved": torch.cuda.memory_reserved()}), flush=True)
