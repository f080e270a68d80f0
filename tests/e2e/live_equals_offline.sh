#!/bin/bash
# The live report (written by libmemsaver.so inside the engine at exit) and
# the offline report (`memsaver analyze` of the same run's trace) are the same
# JSON, timestamps aside: both come from the same analyzer over the same bytes.
set -u
. "$ROOT/tests/e2e/common.bash"
export LD_LIBRARY_PATH="$ROOT/$BUILD/fakecuda"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$ROOT/$BUILD/bin/memsaver" run -p "$ROOT/tools/demo/demo-policy.json" --trace "$T/run.trace" \
	-o "$T/live.json" -- "$ROOT/$BUILD/bin/demo-engine" --steps 3 --hold-at 1 --self-pause "" \
	--expect-kv any --expect-workspace zero >"$T/out" 2>&1 || { cat "$T/out"; echo "FAIL: run"; exit 1; }
"$ROOT/$BUILD/bin/memsaver" analyze "$T/run.trace" -o "$T/offline.json" || { echo "FAIL: analyze"; exit 1; }
python3 - "$T/live.json" "$T/offline.json" <<'PY'
import json, sys
def strip(o):
    # Wall-clock fields and the trace's own name differ by construction.
    if isinstance(o, dict):
        return {k: strip(v) for k, v in o.items() if k not in ("t_ns", "start_realtime_ns", "name")}
    if isinstance(o, list):
        return [strip(v) for v in o]
    return o
live, off = (json.load(open(p)) for p in sys.argv[1:3])
assert live.get("attribution"), "the live report has no attribution: the run did not pause"
if strip(live) != strip(off):
    for k in sorted(set(live) | set(off)):
        if strip(live.get(k)) != strip(off.get(k)):
            print("differs:", k)
    sys.exit("FAIL: live and offline reports differ")
print("ok: live report == offline report (%d phases, %d sources)" %
      (len(live["phases"]), len(live["attribution"]["sources"])))
PY
