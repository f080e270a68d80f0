#!/usr/bin/env python3
"""A PyTorch inference engine shaped like Qwen2-1.5B-Instruct, for measuring memsaver.

Nothing in here knows about memsaver: it is the kind of engine memsaver must attach
to unchanged.  Phases live in named functions (load_weights, alloc_kv_pool,
alloc_workspace, capture_graphs) so a call-site policy can classify them; weights are
random (no downloads); the KV pool takes a fraction of device memory as SGLang does
with mem_fraction; CUDA graphs of one decode step are captured for several batch
sizes sharing one memory pool, then replayed.

Between phases the engine can hold (--hold-dir): it writes HOLD_DIR/hold.N and waits
for HOLD_DIR/go.N, so an outside tool can pause and resume it.  After every hold it
recomputes the logits of a fixed prompt and the graph replays' outputs and compares
them bitwise with those taken before the first hold.  Results are JSON lines on stdout.
The go file may carry words (bench/soak.py writes them): "decode" times the decode step
again after the check, "py" adds the Python heap's counts (gc objects, allocated blocks,
malloc in use, tracemalloc with --tracemalloc), "stop" ends the loop after this check.
With --update-every K, after the check of every K-th hold the engine changes a few
weights in place, as an RL weight update does between pauses (update_weights): the
next hold's check compares the outputs with references taken after the change, and
the changed tensors with host copies, so a pause that kept a stale backup fails it.
"""
import argparse
import faulthandler
import gc
import json
import os
import sys
import time

import torch

HIDDEN, LAYERS, HEADS, KV_HEADS, HEAD_DIM, INTER, VOCAB = 1536, 28, 12, 2, 128, 8960, 151936
PROMPT = 64  # prompt tokens per sequence; decode attends to PROMPT + 1 slots
# Under torchrun every rank holds the same weights and all-reduces the hidden
# state after each layer, as a tensor-parallel engine does; the average of
# identical bf16 values is exact, so outputs equal the single-GPU ones.
WORLD = int(os.environ.get("WORLD_SIZE", "1"))
RANK = int(os.environ.get("RANK", "0"))


def emit(**kw):
    print(json.dumps(kw), flush=True)


def load_weights(device, dtype, seed):
    gen = torch.Generator(device=device).manual_seed(seed)

    def rnd(*shape):
        t = torch.empty(shape, device=device, dtype=dtype)
        return t.normal_(0.0, 0.02, generator=gen)

    def ones(n):
        return torch.ones(n, device=device, dtype=dtype)

    w = {"embed": rnd(VOCAB, HIDDEN), "norm": ones(HIDDEN), "layers": []}
    for _ in range(LAYERS):
        w["layers"].append({
            "ln1": ones(HIDDEN), "ln2": ones(HIDDEN),
            "q": rnd(HEADS * HEAD_DIM, HIDDEN), "qb": rnd(HEADS * HEAD_DIM),
            "k": rnd(KV_HEADS * HEAD_DIM, HIDDEN), "kb": rnd(KV_HEADS * HEAD_DIM),
            "v": rnd(KV_HEADS * HEAD_DIM, HIDDEN), "vb": rnd(KV_HEADS * HEAD_DIM),
            "o": rnd(HIDDEN, HEADS * HEAD_DIM),
            "gate": rnd(INTER, HIDDEN), "up": rnd(INTER, HIDDEN), "down": rnd(HIDDEN, INTER),
        })
    return w


def update_weights(w, n):
    """Change a few elements of a few weight tensors in place (update n): the
    embedding, a norm and two projections of one layer, each at 1-3 places.
    Returns name -> (the tensor, its host copy after the change)."""
    gen = torch.Generator().manual_seed(1000 + n)
    li = int(torch.randint(0, LAYERS, (1,), generator=gen))
    layer = w["layers"][li]
    picked = {"embed": w["embed"], "norm": w["norm"], f"layers.{li}.q": layer["q"], f"layers.{li}.down": layer["down"]}
    for t in picked.values():
        flat = t.view(-1)
        for i in torch.randint(0, flat.numel(), (int(torch.randint(1, 4, (1,), generator=gen)),), generator=gen):
            flat[int(i)] += 0.5
    torch.cuda.synchronize()
    return {k: (t, t.cpu()) for k, t in picked.items()}


