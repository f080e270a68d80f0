#!/bin/bash
# make bench: the GPU proof (bench/proof.py), JSON lines on stdout.  Exits 77
# with "skipped: no GPU" where there is none.  About 5 minutes on an H100/H200.
set -u
BUILD=${BUILD:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
	echo "skipped: no GPU"
	exit 77
fi
exec python3 "$ROOT/bench/proof.py" --build "$ROOT/$BUILD" ${BENCH_ARGS:-}
