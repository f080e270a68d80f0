#!/usr/bin/env python3
"""What the driver's process checkpoint does with a two-process NCCL job (issue 12
item 7), asked directly, without memsaver: memsaver's ctl refuses such an engine on
drivers before 610 before it asks the driver (docs/deep-pause.md), so this shows
what that refusal avoids.  Two ranks (torch.distributed.run, NCCL, one GPU each,
NVLink multicast off) each hold 1 GiB and have run all-reduces; then
bench-ckpt_probe locks, checkpoints, restores and unlocks both pids (each step's
result and time as a JSON line, under a 120 s limit), then both ranks all-reduce
again and compare with the value before.  Last line: a summary (driver steps that
failed, whether the ranks came back right, exit codes).  Exits 77 with fewer than
two GPUs.

usage: python3 bench/deep_nccl.py --build build
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RANK = r"""
import json, os, sys, time, torch, torch.distributed as dist
d = sys.argv[1]
dist.init_process_group("nccl")
r = dist.get_rank()
torch.cuda.set_device(r)
x = torch.full((256 << 20,), float(r + 1), device="cuda")   # 1 GiB
def reduce():
    y = x.clone(); dist.all_reduce(y); torch.cuda.synchronize(); return float(y[:1024].sum())
before = reduce()
open(os.path.join(d, "ready.%d" % r), "w").write(str(os.getpid()))
while not os.path.exists(os.path.join(d, "go")):
    time.sleep(0.05)
try:
    after = reduce()
    res = {"rank": r, "pid": os.getpid(), "before": before, "after": after, "equal": after == before}
except Exception as e:
    res = {"rank": r, "pid": os.getpid(), "error": repr(e)[:300]}
print(json.dumps(res), flush=True)
dist.destroy_process_group()
"""


def emit(**kw):
    print(json.dumps(kw), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    a = ap.parse_args()
    gpus = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.count("GPU ")
    if gpus < 2:
        emit(bench="deep_nccl", skipped="needs two GPUs, found %d" % gpus)
        return 77
    d = tempfile.mkdtemp(prefix="memsaver-deep-nccl.")
    script = os.path.join(d, "rank.py")
    open(script, "w").write(RANK)
    env = dict(os.environ, NCCL_NVLS_ENABLE="0", PYTHONUNBUFFERED="1")
    job = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", script, d],
                           stdout=subprocess.PIPE, stderr=open(os.path.join(d, "ranks.log"), "w"), text=True,
                           env=env)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120 and not all(os.path.exists(os.path.join(d, "ready.%d" % r)) for r in (0, 1)):
        time.sleep(0.1)
    pids = [open(os.path.join(d, "ready.%d" % r)).read() for r in (0, 1)
            if os.path.exists(os.path.join(d, "ready.%d" % r))]
    if len(pids) < 2:
        job.kill()
        emit(bench="deep_nccl", error="the ranks never got ready; see " + d)
        return 1
    steps = []
    try:
        p = subprocess.run([os.path.join(a.build, "bin", "bench-ckpt_probe")] + pids, capture_output=True,
                           text=True, timeout=120)
        probe_rc, probe_err = p.returncode, p.stderr.strip()[-300:]
        out = p.stdout
    except subprocess.TimeoutExpired as e:
        probe_rc, probe_err = "timeout after 120 s", ""
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
    for line in out.splitlines():
        if line.startswith("{"):
            steps.append(json.loads(line))
            emit(**steps[-1])
    open(os.path.join(d, "go"), "w").close()
    try:
        ranks_out, _ = job.communicate(timeout=120)
        ranks = [json.loads(l) for l in ranks_out.splitlines() if l.startswith("{")]
        job_rc = job.returncode
    except subprocess.TimeoutExpired:
        job.kill()
        ranks, job_rc = [], "hung: killed after 120 s"
    emit(bench="deep_nccl_summary", pids=pids, probe_rc=probe_rc, probe_stderr=probe_err,
         failed_steps=[s for s in steps if s["rc"] != 0], ranks=ranks, job_rc=job_rc,
         ranks_correct=len(ranks) == 2 and all(r.get("equal") for r in ranks), log=d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
