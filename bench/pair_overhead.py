#!/usr/bin/env python3
"""What memsaver adds to an allocation pair, on its own (bench/proof.py measures the
cudart path as part of the proof): plain against `memsaver run --no-python` and
`memsaver run`, paired against direct driver pairs in each process
(benchutil.alloc_pair_overhead).  One JSON line.

usage: bench/pair_overhead.py [--build build] [--path cudart|torch] [--rounds 7]
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchutil import alloc_pair_overhead  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--path", choices=("cudart", "torch"), default="torch")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    r = alloc_pair_overhead(os.path.join(build, "bin", "memsaver"), os.path.join(build, "lib", "bench-driver_pair.so"),
                            args.path, args.rounds)
    print(json.dumps(r), flush=True)
    return 1 if "error" in r else 0


if __name__ == "__main__":
    raise SystemExit(main())
