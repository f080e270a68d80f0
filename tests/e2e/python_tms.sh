#!/bin/bash
# The torch_memory_saver drop-in (tools/python/torch_memory_saver) on the fake
# driver, without torch: tools/python/tests/tms_callers.py replays the calls
# SGLang (and verl through it) and slime make, with libmemsaver.so preloaded
# and injected as configure_subprocess() sets it up, and checks addresses,
# contents, status and report.  Also the package without the library.
# Exit 77 when python3 is missing.
. "$(dirname "$0")/common.bash"
command -v python3 >/dev/null || { echo "skipped: no python3"; exit 77; }
LIB=$B/lib/libmemsaver.so
[ -f "$LIB" ] || fail "$LIB not built"
export PYTHONPATH=$ROOT/tools/python MEMSAVER_BUILD=$BUILD
unset MEMSAVER_LIB MEMSAVER_POLICY MEMSAVER_TMS_TAGS LD_PRELOAD
cd "$ROOT/tools/python/tests" || exit 1
inject() { env LD_PRELOAD="$LIB" CUDA_INJECTION64_PATH="$LIB" MEMSAVER_TRACE="$T/%p.trace" "$@"; }

inject timeout 120 python3 tms_callers.py sglang >"$T/sglang.log" 2>&1 ||
	{ cat "$T/sglang.log"; fail "SGLang's call sequence"; }
grep -c '^ok:' "$T/sglang.log" | sed 's/^/sglang checks: /'
inject MEMSAVER_POLICY="$ROOT/tools/python/torch_memory_saver/policies/init-enable.json" \
	timeout 120 python3 tms_callers.py slime >"$T/slime.log" 2>&1 ||
	{ cat "$T/slime.log"; fail "slime's call sequence"; }
grep -c '^ok:' "$T/slime.log" | sed 's/^/slime checks: /'
timeout 60 python3 tms_callers.py nolib >"$T/nolib.log" 2>&1 ||
	{ cat "$T/nolib.log"; fail "the package without the library"; }
"$MS" policy check -q "$ROOT/tools/python/torch_memory_saver/policies/init-enable.json" ||
	fail "the shipped init-enable policy"
ok "torch_memory_saver drop-in: SGLang and slime sequences, no-library behaviour"
