#!/usr/bin/env python3
"""The soak (issue 16): the bench engine (bench/engines/qwen_like.py) under
`memsaver run` on one GPU, paused and resumed --cycles times (default 1000),
with the engine's bitwise parity check after every resume, to show that
nothing grows: host RSS, address space, descriptors, threads, pinned backup
bytes, device memory, pause/resume time, decode step time, the Python heap.

The loop talks to the engine's control socket directly (tools/python/memsaver
control(): the same one-request-per-connection JSON lines `memsaver ctl`
sends: {"cmd":"pause"}, {"cmd":"resume"}, {"cmd":"status"}), and to the
engine through its hold/go files as bench/proof.py does; the go file carries
the words that ask the engine for its decode step time and Python heap counts
at the sample points, and "stop" for the last cycle.

Samples at cycles 1, 10, 100, 250, 500, 750, 1000, every 50th and the last.
Sample n is taken at the engine's hold before pause n, so after n-1 whole
cycles, when no control connection is open (sample 1: before the first
pause): /proc (VmRSS, VmSize, fds, threads), status (backup_host_bytes,
paused, state) and device memory used (pynvml, else nvidia-smi); the same
again while paused n ("_paused"); after parity check n, the engine's Python
heap, and its decode step time at cycles 1, 500, 1000 and the last.  --deadline-s (seconds from the start,
engine start-up included) ends the loop cleanly early: the summary says how
many cycles completed.  --no-memsaver runs the same engine and loop with no
memsaver (the hold replaces the pause: parity checks only), to tell the
engine's own growth from memsaver's; --baseline FILE (that run's output)
puts the difference in the summary.

Output: JSON lines (setup, ready, one per cycle, one per sample, summary last;
the summary states each threshold next to its verdict).  Exit 0 when every
verdict holds, 1 otherwise, 77 without a GPU.

usage: bench/soak.py [--build build] [--cycles 1000] [--deadline-s 520]
                     [--no-memsaver] [--baseline PLAIN.jsonl] [--tracemalloc]
Wall time, estimated from docs/results.md (backups of 4.19 GiB at ~54 GB/s
each way, KV pool small): about 0.25 s a cycle under memsaver, 0.07 s without,
plus 20-40 s of engine start-up.
"""
import argparse
import glob
import json
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from benchutil import have_gpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENGINE = os.path.join(ROOT, "bench/engines/qwen_like.py")
POLICY = os.path.join(ROOT, "bench/policies/qwen-bench.json")
sys.path.insert(0, os.path.join(ROOT, "tools/python"))
from memsaver import MemsaverError, control  # noqa: E402  (the checkout's client, no library needed)

MARKS = (1, 10, 100, 250, 500, 750, 1000)
DECODE_MARKS = (1, 500, 1000)
WARM = 10  # growth is measured from this cycle's sample to the last one
MIB = 1 << 20
# Thresholds of the verdicts, stated in the summary.  Per 100 cycles, between
# cycle WARM and the last; "equal" means no change at all.
LIMITS = {
    "rss_bytes": {"per_100_cycles_below": 1 * MIB},
    "vm_size_bytes": {"per_100_cycles_below": 8 * MIB},
    "fds": {"equal": True},
    "threads": {"equal": True},
    "backup_host_bytes_paused": {"equal": True},
    "backup_host_bytes_resumed": {"equal": True},
    "device_used_bytes_resumed": {"total_at_most": 2 * MIB},  # nvidia-smi reads whole MiB
    "device_used_bytes_paused": {"total_at_most": 2 * MIB},
    "gc_objects": {"per_100_cycles_below": 100},
    "allocated_blocks": {"per_100_cycles_below": 1000},
    "malloc_in_use_bytes": {"per_100_cycles_below": 1 * MIB},
    "tracemalloc_bytes": {"per_100_cycles_below": 256 * 1024},
    "pause_ms": {"late_over_early_median_below": 1.25},
    "resume_ms": {"late_over_early_median_below": 1.25},
    "decode_step_ms": {"last_over_first_below": 1.10},
}


def emit(**kw):
    print(json.dumps(kw), flush=True)


