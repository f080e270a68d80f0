#!/usr/bin/env python3
"""The two-process proof: the bench engine under torchrun on two GPUs (NCCL
all-reduce after every layer, CUDA graphs with the collectives inside), attached
with one `memsaver run`; `memsaver ctl --all` pauses and resumes both ranks; each
rank checks bitwise parity after every resume; the ranks' traces merge into one
report.  JSON lines on stdout, artefacts in --out.

usage: bench/proof_tp2.py [--build build] [--out DIR] [--cycles 3]
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def emit(**kw):
    print(json.dumps(kw), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--cycles", type=int, default=3)
    args = ap.parse_args()
    ms = os.path.join(args.build, "bin", "memsaver")
    out = args.out or tempfile.mkdtemp(prefix="memsaver-tp2.")
    os.makedirs(out, exist_ok=True)
    hold_dir = tempfile.mkdtemp(prefix="memsaver-hold.")
    env = dict(os.environ, NCCL_NVLS_ENABLE="0", TORCH_SYMM_MEM_DISABLE_MULTICAST="1")
    cmd = [ms, "run", "--log", "info", "-p", os.path.join(ROOT, "bench/policies/qwen-bench.json"),
           "--trace", os.path.join(out, "rank-%p.trace"), "--", sys.executable, "-m", "torch.distributed.run",
           "--nproc-per-node", "2", os.path.join(ROOT, "bench/engines/qwen_like.py"), "--cycles", str(args.cycles),
           "--hold-dir", hold_dir, "--kv-fraction", "0.3", "--decode-steps", "50"]
    log = open(os.path.join(out, "engine.log"), "w")
    eng = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    session = f"run-{eng.pid}"
    ok = True
    for c in range(args.cycles):
        t_end = time.time() + 300
        want = [os.path.join(hold_dir, f"hold.{c}.r{r}") for r in (0, 1)]
        while not all(map(os.path.exists, want)) and eng.poll() is None and time.time() < t_end:
            time.sleep(0.02)
        if not all(map(os.path.exists, want)):
            emit(bench="tp2", cycle=c, error="ranks did not reach the hold")
            ok = False
            break
        res = {}
        for verb in ("pause", "status", "resume"):
            p = subprocess.run([ms, "ctl", "--all", "--session", session, verb], capture_output=True, text=True,
                               timeout=600)
            res[verb] = (p.returncode, p.stdout.strip()[-3000:], p.stderr.strip()[-500:])
            if verb == "status":
                try:
                    st = json.loads(p.stdout)
                    res["status_summary"] = {pid: {"released_bytes": sum(v["released_bytes"] for v in s["categories"].values()),
                                                   "pause_ms": (s.get("last_pause") or {}).get("ms")}
                                             for pid, s in st.items()}
                except (ValueError, KeyError, TypeError, AttributeError):
                    res["status_summary"] = None
        emit(bench="tp2_cycle", cycle=c, pause_rc=res["pause"][0], pause_out=res["pause"][1][-400:],
             resume_rc=res["resume"][0], processes=res.get("status_summary"))
        ok &= res["pause"][0] == 0 and res["resume"][0] == 0
        open(os.path.join(hold_dir, f"go.{c}"), "w").close()
    stdout, _ = eng.communicate(timeout=300)
    log.close()
    lines = [json.loads(l) for l in stdout.splitlines() if l.startswith("{")]
    cyc = [l for l in lines if l.get("event") == "cycle"]
    emit(bench="tp2_parity", engine_exit=eng.returncode, cycles=len(cyc),
         all_bitwise_equal=bool(cyc) and all(l["bitwise_equal"] for l in cyc),
         ready=[{k: l.get(k) for k in ("rank", "pid", "decode_step_ms", "kv_bytes")} for l in lines
                if l.get("event") == "ready"])
    traces = sorted(glob.glob(os.path.join(out, "rank-*.trace")))
    merged = os.path.join(out, "merged-report.json")
    p = subprocess.run([ms, "analyze"] + traces + ["-o", merged], capture_output=True, text=True, timeout=300)
    if p.returncode == 0:
        rep = json.load(open(merged))
        emit(bench="tp2_merged", traces=len(traces), processes=len(rep.get("processes", [])),
             totals=rep.get("totals"))
        subprocess.run([ms, "report", merged, "-o", os.path.join(out, "merged-report.txt")], timeout=60)
    else:
        emit(bench="tp2_merged", error=p.stderr[-800:])
    for t in traces:
        os.unlink(t)
    return 0 if ok and eng.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
