#!/bin/bash
# The GPU proof of `memsaver attach` (issue 17).  Run as root from the repo
# root with the build carried: BUILD=build bench/attach_proof.sh.  Writes into
# $OUT (default /tmp/attach-proof): JSON lines on stdout and attach_proof.json.
#  1. probe cost: cuMemAlloc_v2+cuMemFree_v2 pairs (1 MiB) on libcuda before
#     and after an attach (bench/attach_pairs.py);
#  2. parity: bench/attach_engine.py under `memsaver run --no-redirect` and,
#     separately, plain + `memsaver attach` while it waits; the allocations
#     after GO must be the same multiset of sizes in both traces;
#  3. a real engine: bench/engines/qwen_like.py attached at its hold: report
#     with the before_attach source sized by NVML.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) B=$BUILD ;; *) B=$ROOT/$BUILD ;; esac
MS=$B/bin/memsaver
OUT=${OUT:-/tmp/attach-proof}
mkdir -p "$OUT"
cd "$ROOT" || exit 1
die() { echo "attach_proof: $*" >&2; exit 1; }
waitfile() { local i; for ((i = 0; i < 6000; i++)); do [ -e "$1" ] && return 0; sleep 0.05; done; die "timed out waiting for $1"; }
waitgrep() { local i; for ((i = 0; i < 6000; i++)); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; die "timed out waiting for $2 in $1"; }

"$MS" attach --help >/dev/null || die "no memsaver CLI at $MS"

# 1. probe cost
python3 bench/attach_pairs.py --pairs 20000 --go "$OUT/pairs.go" >"$OUT/pairs.out" 2>&1 &
P=$!
waitgrep "$OUT/pairs.out" '"before"'
"$MS" attach "$P" -o "$OUT/pairs.report.json" 2>"$OUT/pairs.attach.err" &
A=$!
waitgrep "$OUT/pairs.attach.err" "probed in" || { cat "$OUT/pairs.attach.err"; exit 1; }
touch "$OUT/pairs.go"
wait "$P"; wait "$A"
cat "$OUT/pairs.out" "$OUT/pairs.attach.err"

# 2. parity with memsaver run on the same phase
rm -f "$OUT"/eng.*
"$MS" run --no-redirect --trace "$OUT/run.trace" -- python3 bench/attach_engine.py "$OUT/eng.ready1" "$OUT/eng.go1" \
	>"$OUT/run.out" 2>&1 &
R=$!
waitfile "$OUT/eng.ready1"; touch "$OUT/eng.go1"; wait "$R" || { cat "$OUT/run.out"; die "engine under memsaver run failed"; }
python3 bench/attach_engine.py "$OUT/eng.ready2" "$OUT/eng.go2" >"$OUT/attach.out" 2>&1 &
E=$!
waitfile "$OUT/eng.ready2"
"$MS" attach "$E" --trace "$OUT/attach.trace" -o "$OUT/attach.report.json" 2>"$OUT/attach.err" &
A=$!
waitgrep "$OUT/attach.err" "probed in" || { cat "$OUT/attach.err"; exit 1; }
touch "$OUT/eng.go2"
wait "$E" || { cat "$OUT/attach.out"; die "engine failed after the attach"; }
wait "$A"
cat "$OUT/attach.err"
"$MS" analyze --dump "$OUT/run.trace" >"$OUT/run.dump" || die "analyze run.trace"
"$MS" analyze --dump "$OUT/attach.trace" >"$OUT/attach.dump" || die "analyze attach.trace"
"$MS" report "$OUT/attach.report.json" >"$OUT/attach.report.txt"
python3 - "$OUT" <<'PY'
import json, struct, sys
out = sys.argv[1]
def go_ns(f):  # CLOCK_MONOTONIC when the engine's phase 2 began
    return next(json.loads(l)["go_ns"] for l in open(f) if l.startswith('{"go_ns"'))
def start_mono(trace):  # the dump's t_ns count from the header's start_mono_ns
    with open(trace, "rb") as f:
        return struct.unpack_from("<8sIIQQ", f.read(64))[4]
summary = {}
for name in ("run", "attach"):
    g, s0 = go_ns(f"{out}/{name}.out"), start_mono(f"{out}/{name}.trace")
    allocs = [json.loads(l) for l in open(f"{out}/{name}.dump")]
    allocs = [r for r in allocs if r["type"] == "alloc"]
    sizes = sorted(r["size"] for r in allocs if s0 + r["t_ns"] >= g)
    summary[name] = {"allocs_after_go": len(sizes), "bytes_after_go": sum(sizes), "sizes": sizes}
rep = json.load(open(f"{out}/attach.report.json"))
src = {s["source"]: s for s in rep["attribution"]["sources"]}
result = {"bench": "attach_parity", "equal": summary["run"]["sizes"] == summary["attach"]["sizes"],
          "run": summary["run"], "attach": summary["attach"], "before_attach": src.get("before_attach"),
          "footprint_bytes": rep["attribution"]["footprint_bytes"], "device": rep["device"]}
json.dump(result, open(f"{out}/attach_proof.json", "w"), indent=1)
short = dict(result)
for k in ("run", "attach"):
    short[k] = {kk: vv for kk, vv in result[k].items() if kk != "sizes"}
print(json.dumps(short))
PY

# 3. the bench engine, attached at its hold
rm -rf "$OUT/hold"; mkdir -p "$OUT/hold"
python3 bench/engines/qwen_like.py --cycles 1 --hold-dir "$OUT/hold" --decode-steps 50 >"$OUT/qwen.out" 2>&1 &
Q=$!
waitfile "$OUT/hold/hold.0"
"$MS" attach "$Q" -p bench/policies/qwen-bench.json --trace "$OUT/qwen.trace" -o "$OUT/qwen.report.json" \
	2>"$OUT/qwen.attach.err" &
A=$!
waitgrep "$OUT/qwen.attach.err" "probed in" || { cat "$OUT/qwen.attach.err"; exit 1; }
touch "$OUT/hold/go.0"
wait "$Q"; wait "$A"
cat "$OUT/qwen.attach.err"
"$MS" report "$OUT/qwen.report.json" | tee "$OUT/qwen.report.txt"
