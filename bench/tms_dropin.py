"""An engine written against torch_memory_saver's API, run unmodified on
memsaver's torch_memory_saver package (tools/python), on a GPU.

It does what SGLang's ModelRunner and Scheduler do with torch_memory_saver:
weights loaded in region("weights", enable_cpu_backup=True), the KV cache in
region("kv_cache"), decode steps captured with
torch_memory_saver.cuda_graph(..., tag="cuda_graph") per batch size, then
release_memory_occupation (pause kv_cache, weights, cuda_graph) and
resume_memory_occupation (resume cuda_graph, weights, kv_cache; the KV cache
is refilled, as SGLang re-prefills), plus slime's disable() block and an
untagged pause()/resume().  After every resume the graph replays and an eager
forward must equal the outputs before the first pause bit for bit.

    build/bin/memsaver run -o $OUT/tms-report.json -- \
        env PYTHONPATH=tools/python python3 bench/tms_dropin.py [--cycles 5]

Prints JSON lines; writes $OUT/tms_dropin.json when OUT is set.  Exit 0 when
every cycle kept parity and each release freed at least 90% of what the
tagged regions hold; 1 otherwise; 77 without a GPU."""

import argparse
import json
import os
import sys
import time

import torch

import torch_memory_saver
from torch_memory_saver import torch_memory_saver as tms

GiB = 1 << 30


def log(**kw):
    print(json.dumps(kw), flush=True)


class Engine:
    def __init__(self, hidden, layers, kv_tokens, dev):
        g = torch.Generator(device="cpu").manual_seed(1234)
        with tms.region(tag="weights", enable_cpu_backup=True):
            self.w = [(torch.randn(hidden, 4 * hidden, generator=g) / hidden ** 0.5).to(dev, torch.bfloat16)
                      for _ in range(layers)]
            self.w2 = [(torch.randn(4 * hidden, hidden, generator=g) / hidden ** 0.5).to(dev, torch.bfloat16)
                       for _ in range(layers)]
        self.kv_cpu = torch.randn(layers, kv_tokens, hidden, generator=g).to(torch.bfloat16)
        with tms.region(tag="kv_cache"):
            self.kv = torch.empty(layers, kv_tokens, hidden, device=dev, dtype=torch.bfloat16)
        self.fill_kv()

    def fill_kv(self):
        """What a re-prefill does after the KV cache was discarded."""
        self.kv.copy_(self.kv_cpu, non_blocking=False)

    def forward(self, x):
        for i, (a, b) in enumerate(zip(self.w, self.w2)):
            ctx = self.kv[i, : x.shape[0]]
            x = x + torch.nn.functional.gelu((x + ctx) @ a) @ b
        return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--kv-gib", type=float, default=8.0)
    ap.add_argument("--batch-sizes", default="1,2,4,8,16,32")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("skipped: no GPU")
        return 77
    where = os.path.dirname(os.path.abspath(torch_memory_saver.__file__))
    log(event="start", package=where, enabled=tms.enabled, torch=torch.__version__,
        device=torch.cuda.get_device_name())
    if not tms.enabled or not os.path.isfile(os.path.join(where, "..", "memsaver", "__init__.py")):
        print("torch_memory_saver here is not memsaver's, or libmemsaver.so is not loaded "
              "(run under `memsaver run` with PYTHONPATH=tools/python)", file=sys.stderr)
        return 1
    dev = torch.device("cuda", 0)
    torch.cuda.set_device(dev)
    kv_tokens = int(a.kv_gib * GiB / (a.layers * a.hidden * 2))
    eng = Engine(a.hidden, a.layers, kv_tokens, dev)
    sizes = [int(s) for s in a.batch_sizes.split(",")]

    # Warm-up (cuBLAS handles), then one graph per batch size in one shared pool.
    g = torch.Generator(device="cpu").manual_seed(7)
    static_in = {bs: torch.randn(bs, a.hidden, generator=g).to(dev, torch.bfloat16) for bs in sizes}
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for bs in sizes:
            eng.forward(static_in[bs])
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graphs, outs, pool = {}, {}, None
    for bs in reversed(sizes):
        graphs[bs] = torch.cuda.CUDAGraph()
        with tms.cuda_graph(cuda_graph=graphs[bs], pool=pool, stream=stream, tag="cuda_graph"):
            outs[bs] = eng.forward(static_in[bs])
        pool = graphs[bs].pool()
    torch.cuda.synchronize()

    def run_all():
        res = {}
        for bs in sizes:
            graphs[bs].replay()
            res[("graph", bs)] = outs[bs].clone()
            res[("eager", bs)] = eng.forward(static_in[bs])
        torch.cuda.synchronize()
        return res

    ref = run_all()
    # slime's update_weights: memory allocated under disable() is never paused.
    with tms.disable():
        bucket = torch.full((64 << 20,), 7, dtype=torch.uint8, device=dev)
    torch.cuda.synchronize()

    ok, results = True, []
    for cycle in range(a.cycles):
        free0, total = torch.cuda.mem_get_info()
        t0 = time.perf_counter()
        untagged = cycle % 2 == 1  # odd cycles: pause()/resume() without tags
        if untagged:
            tms.pause()
        else:
            for tag in ("kv_cache", "weights", "cuda_graph"):
                tms.pause(tag)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        free1, _ = torch.cuda.mem_get_info()
        bucket_ok = bool((bucket == 7).all().item())
        if untagged:
            tms.resume()
        else:
            for tag in ("cuda_graph", "weights", "kv_cache"):
                tms.resume(tag)
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        eng.fill_kv()
        got = run_all()
        bad = [f"{k[0]} bs={k[1]}" for k in ref if not torch.equal(ref[k], got[k])]
        weights_bytes = sum(t.numel() * t.element_size() for t in eng.w + eng.w2)
        held = weights_bytes + eng.kv.numel() * eng.kv.element_size()
        released = free1 - free0
        row = dict(event="cycle", cycle=cycle, untagged=untagged, released_bytes=released,
                   tagged_bytes=held, pause_ms=round((t1 - t0) * 1e3, 1),
                   resume_ms=round((t2 - t1) * 1e3, 1), parity=not bad, mismatches=bad,
                   disable_buffer_intact=bucket_ok)
        log(**row)
        results.append(row)
        if bad or not bucket_ok or released < 0.9 * held:
            ok = False
    summary = dict(event="summary", ok=ok, cycles=a.cycles, batch_sizes=sizes,
                   device=torch.cuda.get_device_name(), torch=torch.__version__, results=results)
    log(**{k: v for k, v in summary.items() if k != "results"})
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "tms_dropin.json"), "w") as f:
            json.dump(summary, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