def alloc_kv_pool(device, dtype, fraction, reserved_bytes):
    free, total = torch.cuda.mem_get_info(device)
    want = int(total * fraction) - reserved_bytes
    per_token = LAYERS * 2 * KV_HEADS * HEAD_DIM * torch.finfo(dtype).bits // 8
    tokens = max(want // per_token, 16 * 1024)
    return torch.empty((LAYERS, 2, tokens, KV_HEADS, HEAD_DIM), device=device, dtype=dtype)


def alloc_workspace(device, nbytes):
    return torch.empty(nbytes, device=device, dtype=torch.uint8)


def rmsnorm(x, w):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype) * w


def forward(w, kv, ids, slots, ctx, mask, last):
    """Tokens ids[T] write K/V at slots[T] and attend to kv rows ctx[T, C] where
    mask[T, C]; returns the logits of the rows `last`."""
    h = w["embed"][ids]
    t = ids.shape[0]
    group = HEADS // KV_HEADS
    for li, lw in enumerate(w["layers"]):
        r = rmsnorm(h, lw["ln1"])
        q = (r @ lw["q"].t() + lw["qb"]).view(t, KV_HEADS, group, HEAD_DIM)
        k = (r @ lw["k"].t() + lw["kb"]).view(t, KV_HEADS, HEAD_DIM)
        v = (r @ lw["v"].t() + lw["vb"]).view(t, KV_HEADS, HEAD_DIM)
        kv[li, 0].index_copy_(0, slots, k)
        kv[li, 1].index_copy_(0, slots, v)
        kc = kv[li, 0][ctx]  # [T, C, KV_HEADS, HEAD_DIM]
        vc = kv[li, 1][ctx]
        s = torch.einsum("tgqd,tcgd->tgqc", q, kc).float() / HEAD_DIM ** 0.5
        s = s.masked_fill(~mask[:, None, None, :], float("-inf")).softmax(-1).to(h.dtype)
        a = torch.einsum("tgqc,tcgd->tgqd", s, vc).reshape(t, HEADS * HEAD_DIM)
        h = h + a @ lw["o"].t()
        r = rmsnorm(h, lw["ln2"])
        h = h + (torch.nn.functional.silu(r @ lw["gate"].t()) * (r @ lw["up"].t())) @ lw["down"].t()
        if WORLD > 1:
            torch.distributed.all_reduce(h)
            h = h / WORLD
    h = rmsnorm(h[last], w["norm"])
    return h @ w["embed"].t()


class Batch:
    """Static buffers of one batch size: prompt slots, decode slot, inputs."""

    def __init__(self, bs, base, device):
        c = PROMPT + 1
        seq_slots = base + torch.arange(bs * c, device=device).view(bs, c)
        self.bs = bs
        self.prompt_ids = (torch.arange(bs * PROMPT, device=device).view(bs, PROMPT) * 7919 + bs) % VOCAB
        self.prompt_slots = seq_slots[:, :PROMPT].reshape(-1)
        self.prompt_ctx = seq_slots[:, None, :].expand(bs, PROMPT, c).reshape(bs * PROMPT, c)
        pos = torch.arange(PROMPT, device=device)
        m = torch.arange(c, device=device)[None, :] <= pos[:, None]
        m[:, PROMPT] = False
        self.prompt_mask = m[None].expand(bs, PROMPT, c).reshape(bs * PROMPT, c).contiguous()
        self.prompt_last = torch.arange(bs, device=device) * PROMPT + PROMPT - 1
        self.ids = (torch.arange(bs, device=device) * 31 + 17) % VOCAB
        self.slots = seq_slots[:, PROMPT].contiguous()
        self.ctx = seq_slots.contiguous()
        self.mask = torch.ones(bs, c, dtype=torch.bool, device=device)
        self.last = torch.arange(bs, device=device)
        self.out = None
        self.graph = None

    def prefill(self, w, kv):
        return forward(w, kv, self.prompt_ids.reshape(-1), self.prompt_slots, self.prompt_ctx,
                       self.prompt_mask, self.prompt_last)

    def decode(self, w, kv):
        return forward(w, kv, self.ids, self.slots, self.ctx, self.mask, self.last)


