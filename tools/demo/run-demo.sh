#!/bin/bash
# make demo: run demo-engine under memsaver, pause and resume it from outside
# while it holds between two decode steps, then print memsaver's report.
# Uses the GPU when the system driver has one, else the fake driver in
# $BUILD/fakecuda.  Runs from the repository root; BUILD defaults to build.
#
# KEEP_TMP=1 keeps the report, trace and logs in the temporary folder (always
# kept when the demo fails); otherwise they are removed at exit.
#
# Overhead: a few seconds on the fake driver (64 MiB of weights); on a GPU
# DEMO_SCALE MiB of weights (default 2048) plus 2x that of kv, filled and
# read back from the host.
#
# Example output (fake driver, memsaver run built):
#   make demo: device: fake CUDA driver (build/fakecuda; no usable GPU here)
#   ...
#   phase held: device used 515 MiB (-116 MiB)
#   ...
#   make demo: summary: device fake, demo-engine exit 0, reclaimed 116.0 MiB
set -u
BUILD=${BUILD:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
. tools/demo/demo-lib.sh

DEMO=$BUILD/bin/demo-engine
MS=$BUILD/bin/memsaver
POLICY=tools/demo/demo-policy.json
STEPS=6
HOLD_AT=3
say() { printf 'make demo: %s\n' "$*"; }

[ -x "$DEMO" ] || { say "$DEMO is missing: run make first"; exit 1; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/memsaver-demo.XXXXXX") || exit 1
bg=""
cleanup() {
	[ -n "$bg" ] && kill "$bg" 2>/dev/null
	[ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT

# Which device: the system driver first, the fake driver otherwise.
demo_probe_gpu "$DEMO"
if [ "$DEMO_GPU" = 1 ]; then
	device="GPU"
	say "device: real GPU (${DEMO_GPU_NAME:-unknown}) through the system driver"
	SCALE=${DEMO_SCALE:-2048}
else
	device="fake"
	if [ ! -e "$BUILD/fakecuda/libcuda.so.1" ]; then
		say "no usable GPU (${DEMO_PROBE_LINE#demo-engine: }) and no fake driver in $BUILD/fakecuda: run make"
		exit 1
	fi
	say "device: fake CUDA driver ($BUILD/fakecuda; no usable GPU here)"
	export LD_LIBRARY_PATH="$ROOT/$BUILD/fakecuda${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
	SCALE=${DEMO_SCALE:-64}
fi

if ! msv_has_run "$MS"; then
	say "$MS has no 'run' sub-command yet: memsaver's attach step is skipped; demo-engine runs alone"
	"$DEMO" --scale "$SCALE" --steps "$STEPS"
	rc=$?
	say "summary: device $device, demo-engine alone exit $rc, nothing reclaimed (memsaver not attached)"
	exit $rc
fi

out=$TMP/demo.out
shown=0
show() { # print the demo's output not shown yet, indented
	local n
	n=$(wc -l <"$out")
	[ "$n" -gt "$shown" ] && sed -n "$((shown + 1)),${n}p" "$out" | sed 's/^/  | /'
	shown=$n
}
ctl() { # ctl ARGS...: run `memsaver ctl --pid PID ARGS`, print and keep its output
	local f=$TMP/ctl-$1.out rc
	say "\$ memsaver ctl --pid $pid $*"
	"$MS" ctl --pid "$pid" "$@" >"$f" 2>&1
	rc=$?
	sed 's/^/    /' "$f"
	[ $rc -eq 0 ] || say "memsaver ctl $1 exited $rc"
	return $rc
}

say "\$ memsaver run -p $POLICY --trace $TMP/demo.trace -o $TMP/demo-report.json -- demo-engine --scale $SCALE ..."
"$MS" run -p "$POLICY" --trace "$TMP/demo.trace" -o "$TMP/demo-report.json" -- \
	"$DEMO" --scale "$SCALE" --steps "$STEPS" --hold-at "$HOLD_AT" --hold-file "$TMP/go" \
	--hold-timeout 300 --expect-kv any --expect-workspace zero >"$out" 2>&1 &
bg=$!

failed=0
if line=$(wait_for_line "$out" '^demo-engine: holding at step' 120 "$bg"); then
	pid=$(printf '%s\n' "$line" | sed -n 's/.*(pid \([0-9]*\)).*/\1/p')
	show
	ctl status || failed=1
	if ctl pause; then
		ctl status >/dev/null || true
		cp "$TMP/ctl-status.out" "$TMP/status-paused.out"
		# The engine measures its own device memory while paused.
		kill -USR2 "$pid" 2>/dev/null
		wait_for_line "$out" '^phase held:' 10 "$bg" >/dev/null
		[ "$device" = GPU ] && say "nvidia-smi while paused: $(nvidia-smi --query-gpu=memory.used --format=csv,noheader -i 0 2>/dev/null)"
		show
	else
		failed=1
	fi
	ctl resume || failed=1
	touch "$TMP/go"
else
	failed=1
fi
wait "$bg"
rc=$?
bg=""
show
say "memsaver run / demo-engine exited $rc"

if [ -f "$TMP/demo-report.json" ]; then
	say "\$ memsaver report $TMP/demo-report.json"
	"$MS" report "$TMP/demo-report.json" | sed 's/^/    /'
fi

reclaimed=""
if r=$(json_find "$TMP/demo-report.json" reclaimed_bytes 2>/dev/null); then
	reclaimed="reclaimed $(mib "$r") (report)"
elif r=$(json_sum "$TMP/status-paused.out" released_bytes 2>/dev/null); then
	reclaimed="released $(mib "$r") (ctl status)"
else
	reclaimed="no reclaim figure (no report)"
fi
say "summary: device $device, demo-engine exit $rc, $reclaimed"
if [ $rc -ne 0 ] || [ $failed -ne 0 ]; then
	KEEP_TMP=1
	say "FAILED; files kept in $TMP"
	exit 1
fi
# The paths printed above are gone after this unless KEEP_TMP is set.
if [ -n "${KEEP_TMP:-}" ]; then
	say "report, trace and logs kept in $TMP"
else
	say "report, trace and logs in $TMP are removed now; \`make demo KEEP_TMP=1\` keeps them"
fi
exit 0
