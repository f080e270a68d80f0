#!/bin/bash
# dlsym(RTLD_NEXT, ...) through memsaver's interposer answers what glibc
# would answer to the caller, also before memsaver's constructor has run:
# tests/dlsym/next_a.c (a preloaded library that defines next_probe and looks
# up the next definition from its constructor) must get next_b.c's, whether
# libmemsaver.so comes before it in LD_PRELOAD (its constructor then runs
# after next_a's; `memsaver run` puts the library first) or between.  Also:
# the base glibc symbol version memsaver falls back to exists here.
set -u
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${BUILD:-build}
case $BUILD in /*) B=$BUILD ;; *) B=$ROOT/$BUILD ;; esac
OUT=$B/tests/dlsym
LIB=$B/lib/libmemsaver.so
CC=${CC:-cc}
mkdir -p "$OUT" || exit 1
[ -f "$LIB" ] || { echo "FAIL: $LIB not built"; exit 1; }
FLAGS="-std=gnu11 -fPIC -Wall -Wextra -Werror -O2 -g -D_GNU_SOURCE -I$ROOT -I$ROOT/include -I${CUDA_HOME:-/usr/local/cuda}/include"
$CC $FLAGS -shared -fvisibility=hidden -o "$OUT/next_a.so" "$ROOT/tests/dlsym/next_a.c" -ldl &&
	$CC $FLAGS -shared -o "$OUT/next_b.so" "$ROOT/tests/dlsym/next_b.c" &&
	$CC $FLAGS -o "$OUT/next_main" "$ROOT/tests/dlsym/next_main.c" -ldl &&
	$CC $FLAGS -fvisibility=hidden -o "$OUT/base_version" "$ROOT/tests/dlsym/base_version.c" \
		"$ROOT/tracer/driver.c" "$ROOT/tracer/log.c" -ldl -lpthread ||
	{ echo "FAIL: building tests/dlsym"; exit 1; }
"$OUT/base_version" || { echo "FAIL: base_version"; exit 1; }

fail=0
check() { # LD_PRELOAD value, expected output
	local got
	got=$(MEMSAVER_CONTROL=0 MEMSAVER_CUPTI=0 LD_PRELOAD=$1 "$OUT/next_main" 2>&1)
	if [ "$got" = "$2" ]; then
		echo "ok   LD_PRELOAD=$1: $got"
	else
		echo "FAIL LD_PRELOAD=$1: got '$got', want '$2'"
		fail=1
	fi
}
check "$OUT/next_a.so:$OUT/next_b.so" "init=b now=b dlsym=libc.so.6"
check "$LIB:$OUT/next_a.so:$OUT/next_b.so" "init=b now=b dlsym=libmemsaver.so"
check "$OUT/next_a.so:$LIB:$OUT/next_b.so" "init=b now=b dlsym=libmemsaver.so"
exit $fail
