#!/usr/bin/env python3
"""What an engine thread that keeps calling CUDA sees while the engine is paused
(issue 12 item 3, issue 16 item 4), and how long the first pause of an engine
that never stopped working takes (issue 15): a PyTorch process (not the bench
engine: --weights-gib of weights, a matmul over the first GiB and a .item() per
call, from a thread that never stops) under `memsaver run -p
bench/policies/wrap-all.json`, paused from outside --busy-s seconds after it is
ready with `memsaver ctl pause --deep` (mode deep) or `memsaver ctl pause` (mode
plain), held --hold-s seconds, then resumed.

The thread records every call's start and end (CLOCK_MONOTONIC, the clock this
script reads too) and its result against the one computed before the pause.
Per mode, one JSON line: how many calls returned while paused (between the
pause command's return and the resume command's start: want 0), the longest
call and how it compares with the paused time, wrong results and exceptions
(want 0), whether the process exited cleanly, the calls' median and p99 while
busy (what the background preparation costs them), and memsaver's lines about
the backups' host memory (MEMSAVER_PREPIN; run once with MEMSAVER_PREPIN=0 in
the environment to compare).

usage: python3 bench/deep_block.py --build build [--hold-s 2] [--busy-s 1] [--weights-gib 1]
                                   [--modes deep,plain]
Exits 77 without a GPU, 1 when a verdict fails.  About 1 minute on an H200.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchutil import have_gpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLICY = os.path.join(ROOT, "bench/policies/wrap-all.json")

CHILD = r"""
import json, os, sys, threading, time, torch
stop, gib = sys.argv[1], int(sys.argv[2])
torch.manual_seed(1)
ws = [torch.randn(16384, 16384, device="cuda", dtype=torch.float32) / 128 for _ in range(gib)]   # 1 GiB each
w = ws[0]
x = torch.randn(64, 16384, device="cuda", dtype=torch.float32)
def call():
    return float((x @ w).sum().item())
ref = call()
calls, wrong, errors = [], 0, []
def busy():
    global wrong
    while not os.path.exists(stop):
        t0 = time.monotonic()
        try:
            v = call()
        except Exception as e:  # a fault would show here
            errors.append(repr(e)[:200])
            break
        calls.append((t0, time.monotonic()))
        wrong += v != ref
th = threading.Thread(target=busy)
th.start()
time.sleep(0.5)
print(json.dumps({"event": "ready", "pid": os.getpid()}), flush=True)
th.join()
print(json.dumps({"event": "done", "calls": calls, "wrong": wrong, "errors": errors}), flush=True)
"""


def emit(**kw):
    print(json.dumps(kw), flush=True)


def ctl(ms, pid, *cmd):
    t0 = time.monotonic()
    p = subprocess.run([ms, "ctl", "--pid", str(pid)] + list(cmd), capture_output=True, text=True, timeout=300)
    return p.returncode, (p.stdout + p.stderr).strip()[-300:], t0, time.monotonic()


def one(ms, mode, a):
    tmp = tempfile.mkdtemp(prefix="memsaver-deep-block.")
    stop = os.path.join(tmp, "stop")
    run = ([ms, "run", "--log", "info"] + (["--deep-ready"] if mode == "deep" else []) +
           ["-p", POLICY, "--", sys.executable, "-c", CHILD, stop, str(a.weights_gib)])
    log = os.path.join(tmp, "engine.log")
    p = subprocess.Popen(run, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)
    ready = json.loads(p.stdout.readline() or "{}")
    if ready.get("event") != "ready":
        p.kill()
        return {"bench": "deep_block", "mode": mode, "error": "the child never got ready; see " + tmp}
    pid = ready["pid"]
    t_ready = time.monotonic()
    time.sleep(a.busy_s)
    prc, pout, p0, p1 = ctl(ms, pid, "pause", *(["--deep"] if mode == "deep" else []))
    time.sleep(a.hold_s)
    rrc, rout, r0, r1 = ctl(ms, pid, "resume")
    time.sleep(1.0)
    open(stop, "w").close()
    out, _ = p.communicate(timeout=120)
    done = next((json.loads(l) for l in out.splitlines() if l.startswith("{") and '"done"' in l), None)
    row = {"bench": "deep_block", "mode": mode, "pause_rc": prc, "pause_out": pout, "resume_rc": rrc,
           "resume_out": rout, "pause_ms": round((p1 - p0) * 1e3, 1), "paused_ms": round((r0 - p1) * 1e3, 1),
           "resume_ms": round((r1 - r0) * 1e3, 1), "engine_exit": p.returncode, "log": tmp}
    if not done:
        return dict(row, error="the child printed no result")
    calls = done["calls"]
    longest = max(calls, key=lambda c: c[1] - c[0])
    during = [c for c in calls if p1 < c[1] < r0]
    normal = sorted(c[1] - c[0] for c in calls if t_ready <= c[0] and c[1] < p0)
    row.update(calls=len(calls), returned_while_paused=len(during), wrong=done["wrong"], errors=done["errors"],
               weights_gib=a.weights_gib, busy_s=a.busy_s, prepin=os.environ.get("MEMSAVER_PREPIN", "default"),
               call_ms_median_before=round(normal[len(normal) // 2] * 1e3, 3) if normal else None,
               call_ms_p99_before=round(normal[int(len(normal) * 0.99)] * 1e3, 3) if normal else None,
               backup_lines=[l.split(": ", 2)[-1].strip()[:300] for l in open(log)
                             if "backups prepared in the background" in l or "made for this pause" in l],
               longest_call_ms=round((longest[1] - longest[0]) * 1e3, 1),
               longest_call_began_ms_before_pause_returned=round((p1 - longest[0]) * 1e3, 1),
               longest_call_ended_ms_after_resume_returned=round((longest[1] - r1) * 1e3, 1))
    row["ok"] = (prc == 0 and rrc == 0 and p.returncode == 0 and not during and not done["wrong"]
                 and not done["errors"] and row["longest_call_ms"] >= row["paused_ms"])
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--hold-s", type=float, default=2.0)
    ap.add_argument("--busy-s", type=float, default=1.0, help="from ready to the pause")
    ap.add_argument("--weights-gib", type=int, default=1)
    ap.add_argument("--modes", default="deep,plain")
    a = ap.parse_args()
    if not have_gpu():
        emit(bench="deep_block", skipped="no GPU (nvidia-smi -L lists none)")
        return 77
    ms = os.path.join(a.build, "bin", "memsaver")
    ok = True
    for mode in a.modes.split(","):
        row = one(ms, mode, a)
        emit(**row)
        ok &= bool(row.get("ok"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
