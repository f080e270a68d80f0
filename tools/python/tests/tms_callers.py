"""The call sequences SGLang, verl and slime make on torch_memory_saver, run
against the torch_memory_saver package of memsaver on the CUDA driver
(the fake one in `make test`), with no torch installed: a stand-in `torch`
module provides the two things the package uses from it (torch.cuda.graph
and memory pools) and records how they were used; memory is allocated and
checked through the driver API (cudrv.py).

    python3 tms_callers.py sglang|slime|nolib

sglang: SGLang's ModelRunner / Scheduler (verl's and slime's rollouts call
        the same through SGLang's release/resume_memory_occupation):
        weights region with CPU backup, kv_cache region, cuda_graph capture
        tagged cuda_graph, release in the order kv_cache, weights, cuda_graph
        and resume in reverse; plus configure_subprocess, hook_mode, unknown
        tags, MEMSAVER_TMS_TAGS, enable_cpu_backup against a discard policy.
slime:  slime's training actor (TMS_INIT_ENABLE=1 with CPU backup, here
        MEMSAVER_POLICY=policies/init-enable.json): untagged memory paused
        and restored by pause()/resume() without tags; disable() around the
        weight update allocates memory that is never paused.
nolib:  the library is not preloaded: enabled is False and every call that
        would need it raises MemsaverError saying how to load it.
Exit 0 when every check holds; the first failed check raises."""

import contextlib
import json
import logging
import os
import sys
import tempfile
import types

import cudrv

MiB = 1 << 20


class FakeTorch(types.ModuleType):
    """torch.cuda.graph / MemPool / use_mem_pool on the driver API."""

    def __init__(self, drv):
        super().__init__("torch")
        self.drv = drv
        self.pools_made = []
        self.pool_stack = []
        self.graph_calls = []
        outer = self

        class MemPool:
            def __init__(self):
                outer.pools_made.append(self)

        @contextlib.contextmanager
        def use_mem_pool(pool):
            outer.pool_stack.append(pool)
            try:
                yield
            finally:
                outer.pool_stack.pop()

        @contextlib.contextmanager
        def graph(cuda_graph, pool=None, stream=None, capture_error_mode="global"):
            outer.graph_calls.append((cuda_graph, pool, stream, capture_error_mode))
            s = stream if stream is not None else drv.stream()
            drv.begin_capture(s)
            try:
                yield
            finally:
                cuda_graph["graph"] = drv.end_capture(s)

        self.cuda = types.SimpleNamespace(MemPool=MemPool, use_mem_pool=use_mem_pool, graph=graph)


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what)


