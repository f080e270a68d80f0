#!/usr/bin/env python3
"""The launch gate's cost on decode (issue 16 item 4; saver/gate.h): a decoder-like step
(PyTorch, bf16: matmuls, norms, activations) replayed as a CUDA graph, one cuGraphLaunch
per step, and the same step run eagerly (hundreds of cuLaunchKernel per step: the worst
case for a per-launch cost), each timed per step with a synchronize, as decode is.

Variants, interleaved over --rounds so drift hits each alike:
  plain     no memsaver
  memsaver  `memsaver run` with this build: launches and copies pass the gate
  base      `memsaver run` with --base-build, a build of the tree before the gate
            (git worktree add /tmp/pre 5fb53d4^ && make -C /tmp/pre), which isolates
            the gate's hooks from the rest of memsaver; skipped without it
The gate stays open throughout (nothing is paused): this is the cost every engine pays.
Target: memsaver within 1% of base (and of plain) on graph replay.

JSON lines on stdout: one per (variant, mode, round), then one summary per mode with
median step times and the relative cost.  Needs a GPU and PyTorch; exits 77 without.

usage: bench/gate_cost.py [--build build] [--base-build DIR] [--steps 2000] [--rounds 5]
About 2 minutes on an H200.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STEP = r"""
import json, sys, time, torch
mode, steps = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
dev = "cuda"
d, layers = 1024, 16
ws = [(torch.randn(d, 4 * d, device=dev, dtype=torch.bfloat16) / 64,
       torch.randn(4 * d, d, device=dev, dtype=torch.bfloat16) / 64) for _ in range(layers)]
x0 = torch.randn(8, d, device=dev, dtype=torch.bfloat16)
x = x0.clone()
def step():
    h = x
    for a, b in ws:
        h = h + torch.nn.functional.gelu(torch.nn.functional.layer_norm(h, (d,)) @ a) @ b
    x.copy_(h * 0.5 + x0 * 0.5)
for _ in range(20):  # warm-up: cuBLAS handles, allocator
    step()
torch.cuda.synchronize()
if mode == "graph":
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        step()
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g):
        step()
    run = g.replay
else:
    run = step
for _ in range(50):
    run()
torch.cuda.synchronize()
t = time.perf_counter()
for _ in range(steps):
    run()
    torch.cuda.synchronize()
dt = time.perf_counter() - t
print(json.dumps({"us_per_step": dt / steps * 1e6, "check": float(x.float().sum())}))
"""


def emit(**kw):
    print(json.dumps(kw), flush=True)


def run_once(variant, build, mode, steps, out_dir):
    cmd = [sys.executable, "-c", STEP, mode, str(steps)]
    if variant != "plain":
        ms = os.path.join(build, "bin", "memsaver")
        cmd = [ms, "run", "-o", os.path.join(out_dir, "report-%p.json"), "--", *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError("%s %s exit %d: %s" % (variant, mode, p.returncode, p.stderr[-2000:]))
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("%s %s printed no result: %s" % (variant, mode, p.stdout[-500:]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--base-build", default=None)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp"))
    a = ap.parse_args()
    try:
        import torch  # noqa: F401
        if not torch.cuda.is_available():
            raise ImportError("no GPU")
    except ImportError as e:
        print("skipped: %s" % e)
        return 77
    variants = {"plain": None, "memsaver": os.path.abspath(a.build)}
    if a.base_build:
        variants["base"] = os.path.abspath(a.base_build)
    res = {}
    for mode in ("graph", "eager"):
        for r in range(a.rounds):
            for v, build in variants.items():
                got = run_once(v, build, mode, a.steps, a.out)
                res.setdefault((mode, v), []).append(got["us_per_step"])
                emit(variant=v, mode=mode, round=r, steps=a.steps, **got)
    for mode in ("graph", "eager"):
        med = {v: statistics.median(res[(mode, v)]) for v in variants}
        ref = med.get("base", med["plain"])
        emit(summary=mode, median_us_per_step=med,
             gate_cost_pct=round((med["memsaver"] / ref - 1) * 100, 3),
             against="base" if "base" in med else "plain",
             within_1pct=med["memsaver"] <= ref * 1.01)
    return 0


if __name__ == "__main__":
    sys.exit(main())
