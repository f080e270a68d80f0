#!/bin/bash
# make fuzz: runs each libFuzzer target of $BUILD/fuzz for FUZZ_SECONDS,
# seeded from tests/fuzz/corpus/NAME (read only); new inputs go to
# $BUILD/fuzz-corpus/NAME, crashes, leaks and hangs to
# $BUILD/artifacts/NAME/.  Prints one line per target with the executions
# run; exit 1 when a target found something.
#   tests/fuzz/run.sh [NAME...]    (default: every target)
# FUZZ_JOBS=N runs N targets at a time (default: half the CPUs, at least 1).
# To keep a finding as a regression test, copy the artifact into
# tests/fuzz/regress/NAME/ (make test replays it) and fix the parser.
set -u
BUILD=${BUILD:-build-fuzz}
SECS=${FUZZ_SECONDS:-60}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
[ $# -gt 0 ] || set -- policy trace report control
JOBS=${FUZZ_JOBS:-$(( $(nproc) / 2 ))}
[ "$JOBS" -ge 1 ] || JOBS=1

one() {
	local n=$1 bin=$BUILD/fuzz/fuzz_$1 out=$BUILD/fuzz-logs/$1.log
	mkdir -p "$BUILD/fuzz-corpus/$n" "$BUILD/artifacts/$n" "$BUILD/fuzz-logs"
	[ -x "$bin" ] || { echo "$n: $bin not built"; return 1; }
	# -timeout: an input running 10 s is a hang; -rss_limit_mb: one using
	# 2 GiB a memory blow-up.  Leak detection is on (ASan's LeakSanitizer).
	"$bin" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$BUILD/artifacts/$n/" "$BUILD/fuzz-corpus/$n" "tests/fuzz/corpus/$n" \
		>"$out" 2>&1
	local rc=$? execs found
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -n1)
	found=$(ls "$BUILD/artifacts/$n" | wc -l)
	printf '%-8s %4ss  %10s executions  %d corpus inputs  %d findings  exit %d\n' "$n" "$SECS" \
		"${execs:-?}" "$(ls "$BUILD/fuzz-corpus/$n" | wc -l)" "$found" "$rc"
	if [ $rc -ne 0 ]; then
		grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$out" | head -n 5 | sed 's/^/    /'
		echo "    log: $out"
	fi
	return $rc
}

fail=0 pids=()
for n in "$@"; do
	one "$n" &
	pids+=($!)
	if [ ${#pids[@]} -ge "$JOBS" ]; then
		wait "${pids[0]}" || fail=1
		pids=("${pids[@]:1}")
	fi
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done
exit $fail
