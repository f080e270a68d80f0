#!/bin/bash
# Issue 16, fault 3: another process takes the GPU's memory while the engine
# is paused.  The fake driver's FAKECUDA_OTHERS_FILE stands for the other
# processes on the device (tests/fakecuda/driver_others.c): what it says is
# used counts against every allocation and cuMemGetInfo.
#   1. held demo-engine, ctl pause: released;
#   2. "another process" takes all but half of what the resume needs;
#   3. ctl resume fails (exit 1) naming the bytes needed and the bytes free;
#      the engine is alive, still paused, and nothing of the resume stays
#      mapped (used memory as paused);
#   4. the other process leaves; ctl resume succeeds; demo-engine's own
#      checks (weights and graph bitwise) pass: nothing was lost.
# Once with the policy's "context": "keep", once with "trim" (the context's
# stack comes back on resume too).
. "$(dirname "$0")/common.bash"
export FAKECUDA_TOTAL_BYTES=8GiB FAKECUDA_STACK_THREADS=262144
TOTAL=$((8 << 30))
STACK_BYTES=$((1024 * FAKECUDA_STACK_THREADS))

scenario() { # CONTEXT (keep|trim)
	local ctx=$1 T=$T/$1
	mkdir -p "$T"
	export FAKECUDA_OTHERS_FILE=$T/others
	echo 0 >"$FAKECUDA_OTHERS_FILE"
	py 'import json,sys; p=json.load(open(sys.argv[1])); p["context"]=sys.argv[2]; json.dump(p, open(sys.argv[3],"w"))' "$ROOT/tools/demo/demo-policy.json" "$ctx" "$T/policy.json"
	"$MS" run -p "$T/policy.json" -o "$T/report.json" --trace "$T/t.trace" -- "$DEMO" --scale 64 --steps 3 \
		--hold-at 1 --hold-file "$T/go" --hold-timeout 60 --expect-kv any --expect-workspace any \
		--json >"$T/out" 2>"$T/err" &
	run=$!
	BGPIDS+=($run)
	wait_for "$T/out" 'holding at step' || fail "$ctx: never held"
	pid=$(held_pid "$T/out")
	resident=$(usr2_reading "$T/out" "$pid")
	# What a resume must map again: the mapped bytes of every wrapped allocation.
	wrapped=$("$MS" analyze --dump "$T/t.trace" 2>/dev/null | py 'import json,sys; print(sum(r["mapped"] for r in map(json.loads, sys.stdin) if r["type"]=="alloc" and "wrapped" in r["flags"]))')
	[ "${wrapped:-0}" -gt 0 ] || fail "$ctx: no wrapped allocation in the trace"
	"$MS" ctl --pid "$pid" pause >"$T/p.out" 2>&1 || { cat "$T/p.out"; fail "$ctx: pause"; }
	paused=$(usr2_reading "$T/out" "$pid")
	[ $((resident - paused)) -ge "$wrapped" ] || fail "$ctx: pause released $((resident - paused)) < $wrapped"
	ok "$ctx: paused: $((resident - paused)) bytes released ($wrapped wrapped)"

	# The other process takes everything but half of what the resume needs.
	free_left=$((wrapped / 2))
	others=$((TOTAL - paused - free_left))
	echo "$others" >"$FAKECUDA_OTHERS_FILE"
	"$MS" ctl --pid "$pid" resume >"$T/r1.out" 2>&1
	rc=$?
	cat "$T/r1.out"
	[ $rc -eq 1 ] || fail "$ctx: resume with the memory taken: exit $rc, want 1"
	grep -q 'CUDA_ERROR_OUT_OF_MEMORY' "$T/r1.out" || fail "$ctx: the error does not name CUDA_ERROR_OUT_OF_MEMORY"
	# With "trim" the context's stack must come back too, and does not fit.
	need=$wrapped
	[ "$ctx" = trim ] && need=$((wrapped + STACK_BYTES))
	grep -qE "needs $need bytes, $free_left free" "$T/r1.out" ||
		fail "$ctx: the error does not say it needs $need bytes with $free_left free"
	kill -0 "$pid" || fail "$ctx: the engine died"
	"$MS" ctl --pid "$pid" status >"$T/st.json" || fail "$ctx: status after the failed resume"
	py '
import json,sys
s=json.load(open(sys.argv[1]))
assert sorted(s["paused"]) == ["graph","kv","weights","workspace"], s["paused"]
for k in ("weights","kv","graph","workspace"):
    c=s["categories"][k]; assert c["state"]=="paused" and c["resident_bytes"]==0, (k,c)' "$T/st.json" ||
		{ cat "$T/st.json"; fail "$ctx: not paused after the failed resume"; }
	now=$(usr2_reading "$T/out" "$pid")
	[ "$now" -eq $((paused + others)) ] ||
		fail "$ctx: used memory $now after the failed resume, want $((paused + others)) (paused + the other process): the resume left something mapped"
	ok "$ctx: resume refused with $free_left of $wrapped bytes free; still paused, nothing mapped, engine alive"

	# A second try while the memory is still taken fails the same way.
	"$MS" ctl --pid "$pid" resume >"$T/r2.out" 2>&1 && fail "$ctx: second resume succeeded with the memory still taken"
	grep -qE "needs $need bytes" "$T/r2.out" || { cat "$T/r2.out"; fail "$ctx: second failure not explained"; }

	# The other process exits.
	echo 0 >"$FAKECUDA_OTHERS_FILE"
	"$MS" ctl --pid "$pid" resume >"$T/r3.out" 2>&1 || { cat "$T/r3.out"; fail "$ctx: resume once the memory is free"; }
	after=$(usr2_reading "$T/out" "$pid")
	# A context left trimmed by the failed resume would be $STACK_BYTES short here.
	[ "$after" = "$resident" ] || fail "$ctx: used memory after the resume is $after, before the pause $resident"
	touch "$T/go"
	wait $run
	rc=$?
	[ $rc -eq 0 ] || { cat "$T/out" "$T/err"; fail "$ctx: demo-engine's checks after the resume (exit $rc)"; }
	grep -q '"result":"ok"' "$T/out" || fail "$ctx: demo-engine did not report ok"
	py 'import json,sys; r=json.load(open(sys.argv[1])); assert r["schema_version"]>=1' "$T/report.json" || fail "$ctx: report"
	ok "$ctx: memory given back: resume succeeded, contents intact"
}

scenario keep
scenario trim
