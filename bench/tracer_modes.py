#!/usr/bin/env python3
"""What the report loses when the tracer runs without CUPTI (issue 19).

`memsaver run` traces from its interposer alone unless --cupti adds the CUPTI
subscriber (off by default: the driver refuses to checkpoint a process that
ever subscribed, and the subscription grows the host's memory).  This runs the bench engine (bench/engines/qwen_like.py, policy
bench/policies/qwen-bench.json: weights, KV pool, workspace, CUDA graphs,
cuBLAS) twice, once under `memsaver run --cupti` (CUPTI and interposer) and
once under a plain `memsaver run` (interposer only).  Each run holds after
warm-up; `memsaver ctl pause` pauses it, `ctl report` writes the report while
paused, `ctl resume` resumes it and the engine checks parity.

One JSON object on stdout:
  modes.cupti / modes.interposer: the mode the report names (process.cupti),
      footprint, reclaimed and unreclaimed bytes, bytes per category at the
      before_pause reading, every source with bytes, count and top sites,
      checkpoints per cause in the trace, and what CUPTI alone saw in the
      CUPTI run (allocation records flagged "cupti": the driver calls the
      interposer does not reach, which the interposer-only run cannot record);
  differences: every category and source whose bytes differ, with both values
      and the difference, and sources whose top sites differ.
Two runs of the engine are two processes: a few MiB of noise (cuBLAS
workspaces, allocator rounding) is expected; what CUPTI alone explains shows
as a source that moves between driver:lazy_load / driver:modules and
driver:unobserved or unattributed.  Artefacts (traces, reports, logs) go to
--out or $OUT.  About 2 minutes on an H200.  Exits 77 without a GPU.

usage: python3 bench/tracer_modes.py --build build [--out DIR]
"""
import argparse
import json
import os
import subprocess
import sys

from benchutil import have_gpu
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINE = os.path.join(ROOT, "bench/engines/qwen_like.py")
POLICY = os.path.join(ROOT, "bench/policies/qwen-bench.json")
MODES = {"cupti": ["--cupti"], "interposer": []}


def ctl(ms, pid, *cmd):
    p = subprocess.run([ms, "ctl", "--pid", str(pid)] + list(cmd), capture_output=True, text=True, timeout=300)
    return p.returncode, (p.stdout + p.stderr)[-400:]


def run_engine(ms, out, mode, timeout=240):
    """The engine under memsaver run in `mode`, paused once; the paths of
    its trace and of the report written while paused, or an error."""
    hold_dir = tempfile.mkdtemp(prefix="memsaver-modes.")
    trace = os.path.join(out, mode + ".trace")
    report = os.path.join(out, mode + "-report-paused.json")
    cmd = [ms, "run", "--log", "info", "-p", POLICY, "--trace", trace] + MODES[mode] + [
        "--", sys.executable, ENGINE, "--cycles", "1", "--decode-steps", "20", "--hold-dir", hold_dir]
    t0 = time.time()
    with open(os.path.join(out, mode + "-engine.log"), "w") as log:
        eng = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            ready = None
            for line in eng.stdout:  # the engine's pid: memsaver run forks it
                log.write(line)
                if line.startswith("{") and '"ready"' in line:
                    ready = json.loads(line)
                    break
            hold = os.path.join(hold_dir, "hold.0")
            while ready and not os.path.exists(hold) and eng.poll() is None and time.time() - t0 < timeout:
                time.sleep(0.05)
            if not ready or not os.path.exists(hold):
                return None, "the engine did not reach its hold (rc %s); see %s-engine.log" % (eng.poll(), mode)
            rc, txt = ctl(ms, ready["pid"], "pause")
            rcr, txtr = ctl(ms, ready["pid"], "report", "-o", report)
            ctl(ms, ready["pid"], "resume")
            open(os.path.join(hold_dir, "go.0"), "w").close()
            log.write(eng.stdout.read())
            rc_eng = eng.wait(timeout=max(30, timeout - (time.time() - t0)))
        finally:
            if eng.poll() is None:
                eng.kill()
    if rc or rcr:
        return None, "pause rc %d: %s / report rc %d: %s" % (rc, txt, rcr, txtr)
    subprocess.run([ms, "report", report, "-o", os.path.join(out, mode + "-report-paused.txt")],
                   capture_output=True, timeout=60)
    return {"trace": trace, "report": report, "engine_rc": rc_eng, "wall_s": round(time.time() - t0, 1)}, None


