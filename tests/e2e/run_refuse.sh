#!/bin/bash
# `memsaver run` refuses before starting the engine (exit 2, the engine never
# runs): a bad policy (the message names file:line:col), a missing policy
# file, no CUDA driver on the library path, and no library to inject.
. "$(dirname "$0")/common.bash"

# expect_refusal NAME REGEX: run.out/run.err hold the attempt; $rc its exit.
expect_refusal() {
	[ $rc -eq 2 ] || { cat "$T/run.err"; fail "$1: exit $rc, want 2"; }
	grep -qE "$2" "$T/run.err" || { cat "$T/run.err"; fail "$1: message does not match /$2/"; }
	[ -e "$T/started" ] && fail "$1: the engine was started"
	grep -q 'refusing to start' "$T/run.err" || fail "$1: does not say it refused"
	ok "$1 refused: $(grep -m1 -E "$2" "$T/run.err")"
}
ENGINE=(sh -c 'touch "$0"; exec "$1" --scale 1 --steps 1' "$T/started" "$DEMO")

printf '{"version": 1,\n "rules": [\n  {"category": "weights", "match": {"nvtx": "x",}}\n ]\n}\n' >"$T/bad.json"
"$MS" run -p "$T/bad.json" -- "${ENGINE[@]}" >"$T/run.out" 2>"$T/run.err"; rc=$?
expect_refusal "syntax error" "bad\.json:3:[0-9]+"

printf '{"version": 1,\n "rules": [{"category": "weights",\n   "match": {"nvtx": "x"}}],\n "actions": {"weights": "evaporate"}}\n' >"$T/bad2.json"
"$MS" run -p "$T/bad2.json" -- "${ENGINE[@]}" >"$T/run.out" 2>"$T/run.err"; rc=$?
expect_refusal "unknown action" "bad2\.json:4:[0-9]+"

"$MS" run -p "$T/missing.json" -- "${ENGINE[@]}" >"$T/run.out" 2>"$T/run.err"; rc=$?
expect_refusal "missing policy" "missing\.json"

# No driver: an empty library path (the host has no libcuda.so.1 here; on a
# GPU machine this case would find the real one, so skip it there).
if LD_LIBRARY_PATH=$T/empty "$DEMO" --scale 1 --steps 1 >/dev/null 2>&1; [ $? -eq 3 ]; then
	LD_LIBRARY_PATH=$T/empty "$MS" run -- "${ENGINE[@]}" >"$T/run.out" 2>"$T/run.err"; rc=$?
	expect_refusal "no driver" "libcuda\.so\.1 cannot be loaded"
else
	echo "note: a system libcuda.so.1 is present; no-driver case not run"
fi

# A driver with no usable device: cuInit fails.
FAKECUDA_FAIL=cuInit:1+:CUDA_ERROR_NO_DEVICE "$MS" run -- "${ENGINE[@]}" >"$T/run.out" 2>"$T/run.err"; rc=$?
expect_refusal "no GPU" "no usable GPU"

# No library to inject.
mkdir -p "$T/bin" && cp "$MS" "$T/bin/memsaver"
MEMSAVER_LIB=$T/nowhere/libmemsaver.so "$T/bin/memsaver" run -- "${ENGINE[@]}" >"$T/run.out" 2>"$T/run.err"; rc=$?
expect_refusal "no library" "libmemsaver\.so not found"

# And the good case does start it (so the checks above can fail).
"$MS" run -- "${ENGINE[@]}" >"$T/run.out" 2>"$T/run.err" || { cat "$T/run.err"; fail "good run failed"; }
[ -e "$T/started" ] || fail "good run did not start the engine"
ok "good run starts the engine"
