#!/bin/bash
# A child forked without exec (Python multiprocessing's default on Linux)
# shares its parent's trace file and report path: memsaver steps aside in it.
# The child's allocation must not reach the parent's trace, and its exit
# must not overwrite the parent's report.
set -u
. "$ROOT/tests/e2e/common.bash"
export LD_LIBRARY_PATH="$ROOT/$BUILD/fakecuda"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cat >"$T/fork.py" <<'PY'
import ctypes, os, sys
from ctypes import byref, c_int, c_uint64, c_void_p
cu = ctypes.CDLL("libcuda.so.1")
assert cu.cuInit(0) == 0
dev, ctx, p = c_int(), c_void_p(), c_uint64()
assert cu.cuDeviceGet(byref(dev), 0) == 0
assert cu.cuDevicePrimaryCtxRetain(byref(ctx), dev) == 0
assert cu.cuCtxSetCurrent(ctx) == 0
assert cu.cuMemAlloc_v2(byref(p), c_uint64(1 << 20)) == 0
pid = os.fork()
if pid == 0:
    q = c_uint64()
    cu.cuMemAlloc_v2(byref(q), c_uint64(3 << 20))
    sys.exit(0)  # runs the C atexit handlers the child inherited
os.waitpid(pid, 0)
assert cu.cuMemFree_v2(p) == 0
print("parent", os.getpid())
PY
"$ROOT/$BUILD/bin/memsaver" run --trace "$T/run.trace" -o "$T/report.json" -- python3 "$T/fork.py" >"$T/out" 2>&1 ||
	{ cat "$T/out"; echo "FAIL: run"; exit 1; }
parent=$(sed -n 's/^parent //p' "$T/out")
"$ROOT/$BUILD/bin/memsaver" analyze --dump "$T/run.trace" >"$T/dump" || { echo "FAIL: dump"; exit 1; }
python3 - "$T/dump" "$T/report.json" "$parent" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
sizes = [r["size"] for r in recs if r["type"] == "alloc"]
assert sizes == [1 << 20], "trace allocations %r: the child's 3 MiB leaked into the parent's trace" % sizes
rep = json.load(open(sys.argv[2]))
assert rep["process"]["pid"] == int(sys.argv[3]), "report is the child's: %r" % rep["process"]["pid"]
print("ok: the forked child left the parent's trace and report alone")
PY
