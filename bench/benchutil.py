"""Shared by the Python benchmarks in bench/ (as bench_util.h is by the C ones)."""
import json
import os
import statistics
import subprocess
import sys


def have_gpu():
    """Whether nvidia-smi lists a GPU (benchmarks exit 77 without one)."""
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                              timeout=60).stdout.strip().startswith("GPU")
    except (OSError, subprocess.SubprocessError):
        return False


def json_lines(text):
    """The JSON objects among the lines of text (other lines are skipped)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def nvml_used():
    """Device memory used on GPU 0 (all processes), or None without NVML."""
    try:
        import pynvml
        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).used
    except Exception:  # noqa: BLE001 - a reading is optional
        return None


def alloc_pair_overhead(ms, driver_pair, path="cudart", rounds=7):
    """What memsaver adds to an allocation pair (bench/alloc_pairs.py --path PATH),
    plain against `memsaver run --no-python` and `memsaver run`, in alternating
    rounds with every process on the same CPU core.  The driver's own time per pair
    drifts between processes (62 or 88 us plain on one H200), more than the effect,
    so each process also times direct driver pairs (bench/direct/driver_pair.c) and
    the verdict is paired: the median of what the path adds over the driver in the
    memsaver processes, less the same in the plain ones, against the fastest plain
    pair.  The best and the median of each mode come with it.  Returns the JSON
    line's fields, or {"error": ...}."""
    core = max(os.sched_getaffinity(0))
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "alloc_pairs.py")
    modes = (("plain", []), ("memsaver_no_python", [ms, "run", "--no-python", "--"]),
             ("memsaver_python", [ms, "run", "--"]))
    runs, added = {}, {}
    for _ in range(rounds):
        for name, pre in modes:
            p = subprocess.run(pre + [sys.executable, script, "--path", path, "--driver", driver_pair],
                               capture_output=True, text=True, timeout=300,
                               preexec_fn=lambda: os.sched_setaffinity(0, {core}))
            r = (json_lines(p.stdout) or [{}])[0]
            if not r:
                return {"error": f"{name}: " + p.stderr[-800:]}
            runs.setdefault(name, []).append(r["us_per_pair"])
            added.setdefault(name, []).append(r["us_added"])
    best = {k: min(v) for k, v in runs.items()}
    med = {k: round(statistics.median(v), 3) for k, v in runs.items()}
    med_added = {k: round(statistics.median(v), 3) for k, v in added.items()}
    out = {"bench": "alloc_pairs", "path": path, "cpu": core, "us_per_pair": best, "us_per_pair_median": med,
           "runs": runs, "us_added_over_driver": added, "us_added_over_driver_median": med_added}
    for k in ("no_python", "python"):
        m = "memsaver_" + k
        out[f"overhead_{k}_paired"] = round((med_added[m] - med_added["plain"]) / best["plain"], 4)
        out[f"overhead_{k}"] = round(best[m] / best["plain"] - 1, 4)
        out[f"overhead_{k}_median"] = round(med[m] / med["plain"] - 1, 4)
    return out
