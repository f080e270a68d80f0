#!/bin/bash
# make gpu-test: the GPU scenarios, on the real driver.  Exit 77 with
# "skipped: no GPU" where there is none; otherwise 0 when every scenario
# passed, 1 when one failed.  Logs go to $BUILD/tests/gpu/<scenario>.log.
#
# Overhead: demo-engine with 4 GiB of weights and 8 GiB of kv, twice
# (about a minute on an H100); GPU_SCALE (MiB) and GPU_STEPS change that.
#
# To add a scenario: define a function scenario_NAME that returns 0 (pass),
# 77 (skip, last line of its output says why) or anything else (fail), and
# append NAME to SCENARIOS below.  Helpers: $DEMO, $MS, $POLICY, $LOGDIR,
# $TMP, msv_has_run, wait_for_line, json_sum, demo_reading (demo-lib.sh),
# run_under_memsaver (below).
set -u
BUILD=${BUILD:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
. tools/demo/demo-lib.sh

DEMO=$BUILD/bin/demo-engine
MS=$BUILD/bin/memsaver
POLICY=tools/demo/demo-policy.json
SCALE=${GPU_SCALE:-4096}
STEPS=${GPU_STEPS:-20}
LOGDIR=$ROOT/$BUILD/tests/gpu
# The direct run needs only the system libcuda.so.1; CUPTI (for memsaver)
# lives with the toolkit.
CUDA_LIB=${CUDA_HOME:-/usr/local/cuda}/lib64
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$CUDA_LIB"

[ -x "$DEMO" ] || { echo "gpu-test: $DEMO is missing: run make first"; exit 1; }
if ! gpus=$(nvidia_smi_gpus); then
	echo "skipped: no GPU"
	exit 77
fi
demo_probe_gpu "$DEMO"
if [ "$DEMO_GPU" != 1 ]; then
	echo "gpu-test: nvidia-smi lists a GPU but ${DEMO_PROBE_LINE:-demo-engine exits 3}"
	echo "skipped: no GPU"
	exit 77
fi
printf '%s\n' "$gpus"
mkdir -p "$LOGDIR"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/memsaver-gpu.XXXXXX") || exit 1
BG=""
trap '[ -n "$BG" ] && kill $BG 2>/dev/null; rm -rf "$TMP"' EXIT

# ---- scenarios ------------------------------------------------------------

# demo-engine alone on the real driver: the engine itself is right.
scenario_demo_direct() {
	"$DEMO" --scale "$SCALE" --steps "$STEPS" --verify-every 5
}

# The engine's checks catch what a broken pause would do: a zeroed page of
# weights, kv (under --expect-kv keep) or graph capture-time state.  The
# same run without --corrupt passes (see demo_direct).
scenario_demo_detects_corruption() {
	local c rc
	for c in weights kv graph; do
		"$DEMO" --scale 256 --steps 4 --hold-at 1 --corrupt "$c"
		rc=$?
		[ $rc -eq 1 ] || { echo "FAIL: --corrupt $c: exit $rc, want 1"; return 1; }
		echo "--corrupt $c: caught (exit 1)"
	done
}

# run_under_memsaver NAME PAUSE_CATS DEMO_ARGS...: demo-engine under
# `memsaver run` with the demo policy, held at step 10 (or STEPS/2) while
# `ctl pause [--tags PAUSE_CATS]` / `ctl resume` run ("" = every wrapped
# category).  Leaves in $TMP/NAME.*:
# .out (engine output, --json readings), .status-before / .status-paused
# (ctl status), and sets RUN_RC (engine exit), PAUSED_DROP (device bytes
# freed by the pause, measured by the engine), WRAPPED (wrapped bytes
# before the pause), RELEASED (released bytes while paused), CTL_FAILED
# (non-empty when a ctl command failed).
run_under_memsaver() {
	local name=$1 hold pid line out f tags=()
	[ -n "$2" ] && tags=(--tags "$2")
	shift 2
	hold=$((STEPS / 2 < 10 ? STEPS / 2 : 10))
	out=$TMP/$name.out f=$TMP/$name
	RUN_RC="" PAUSED_DROP="" WRAPPED="" RELEASED="" CTL_FAILED=""
	"$MS" run -p "$POLICY" --trace "$f.trace" -o "$f.report.json" -- \
		"$DEMO" --json --scale "$SCALE" --steps "$STEPS" --verify-every 5 --hold-at "$hold" \
		--hold-file "$f.go" --hold-timeout 300 "$@" >"$out" 2>&1 &
	BG=$!
	if ! line=$(wait_for_line "$out" '^demo-engine: holding at step' 300 "$BG"); then
		wait "$BG"; RUN_RC=$?; BG=""; cat "$out"; return 1
	fi
	pid=$(printf '%s\n' "$line" | sed -n 's/.*(pid \([0-9]*\)).*/\1/p')
	"$MS" ctl --pid "$pid" status >"$f.status-before" 2>&1 || { echo "ctl status failed" >>"$out"; CTL_FAILED=1; }
	"$MS" ctl --pid "$pid" pause "${tags[@]}" >"$f.pause" 2>&1 || { echo "ctl pause failed: $(cat "$f.pause")" >>"$out"; CTL_FAILED=1; }
	"$MS" ctl --pid "$pid" status >"$f.status-paused" 2>&1 || { echo "ctl status (paused) failed" >>"$out"; CTL_FAILED=1; }
	kill -USR2 "$pid" && wait_for_line "$out" '"phase":"held"' 30 "$BG" >/dev/null
	nvidia-smi --query-gpu=memory.used --format=csv,noheader -i 0 >"$f.smi-paused" 2>&1
	"$MS" ctl --pid "$pid" resume "${tags[@]}" >"$f.resume" 2>&1 || { echo "ctl resume failed: $(cat "$f.resume")" >>"$out"; CTL_FAILED=1; }
	touch "$f.go"
	wait "$BG"; RUN_RC=$?; BG=""
	cat "$out"
	for x in status-before pause status-paused resume; do
		printf -- '--- ctl %s\n' "$x"; cat "$f.$x"
	done
	local before held
	before=$(demo_reading "$out" hold) && held=$(demo_reading "$out" held) &&
		PAUSED_DROP=$((before - held))
	WRAPPED=$(json_sum "$f.status-before" wrapped_bytes 2>/dev/null)
	RELEASED=$(json_sum "$f.status-paused" released_bytes 2>/dev/null)
	return 0
}

# The demo policy under memsaver: pause everything it wraps, resume, and the
# engine must still pass its checks (weights and graph backed up, kv
# discarded, workspace zeroed); the pause must free >= 99% of wrapped bytes.
scenario_memsaver_pause_resume() {
	if ! msv_has_run "$MS"; then
		echo "skipped: $MS has no 'run' sub-command yet"
		return 77
	fi
	run_under_memsaver pause_resume "" --expect-kv any --expect-workspace zero || return 1
	echo "engine exit $RUN_RC; device freed by pause ${PAUSED_DROP:-?} B; wrapped ${WRAPPED:-?} B; released ${RELEASED:-?} B"
	[ "$RUN_RC" = 0 ] || { echo "FAIL: demo-engine under memsaver exited $RUN_RC"; return 1; }
	[ -z "$CTL_FAILED" ] || { echo "FAIL: a memsaver ctl command failed (see above)"; return 1; }
	[ -n "$PAUSED_DROP" ] || { echo "FAIL: no hold/held readings"; return 1; }
	[ -n "$WRAPPED" ] && [ "$WRAPPED" -gt 0 ] || { echo "FAIL: ctl status shows no wrapped_bytes"; return 1; }
	python3 -c 'import sys; d, w = int(sys.argv[1]), int(sys.argv[2]); sys.exit(0 if d >= 0.99 * w else 1)' \
		"$PAUSED_DROP" "$WRAPPED" ||
		{ echo "FAIL: pause freed $(mib "$PAUSED_DROP") of $(mib "$WRAPPED") wrapped (< 99%)"; return 1; }
	echo "pause freed $(mib "$PAUSED_DROP") of $(mib "$WRAPPED") wrapped"
}

# Later scenarios: define scenario_NAME above and append NAME here.
SCENARIOS=(
	demo_direct
	demo_detects_corruption
	memsaver_pause_resume
)

# ---- runner ---------------------------------------------------------------

pass=0 fail=0 skip=0 failed=()
for s in "${SCENARIOS[@]}"; do
	log=$LOGDIR/$s.log
	start=$(date +%s)
	"scenario_$s" >"$log" 2>&1
	rc=$?
	secs=$(($(date +%s) - start))
	if [ $rc -eq 0 ]; then
		pass=$((pass + 1)); printf '  PASS  %s (%ss)\n' "$s" "$secs"
		tail -n 3 "$log" | sed 's/^/        /'
	elif [ $rc -eq 77 ]; then
		skip=$((skip + 1)); printf '  SKIP  %s (%s)\n' "$s" "$(tail -n1 "$log")"
	else
		fail=$((fail + 1)); failed+=("$s"); printf '  FAIL  %s (exit %d, %ss)\n' "$s" $rc "$secs"
		tail -n 40 "$log" | sed 's/^/        /'
	fi
done
printf 'gpu-test: %d passed, %d failed, %d skipped (logs in %s)\n' $pass $fail $skip "$LOGDIR"
[ $fail -eq 0 ] || { printf 'failed: %s\n' "${failed[*]}"; exit 1; }
exit 0
