#!/usr/bin/env python3
"""App-owned VMM on the GPU: the bench engine (bench/engines/qwen_like.py, graphs on)
under memsaver with PyTorch's expandable segments off and on, in one run: reclaim
and attribution from the report taken while paused (the app_vmm source, call sites
left "unknown"), pause/resume times, bitwise parity over --cycles pause/resume
cycles, and the cost memsaver adds to the cuMemCreate/cuMemMap path (map + unmap of
20 MiB pages, plain vs under memsaver).  JSON lines on stdout; artefacts (reports,
traces, logs) to --out, else $OUT, else a temporary directory.

usage: bench/expandable.py [--build build] [--out DIR] [--cycles 20]
About 3 minutes on an H200.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchutil import json_lines, nvml_used

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINE = os.path.join(ROOT, "bench/engines/qwen_like.py")
POLICY = os.path.join(ROOT, "bench/policies/qwen-bench.json")
EXPANDABLE = "expandable_segments:True"

# Map and unmap n pages of the large pool per round (empty_cache unmaps them).
MAP_PAIRS = r"""
import json, sys, time, torch
rounds, pages = int(sys.argv[1]), int(sys.argv[2])
torch.cuda.init()
def once():
    x = torch.empty(pages * 20 * 2**20, dtype=torch.uint8, device="cuda")
    del x
    torch.cuda.empty_cache()
for _ in range(20):
    once()
torch.cuda.synchronize()
t = time.perf_counter()
for _ in range(rounds):
    once()