def capture_graphs(w, kv, batches):
    pool = torch.cuda.graph_pool_handle()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up: cuBLAS handles, workspaces, lazy modules
        for b in batches:
            for _ in range(2):
                b.decode(w, kv)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    for b in sorted(batches, key=lambda b: -b.bs):  # largest first, as SGLang does
        b.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(b.graph, pool=pool):
            b.out = b.decode(w, kv)
    torch.cuda.synchronize()


@torch.inference_mode()
def outputs(w, kv, batches, use_graphs):
    """Logits of the fixed prompts (eager prefill) and of one decode step each
    (graph replay), on the host.  Prefill rewrites every KV slot decode reads, so
    the result does not depend on what a pause did to the KV pool."""
    res = {}
    for b in batches:
        res[f"prefill_bs{b.bs}"] = b.prefill(w, kv).cpu()
        if use_graphs:
            b.graph.replay()
            res[f"replay_bs{b.bs}"] = b.out.cpu()
        else:
            res[f"decode_bs{b.bs}"] = b.decode(w, kv).cpu()
    torch.cuda.synchronize()
    return res


def time_decode(w, kv, b, use_graphs, steps):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(10):
        b.graph.replay() if use_graphs else b.decode(w, kv)
    torch.cuda.synchronize()
    start.record()
    for _ in range(steps):
        b.graph.replay() if use_graphs else b.decode(w, kv)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / steps


def hold(hold_dir, n):
    suffix = f".r{RANK}" if WORLD > 1 else ""
    open(os.path.join(hold_dir, f"hold.{n}{suffix}"), "w").close()
    go = os.path.join(hold_dir, f"go.{n}")
    while not os.path.exists(go):
        time.sleep(0.005)
    with open(go) as f:
        return f.read().split()