class Device:
    """Device memory used, whole device and the engine's process: pynvml,
    else nvidia-smi (about 50 ms a reading; the loop reads it at samples only)."""

    def __init__(self):
        self.nvml = None
        try:
            import pynvml
            pynvml.nvmlInit()
            self.nvml, self.h = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # noqa: BLE001 - pynvml is optional
            pass

    def used(self, pid):
        if self.nvml:
            try:
                used = self.nvml.nvmlDeviceGetMemoryInfo(self.h).used
                mine = [p.usedGpuMemory for p in self.nvml.nvmlDeviceGetComputeRunningProcesses(self.h)
                        if p.pid == pid]
                return used, (mine[0] if mine else None)
            except Exception:  # noqa: BLE001
                return None, None
        try:
            q = lambda *a: subprocess.run(["nvidia-smi", "-i", "0", "--format=csv,noheader,nounits"] + list(a),
                                          capture_output=True, text=True, timeout=30).stdout
            used = int(q("--query-gpu=memory.used").split()[0]) * MIB
            mine = [int(l.split(",")[1]) * MIB for l in q("--query-compute-apps=pid,used_memory").splitlines()
                    if l.split(",")[0].strip() == str(pid)]
            return used, (mine[0] if mine else None)
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            return None, None


def proc(pid):
    r = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmSize", "RssAnon", "RssFile", "RssShmem", "VmPin", "VmLck", "VmHWM"):
                r[k] = int(v.split()[0]) * 1024
            elif k == "Threads":
                r["threads"] = int(v)
        r["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):
        return {}
    return {"rss_bytes": r.get("VmRSS"), "vm_size_bytes": r.get("VmSize"), "fds": r.get("fds"),
            "threads": r.get("threads"), "rss_anon_bytes": r.get("RssAnon"), "rss_file_bytes": r.get("RssFile"),
            "rss_shmem_bytes": r.get("RssShmem"), "vm_pin_bytes": r.get("VmPin"), "vm_hwm_bytes": r.get("VmHWM")}


class Engine:
    """The engine process and a thread that turns its stdout into events, so
    a hung engine is a timeout here, not a blocked read."""

    def __init__(self, cmd, env, log):
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env,
                                  start_new_session=True)
        self.q, self.lines = queue.Queue(), []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.append(line)
            s = line.strip()
            if s.startswith("{"):
                try:
                    self.q.put(json.loads(s))
                except ValueError:
                    pass
        self.q.put(None)

    def event(self, kind, timeout):
        """The next event of that kind; None at EOF or timeout."""
        end = time.monotonic() + timeout
        while True:
            try:
                ev = self.q.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                return None
            if ev is None:
                self.q.put(None)
                return None
            if ev.get("event") == kind:
                return ev

    def end(self, timeout):
        """Wait for the exit; kill the process group (ours: start_new_session) if it
        does not come.  Returns (exit status, hung)."""
        try:
            return self.p.wait(timeout=timeout), False
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except OSError:
                pass
            return self.p.wait(), True


def growth(series, key, first_cycle, last_cycle):
    """(absolute, per cycle) growth of key between two sampled cycles."""
    a, b = series.get(first_cycle, {}).get(key), series.get(last_cycle, {}).get(key)
    if a is None or b is None or last_cycle <= first_cycle:
        return None, None
    return b - a, (b - a) / (last_cycle - first_cycle)