torch.cuda.synchronize()
dt = time.perf_counter() - t
print(json.dumps({"us_per_page": dt / (rounds * pages) * 1e6}))
"""


def emit(**kw):
    print(json.dumps(kw), flush=True)


def ctl(ms, pid, *cmd):
    p = subprocess.run([ms, "ctl", "--pid", str(pid)] + list(cmd), capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout + p.stderr


def med(xs):
    xs = sorted(x for x in xs if x is not None)
    return round(xs[len(xs) // 2], 3) if xs else None


def engine(ms, mode, env, out, cycles, engine_args):
    """One engine under memsaver: cycles of ctl pause / resume, parity after each."""
    hold_dir = tempfile.mkdtemp(prefix="memsaver-hold.")
    trace, report = os.path.join(out, f"{mode}.trace"), os.path.join(out, f"{mode}-report.json")
    paused_report = os.path.join(out, f"{mode}-report-paused.json")
    cmd = [ms, "run", "-p", POLICY, "--trace", trace, "-o", report, "--", sys.executable, ENGINE,
           "--cycles", str(cycles), "--hold-dir", hold_dir] + engine_args
    log = open(os.path.join(out, f"{mode}-engine.log"), "w")
    eng = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    ready, cycles_seen, pauses, resumes, lines, pause_nvml = None, [], [], [], [], {}
    try:
        for line in eng.stdout:
            lines.append(line)
            ev = json_lines(line)
            if ev and ev[0].get("event") == "ready":
                ready = ev[0]
                break
        pid = ready["pid"] if ready else None
        for c in range(cycles if pid else 0):
            hold = os.path.join(hold_dir, f"hold.{c}")
            t_end = time.time() + 300
            while not os.path.exists(hold) and eng.poll() is None and time.time() < t_end:
                time.sleep(0.01)
            if not os.path.exists(hold):
                break
            u0 = nvml_used()
            rc, txt = ctl(ms, pid, "pause")
            u1 = nvml_used()
            st = json.loads(ctl(ms, pid, "status")[1] or "{}")
            pauses.append(st.get("last_pause") or {})
            if rc:
                emit(bench="expandable_cycle", mode=mode, cycle=c, error="pause failed: " + txt[-400:])
            if c == 0:
                ctl(ms, pid, "report", "-o", paused_report)
                pause_nvml = {"nvml_used_before": u0, "nvml_used_after": u1,
                              "nvml_released": u0 - u1 if u0 is not None and u1 is not None else None}
            rc, txt = ctl(ms, pid, "resume")
            st = json.loads(ctl(ms, pid, "status")[1] or "{}")
            resumes.append(st.get("last_resume") or {})
            if rc:
                emit(bench="expandable_cycle", mode=mode, cycle=c, error="resume failed: " + txt[-400:])
            open(os.path.join(hold_dir, f"go.{c}"), "w").close()
            line = eng.stdout.readline()
            lines.append(line)
            ev = json_lines(line)
            if ev:
                cycles_seen.append(ev[0])
        lines.append(eng.stdout.read())
        rc = eng.wait(timeout=300)
    finally:
        if eng.poll() is None:
            eng.kill()
        log.write("".join(lines))
        log.close()
        shutil.rmtree(hold_dir, ignore_errors=True)
    equal = [c.get("bitwise_equal") for c in cycles_seen]
    res = {"mode": mode, "engine_exit": rc, "cycles": len(cycles_seen),
           "all_bitwise_equal": bool(equal) and all(equal),
           "decode_step_ms": ready.get("decode_step_ms") if ready else None,
           "startup_s": ready.get("startup_s") if ready else None,
           "first_pause_ms": pauses[0].get("ms") if pauses else None,
           "pause_ms_median": med(p.get("ms") for p in pauses[1:] or pauses),
           "resume_ms_median": med(r.get("ms") for r in resumes[1:] or resumes),
           "pause_ms": [round(p.get("ms", 0), 1) for p in pauses],
           "resume_ms": [round(r.get("ms", 0), 1) for r in resumes], **pause_nvml}
    if os.path.exists(paused_report):
        a = json.load(open(paused_report)).get("attribution") or {}
        srcs = a.get("sources", [])
        vmm = next((s for s in srcs if s.get("source") == "app_vmm"), {})
        unknown = sum(t.get("bytes", 0) for s in srcs for t in s.get("top_sites") or []
                      if t.get("site") == "unknown")
        res.update(footprint_bytes=a.get("footprint_bytes"), reclaimed_bytes=a.get("reclaimed_bytes"),
                   reclaimed_share=a.get("reclaimed_share"), app_vmm_bytes=vmm.get("bytes", 0),
                   unknown_site_bytes=unknown,
                   sources=[{k: s.get(k) for k in ("source", "bytes", "reason")} for s in srcs])
    if os.path.exists(trace):
        p = subprocess.run([ms, "analyze", "--dump", trace], capture_output=True, text=True, timeout=300)
        by = {}
        for r in json_lines(p.stdout):
            if r.get("type") == "alloc":
                app = "app_vmm" if "app_vmm" in str(r.get("flags", "")) else "alloc"
                key = f'{app}:{r.get("category")}'
                by[key] = by.get(key, 0) + r.get("size", 0)
        res["allocated_by"] = dict(sorted(by.items(), key=lambda kv: -kv[1]))
    return res


def map_cost(ms, env, rounds=200, pages=8):
    """us per 20 MiB page mapped and unmapped, best of 3, plain and under memsaver."""
    best = {}
    for _ in range(3):
        for name, pre in (("plain", []), ("memsaver", [ms, "run", "-p", POLICY, "--"])):
            p = subprocess.run(pre + [sys.executable, "-c", MAP_PAIRS, str(rounds), str(pages)], capture_output=True,
                               text=True, timeout=300, env=env)
            r = (json_lines(p.stdout) or [{}])[0]
            if not r:
                emit(bench="expandable_map_cost", mode=name, error=p.stderr[-600:])
                return None
            best[name] = min(best.get(name, r["us_per_page"]), r["us_per_page"])
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=os.environ.get("OUT"))
    ap.add_argument("--cycles", type=int, default=20)
    args = ap.parse_args()
    ms = os.path.join(args.build, "bin", "memsaver")
    out = args.out or tempfile.mkdtemp(prefix="memsaver-expandable.")
    os.makedirs(out, exist_ok=True)
    os.environ["LD_LIBRARY_PATH"] = (os.environ.get("LD_LIBRARY_PATH", "") + ":" +
                                     os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "lib64"))
    engine_args = ["--decode-steps", "50"]
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or os.environ.get("MSV_COMMIT", "unknown")
    dev = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip()
    emit(bench="setup", device=dev, date=time.strftime("%Y-%m-%d"), commit=commit, command=" ".join(sys.argv),
         engine_args=engine_args, policy=os.path.relpath(POLICY, ROOT))
    res = {}
    for mode, conf in (("expandable_off", None), ("expandable_on", EXPANDABLE)):
        env = dict(os.environ)
        env.pop("PYTORCH_CUDA_ALLOC_CONF", None)
        if conf:
            env["PYTORCH_CUDA_ALLOC_CONF"] = conf
        res[mode] = engine(ms, mode, env, out, args.cycles, engine_args)
        emit(bench="expandable_engine", **res[mode])
    off, on = res["expandable_off"], res["expandable_on"]
    if off.get("reclaimed_share") is not None and on.get("reclaimed_share") is not None:
        gap = round((off["reclaimed_share"] - on["reclaimed_share"]) * 100, 3)
        emit(bench="expandable_verdict", reclaim_gap_points=gap, within_1_point=abs(gap) <= 1.0,
             parity_both=off["all_bitwise_equal"] and on["all_bitwise_equal"],
             app_vmm_bytes_on=on.get("app_vmm_bytes"), unknown_site_bytes_on=on.get("unknown_site_bytes"),
             pause_ms_median=[off.get("pause_ms_median"), on.get("pause_ms_median")],
             resume_ms_median=[off.get("resume_ms_median"), on.get("resume_ms_median")])
    env = dict(os.environ, PYTORCH_CUDA_ALLOC_CONF=EXPANDABLE)
    cost = map_cost(ms, env)
    if cost:
        emit(bench="expandable_map_cost", us_per_page=cost,
             added_us_per_page=round(cost["memsaver"] - cost["plain"], 2),
             ratio=round(cost["memsaver"] / cost["plain"], 4) if cost["plain"] else None)
    emit(bench="artefacts", out=out, files=sorted(os.listdir(out)))
    ok = off.get("all_bitwise_equal") and on.get("all_bitwise_equal") and not on.get("engine_exit")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
