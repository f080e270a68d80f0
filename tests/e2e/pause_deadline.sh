#!/bin/bash
# A pause can never hang the caller or the engine (issue 11): two engines of
# one run, the GPU of one busy for good (FAKECUDA_SYNC_HOLD: its
# cuCtxSynchronize waits while a file exists, a rank blocked in a collective
# whose peer is paused).  MEMSAVER_PAUSE_TIMEOUT=2:
#   1. `ctl --all pause`: the busy engine gives up after 2 s, releases nothing
#      and says why; the other was paused and is resumed again (all or
#      nothing); exit 1 naming the pid; both report nothing paused;
#   2. the GPU work ends; `ctl --all pause` and `resume` succeed; both engines
#      pass their bitwise checks.
. "$(dirname "$0")/common.bash"
export MEMSAVER_PAUSE_TIMEOUT=2
touch "$T/busy"
"$MS" run -p "$ROOT/tools/demo/demo-policy.json" -- sh -c '
	FAKECUDA_SYNC_HOLD="$1/busy" "$0" --scale 8 --steps 2 --hold-at 1 --hold-file "$1/go" --hold-timeout 60 --expect-kv any --json >"$1/a.out" 2>&1 &
	"$0" --scale 8 --steps 2 --hold-at 1 --hold-file "$1/go" --hold-timeout 60 --expect-kv any --json >"$1/b.out" 2>&1 &
	wait $!; rb=$?; wait; ra=$?
	exit $((ra | rb))' "$DEMO" "$T" >"$T/run.out" 2>&1 &
run=$!
BGPIDS+=($run)
wait_for "$T/a.out" 'holding at step' || fail "a never held"
wait_for "$T/b.out" 'holding at step' || fail "b never held"
pa=$(held_pid "$T/a.out") pb=$(held_pid "$T/b.out")
ua=$(usr2_reading "$T/a.out" "$pa") ub=$(usr2_reading "$T/b.out" "$pb")

t0=$(date +%s%N)
"$MS" ctl --all --session "run-$run" pause >"$T/p.out" 2>&1 && { cat "$T/p.out"; fail "pause succeeded with a busy GPU"; }
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
cat "$T/p.out"
grep -q "pid $pa: error: pause: the GPU work in flight did not finish within 2 s (MEMSAVER_PAUSE_TIMEOUT); nothing was released" "$T/p.out" ||
	fail "the busy engine's failure does not say why"
grep -q "pid $pb: resumed again: the pause failed on pid $pa" "$T/p.out" || fail "the other engine was not brought back"
[ "$ms" -lt 10000 ] || fail "ctl --all pause took $ms ms with a 2 s deadline"
"$MS" ctl --all --session "run-$run" status >"$T/st.json" || fail "status"
py 'import json,sys
s = json.load(open(sys.argv[1]))
for pid, st in s.items():
    assert not st["paused"], (pid, st["paused"])
    assert all(c["released_bytes"] == 0 for c in st["categories"].values()), pid' "$T/st.json" ||
	fail "something stayed paused after the failed --all pause"
[ "$(usr2_reading "$T/a.out" "$pa")" -eq "$ua" ] || fail "a: memory changed by the failed pause"
[ "$(usr2_reading "$T/b.out" "$pb")" -eq "$ub" ] || fail "b: memory not back after the rollback"
ok "busy engine: pause gave up after the deadline ($ms ms for the whole --all call), the other rolled back"

rm -f "$T/busy"
"$MS" ctl --all --session "run-$run" pause >"$T/p2.out" 2>&1 || { cat "$T/p2.out"; fail "pause once the GPU is idle"; }
[ "$(grep -c ': paused' "$T/p2.out")" -eq 2 ] || fail "second pause did not reach both"
"$MS" ctl --all --session "run-$run" resume >"$T/r2.out" 2>&1 || { cat "$T/r2.out"; fail "resume"; }
touch "$T/go"
wait $run || { cat "$T/run.out" "$T/a.out" "$T/b.out"; fail "an engine failed its checks"; }
ok "after the GPU work ended: paused and resumed both; checks passed"
