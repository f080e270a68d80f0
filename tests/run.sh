#!/bin/bash
# Runs every test of the suite against $BUILD: unit tests (Check), the fake
# driver's own tests, then the end-to-end scenarios in tests/e2e/*.sh.
# An end-to-end script exiting 77 is a skip.  Exit status: 0 when nothing failed.
set -u
BUILD=${BUILD:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export BUILD ROOT
export CK_VERBOSITY=${CK_VERBOSITY:-normal}
pass=0 fail=0 skip=0 failed=()

run() { # name, command...
	local name=$1 rc
	shift
	local log="$ROOT/$BUILD/tests/logs/$name.log"
	mkdir -p "$(dirname "$log")"
	"$@" >"$log" 2>&1
	rc=$?
	if [ $rc -eq 0 ]; then
		pass=$((pass + 1)); printf '  PASS  %s\n' "$name"
	elif [ $rc -eq 77 ]; then
		skip=$((skip + 1)); printf '  SKIP  %s (%s)\n' "$name" "$(tail -n1 "$log")"
	else
		fail=$((fail + 1)); failed+=("$name"); printf '  FAIL  %s (exit %d)\n' "$name" $rc
		sed 's/^/        /' "$log" | tail -n 40
	fi
}

cd "$ROOT" || exit 1
for t in "$BUILD"/tests/test_*; do
	[ -x "$t" ] && run "unit/$(basename "$t")" "$t"
done
for t in "$BUILD"/tests/fakecuda_*; do
	[ -x "$t" ] && run "fakecuda/$(basename "$t")" env LD_LIBRARY_PATH="$ROOT/$BUILD/fakecuda" "$t"
done
if [ -z "${MSV_SANITIZE:-}" ]; then
	# The end-to-end scenarios preload the library into other programs;
	# under ASan that needs the runtime first, so the sanitizer run skips them.
	# The library preloaded into C programs on the fake driver; each
	# test initialises CUDA in its own forked child.  Their first pauses
	# make their own backups (MEMSAVER_PREPIN=0): a background preparation
	# would race with what they count; e2e/prepin covers it.
	for t in "$BUILD"/tests/preload_test_*; do
		[ -x "$t" ] && run "preload/$(basename "$t")" env LD_LIBRARY_PATH="$ROOT/$BUILD/fakecuda" \
			LD_PRELOAD="$ROOT/$BUILD/lib/libmemsaver.so" CUDA_INJECTION64_PATH="$ROOT/$BUILD/lib/libmemsaver.so" \
			MEMSAVER_POLICY="$ROOT/tests/preload/policy.json" MEMSAVER_CONTROL=0 MEMSAVER_PREPIN=0 \
			MEMSAVER_TRACE="$ROOT/$BUILD/tests/logs/$(basename "$t")-%p.trace" CK_FORK=yes "$t"
	done
	for t in tests/e2e/*.sh; do
		[ -f "$t" ] && run "e2e/$(basename "$t" .sh)" bash "$t"
	done
fi
printf '%d passed, %d failed, %d skipped\n' $pass $fail $skip
[ $fail -eq 0 ] || { printf 'failed: %s\n' "${failed[*]}"; exit 1; }