def verdict(key, limit, g, per):
    if g is None:
        return None
    if limit.get("equal"):
        return g == 0
    if "total_at_most" in limit:
        return abs(g) <= limit["total_at_most"]
    return per * 100 < limit["per_100_cycles_below"]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--deadline-s", type=float, default=520.0,
                    help="stop starting cycles so that the run (start-up included) ends by then")
    ap.add_argument("--no-memsaver", action="store_true", help="the same engine and loop without memsaver")
    ap.add_argument("--baseline", help="output of a --no-memsaver run: its growth is subtracted in the summary")
    ap.add_argument("--tracemalloc", action="store_true", help="the engine traces Python allocations (slower)")
    ap.add_argument("--kv-fraction", default="0.05", help="engine --kv-fraction (small: short resumes)")
    ap.add_argument("--batch-sizes", default="1,8,32", help="engine --batch-sizes (graphs and parity outputs)")
    ap.add_argument("--decode-steps", default="100", help="graph replays per decode timing")
    ap.add_argument("--policy", default=POLICY)
    ap.add_argument("--run-arg", action="append", default=[],
                    help="an extra argument of `memsaver run` (repeatable), e.g. --run-arg=--no-cupti")
    ap.add_argument("--engine", default=ENGINE, help="the engine script (a stand-in, for testing the loop)")
    ap.add_argument("--op-timeout", type=float, default=60.0,
                    help="seconds for one pause, resume, hold or parity check before it counts as a hang")
    ap.add_argument("--out", help="directory for the engine's log (default: a new temporary one)")
    ap.add_argument("--skip-gpu-check", action="store_true", help="run without a GPU (a stand-in engine)")
    args = ap.parse_args()
    t0 = time.monotonic()
    if not args.skip_gpu_check and not have_gpu():
        emit(bench="soak_summary", skipped="no GPU (nvidia-smi -L lists none)")
        return 77
    ms = os.path.join(args.build, "bin", "memsaver")
    if not args.no_memsaver and not os.access(ms, os.X_OK):
        print(f"soak: {ms} is not built (make all, or --build DIR)", file=sys.stderr)
        return 2
    use_ms = not args.no_memsaver
    out = args.out or tempfile.mkdtemp(prefix="memsaver-soak.")
    os.makedirs(out, exist_ok=True)
    hold_dir = tempfile.mkdtemp(prefix="memsaver-soak-hold.")
    sock_dir = tempfile.mkdtemp(prefix="memsaver-soak-sock.")  # ours alone: one socket to find
    env = dict(os.environ, PYTHONUNBUFFERED="1", MEMSAVER_SOCKET_DIR=sock_dir)
    cuda_lib = os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "lib64")
    env["LD_LIBRARY_PATH"] = env.get("LD_LIBRARY_PATH", "") + ":" + cuda_lib
    engine = [sys.executable, args.engine, "--cycles", str(args.cycles), "--hold-dir", hold_dir,
              "--kv-fraction", args.kv_fraction, "--batch-sizes", args.batch_sizes,
              "--decode-steps", args.decode_steps] + (["--tracemalloc"] if args.tracemalloc else [])
    cmd = ([ms, "run", "--log", os.environ.get("BENCH_LOG", "warn"), "-p", args.policy] + args.run_arg + ["--"]
           if use_ms else []) + engine
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or os.environ.get("MSV_COMMIT", "unknown")
    emit(bench="soak_setup", memsaver=use_ms, cycles_asked=args.cycles, deadline_s=args.deadline_s,
         commit=commit, date=time.strftime("%Y-%m-%d"), command=" ".join(cmd), out=out)
    dev = Device()
    used_before, _ = dev.used(-1)
    log = open(os.path.join(out, "engine-memsaver.log" if use_ms else "engine-plain.log"), "w")
    eng = Engine(cmd, env, log)
    # A cycle is started only when it and the exit fit before the deadline.
    reserve = 15.0 + float(args.decode_steps) * 0.02
    ready = eng.event("ready", max(1.0, args.deadline_s - reserve - (time.monotonic() - t0)))
    series, rows, errors = {}, [], []
    parity_fail, hangs, completed, stop_reason = 0, 0, 0, None
    pid = ready.get("pid") if ready else None
    sock = None
    if ready is None:
        stop_reason = "the engine did not become ready" + (" before the deadline" if eng.p.poll() is None else
                                                            f" (exit {eng.p.poll()})")
        hangs += eng.p.poll() is None
    else:
        emit(bench="soak_ready", **{k: ready.get(k) for k in ("pid", "startup_s", "decode_step_ms", "weights_bytes",
                                                               "kv_bytes", "workspace_bytes", "batch_sizes")},
             startup_wall_s=round(time.monotonic() - t0, 2))
        if use_ms:
            found = glob.glob(os.path.join(sock_dir, "*", f"memsaver-{pid}.sock"))
            sock = found[0] if len(found) == 1 else None
            if not sock:
                stop_reason = f"no control socket for pid {pid} under {sock_dir}"

    def request(cmd):
        """One request, one connection, as memsaver ctl does; (reply or None, wall ms, error)."""
        t = time.perf_counter()
        try:
            r = control(cmd, socket=sock, timeout=args.op_timeout)
            return r, (time.perf_counter() - t) * 1e3, None
        except (MemsaverError, OSError, ValueError) as e:
            return None, (time.perf_counter() - t) * 1e3, f"{cmd}: {e}"

    def status_fields(prefix):
        r, _, err = request("status")
        if err:
            errors.append(err)
            return {}
        s = r["status"]
        return {f"backup_host_bytes_{prefix}": s.get("backup_host_bytes"), f"paused_{prefix}": s.get("paused"),
                f"state_{prefix}": s.get("state"), "last_resume": s.get("last_resume"),
                f"released_bytes_{prefix}": sum(c.get("released_bytes", 0) for c in s.get("categories", {}).values())}

    recent = []  # wall seconds of the last cycles, to predict the next one
    c = 0
    while stop_reason is None and c < args.cycles:
        n = c + 1  # cycles are counted from 1 in the output
        left = args.deadline_s - (time.monotonic() - t0)
        last = n == args.cycles or left < reserve + 3 * max(recent[-20:] or [1.0])
        sample = n in MARKS or n % 50 == 0 or last
        t_cycle = time.monotonic()
        hold = os.path.join(hold_dir, f"hold.{c}")
        end = time.monotonic() + args.op_timeout
        while not os.path.exists(hold) and eng.p.poll() is None and time.monotonic() < end:
            time.sleep(0.0005)
        if not os.path.exists(hold):
            stop_reason = f"cycle {n}: the engine did not reach its hold " + (
                f"(exit {eng.p.poll()})" if eng.p.poll() is not None else f"in {args.op_timeout} s (hang)")
            hangs += eng.p.poll() is None
            break
        row = {"cycle": n}
        s = {}
        if sample:
            # At the hold, before this cycle's pause: the previous cycle and its
            # parity check are done and no control connection is open, so the fd
            # count holds no socket the server has not closed yet.
            s.update(proc(pid))
            s["device_used_bytes_resumed"], s["engine_device_bytes_resumed"] = dev.used(pid)
            if use_ms:
                s.update(status_fields("resumed"))
        if use_ms:
            r, wall, err = request("pause")
            row["pause_wall_ms"] = round(wall, 2)
            if err or r.get("warning") or not r.get("paused"):
                errors.append(err or f"cycle {n}: pause did nothing: {r}")
                hangs += bool(err and "timed out" in err)
            else:
                row["pause_ms"] = r.get("ms")
            if sample:
                s["proc_paused"] = proc(pid)
                s["device_used_bytes_paused"], s["engine_device_bytes_paused"] = dev.used(pid)
                r, _, err = request("status")
                if not err:
                    st = r["status"]
                    s.update(backup_host_bytes_paused=st.get("backup_host_bytes"), paused_paused=st.get("paused"),
                             state_paused=st.get("state"),
                             released_bytes_paused=sum(x.get("released_bytes", 0)
                                                       for x in st.get("categories", {}).values()),
                             last_pause=st.get("last_pause"))
                else:
                    errors.append(err)
            r, wall, err = request("resume")
            row["resume_wall_ms"] = round(wall, 2)
            if err or r.get("warning") or r.get("paused"):
                errors.append(err or f"cycle {n}: resume left {r.get('paused')} paused: {r}")
                hangs += bool(err and "timed out" in err)
            else:
                row["resume_ms"] = r.get("ms")
        words = (["py"] if sample else []) + (["decode"] if n in DECODE_MARKS or last else []) + (
            ["stop"] if last else [])
        tmp = os.path.join(hold_dir, f".go.{c}")
        with open(tmp, "w") as f:
            f.write(" ".join(words))
        os.rename(tmp, os.path.join(hold_dir, f"go.{c}"))  # whole or absent: the engine polls for it
        ev = eng.event("cycle", args.op_timeout + (30 if "decode" in words else 0))
        if ev is None:
            stop_reason = f"cycle {n}: no parity result " + (
                f"(exit {eng.p.poll()})" if eng.p.poll() is not None else f"in {args.op_timeout} s (hang)")
            hangs += eng.p.poll() is None
            break
        for f in (hold, os.path.join(hold_dir, f"go.{c}")):
            os.unlink(f)
        completed = n
        row["equal"] = bool(ev.get("bitwise_equal"))
        if not row["equal"]:
            parity_fail += 1
            row["mismatched"] = ev.get("mismatched")
        row["wall_ms"] = round((time.monotonic() - t_cycle) * 1e3, 2)
        recent.append(time.monotonic() - t_cycle)
        rows.append(row)
        emit(bench="soak_cycle", **row)
        if sample:
            for k in ("decode_step_ms", "gc_objects", "allocated_blocks", "malloc_in_use_bytes",
                      "malloc_arena_bytes", "tracemalloc_bytes"):
                if k in ev:
                    s[k] = ev[k]
            series[n] = s
            emit(bench="soak_sample", cycle=n, elapsed_s=round(time.monotonic() - t0, 2), **s)
        if last and n < args.cycles:
            stop_reason = f"deadline: {args.deadline_s} s"
        c += 1

    done = eng.event("done", 30 + float(args.decode_steps) * 0.05) if completed and stop_reason in (
        None, f"deadline: {args.deadline_s} s") else None
    if eng.p.poll() is None and completed < args.cycles and not done:
        # Released from its hold by nothing: the engine waits for a go file.
        # It ended its loop itself only after a "stop"; otherwise it is ended here.
        try:
            os.killpg(eng.p.pid, signal.SIGTERM)
        except OSError:
            pass
    rc, hung = eng.end(60)
    hangs += hung
    log.write("".join(eng.lines))
    log.close()
    shutil.rmtree(hold_dir, ignore_errors=True)
    shutil.rmtree(sock_dir, ignore_errors=True)
    time.sleep(1)
    used_after, _ = dev.used(-1)

    # Growth between the warm-up sample and the last one.
    marks = sorted(series)
    first = WARM if WARM in series and marks[-1] > WARM else (marks[0] if marks else None)
    lastc = marks[-1] if marks else None
    resources, flat = {}, True
    for key, limit in LIMITS.items():
        if key in ("pause_ms", "resume_ms"):
            v = [r[key] for r in rows if r.get(key) is not None]
            if len(v) < 20:
                continue
            k = max(10, len(v) // 10)
            early, late = statistics.median(v[WARM:WARM + k] or v[:k]), statistics.median(v[-k:])
            ok = early > 0 and late / early < limit["late_over_early_median_below"]
            resources[key] = {"early_median": early, "late_median": late, "cycles_per_window": k,
                              "p99": sorted(v)[int(0.99 * (len(v) - 1))], "max": max(v), "first": v[0],
                              "limit": limit, "flat": ok}
        elif key == "decode_step_ms":
            d = {c2: series[c2][key] for c2 in marks if series[c2].get(key) is not None}
            if len(d) < 2:
                continue
            a, b = d[min(d)], d[max(d)]
            ok = b / a < limit["last_over_first_below"]
            resources[key] = {"at_cycle": d, "before_first_pause": ready.get("decode_step_ms"),
                              "engine_after_loop": done.get("decode_step_ms_after") if done else None,
                              "limit": limit, "flat": ok}
        else:
            g, per = growth(series, key, first, lastc)
            ok = verdict(key, limit, g, per)
            if ok is None:
                continue
            resources[key] = {"from_cycle": first, "to_cycle": lastc, "first": series[first][key],
                              "last": series[lastc][key], "growth": g, "growth_per_cycle": round(per, 3),
                              "growth_per_100_cycles": round(per * 100, 1), "limit": limit, "flat": ok}
        flat &= resources[key]["flat"]
    summary = {"bench": "soak_summary", "memsaver": use_ms, "cycles_asked": args.cycles, "completed": completed,
               "stopped": stop_reason or "all cycles done", "parity_checks": len(rows), "parity_failures": parity_fail,
               "op_errors": len(errors), "errors": errors[:5], "hangs": hangs, "engine_exit": rc,
               "wall_s": round(time.monotonic() - t0, 1),
               "cycle_wall_ms_median": statistics.median([r["wall_ms"] for r in rows]) if rows else None,
               "growth_window": [first, lastc], "resources": resources, "flat": flat if resources else None,
               "device_used_bytes_before_start": used_before, "device_used_bytes_after_exit": used_after,
               "samples_at": marks}
    if args.baseline and "rss_bytes" in resources:
        try:
            base = [json.loads(l) for l in open(args.baseline) if '"soak_summary"' in l][-1]
            b = base["resources"]["rss_bytes"]["growth_per_cycle"]
            summary["rss_growth_per_cycle_plain"] = b
            summary["rss_growth_per_cycle_memsaver_share"] = round(resources["rss_bytes"]["growth_per_cycle"] - b, 3)
        except (OSError, ValueError, KeyError, IndexError) as e:
            summary["baseline_error"] = f"{args.baseline}: {e!r}"
    ok = flat and completed > 0 and parity_fail == 0 and not errors and hangs == 0 and rc == 0
    summary["ok"] = ok
    emit(**summary)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
