#!/usr/bin/env python3
"""The tensor-parallel proof: the bench engine under torchrun on N GPUs (NCCL
all-reduce after every layer, CUDA graphs with the collectives inside),
attached with one `memsaver run`; `memsaver ctl --all` pauses and resumes every
rank once per cycle, as an RL loop does once per training step; after every
resume each rank replays its graphs and runs an eager prefill and compares them
bitwise with the values taken before the first pause; the ranks exit cleanly
and their traces merge into one report.

JSON lines on stdout: one per cycle (wall time of `ctl --all pause` and
`resume` as the loop sees them, per-rank pause/resume ms, released bytes, host
RSS), then a summary (median/p99 per rank, reclaim, RSS and pinned bytes at
cycles 1/100/200, device memory before start and after exit).

usage: bench/proof_tp2.py [--build build] [--out DIR] [--cycles 200] [--nproc 2]
                          [--graph-register] [--no-memsaver]
"""
import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def emit(**kw):
    print(json.dumps(kw), flush=True)


def device_used_mib():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30).stdout
        return [int(x) for x in out.split()]
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def rss_bytes(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def ctl(ms, session, *args, timeout=600):
    t0 = time.perf_counter()
    p = subprocess.run([ms, "ctl", "--all", "--session", session] + list(args), capture_output=True, text=True,
                       timeout=timeout)
    return p, (time.perf_counter() - t0) * 1000.0


def per_pid_ms(text, verb):
    return {int(m.group(1)): int(m.group(2)) for m in re.finditer(rf"pid (\d+): {verb} .*\((\d+) ms\)", text)}


def json_objects(text):
    """Every JSON object in text: ranks share one stdout, so two lines can
    interleave into one."""
    dec, i, out = json.JSONDecoder(), 0, []
    while True:
        i = text.find("{", i)
        if i < 0:
            return out
        try:
            obj, end = dec.raw_decode(text, i)
            out.append(obj)
            i = end
        except ValueError:
            i += 1


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))] if v else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--kv-fraction", default="0.3")
    ap.add_argument("--graph-register", action="store_true",
                    help="leave NCCL graph user-buffer registration on (NCCL_GRAPH_REGISTER=1): the registered "
                         "buffers are shared with NCCL and must stay resident")
    ap.add_argument("--no-memsaver", action="store_true", help="plain torchrun, --cycles 0 (the exit check)")
    args = ap.parse_args()
    ms = os.path.join(args.build, "bin", "memsaver")
    out = args.out or tempfile.mkdtemp(prefix="memsaver-tp.")
    os.makedirs(out, exist_ok=True)
    hold_dir = tempfile.mkdtemp(prefix="memsaver-hold.")
    env = dict(os.environ, NCCL_NVLS_ENABLE="0", TORCH_SYMM_MEM_DISABLE_MULTICAST="1", NVSHMEM_DISABLE_NVLS="1",
               PYTHONUNBUFFERED="1")
    if args.graph_register:
        env["NCCL_GRAPH_REGISTER"] = "1"
    cycles = 0 if args.no_memsaver else args.cycles
    engine = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(args.nproc),
              os.path.join(ROOT, "bench/engines/qwen_like.py"), "--cycles", str(cycles), "--hold-dir", hold_dir,
              "--kv-fraction", args.kv_fraction, "--decode-steps", "50"]
    cmd = engine if args.no_memsaver else [
        ms, "run", "--log", "info", "-p", os.path.join(ROOT, "bench/policies/qwen-bench.json"),
        "--trace", os.path.join(out, "rank-%p.trace"), "--"] + engine
    used_before = device_used_mib()
    log = open(os.path.join(out, "engine.log"), "w")
    t_start = time.time()
    eng = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    session = f"run-{eng.pid}"
    ok, hangs, rows = True, 0, []
    for c in range(cycles):
        t_end = time.time() + 300
        want = [os.path.join(hold_dir, f"hold.{c}.r{r}") for r in range(args.nproc)]
        while not all(map(os.path.exists, want)) and eng.poll() is None and time.time() < t_end:
            time.sleep(0.002)
        if not all(map(os.path.exists, want)):
            emit(bench="tp_cycle", cycle=c, error="ranks did not reach the hold (hang or exit)")
            hangs += eng.poll() is None
            ok = False
            break
        pp, pause_wall = ctl(ms, session, "pause")
        st, _ = ctl(ms, session, "status", timeout=60)
        rp, resume_wall = ctl(ms, session, "resume")
        row = {"cycle": c, "pause_rc": pp.returncode, "resume_rc": rp.returncode,
               "pause_wall_ms": round(pause_wall, 1), "resume_wall_ms": round(resume_wall, 1),
               "pause_ms": per_pid_ms(pp.stdout, "paused"), "resume_ms": per_pid_ms(rp.stdout, "resumed")}
        try:
            status = json.loads(st.stdout)
            row["released_bytes"] = {pid: sum(v["released_bytes"] for v in s["categories"].values())
                                     for pid, s in status.items()}
            row["backup_host_bytes"] = {pid: s.get("backup_host_bytes") for pid, s in status.items()}
            row["rss_bytes"] = {pid: rss_bytes(int(pid)) for pid in status}
        except (ValueError, KeyError, TypeError, AttributeError):
            row["status_error"] = st.stderr[-300:]
        if pp.returncode or rp.returncode:
            row["errors"] = (pp.stderr + rp.stderr)[-600:]
        rows.append(row)
        emit(bench="tp_cycle", **row)
        ok &= pp.returncode == 0 and rp.returncode == 0
        open(os.path.join(hold_dir, f"go.{c}"), "w").close()
    try:
        stdout, _ = eng.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        hangs += 1
        eng.kill()
        stdout, _ = eng.communicate()
    log.close()
    wall = time.time() - t_start
    time.sleep(2)
    used_after = device_used_mib()
    lines = json_objects(stdout)
    cyc = [l for l in lines if l.get("event") == "cycle"]
    exits = [l for l in lines if l.get("event") == "exit"]
    mism = sum(1 for l in cyc if not l["bitwise_equal"])
    summary = {"bench": "tp_summary", "nproc": args.nproc, "memsaver": not args.no_memsaver,
               "graph_register": args.graph_register, "cycles_asked": cycles,
               "cycles_completed": len(rows), "parity_checks": len(cyc), "mismatches": mism, "hangs": hangs,
               "engine_exit": eng.returncode, "clean_exit": eng.returncode == 0 and len(exits) == args.nproc,
               "destroy_s": [l.get("destroy_s") for l in exits], "wall_s": round(wall, 1),
               "device_used_mib_before": used_before, "device_used_mib_after_exit": used_after,
               "ready": [{k: l.get(k) for k in ("rank", "pid", "decode_step_ms", "kv_bytes")} for l in lines
                         if l.get("event") == "ready"]}
    if rows:
        for key in ("pause_wall_ms", "resume_wall_ms"):
            v = [r[key] for r in rows]
            summary[key] = {"median": statistics.median(v), "p99": pct(v, 0.99), "max": max(v)}
        per_rank = {}
        for key in ("pause_ms", "resume_ms"):
            for r in rows:
                for pid, v in r[key].items():
                    if (r.get("released_bytes") or {}).get(str(pid)):  # ranks, not the torchrun agent
                        per_rank.setdefault(str(pid), {}).setdefault(key, []).append(v)
        summary["per_rank"] = {pid: {k: {"first": v[0], "median": statistics.median(v[1:] or v),
                                         "p99": pct(v[1:] or v, 0.99)} for k, v in d.items()}
                               for pid, d in per_rank.items()}
        marks = sorted({0, min(99, len(rows) - 1), len(rows) - 1})
        summary["at_cycle"] = {rows[i]["cycle"] + 1: {"rss_bytes": rows[i].get("rss_bytes"),
                                                      "backup_host_bytes": rows[i].get("backup_host_bytes"),
                                                      "released_bytes": rows[i].get("released_bytes")}
                               for i in marks}
    traces = sorted(glob.glob(os.path.join(out, "rank-*.trace")))
    merged = os.path.join(out, "merged-report.json")
    if traces:
        p = subprocess.run([ms, "analyze"] + traces + ["-o", merged], capture_output=True, text=True, timeout=300)
        if p.returncode == 0:
            rep = json.load(open(merged))
            summary["merged"] = {"traces": len(traces), "totals": rep.get("totals")}
            summary["processes"] = rep.get("processes")
            subprocess.run([ms, "report", merged, "-o", os.path.join(out, "merged-report.txt")], timeout=60)
        else:
            summary["merge_error"] = p.stderr[-800:]
        for t in traces:
            os.unlink(t)
    emit(**summary)
    return 0 if ok and mism == 0 and summary["clean_exit"] else 1


if __name__ == "__main__":
    sys.exit(main())