def key(s):
    return s["source"] + (" (%s)" % s["reason"] if s["source"].startswith("category:") else "")


def summarize(ms, run):
    r = json.load(open(run["report"]))
    a = r.get("attribution") or {}
    bp = [p for p in r.get("phases", []) if p["label"] == "before_pause"]
    cats = {k: v["allocated_bytes"] for k, v in (bp[-1]["categories"] if bp else {}).items()}
    dump = subprocess.run([ms, "analyze", "--dump", run["trace"]], capture_output=True, text=True, timeout=300)
    checkpoints, cupti_only = {}, {}
    for line in dump.stdout.splitlines():
        rec = json.loads(line)
        if rec.get("type") == "driver":
            checkpoints[rec["cause"]] = checkpoints.get(rec["cause"], 0) + 1
        elif rec.get("type") == "alloc" and "cupti" in rec.get("flags", []):
            k = "%s %s from %s" % (rec["category"], rec["api"], rec.get("library") or "unknown")
            c = cupti_only.setdefault(k, {"bytes": 0, "count": 0})
            c["bytes"] += rec["size"]
            c["count"] += 1
    return {
        "cupti": r["process"].get("cupti"),
        "engine_rc": run["engine_rc"], "wall_s": run["wall_s"],
        "footprint_bytes": a.get("footprint_bytes"), "reclaimed_bytes": a.get("reclaimed_bytes"),
        "unreclaimed_bytes": a.get("unreclaimed_bytes"),
        "categories": cats,
        "sources": {key(s): {"bytes": s["bytes"], "count": s.get("count"),
                             "top_sites": [(t["site"], t["bytes"]) for t in s.get("top_sites", [])[:3]]}
                    for s in a.get("sources", [])},
        "checkpoints": checkpoints,
        "cupti_only_allocations": cupti_only,
    }


def differences(c, i):
    out = []
    for what in ("categories", "sources"):
        for k in sorted(set(c[what]) | set(i[what])):
            a, b = c[what].get(k), i[what].get(k)
            ab = a["bytes"] if isinstance(a, dict) else a
            bb = b["bytes"] if isinstance(b, dict) else b
            if ab != bb:
                out.append({"what": what[:-1] if what == "sources" else "category", "name": k,
                            "cupti": ab, "interposer": bb, "diff": (bb or 0) - (ab or 0)})
            elif what == "sources" and a and b and [s for s, _ in a["top_sites"]] != [s for s, _ in b["top_sites"]]:
                out.append({"what": "sites", "name": k, "cupti": a["top_sites"], "interposer": b["top_sites"]})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=os.environ.get("OUT"))
    args = ap.parse_args()
    if not have_gpu():
        print(json.dumps({"bench": "tracer_modes", "skipped": "no GPU (nvidia-smi -L lists none)"}))
        return 77
    ms = os.path.abspath(os.path.join(args.build, "bin", "memsaver"))
    out = args.out or tempfile.mkdtemp(prefix="memsaver-modes.")
    os.makedirs(out, exist_ok=True)
    modes = {}
    for mode in MODES:
        run, err = run_engine(ms, out, mode)
        if err:
            print(json.dumps({"bench": "tracer_modes", "mode": mode, "error": err, "out": out}))
            return 1
        modes[mode] = summarize(ms, run)
    print(json.dumps({"bench": "tracer_modes", "out": out, "modes": modes,
                      "differences": differences(modes["cupti"], modes["interposer"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
