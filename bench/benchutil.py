"""Shared by the Python benchmarks in bench/ (as bench_util.h is by the C ones)."""
import json
import subprocess


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