def pattern(seed, size):
    return bytes((seed * 31 + i * 7) & 0xFF for i in range(256)) * (size // 256)


class Warnings(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def sglang(drv, torch):
    import memsaver
    import torch_memory_saver
    from torch_memory_saver import torch_memory_saver as tms

    warn = Warnings()
    logging.getLogger("torch_memory_saver").addHandler(warn)

    # SGLang's adapter: the singleton, .enabled, configure_subprocess around
    # the scheduler processes it starts.
    check(tms.enabled, "enabled with libmemsaver.so preloaded")
    check(isinstance(tms, torch_memory_saver.TorchMemorySaver), "singleton is a TorchMemorySaver")
    before = os.environ.get("LD_PRELOAD", "")
    with torch_memory_saver.configure_subprocess():
        inner = os.environ["LD_PRELOAD"].split(":")
        check(inner[0] == memsaver.library_path() and inner.count(inner[0]) == 1,
              "configure_subprocess puts libmemsaver.so first in LD_PRELOAD, once")
        check(os.environ.get("CUDA_INJECTION64_PATH"), "configure_subprocess keeps or sets CUDA_INJECTION64_PATH")
    check(os.environ.get("LD_PRELOAD", "") == before, "configure_subprocess restores LD_PRELOAD")
    tms.hook_mode = "torch"  # Megatron sets it at import time, after first use too
    tms.hook_mode = "preload"
    check(tms.hook_mode == "preload", "hook_mode may be set at any time")
    tms.memory_margin_bytes = 1 << 30

    base = drv.used()
    # ModelRunner.load_model
    with tms.region(tag="weights", enable_cpu_backup=True):
        w = drv.alloc(8 * MiB)
    with tms.region(tag="weights_drafter", enable_cpu_backup=True):
        wd = drv.alloc(2 * MiB)
    check(len(torch.pools_made) == 1, "weights and weights_drafter share the weights pool")
    # ModelRunner.init_memory_pool
    with tms.region(tag="kv_cache"):
        kv = drv.alloc(16 * MiB)
    check(len(torch.pools_made) == 2, "kv_cache has a pool of its own")
    # CudaGraphRunner.capture: torch_memory_saver.cuda_graph(...) instead of torch.cuda.graph(...)
    graph, pool, stream = {}, object(), drv.stream()
    with tms.cuda_graph(cuda_graph=graph, pool=pool, stream=stream, tag="cuda_graph"):
        g = drv.alloc(4 * MiB)
    check(torch.graph_calls == [(graph, pool, stream, "global")] and graph.get("graph"),
          "cuda_graph() captures through torch.cuda.graph with the caller's graph, pool and stream")
    other = drv.alloc(2 * MiB)  # outside every region: other, kept by the built-in policy
    check(not torch.pool_stack, "every pool is left at the end of its block")

    data = {w: pattern(1, 8 * MiB), wd: pattern(2, 2 * MiB), kv: pattern(3, 16 * MiB),
            g: pattern(4, 4 * MiB), other: pattern(5, 2 * MiB)}
    for p, d in data.items():
        drv.write(p, d)
    drv.synchronize()
    held = drv.used()
    check(held - base >= 32 * MiB, f"footprint grew by {(held - base) / MiB:.0f} MiB")

    for cycle in range(3):
        # Scheduler.release_memory_occupation(tags=None): every type, in SGLang's order
        tms.pause("kv_cache")
        tms.pause("weights")
        tms.pause("weights_drafter")  # already paused with weights: a no-op, not an error
        tms.pause("cuda_graph")
        paused = drv.used()
        check(held - paused >= 30 * MiB, f"cycle {cycle}: device memory used fell by {(held - paused) / MiB:.0f} MiB")
        st = memsaver.control("status", pid=os.getpid())["status"]
        released = {c: st["categories"][c]["released_bytes"] // MiB for c in ("weights", "kv", "graph", "other")}
        check(sorted(st["paused"]) == ["graph", "kv", "weights"] and
              released["weights"] >= 10 and released["kv"] >= 16 and released["graph"] >= 4 and not released["other"],
              f"cycle {cycle}: status says weights, kv and graph released ({released} MiB), other kept")
        check(drv.read(other, 2 * MiB) == data[other], f"cycle {cycle}: untagged memory untouched while paused")
        # Scheduler.resume_memory_occupation: cuda_graph, weights, kv_cache
        tms.resume("cuda_graph")
        tms.resume("weights")
        tms.resume("kv_cache")
        check(drv.used() - paused >= 30 * MiB, f"cycle {cycle}: resume mapped the memory again")
        for p, name in ((w, "weights"), (wd, "weights_drafter"), (g, "cuda_graph")):
            check(drv.read(p, len(data[p])) == data[p], f"cycle {cycle}: {name} restored bitwise at the same address")
        drv.write(kv, data[kv])  # the KV cache is discarded: SGLang flushes it

    # release/resume with a subset of tags, then all at once (tags=None)
    tms.pause("kv_cache")
    check(drv.read(w, 8 * MiB) == data[w], "weights untouched by a kv_cache pause")
    tms.resume("kv_cache")
    tms.pause()
    tms.resume()
    check(drv.read(g, 4 * MiB) == data[g], "pause()/resume() without a tag restore the graph pool")

    # Tags: the unknown are refused with the way out; MEMSAVER_TMS_TAGS adds some.
    try:
        with tms.region(tag="lora_adapters"):
            pass
        raise AssertionError("an unknown tag was accepted")
    except ValueError as e:
        check("MEMSAVER_TMS_TAGS" in str(e), "an unknown tag raises ValueError naming MEMSAVER_TMS_TAGS")
    os.environ["MEMSAVER_TMS_TAGS"] = "lora_adapters=weights"
    with tms.region(tag="lora_adapters", enable_cpu_backup=True):
        lora = drv.alloc(2 * MiB)
    drv.write(lora, pattern(6, 2 * MiB))
    tms.pause("lora_adapters")
    tms.resume("lora_adapters")
    check(drv.read(lora, 2 * MiB) == pattern(6, 2 * MiB), "a MEMSAVER_TMS_TAGS tag pauses with its category")
    del os.environ["MEMSAVER_TMS_TAGS"]

    # A caller that wants the KV cache backed up while the policy discards it is warned.
    check(not warn.messages, "no warning so far")
    with tms.region(tag="kv_cache", enable_cpu_backup=True):
        pass
    check(any("'kv_cache'" in m and "discard" in m and "backup" in m for m in warn.messages),
          "enable_cpu_backup on a discarded category warns, naming the policy change")

    # Regions do not nest in torch_memory_saver either; disable() inside one works.
    with tms.region(tag="weights"):
        with tms.disable():
            kept = drv.alloc(2 * MiB)
        after = drv.alloc(2 * MiB)
    drv.write(kept, pattern(7, 2 * MiB))
    drv.write(after, pattern(8, 2 * MiB))
    tms.pause("weights")
    check(drv.read(kept, 2 * MiB) == pattern(7, 2 * MiB), "disable() inside a region: memory not paused")
    tms.resume("weights")
    check(drv.read(after, 2 * MiB) == pattern(8, 2 * MiB), "the region resumes after disable() ends")

    try:
        tms.get_cpu_backup(None)
        raise AssertionError("get_cpu_backup returned")
    except NotImplementedError as e:
        check("resume" in str(e), "get_cpu_backup says what to do instead")

    path = os.path.join(tempfile.mkdtemp(), "report.json")
    memsaver.report(path)
    rep = json.load(open(path))
    cats = rep["phases"][-1]["categories"]
    check(cats["weights"]["count"] >= 3 and cats["kv"]["count"] >= 1 and cats["graph"]["count"] >= 1,
          "the report counts the allocations under weights, kv and graph")
    check(rep["pauses"] >= 5, f"the report saw {rep['pauses']} pauses")


def slime(drv, torch):
    import memsaver
    from torch_memory_saver import torch_memory_saver as tms

    # Megatron allocates everything outside any region (TMS_INIT_ENABLE=1).
    params = drv.alloc(8 * MiB)
    optim = drv.alloc(8 * MiB)
    drv.write(params, pattern(1, 8 * MiB))
    drv.write(optim, pattern(2, 8 * MiB))
    held = drv.used()
    for cycle in range(2):
        tms.pause()  # actor.sleep()
        other = memsaver.control("status", pid=os.getpid())["status"]["categories"]["other"]
        check(held - drv.used() >= 16 * MiB and other["released_bytes"] >= 16 * MiB,
              f"cycle {cycle}: pause() released the untagged memory")
        tms.resume()  # actor.wake_up()
        check(drv.read(params, 8 * MiB) == pattern(1, 8 * MiB) and drv.read(optim, 8 * MiB) == pattern(2, 8 * MiB),
              f"cycle {cycle}: untagged memory restored bitwise")
        # update_weights(): with torch_memory_saver.disable(): buckets for the rollout engines
        with tms.disable():
            bucket = drv.alloc(4 * MiB)
        check(torch.pools_made and not torch.pool_stack, "disable() allocates from a fresh pool and leaves it")
        drv.write(bucket, pattern(3, 4 * MiB))
        tms.pause()
        check(drv.read(bucket, 4 * MiB) == pattern(3, 4 * MiB), f"cycle {cycle}: memory from disable() is never paused")
        tms.resume()
        drv.free(bucket)


def nolib():
    import memsaver
    from torch_memory_saver import torch_memory_saver as tms

    check(not tms.enabled, "enabled is False without the library")
    for call in (lambda: tms.pause("kv_cache"), lambda: tms.resume(),
                 lambda: tms.region(tag="weights").__enter__()):
        try:
            call()
            raise AssertionError("a call without the library succeeded")
        except memsaver.MemsaverError as e:
            check("memsaver run" in str(e), "without the library a call raises MemsaverError saying how to load it")


def main():
    mode = sys.argv[1]
    if mode == "nolib":
        nolib()
        return 0
    drv = cudrv.Driver()
    torch = FakeTorch(drv)
    sys.modules["torch"] = torch
    {"sglang": sglang, "slime": slime}[mode](drv, torch)
    print(f"{mode}: every check held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
