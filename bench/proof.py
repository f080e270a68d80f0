#!/usr/bin/env python3
"""The GPU proof: the PyTorch engine (bench/engines/qwen_like.py) with and without
memsaver, pause/resume cycles with bitwise parity, reclaim and attribution from the
report, latency, overhead, and the pinned-copy baseline, all in one run on one
machine.  Prints one JSON line per measurement and writes the artefacts (report,
trace, text and HTML renderings, engine logs) to --out.

usage: bench/proof.py [--build build] [--out DIR] [--cycles 20] [--quick]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchutil import alloc_pair_overhead, json_lines, nvml_used

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINE = os.path.join(ROOT, "bench/engines/qwen_like.py")
POLICY = os.path.join(ROOT, "bench/policies/qwen-bench.json")


def emit(**kw):
    print(json.dumps(kw), flush=True)


def device_name():
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:  # noqa: BLE001
        return "unknown"


def run_plain(args, extra, log):
    with open(log, "w") as f:
        p = subprocess.run([sys.executable, ENGINE] + extra, stdout=subprocess.PIPE, stderr=f, text=True,
                           timeout=600)
    lines = json_lines(p.stdout)
    with open(log, "a") as f:
        f.write(p.stdout)
    if p.returncode != 0:
        raise SystemExit(f"engine failed without memsaver (exit {p.returncode}); see {log}")
    return lines


def ctl(ms, pid, *cmd, timeout=600):
    t = time.perf_counter()
    p = subprocess.run([ms, "ctl", "--pid", str(pid)] + list(cmd), capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout + p.stderr, (time.perf_counter() - t) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="smaller engine (3 batch sizes, kv 0.25)")
    ap.add_argument("--skip-baseline", action="store_true", help="no run of the engine without memsaver")
    ap.add_argument("--skip-pairs", action="store_true", help="no allocation pairs (bench/pair_overhead.py)")
    ap.add_argument("--update-every", type=int, default=5, metavar="K",
                    help="the engine changes a few weights after every K-th cycle's check, as an RL "
                         "weight update does (default 5; 0: never); the next cycle checks them bitwise")
    ap.add_argument("--pairs-only", action="store_true", help="the pinned copy and the allocation pairs, then stop")
    ap.add_argument("--first-pause-after-s", type=float, default=0.0,
                    help="seconds between the engine's ready line and the first pause (default 0: at "
                         "once; an engine is usually paused long after it started, and MEMSAVER_PREPIN "
                         "prepares backups in that time)")
    ap.add_argument("--paused-s", type=float, default=0.0,
                    help="seconds each cycle stays paused before the resume (default 0: resume at once; "
                         "the driver scrubs released device memory in the background, and a resume "
                         "right after the pause waits for that)")
    args = ap.parse_args()
    ms = os.path.join(args.build, "bin", "memsaver")
    out = args.out or tempfile.mkdtemp(prefix="memsaver-proof.")
    os.makedirs(out, exist_ok=True)
    cuda_lib = os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "lib64")
    os.environ["LD_LIBRARY_PATH"] = os.environ.get("LD_LIBRARY_PATH", "") + ":" + cuda_lib
    engine_args = ["--decode-steps", "200"]
    if args.quick:
        engine_args += ["--batch-sizes", "1,8,32", "--kv-fraction", "0.25"]
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or os.environ.get("MSV_COMMIT", "unknown")
    emit(bench="setup", device=device_name(), date=time.strftime("%Y-%m-%d"), commit=commit,
         command=" ".join(sys.argv), engine_args=engine_args)

    # 1. The pinned-copy baseline and the allocation-pair cost, same machine, same run.
    p = subprocess.run([sys.executable, os.path.join(ROOT, "bench/copy_bw.py"), "4"], capture_output=True,
                       text=True, timeout=300)
    copy = (json_lines(p.stdout) or [{}])[0]
    emit(**copy) if copy else emit(bench="pinned_copy", error=p.stderr[-500:])
    if not args.skip_pairs:
        pairs = alloc_pair_overhead(ms, os.path.join(args.build, "lib", "bench-driver_pair.so"))
        emit(**pairs) if "error" not in pairs else emit(bench="alloc_pairs", error=pairs["error"])

    if args.pairs_only:
        return 0

    # 2. The engine alone: start-up and decode step without memsaver.
    base = None
    if not args.skip_baseline:
        lines = run_plain(args, engine_args, os.path.join(out, "engine-plain.log"))
        base = next((l for l in lines if l.get("event") == "ready"), None)
        emit(bench="engine_plain", **(base or {}))

    # 3. The engine under memsaver: pause/resume cycles with parity checks.
    hold_dir = tempfile.mkdtemp(prefix="memsaver-hold.")
    trace, report = os.path.join(out, "engine.trace"), os.path.join(out, "engine-report.json")
    cmd = [ms, "run", "--log", os.environ.get("BENCH_LOG", "info"), "-p", POLICY, "--trace", trace, "-o", report, "--", sys.executable, ENGINE,
           "--cycles", str(args.cycles), "--hold-dir", hold_dir, "--update-every", str(args.update_every)] + engine_args
    elog = open(os.path.join(out, "engine-memsaver.log"), "w")
    eng = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=elog, text=True)
    ready, cycles, pauses, resumes, first_report = None, [], [], [], None
    used_before_first = None
    stdout_lines = []
    try:
        while True:
            line = eng.stdout.readline()
            if not line:
                break
            stdout_lines.append(line)
            ev = json_lines(line)
            if ev and ev[0].get("event") == "ready":
                ready = ev[0]
                emit(bench="engine_memsaver", **ready)
                break
        pid = ready["pid"] if ready else None
        for c in range(args.cycles if pid else 0):
            hold = os.path.join(hold_dir, f"hold.{c}")
            t_end = time.time() + 300
            while not os.path.exists(hold) and eng.poll() is None and time.time() < t_end:
                time.sleep(0.01)
            if not os.path.exists(hold):
                break
            if c == 0 and args.first_pause_after_s > 0:
                time.sleep(args.first_pause_after_s)
            u0 = nvml_used()
            rc, txt, _ = ctl(ms, pid, "pause")
            u1 = nvml_used()
            _, st, _ = ctl(ms, pid, "status")
            status = json.loads(st) if st.strip().startswith("{") else {}
            lp = status.get("last_pause") or {}
            pauses.append(lp)
            if c == 0:
                used_before_first = u0
                rr, rtxt, _ = ctl(ms, pid, "report", "-o", os.path.join(out, "engine-report-paused.json"))
                first_report = os.path.join(out, "engine-report-paused.json") if rr == 0 else None
                wrapped = sum(v.get("wrapped_bytes", 0) for v in status.get("categories", {}).values())
                released = sum(v.get("released_bytes", 0) for v in status.get("categories", {}).values())
                emit(bench="pause_nvml", nvml_used_before=u0, nvml_used_after=u1,
                     nvml_released=(u0 - u1) if u0 is not None and u1 is not None else None,
                     wrapped_bytes=wrapped, released_bytes=released,
                     released_share_of_wrapped=round((u0 - u1) / wrapped, 4) if wrapped and u0 and u1 else None)
            if rc != 0:
                emit(bench="cycle", cycle=c, error="pause failed: " + txt[-400:])
            if args.paused_s > 0:
                time.sleep(args.paused_s)
            rc2, txt2, _ = ctl(ms, pid, "resume")
            _, st, _ = ctl(ms, pid, "status")
            status = json.loads(st) if st.strip().startswith("{") else {}
            resumes.append(status.get("last_resume") or {})
            if rc2 != 0:
                emit(bench="cycle", cycle=c, error="resume failed: " + txt2[-400:])
            open(os.path.join(hold_dir, f"go.{c}"), "w").close()
            line = eng.stdout.readline()
            stdout_lines.append(line)
            ev = json_lines(line)
            if ev:
                cycles.append(ev[0])
        rest = eng.stdout.read()
        stdout_lines.append(rest)
        rc = eng.wait(timeout=300)
    finally:
        if eng.poll() is None:
            eng.kill()
        elog.write("".join(stdout_lines))
        elog.close()
        shutil.rmtree(hold_dir, ignore_errors=True)
    done = next((l for l in json_lines("".join(stdout_lines)) if l.get("event") == "done"), {})
    equal = [c.get("bitwise_equal") for c in cycles]
    emit(bench="parity", cycles=len(cycles), all_bitwise_equal=bool(equal) and all(equal),
         engine_exit=rc, mismatched=[c for c in cycles if not c.get("bitwise_equal")][:3],
         cycles_after_weight_update=[c["cycle"] for c in cycles if c.get("checked_updated")])
    def med(xs):
        xs = sorted(x for x in xs if x is not None)
        return round(xs[len(xs) // 2], 3) if xs else None

    def gbps(t, kind):
        return t.get(kind + "_bytes", 0) / (t["copy_ms"] / 1e3) / 1e9 if t.get("copy_ms") else None

    steady_p, steady_r = pauses[1:] or pauses, resumes[1:] or resumes
    emit(bench="latency", paused_s=args.paused_s, first_pause_after_s=args.first_pause_after_s, pause_ms=[round(p.get("ms", 0), 2) for p in pauses],
         resume_ms=[round(r.get("ms", 0), 2) for r in resumes],
         restore_by=[r.get("restore_by") for r in resumes],
         first_pause_ms=pauses[0].get("ms") if pauses else None,
         pause_ms_median=med(p.get("ms") for p in steady_p), resume_ms_median=med(r.get("ms") for r in steady_r),
         pause_copy_ms_median=med(p.get("copy_ms") for p in steady_p),
         pause_unmap_ms_median=med(p.get("unmap_ms") for p in steady_p),
         resume_map_ms_median=med(r.get("map_ms") for r in steady_r),
         resume_copy_ms_median=med(r.get("copy_ms") for r in steady_r),
         backup_bytes=[p.get("backup_bytes") for p in pauses],
         backup_skipped_bytes=[p.get("backup_skipped_bytes") for p in pauses],
         backup_gbps_median=med(gbps(p, "backup") for p in steady_p),
         restore_gbps_median=med(gbps(r, "restore") for r in steady_r),
         pinned_dtoh_gbps=copy.get("dtoh_gbps"), pinned_htod_gbps=copy.get("htod_gbps"))
    if base and ready:
        emit(bench="overhead", decode_step_ms_plain=base["decode_step_ms"],
             decode_step_ms_memsaver=ready["decode_step_ms"],
             decode_ratio=round(ready["decode_step_ms"] / base["decode_step_ms"], 4),
             decode_step_ms_memsaver_after_cycles=done.get("decode_step_ms_after"),
             startup_s_plain=base["startup_s"], startup_s_memsaver=ready["startup_s"],
             startup_ratio=round(ready["startup_s"] / base["startup_s"], 4))

    # 4. Reclaim and attribution, from the report taken while paused.
    rep_path = first_report or report
    if rep_path and os.path.exists(rep_path):
        rep = json.load(open(rep_path))
        a = rep.get("attribution") or {}
        t = rep.get("timings") or {}
        ctx = next((s for s in a.get("sources", []) if s.get("source") == "driver:context"), {})
        irreducible = ctx.get("bytes", 0)
        f = a.get("footprint_bytes") or 0
        emit(bench="reclaim", footprint_bytes=f, reclaimed_bytes=a.get("reclaimed_bytes"),
             reclaimed_share=a.get("reclaimed_share"), unreclaimed_bytes=a.get("unreclaimed_bytes"),
             reclaimed_share_context_excluded=round(a["reclaimed_bytes"] / (f - irreducible), 5)
             if f and f > irreducible and a.get("reclaimed_bytes") is not None else None,
             sources=[{k: s.get(k) for k in ("source", "bytes", "share_of_unreclaimed", "share_of_footprint",
                                              "reason")} for s in a.get("sources", [])])
        emit(bench="backup", **t, pinned_dtoh_gbps=copy.get("dtoh_gbps"), pinned_htod_gbps=copy.get("htod_gbps"),
             backup_share_of_pinned=round(t["backup_gbps"] / copy["dtoh_gbps"], 4)
             if t.get("backup_gbps") and copy.get("dtoh_gbps") else None,
             restore_share_of_pinned=round(t["restore_gbps"] / copy["htod_gbps"], 4)
             if t.get("restore_gbps") and copy.get("htod_gbps") else None)
        for fmt, name in (("text", "engine-report.txt"), ("html", "engine-report.html")):
            subprocess.run([ms, "report", rep_path, "--format", fmt, "-o", os.path.join(out, name)],
                           timeout=60)
    # Classification of allocated bytes, from the trace.
    if os.path.exists(trace):
        p = subprocess.run([ms, "analyze", "--dump", trace], capture_output=True, text=True, timeout=300)
        by = {}
        for r in json_lines(p.stdout):
            if r.get("type") == "alloc":
                key = (r.get("category"), r.get("rule_text"))
                by[key] = by.get(key, 0) + r.get("size", 0)
        total = sum(by.values())
        emit(bench="classification", total_allocated_bytes=total,
             by=[{"category": k[0], "rule": k[1], "bytes": v, "share": round(v / total, 5) if total else None}
                 for k, v in sorted(by.items(), key=lambda kv: -kv[1])])
    emit(bench="artefacts", out=out, files=sorted(os.listdir(out)))
    return 0 if (equal and all(equal) and rc == 0) else 1


if __name__ == "__main__":
    sys.exit(main())
