#!/bin/bash
# Issue 16 item 4: a pause of a busy engine must not kill it.  demo-engine
# decodes without a hold (graph replays, copies and memsets back to back)
# under `memsaver run` with the demo policy; `memsaver ctl pause` lands in
# the middle.  The fake driver faults a launch, graph launch or copy that
# touches unmapped VMM memory with CUDA_ERROR_ILLEGAL_ADDRESS, as a GPU
# does, so before the launch gate (saver/gate.h) the engine died with exit 4.
# Now its next call waits for the resume (one log line), the engine stays
# alive and paused, ctl resume lets it go on and its bitwise checks of
# weights and graph state pass.  Then the deadline: MEMSAVER_GATE_TIMEOUT=1
# makes a waiting call fail with CUDA_ERROR_TIMEOUT (the engine exits 4 on
# that error, having run nothing into released memory) and says so.
. "$(dirname "$0")/common.bash"

# start NAME: demo-engine decoding until $T/NAME.stop exists.
start() {
	"$MS" run -p "$ROOT/tools/demo/demo-policy.json" -- "$DEMO" --scale 8 --steps 1000000 \
		--verify-every 1000000 --until-file "$T/$1.stop" --expect-kv any --json >"$T/$1.out" 2>"$T/$1.err" &
	RUN=$!
	BGPIDS+=($RUN)
	wait_for "$T/$1.out" '"phase":"capture_graph"' || fail "$1: demo-engine never reached decode"
	PID=$(pgrep -P "$RUN" -x demo-engine) || fail "$1: no demo-engine under the run"
	sleep 0.2 # decoding for a while: thousands of replays on the fake
}

start busy
"$MS" ctl --pid "$PID" pause >"$T/pause.out" 2>&1 || { cat "$T/pause.out" "$T/busy.err"; fail "ctl pause failed"; }
wait_for "$T/busy.err" "waits for resume" 5 || { cat "$T/busy.err"; fail "no log line: the engine's next call did not wait"; }
sleep 0.3
kill -0 "$PID" 2>/dev/null || { cat "$T/busy.out" "$T/busy.err"; fail "the engine died while paused"; }
"$MS" ctl --pid "$PID" status >"$T/st.json" || fail "status while paused"
py 'import json,sys; s=json.load(open(sys.argv[1])); assert s["paused"], s["paused"]' "$T/st.json" ||
	fail "status does not show the engine paused"
[ "$(grep -c 'waits for resume' "$T/busy.err")" -eq 1 ] || fail "want one log line per pause"
"$MS" ctl --pid "$PID" resume >"$T/resume.out" 2>&1 || { cat "$T/resume.out"; fail "ctl resume failed"; }
sleep 0.2
# A second pause and resume of the same busy engine: one more log line.
"$MS" ctl --pid "$PID" pause >/dev/null 2>&1 || fail "second pause failed"
wait_for "$T/busy.err" "waits for resume.*" 5 || fail "second pause: no wait"
sleep 0.1
"$MS" ctl --pid "$PID" resume >/dev/null 2>&1 || fail "second resume failed"
touch "$T/busy.stop"
wait "$RUN"
rc=$?
[ $rc -eq 0 ] || { tail -n 20 "$T/busy.out" "$T/busy.err"; fail "demo-engine exit $rc after a pause while decoding"; }
grep -q '"result":"ok"' "$T/busy.out" || fail "demo-engine did not report ok"
[ "$(grep -c 'waits for resume' "$T/busy.err")" -eq 2 ] || fail "want one log line per pause (two pauses)"
ok "busy engine: paused twice while decoding, waited, resumed, all checks passed"

export MEMSAVER_GATE_TIMEOUT=1
start late
"$MS" ctl --pid "$PID" pause >"$T/pause2.out" 2>&1 || { cat "$T/pause2.out"; fail "ctl pause (deadline) failed"; }
wait "$RUN"
rc=$?
[ $rc -eq 4 ] || { tail -n 20 "$T/late.out" "$T/late.err"; fail "deadline: demo-engine exit $rc, want 4 (a CUDA call failed)"; }
grep -q 'CUDA_ERROR_TIMEOUT' "$T/late.err" || { cat "$T/late.err"; fail "deadline: the call did not fail with CUDA_ERROR_TIMEOUT"; }
grep -q 'MEMSAVER_GATE_TIMEOUT' "$T/late.err" || { cat "$T/late.err"; fail "deadline: memsaver did not say why"; }
! grep -q 'ILLEGAL_ADDRESS' "$T/late.err" || fail "deadline: something ran into released memory"
ok "deadline: the waiting call failed with CUDA_ERROR_TIMEOUT after MEMSAVER_GATE_TIMEOUT, nothing faulted"
