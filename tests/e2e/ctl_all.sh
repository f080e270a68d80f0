#!/bin/bash
# `memsaver ctl --all` reaches every process started under one `memsaver run`:
# two demo-engines started by a shell inside the run share its session; one
# `ctl --all pause` releases both, `ctl --all status` lists both by pid, one
# `ctl --all resume` brings both back and both pass their checks.
. "$(dirname "$0")/common.bash"

"$MS" run -p "$ROOT/tools/demo/demo-policy.json" -- sh -c '
	"$0" --scale 8 --steps 2 --hold-at 1 --hold-file "$1/go" --hold-timeout 60 --expect-kv any --json >"$1/a.out" 2>&1 &
	"$0" --scale 8 --steps 2 --hold-at 1 --hold-file "$1/go" --hold-timeout 60 --expect-kv any --json >"$1/b.out" 2>&1 &
	wait $!; rb=$?; wait; ra=$?
	exit $((ra | rb))' "$DEMO" "$T" >"$T/run.out" 2>&1 &
run=$!
BGPIDS+=($run)
wait_for "$T/a.out" 'holding at step' || fail "a never held"
wait_for "$T/b.out" 'holding at step' || fail "b never held"
pa=$(held_pid "$T/a.out") pb=$(held_pid "$T/b.out")
ua=$(usr2_reading "$T/a.out" "$pa") ub=$(usr2_reading "$T/b.out" "$pb")

"$MS" ctl --all --session "run-$run" pause >"$T/p.out" 2>&1 || { cat "$T/p.out"; fail "ctl --all pause"; }
cat "$T/p.out"
grep -q "pid $pa: paused" "$T/p.out" && grep -q "pid $pb: paused" "$T/p.out" || fail "ctl --all pause did not reach both"
# Without --session: the newest session (the only one here).
"$MS" ctl --all status >"$T/st.json" || fail "ctl --all status"
py 'import json,sys
s = json.load(open(sys.argv[1]))
assert sorted(s) == sorted(sys.argv[2:]), sorted(s)
for pid, st in s.items():
    assert st["paused"], (pid, st["paused"])
' "$T/st.json" "$pa" "$pb" || fail "ctl --all status does not show both paused"
[ "$(usr2_reading "$T/a.out" "$pa")" -lt "$ua" ] || fail "a: used memory did not drop"
[ "$(usr2_reading "$T/b.out" "$pb")" -lt "$ub" ] || fail "b: used memory did not drop"
"$MS" ctl --all resume >"$T/r.out" 2>&1 || { cat "$T/r.out"; fail "ctl --all resume"; }
[ "$(grep -c 'resumed' "$T/r.out")" -eq 2 ] || fail "ctl --all resume did not reach both"
touch "$T/go"
wait $run || { cat "$T/run.out" "$T/a.out" "$T/b.out"; fail "an engine failed its checks"; }
ok "one ctl --all paused and resumed both engines of the run"
