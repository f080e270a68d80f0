#!/bin/bash
# aarch64 (GH200): `make cross-check` compiles the whole library with
# -Werror and links it for aarch64, and it must export dlsym (an interposer
# that is not exported interposes nothing).  Under qemu-aarch64, the
# interposer alone (saver/interpose.c, tracer/driver.c and an empty hook
# table) runs tests/dlsym's RTLD_NEXT check with the library first and in the
# middle of LD_PRELOAD, and tests/dlsym/base_version.c checks the glibc base
# version memsaver falls back to.  Exit 77 without aarch64-linux-gnu-gcc;
# without qemu-aarch64 only the build is checked, and the log says so.
set -u
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${BUILD:-build}
XCC=${AARCH64_CC:-aarch64-linux-gnu-gcc}
command -v "$XCC" >/dev/null 2>&1 || {
	echo "skipped: no $XCC (tools/install-deps.sh installs gcc-aarch64-linux-gnu)"
	exit 77
}
cd "$ROOT" || exit 1
make --no-print-directory BUILD="$BUILD" AARCH64_CC="$XCC" cross-check || { echo "FAIL: make cross-check"; exit 1; }
XLIB=$BUILD-aarch64/lib/libmemsaver.so
case $XLIB in /*) ;; *) XLIB=$ROOT/$XLIB ;; esac
readelf -h "$XLIB" | grep -q 'Machine: *AArch64' || { echo "FAIL: $XLIB is not an aarch64 object"; exit 1; }
readelf --dyn-syms -W "$XLIB" | grep -Eq 'FUNC +GLOBAL +DEFAULT +[0-9]+ dlsym$' ||
	{ echo "FAIL: $XLIB does not export dlsym"; exit 1; }
echo "ok   $XLIB built for aarch64, exports dlsym"

SYSROOT=${AARCH64_SYSROOT:-/usr/aarch64-linux-gnu}
if ! command -v qemu-aarch64 >/dev/null 2>&1 || [ ! -e "$SYSROOT/lib/ld-linux-aarch64.so.1" ]; then
	echo "note: no qemu-aarch64 or no $SYSROOT: the aarch64 interposer was built, not run"
	exit 0
fi
OUT=$ROOT/$BUILD-aarch64/tests/dlsym
case $BUILD in /*) OUT=$BUILD-aarch64/tests/dlsym ;; esac
mkdir -p "$OUT" || exit 1
FLAGS="-std=gnu11 -fPIC -Wall -Wextra -Werror -Wno-missing-field-initializers -O2 -g -D_GNU_SOURCE -I$ROOT -I$ROOT/include -I${CUDA_HOME:-/usr/local/cuda}/include"
$XCC $FLAGS -shared -fvisibility=hidden -Wl,-z,defs -Wl,--version-script=saver/exports.map \
	-o "$OUT/libmemsaver.so" saver/interpose.c tracer/driver.c tracer/options.c tracer/log.c \
	tests/dlsym/hooks_stub.c -ldl -lpthread &&
	$XCC $FLAGS -shared -fvisibility=hidden -o "$OUT/next_a.so" tests/dlsym/next_a.c -ldl &&
	$XCC $FLAGS -shared -o "$OUT/next_b.so" tests/dlsym/next_b.c &&
	$XCC $FLAGS -o "$OUT/next_main" tests/dlsym/next_main.c -ldl &&
	$XCC $FLAGS -fvisibility=hidden -o "$OUT/base_version" tests/dlsym/base_version.c tracer/driver.c \
		tracer/log.c -ldl -lpthread || { echo "FAIL: building tests/dlsym for aarch64"; exit 1; }
Q=(qemu-aarch64 -L "$SYSROOT")
"${Q[@]}" "$OUT/base_version" || { echo "FAIL: base_version on aarch64"; exit 1; }
fail=0
for pre in "$OUT/libmemsaver.so:$OUT/next_a.so:$OUT/next_b.so" "$OUT/next_a.so:$OUT/libmemsaver.so:$OUT/next_b.so"; do
	got=$("${Q[@]}" -E MEMSAVER_CONTROL=0 -E LD_PRELOAD="$pre" "$OUT/next_main" 2>&1)
	if [ "$got" = "init=b now=b dlsym=libmemsaver.so" ]; then
		echo "ok   aarch64 LD_PRELOAD=$pre: $got"
	else
		echo "FAIL aarch64 LD_PRELOAD=$pre: got '$got', want 'init=b now=b dlsym=libmemsaver.so'"
		fail=1
	fi
done
exit $fail
