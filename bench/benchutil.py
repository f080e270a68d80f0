"""Shared by the Python benchmarks in bench/ (as bench_util.h is by the C ones)."""
import subprocess


def have_gpu():
    """Whether nvidia-smi lists a GPU (benchmarks exit 77 without one)."""
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                              timeout=60).stdout.strip().startswith("GPU")
    except (OSError, subprocess.SubprocessError):
        return False
