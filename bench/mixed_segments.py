#!/usr/bin/env python3
"""How often one caching-allocator segment holds live tensors made in different
phases (categories) at pause time, measured with torch.cuda.memory's snapshot
(no memsaver involved).  memsaver decides a segment's category when the segment
is made; a segment that a discard or zero category owns is only safe if every
foreign live block lies in the tail the segment-tail rule keeps
(docs/saver.md).  Two workloads: the bench engine (bench/engines/qwen_like.py,
eager + CUDA graphs) and a torch.compile(mode="reduce-overhead") decoder with a
static KV cache.  One JSON line per workload.

usage: bench/mixed_segments.py
"""
import json
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench", "engines"))
TAIL = 2 * 2**20 - 512  # saver/regions.c: the kept tail of a segment of 10 MiB or more
DISCARD = {"kv"}        # the shipped policies discard kv only


def kept(seg_size, off, size):
    if seg_size in (2 * 2**20, 20 * 2**20):
        return True
    if seg_size >= 10 * 2**20 and seg_size % (2 * 2**20) == 0:
        return off >= seg_size - TAIL
    return False


def phase_of(frames, phases):
    for f in frames or []:
        if f.get("name") in phases:
            return phases[f["name"]]
    return "other"


def analyse(name, phases):
    snap = torch.cuda.memory._snapshot()
    # The category memsaver gives a segment is that of the call that made it:
    # the frames of its segment_alloc event in the allocator's history.
    made = {}
    for trace in snap.get("device_traces", []):
        for ev in trace:
            if ev.get("action") == "segment_alloc":
                made[ev["addr"]] = phase_of(ev.get("frames"), phases)
    segs = mixed = unsafe = unknown = 0
    mixed_bytes = unsafe_bytes = 0
    details = []
    for s in snap["segments"]:
        segs += 1
        owner = made.get(s["address"])
        if owner is None:
            unknown += 1
            owner = "unknown"
        live = [b for b in s["blocks"] if b["state"] == "active_allocated"]
        cats, off = {}, 0
        foreign_unkept = 0
        for b in s["blocks"]:
            if b["state"] == "active_allocated":
                c = phase_of(b.get("frames"), phases)
                cats[c] = cats.get(c, 0) + b["size"]
                if c != owner and not kept(s["total_size"], off, b["size"]):
                    foreign_unkept += b["size"]
            off += b["size"]
        if len(cats) > 1 or (live and owner not in cats):
            mixed += 1
            mixed_bytes += s["total_size"]
            if len(details) < 12:
                details.append({"segment_bytes": s["total_size"], "made_by": owner, "live_by_category": cats,
                                "foreign_bytes_outside_kept_tail": foreign_unkept})
            if owner in DISCARD and foreign_unkept:
                unsafe += 1
                unsafe_bytes += foreign_unkept
    print(json.dumps({"bench": "mixed_segments", "workload": name, "segments": segs,
                      "segments_made_before_recording": unknown, "mixed_segments": mixed,
                      "mixed_segment_bytes": mixed_bytes, "discard_segments_with_foreign_data_outside_tail": unsafe,
                      "foreign_bytes_lost_by_discard": unsafe_bytes, "examples": details}), flush=True)


def qwen_engine():
    import qwen_like as q
    dev, dtype = torch.device("cuda", 0), torch.bfloat16
    torch.cuda.memory._record_memory_history(max_entries=200000, stacks="python")
    w = q.load_weights(dev, dtype, 1234)
    wb = torch.cuda.memory_allocated(dev)
    kv = q.alloc_kv_pool(dev, dtype, 0.2, wb + 512 * 2**20)
    ws = q.alloc_workspace(dev, 512 * 2**20)
    batches, base = [], 0
    for bs in (1, 2, 4, 8, 16, 32):
        batches.append(q.Batch(bs, base, dev))
        base += bs * (q.PROMPT + 1)
    with torch.inference_mode():
        q.capture_graphs(w, kv, batches)
        q.outputs(w, kv, batches, True)
    torch.cuda.synchronize()
    analyse("qwen_like", {"load_weights": "weights", "alloc_kv_pool": "kv", "alloc_workspace": "workspace",
                          "capture_graphs": "graph", "__init__": "other", "outputs": "serve", "prefill": "serve"})
    del w, kv, ws, batches
    torch.cuda.memory._record_memory_history(enabled=None)
    torch.cuda.empty_cache()


class Decoder(torch.nn.Module):
    def __init__(self, d=2048, layers=8, vocab=32000):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, d)
        self.blocks = torch.nn.ModuleList(torch.nn.Linear(d, d) for _ in range(layers))
        self.out = torch.nn.Linear(d, vocab)

    def forward(self, ids, cache, pos):
        h = self.emb(ids)
        for i, b in enumerate(self.blocks):
            cache[i, :, pos] = h
            h = torch.nn.functional.silu(b(h)) + cache[i, :, : pos + 1].mean(1)
        return self.out(h)


def make_model():
    return Decoder().cuda().to(torch.bfloat16)


def alloc_cache(bs, layers=8, steps=256, d=2048):
    return torch.zeros(layers, bs, steps, d, device="cuda", dtype=torch.bfloat16)


def compile_warmup(fn, ids, cache):
    for p in range(3):
        fn(ids, cache, p)


def serve(fn, ids, cache):
    return [fn(ids, cache, p).float().sum().item() for p in range(3, 40)]


def compiled_decoder():
    torch.cuda.memory._record_memory_history(max_entries=200000, stacks="python")
    m = make_model()
    cache = alloc_cache(8)
    ids = torch.randint(0, 32000, (8,), device="cuda")
    fn = torch.compile(m, mode="reduce-overhead")
    with torch.inference_mode():
        compile_warmup(fn, ids, cache)
        serve(fn, ids, cache)
    torch.cuda.synchronize()
    analyse("torch_compile_decoder", {"make_model": "weights", "alloc_cache": "kv",
                                      "compile_warmup": "graph", "serve": "serve"})
    torch.cuda.memory._record_memory_history(enabled=None)


if __name__ == "__main__":
    qwen_engine()
    compiled_decoder()
