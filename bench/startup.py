#!/usr/bin/env python3
"""The bench engine's start-up (load, KV pool, workspace, CUDA-graph capture: its
own clock, `startup_s` of its ready line) without and under `memsaver run -p
bench/policies/qwen-bench.json`, in alternating rounds: one start of each differs
from the next by more than the effect (0.70-1.11 s plain on one H200 in one
session).  One JSON line: every run (start-up, and its load and capture
phases), the medians, the best, and the ratios to plain.  --variant NAME=ARGS
adds a mode run as `memsaver run ARGS --` (for instance a policy that keeps
everything, to tell the tracer's cost from the wrapping's).

usage: bench/startup.py [--build build] [--rounds 5] [--variant NAME=ARGS ...] [--cpus A-B]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchutil import json_lines  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINE = os.path.join(ROOT, "bench/engines/qwen_like.py")
POLICY = os.path.join(ROOT, "bench/policies/qwen-bench.json")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS")
    ap.add_argument("--cpus", metavar="A-B", help="run every engine on these CPUs only (less drift between runs)")
    args = ap.parse_args()
    ms = os.path.join(os.path.abspath(args.build), "bin", "memsaver")
    modes = {"plain": [], "memsaver": [ms, "run", "-p", POLICY, "--"]}
    for v in args.variant:
        name, _, rest = v.partition("=")
        modes[name] = [ms, "run"] + rest.split() + ["--"]
    runs = {k: [] for k in modes}
    cpus = None
    if args.cpus:
        lo, _, hi = args.cpus.partition("-")
        cpus = set(range(int(lo), int(hi or lo) + 1))
    phases = {k: {"load_s": [], "capture_s": []} for k in modes}
    for _ in range(args.rounds):
        for name, pre in modes.items():
            p = subprocess.run(pre + [sys.executable, ENGINE, "--decode-steps", "20"], capture_output=True,
                               text=True, timeout=300, preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
            ready = next((l for l in json_lines(p.stdout) if l.get("event") == "ready"), None)
            if p.returncode != 0 or not ready:
                print(json.dumps({"bench": "startup", "mode": name, "error": p.stderr[-800:]}), flush=True)
                return 1
            runs[name].append(ready["startup_s"])
            for ph in phases[name]:
                phases[name][ph].append(ready[ph])
    med = {k: round(statistics.median(v), 4) for k, v in runs.items()}
    best = {k: min(v) for k, v in runs.items()}
    print(json.dumps({"bench": "startup", "cpus": args.cpus, "runs": runs, "phases": phases, "median_s": med, "best_s": best,
                      "phase_median_s": {k: {ph: round(statistics.median(v), 4) for ph, v in d.items()}
                                         for k, d in phases.items()},
                      "ratio_median": {k: round(med[k] / med["plain"], 4) for k in modes if k != "plain"},
                      "ratio_best": {k: round(best[k] / best["plain"], 4) for k in modes if k != "plain"}}),
          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
