#!/bin/bash
# tracer/pyframes.c against every CPython found on this host: a probe library
# (pyframes.c + tests/pyframes/probe_shim.c) is loaded with ctypes, which drops
# the GIL around the call as PyTorch does, and tests/pyframes/frames_probe.py
# compares what it reads with traceback.extract_stack() from nested functions,
# generators, C callbacks, non-ASCII names, long paths and other threads.
# tests/pyframes/shutdown_probe.py: reads from a daemon thread while the
# interpreter finalizes find no frames (its thread state is freed then).
# Also: a plain C program without Python reads no frames and does not crash.
# Exit 77 when no python3 is found.
set -u
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${BUILD:-build}
case $BUILD in /*) OUT=$BUILD/tests ;; *) OUT=$ROOT/$BUILD/tests ;; esac
mkdir -p "$OUT" || exit 1
CC=${CC:-cc}
FLAGS="-std=gnu11 -fPIC -fvisibility=hidden -Wall -Wextra -Werror -O2 -g -D_GNU_SOURCE -I$ROOT -I$ROOT/include"
SRCS="$ROOT/tracer/pyframes.c $ROOT/tracer/log.c"

$CC $FLAGS -shared -o "$OUT/pyframes_probe.so" $SRCS "$ROOT/tests/pyframes/probe_shim.c" -ldl -lpthread ||
	{ echo "FAIL: building the probe library"; exit 1; }
$CC $FLAGS -o "$OUT/pyframes_no_python" $SRCS "$ROOT/tests/pyframes/no_python.c" -ldl -lpthread ||
	{ echo "FAIL: building the no-python check"; exit 1; }
"$OUT/pyframes_no_python" || { echo "FAIL: no-python check"; exit 1; }

# Every interpreter on PATH, in /usr/bin and under pyenv, once per version.
cands=()
for p in python3 python3.10 python3.11 python3.12 python3.13 python3.14; do
	command -v "$p" >/dev/null 2>&1 && cands+=("$(command -v "$p")")
done
for p in /usr/bin/python3.* /usr/local/bin/python3.* "${PYENV_ROOT:-$HOME/.pyenv}"/versions/*/bin/python3; do
	case $p in *-config | *m) continue ;; esac
	[ -x "$p" ] && cands+=("$p")
done
seen=" " ran=0 failed=()
for py in "${cands[@]}"; do
	ver=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3]) if sys.version_info[0] == 3 and sys.implementation.name == "cpython" else None' 2>/dev/null)
	case $ver in 3.*) ;; *) continue ;; esac
	case $seen in *" $ver "*) continue ;; esac
	seen="$seen$ver "
	echo "== $py ($ver)"
	if ! "$py" "$ROOT/tests/pyframes/frames_probe.py" "$OUT/pyframes_probe.so"; then
		failed+=("$ver")
		continue
	fi
	# Reads while the interpreter shuts down: none may find frames.
	fin=$("$py" "$ROOT/tests/pyframes/shutdown_probe.py" "$OUT/pyframes_probe.so" 2>&1)
	rc=$?
	printf '%s\n' "$fin"
	n=$(printf '%s\n' "$fin" | sed -n 's/^reads while finalizing: //p')
	case $n in "skipped "*) ran=$((ran + 1)); continue ;; esac
	if [ $rc -ne 0 ] || [ -z "$n" ] || [ "$n" -eq 0 ]; then
		echo "FAIL shutdown (exit $rc, reads while finalizing: ${n:-none})"
		failed+=("$ver")
		continue
	fi
	ran=$((ran + 1))
done
if [ $ran -eq 0 ] && [ ${#failed[@]} -eq 0 ]; then
	echo "skipped: no python3 found"
	exit 77
fi
[ ${#failed[@]} -eq 0 ] || { echo "FAIL: python ${failed[*]}"; exit 1; }
echo "pyframes: ok on python$seen"