def py_heap():
    """The interpreter's and malloc's counts, to tell a Python-side leak from
    one below it (the driver, memsaver)."""
    import ctypes
    import tracemalloc

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(k, ctypes.c_size_t) for k in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                   "fsmblks", "uordblks", "fordblks", "keepcost")]
    r = {"gc_objects": len(gc.get_objects()), "allocated_blocks": sys.getallocatedblocks()}
    try:
        f = ctypes.CDLL(None).mallinfo2
        f.restype = Mallinfo2
        m = f()
        r.update(malloc_in_use_bytes=m.uordblks + m.hblkhd, malloc_arena_bytes=m.arena)
    except (OSError, AttributeError):
        pass
    if tracemalloc.is_tracing():
        r["tracemalloc_bytes"] = tracemalloc.get_traced_memory()[0]
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kv-fraction", type=float, default=0.5, help="device memory for weights+KV+workspace")
    ap.add_argument("--workspace-mib", type=int, default=512)
    ap.add_argument("--batch-sizes", default="1,2,4,8,16,32")
    ap.add_argument("--no-graphs", action="store_true", help="decode eagerly")
    ap.add_argument("--cycles", type=int, default=0, help="holds, each followed by a parity check")
    ap.add_argument("--hold-dir", help="directory for hold.N / go.N files")
    ap.add_argument("--decode-steps", type=int, default=200, help="timed graph replays (bs = largest)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--update-every", type=int, default=0, metavar="K",
                    help="change a few weights after every K-th hold's check (an RL weight update)")
    ap.add_argument("--tracemalloc", action="store_true", help="trace Python allocations from the first hold on")
    ap.add_argument("--exit-order", choices=["graphs-first", "group-first"], default="graphs-first",
                    help="at exit, release the CUDA graphs before destroying the process group (default), "
                         "or destroy the group while the graphs that hold its collectives are alive "
                         "(reproduces the exit hang, docs/results.md)")
    ap.add_argument("--exit-timeout", type=float, default=120.0,
                    help="seconds before a stuck exit dumps every thread's stack and the process is ended")
    args = ap.parse_args()
    if args.cycles and not args.hold_dir:
        ap.error("--cycles needs --hold-dir")
    device, dtype = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))), torch.bfloat16
    torch.cuda.set_device(device)
    if WORLD > 1:
        torch.distributed.init_process_group("nccl", device_id=device)
    use_graphs = not args.no_graphs
    t0 = time.perf_counter()
    w = load_weights(device, dtype, args.seed)
    torch.cuda.synchronize()
    t_load = time.perf_counter()
    weight_bytes = torch.cuda.memory_allocated(device)
    kv = alloc_kv_pool(device, dtype, args.kv_fraction, weight_bytes + args.workspace_mib * 2**20)
    ws = alloc_workspace(device, args.workspace_mib * 2**20)
    bss = [int(x) for x in args.batch_sizes.split(",")]
    batches, base = [], 0
    for bs in bss:
        batches.append(Batch(bs, base, device))
        base += bs * (PROMPT + 1)
    t_cap0 = time.perf_counter()
    with torch.inference_mode():
        if use_graphs:
            capture_graphs(w, kv, batches)
    torch.cuda.synchronize()
    t_ready = time.perf_counter()
    ref = outputs(w, kv, batches, use_graphs)
    step_ms = time_decode(w, kv, batches[-1], use_graphs, args.decode_steps)
    emit(event="ready", weights_bytes=weight_bytes, kv_bytes=kv.numel() * kv.element_size(),
         workspace_bytes=ws.numel(), graphs=use_graphs, batch_sizes=bss,
         load_s=round(t_load - t0, 4), capture_s=round(t_ready - t_cap0, 4),
         startup_s=round(t_ready - t0, 4), decode_step_ms=round(step_ms, 5),
         torch_reserved_bytes=torch.cuda.memory_reserved(device), pid=os.getpid(), rank=RANK, world=WORLD)
    ok = True
    if args.tracemalloc:
        import tracemalloc
        tracemalloc.start()
    updated = {}  # what the last update changed: name -> (tensor, host copy)
    for c in range(args.cycles):
        words = hold(args.hold_dir, c)
        got = outputs(w, kv, batches, use_graphs)
        bad = [k for k in ref if not torch.equal(ref[k], got[k])]
        bad += [f"weights:{k}" for k, (t, host) in updated.items() if not torch.equal(t.cpu(), host)]
        ok &= not bad
        extra = {"checked_updated": sorted(updated)} if updated else {}
        updated = {}
        if args.update_every and (c + 1) % args.update_every == 0 and c + 1 < args.cycles:
            updated = update_weights(w, c)
            ref = outputs(w, kv, batches, use_graphs)
            extra["updated"] = sorted(updated)
        if "decode" in words:
            extra["decode_step_ms"] = round(time_decode(w, kv, batches[-1], use_graphs, args.decode_steps), 5)
        if "py" in words:
            del got
            extra.update(py_heap())
        emit(event="cycle", cycle=c, rank=RANK, bitwise_equal=not bad, mismatched=bad, **extra)
        if "stop" in words:
            break
    if args.cycles:
        step_ms = time_decode(w, kv, batches[-1], use_graphs, args.decode_steps)
    emit(event="done", ok=ok, rank=RANK, decode_step_ms_after=round(step_ms, 5))
    if WORLD > 1:
        shutdown(batches, args.exit_order, args.exit_timeout)
    return 0 if ok else 1


def shutdown(batches, order, timeout):
    """Leave NCCL cleanly.  The captured graphs hold NCCL work of the
    communicator; destroying the process group while they are alive hung both
    ranks in destroy_process_group() on torch 2.11 / NCCL 2.28.9 (with and
    without memsaver).  Graphs go first, then the group."""
    faulthandler.dump_traceback_later(timeout, exit=True)
    t0 = time.perf_counter()
    if order == "graphs-first":
        for b in batches:
            b.graph = None
        gc.collect()
        torch.cuda.synchronize()
    torch.distributed.destroy_process_group()
    faulthandler.cancel_dump_traceback_later()
    emit(event="exit", rank=RANK, order=order, destroy_s=round(time.perf_counter() - t0, 3))


if __name__ == "__main__":
    sys.exit(main())
