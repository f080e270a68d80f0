#!/bin/bash
# make tsan: tests/tsan/stress.c with the ThreadSanitizer builds of
# libmemsaver.so (preloaded) and the fake driver from $BUILD (build-tsan).
# Exit 0 only when the stress passes and ThreadSanitizer reported nothing.
# TSAN_SECONDS (default 20) sets how long the threads run.
set -u
BUILD=${BUILD:-build-tsan}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
case $BUILD in /*) B=$BUILD ;; *) B=$ROOT/$BUILD ;; esac
T=$(mktemp -d /tmp/msv-tsan.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
LOG=$B/tests/logs/tsan-stress.log
mkdir -p "$(dirname "$LOG")"
# halt_on_error=0: collect every report in one run; exitcode 66 marks them.
env LD_LIBRARY_PATH="$B/fakecuda" LD_PRELOAD="$B/lib/libmemsaver.so" \
	CUDA_INJECTION64_PATH="$B/lib/libmemsaver.so" MEMSAVER_POLICY="$ROOT/tests/tsan/policy.json" \
	MEMSAVER_SOCKET_DIR="$T/sock" MEMSAVER_SESSION=tsan MEMSAVER_TRACE="$T/stress.trace" \
	MEMSAVER_LOG=error TSAN_STRESS_DIR="$T" FAKECUDA_GARBAGE_MAX=65536 \
	TSAN_OPTIONS="external_symbolizer_path=${MSV_SYMBOLIZER:-$(command -v llvm-symbolizer-14 || command -v llvm-symbolizer || echo /usr/lib/llvm-14/bin/llvm-symbolizer)} halt_on_error=0 exitcode=66 second_deadlock_stack=1 history_size=4 ${TSAN_OPTIONS:-}" \
	"$B/bin/tsan-stress" "${TSAN_SECONDS:-20}" >"$LOG" 2>&1
rc=$?
races=$(grep -c '^WARNING: ThreadSanitizer' "$LOG")
grep -E '^tsan-stress:' "$LOG"
if [ "$races" -gt 0 ] || [ $rc -ne 0 ]; then
	grep -A30 '^WARNING: ThreadSanitizer' "$LOG" | head -n 200
	echo "tsan: $races ThreadSanitizer reports, exit $rc; full log: $LOG"
	exit 1
fi
"$B/../$(basename "$B" -tsan)/bin/memsaver" analyze "$T/stress.trace" >/dev/null 2>&1 ||
	true # the trace is checked by the normal build when it exists
echo "tsan: clean (exit 0, no ThreadSanitizer report); log: $LOG"
