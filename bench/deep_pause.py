#!/usr/bin/env python3
"""Deep pause on a GPU: memsaver pause + the driver's process checkpoint of the rest.

Runs bench/engines/qwen_like.py (CUDA graphs, cuBLAS GEMMs, weights, a KV pool)
under `memsaver run --deep-ready`, then N cycles of `memsaver ctl pause --deep` /
`memsaver ctl resume` while the engine holds.  Each cycle: the device memory used
while checkpointed minus the baseline taken before the engine started (NVML,
device-wide), the time of every step (memsaver pause, lock, checkpoint, restore,
memsaver resume, and each ctl command's wall time), and the engine's own bitwise
parity check of logits and graph replays after the resume.  At the end: the decode
step time before and after the cycles.  JSON lines on stdout, and in $OUT (or
--out) as deep_pause.jsonl with the engine log next to it.

    python3 bench/deep_pause.py --build build --cycles 20
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINE = os.path.join(ROOT, "bench/engines/qwen_like.py")
POLICY = os.path.join(ROOT, "bench/policies/qwen-bench.json")
OUTF = None


def emit(**kw):
    line = json.dumps(kw)
    print(line, flush=True)
    if OUTF:
        OUTF.write(line + "\n")
        OUTF.flush()


def nvml_used():
    import pynvml
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(int(os.environ.get("BENCH_GPU", "0")))
    return pynvml.nvmlDeviceGetMemoryInfo(h).used


def ctl(ms, pid, *cmd, timeout=600, steps=False):
    """steps: MEMSAVER_LOG=debug, so the ctl prints where its time went."""
    env = dict(os.environ, MEMSAVER_LOG="debug") if steps else None
    t0 = time.perf_counter()
    p = subprocess.run([ms, "ctl", "--pid", str(pid)] + list(cmd), capture_output=True, text=True,
                       timeout=timeout, env=env)
    return p.returncode, p.stdout + p.stderr, (time.perf_counter() - t0) * 1000


def num(pattern, text):
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None


def steps_of(text):
    """The ctl's debug line "memsaver ctl: CMD steps: NAME N ms, ...; N ms since main"."""
    m = re.search(r"steps: (.*)", text)
    return m.group(1) if m else None


def med(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 3) if xs else None


def main():
    global OUTF
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--out", default=os.environ.get("OUT"))
    ap.add_argument("engine_args", nargs="*", help="after --: arguments for qwen_like.py")
    args = ap.parse_args()
    ms = os.path.join(args.build, "bin", "memsaver")
    out = args.out or tempfile.mkdtemp(prefix="memsaver-deep.")
    os.makedirs(out, exist_ok=True)
    OUTF = open(os.path.join(out, "deep_pause.jsonl"), "w")
    drv = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    baseline = nvml_used()
    emit(bench="deep_env", device=drv, commit=commit, baseline_used_bytes=baseline, cycles=args.cycles)

    hold_dir = tempfile.mkdtemp(prefix="memsaver-hold.")
    report = os.path.join(out, "deep-report.json")
    cmd = [ms, "run", "--deep-ready", "-p", POLICY, "-o", report, "--", sys.executable, ENGINE,
           "--cycles", str(args.cycles), "--hold-dir", hold_dir] + args.engine_args
    elog = open(os.path.join(out, "deep-engine.log"), "w")
    eng = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=elog, text=True)
    ready, rows, ok = None, [], True
    try:
        for line in eng.stdout:
            elog.write(line)
            if line.startswith("{") and json.loads(line).get("event") == "ready":
                ready = json.loads(line)
                break
        if not ready:
            raise SystemExit("the engine never got ready; see " + elog.name)
        pid = ready["pid"]
        emit(bench="deep_engine_ready", **ready)
        for c in range(args.cycles):
            hold = os.path.join(hold_dir, f"hold.{c}")
            t_end = time.time() + 300
            while not os.path.exists(hold) and eng.poll() is None and time.time() < t_end:
                time.sleep(0.005)
            if not os.path.exists(hold):
                emit(bench="deep_cycle", cycle=c, error="engine did not hold")
                ok = False
                break
            u_before = nvml_used()
            rc, txt, pause_wall = ctl(ms, pid, "pause", "--deep", steps=True)
            u_deep = nvml_used()
            _, st_txt, _ = ctl(ms, pid, "status")
            try:
                state = json.loads(st_txt[st_txt.index("{"):]).get("state")
            except ValueError:
                state = None
            rc2, txt2, resume_wall = ctl(ms, pid, "resume", steps=True)
            u_after = nvml_used()
            open(os.path.join(hold_dir, f"go.{c}"), "w").close()
            line = eng.stdout.readline()
            elog.write(line)
            cyc = json.loads(line) if line.startswith("{") else {}
            row = dict(cycle=c, pause_rc=rc, resume_rc=rc2, state_while_deep=state,
                       used_before=u_before, used_deep=u_deep, used_after=u_after,
                       residue_over_baseline=u_deep - baseline,
                       memsaver_pause_ms=num(r"paused \S+ \((\d+) ms\)", txt),
                       lock_ms=num(r"lock (\d+) ms", txt), checkpoint_ms=num(r"checkpoint (\d+) ms", txt),
                       checkpointed_mib=num(r"checkpointed ([\d.]+) MiB", txt),
                       restore_ms=num(r"restored from the driver checkpoint \((\d+) ms\)", txt2),
                       memsaver_resume_ms=num(r"resumed \S+(?: \S+)* \((\d+) ms\)", txt2),
                       deep_pause_wall_ms=round(pause_wall, 1), resume_wall_ms=round(resume_wall, 1),
                       pause_steps=steps_of(txt), resume_steps=steps_of(txt2),
                       bitwise_equal=cyc.get("bitwise_equal"))
            if rc or rc2:
                row["ctl_output"] = (txt + txt2)[-800:]
            ok &= rc == 0 and rc2 == 0 and bool(cyc.get("bitwise_equal"))
            rows.append(row)
            emit(bench="deep_cycle", **row)
        rest = eng.stdout.read()
        elog.write(rest)
        done = next((json.loads(l) for l in rest.splitlines() if l.startswith("{") and '"done"' in l), {})
        rc = eng.wait(timeout=300)
    finally:
        if eng.poll() is None:
            eng.kill()
        elog.close()
    first = rows[0] if rows else {}
    emit(bench="deep_summary", ok=ok and rc == 0, cycles=len(rows),
         bitwise_all=all(r.get("bitwise_equal") for r in rows) if rows else False,
         residue_over_baseline_max=max((r["residue_over_baseline"] for r in rows), default=None),
         residue_over_baseline_median=med([r["residue_over_baseline"] for r in rows]),
         deep_pause_wall_ms_first=first.get("deep_pause_wall_ms"),
         deep_pause_wall_ms_median=med([r["deep_pause_wall_ms"] for r in rows]),
         resume_wall_ms_first=first.get("resume_wall_ms"),
         resume_wall_ms_median=med([r["resume_wall_ms"] for r in rows]),
         checkpoint_ms_median=med([r["checkpoint_ms"] for r in rows]),
         restore_ms_median=med([r["restore_ms"] for r in rows]),
         memsaver_pause_ms_median=med([r["memsaver_pause_ms"] for r in rows]),
         memsaver_resume_ms_median=med([r["memsaver_resume_ms"] for r in rows]),
         decode_step_ms_before=ready.get("decode_step_ms") if ready else None,
         decode_step_ms_after=done.get("decode_step_ms_after"), engine_exit=rc)
    return 0 if ok and rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
