#!/bin/bash
# Issue 16, faults 1 and 5: the ctl process killed in the middle, and two
# ctl clients at once, on one held demo-engine (policy: every category
# backup, so any loss shows in demo-engine's bitwise checks).
#   1. ctl SIGKILLed while its pause waits for the GPU (FAKECUDA_SYNC_HOLD:
#      cuCtxSynchronize blocks while a file exists, a kernel still running):
#      the engine finishes the pause on its own; a later ctl sees it paused.
#   2. ctl SIGKILLed during resumes, at several moments: a later ctl sees a
#      consistent state (resident, or paused and resumable).
#   3. pairs of ctl clients sending pause/pause, resume/resume and
#      pause/resume at the same moment, 10 rounds: every client gets an
#      answer (exit 0), the state afterwards is one of the two, never mixed.
#   4. demo-engine's checks pass after the last resume: nothing was lost.
. "$(dirname "$0")/common.bash"
export FAKECUDA_SYNC_HOLD=$T/busy
py 'import json,sys; p=json.load(open(sys.argv[1])); p["actions"]={k:"backup" for k in ("weights","kv","graph","workspace")}; json.dump(p, open(sys.argv[2],"w"))' \
	"$ROOT/tools/demo/demo-policy.json" "$T/policy.json"
"$MS" run -p "$T/policy.json" -- "$DEMO" --scale 64 --steps 3 --hold-at 1 --hold-file "$T/go" \
	--hold-timeout 120 --json >"$T/out" 2>"$T/err" &
run=$!
BGPIDS+=($run)
wait_for "$T/out" 'holding at step' || fail "never held"
pid=$(held_pid "$T/out")
resident=$(usr2_reading "$T/out" "$pid")

# paused|resident from status; fails on a mixed state.
state() {
	"$MS" ctl --pid "$pid" status >"$T/st.json" 2>"$T/st.err" || { cat "$T/st.err"; fail "status: $*"; }
	py '
import json, sys
s = json.load(open(sys.argv[1]))
st = {s["categories"][k]["state"] for k in ("weights", "kv", "graph", "workspace")}
assert len(st) == 1, "mixed state %r" % s["categories"]
print(st.pop())' "$T/st.json" || fail "inconsistent status: $*"
}

# 1. killed during a pause
if [ -n "$(sed -n '/FAKECUDA_SYNC_HOLD/p' "$ROOT/tests/fakecuda/driver.c")" ]; then
	touch "$T/busy"
	"$MS" ctl --pid "$pid" pause >"$T/k1.out" 2>&1 &
	c=$!
	for ((i = 0; i < 200; i++)); do [ -e "$T/busy.entered" ] && break; sleep 0.05; done
	[ -e "$T/busy.entered" ] || fail "the pause never synchronized"
	kill -KILL $c
	wait $c 2>/dev/null
	[ "$(usr2_reading "$T/out" "$pid")" = "$resident" ] || fail "memory released while the GPU was still busy"
	rm -f "$T/busy"
	for ((i = 0; i < 100; i++)); do [ "$(state pause-1)" = paused ] && break; sleep 0.05; done
	[ "$(state "after the killed pause")" = paused ] || fail "the pause of the killed ctl did not finish"
	kill -0 "$pid" || fail "engine died"
	ok "ctl killed while its pause waited for the GPU: the engine finished the pause"
	"$MS" ctl --pid "$pid" resume >"$T/r.out" 2>&1 || { cat "$T/r.out"; fail "resume after the killed pause"; }
	[ "$(usr2_reading "$T/out" "$pid")" = "$resident" ] || fail "used memory after resume"
else
	echo "fake driver has no FAKECUDA_SYNC_HOLD: the killed-during-pause case is not run"
fi

# 2. killed during resumes, at several moments
for d in 0 0.001 0.005 0.02 0.05; do
	"$MS" ctl --pid "$pid" pause >"$T/p.out" 2>&1 || { cat "$T/p.out"; fail "pause before kill $d"; }
	"$MS" ctl --pid "$pid" resume >"$T/k2.out" 2>&1 &
	c=$!
	sleep $d
	kill -KILL $c 2>/dev/null
	wait $c 2>/dev/null
	s=$(state "after the resume killed at $d s")
	[ "$s" = paused ] && sleep 0.3 && s=$(state "after the resume killed at $d s, later")
	if [ "$s" = paused ]; then
		"$MS" ctl --pid "$pid" resume >"$T/r.out" 2>&1 || { cat "$T/r.out"; fail "resume after the killed one"; }
	fi
	[ "$(state "resumed after kill $d")" = resident ] || fail "not resident after the resume that followed kill $d"
	[ "$(usr2_reading "$T/out" "$pid")" = "$resident" ] || fail "used memory after the killed resume ($d s)"
done
kill -0 "$pid" || fail "engine died"
ok "ctl killed during resumes (0-50 ms in): a later ctl found a consistent state and resumed"

# 3. two clients at once
both() { # CMD_A CMD_B
	"$MS" ctl --pid "$pid" "$1" >"$T/a.out" 2>&1 &
	local a=$!
	"$MS" ctl --pid "$pid" "$2" >"$T/b.out" 2>&1 &
	local b=$!
	local ra=0 rb=0
	wait $a || ra=1
	wait $b || rb=1
	[ $ra$rb = 00 ] && return 0
	cat "$T/a.out" "$T/b.out"
	fail "concurrent clients $1 + $2"
}
for ((i = 0; i < 10; i++)); do
	both pause pause
	[ "$(state "pause+pause $i")" = paused ] || fail "pause+pause did not pause"
	cat "$T/a.out" "$T/b.out" | grep -q 'nothing to do' || fail "pause+pause: neither said nothing to do"
	both resume resume
	[ "$(state "resume+resume $i")" = resident ] || fail "resume+resume did not resume"
	both pause resume
	s=$(state "pause+resume $i")
	[ "$s" = resident ] || "$MS" ctl --pid "$pid" resume >/dev/null 2>&1 || fail "resume after pause+resume"
done
[ "$(usr2_reading "$T/out" "$pid")" = "$resident" ] || fail "used memory after the concurrent clients"
ok "10 rounds of two concurrent clients: every client answered, no mixed state"

touch "$T/go"
wait $run
rc=$?
[ $rc -eq 0 ] || { cat "$T/out" "$T/err"; fail "demo-engine's checks (exit $rc)"; }
grep -q '"result":"ok"' "$T/out" || fail "demo-engine did not report ok"
ok "demo-engine's bitwise checks passed: nothing lost"
