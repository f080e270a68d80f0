#!/bin/bash
# A `zero` region larger than a caching-allocator segment tail (> 20 MiB)
# reads zero after resume everywhere, its last 2 MiB included: the tail
# guard of `discard` must not leak into `zero` (seen on an H200 with a
# 1 GiB workspace).
set -u
. "$ROOT/tests/e2e/common.bash"
export LD_LIBRARY_PATH="$ROOT/$BUILD/fakecuda"
out=$("$ROOT/$BUILD/bin/memsaver" run -p "$ROOT/tools/demo/demo-policy.json" -- \
	"$ROOT/$BUILD/bin/demo-engine" --scale 256 --steps 3 --hold-at 1 --self-pause "" \
	--expect-kv any --expect-workspace zero 2>&1)
rc=$?
echo "$out" | tail -n 5
[ $rc -eq 0 ] || { echo "FAIL: demo-engine exit $rc with a 64 MiB zero workspace"; exit 1; }
echo "$out" | grep -q "workspace 64 MiB" || { echo "FAIL: expected a 64 MiB workspace"; exit 1; }
echo "ok: 64 MiB zero workspace reads zero after resume"
