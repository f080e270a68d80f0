#!/bin/bash
# Issue 4 fault injection (FAKECUDA_FAIL), all in one held demo-engine:
#   1. cuMemcpyDtoHAsync fails during the pause backup: pause fails (exit 1),
#      nothing is released; a retried pause works.
#   2. cuMemCreate runs out of memory during resume: resume fails (exit 1)
#      naming the bytes needed and free; nothing stays mapped, still paused.
#   3. cuMemMap fails during resume: same.
#   4. cuMemcpyHtoDAsync fails restoring a backup: same.
#   5. a plain retry resumes, and demo-engine's checks then pass.
# After each failure, used memory and `ctl status` show a consistent state.
. "$(dirname "$0")/common.bash"
POL=$ROOT/tools/demo/demo-policy.json
ARGS=(--scale 32 --tensors 8 --steps 3)

# How many wrapped allocations (one cuMemCreate and one cuMemMap each) the
# demo makes before it holds: from a clean run's trace.
"$MS" run -p "$POL" --trace "$T/pre.trace" -- "$DEMO" "${ARGS[@]}" >"$T/pre.out" 2>&1 ||
	{ cat "$T/pre.out"; fail "clean run"; }
N=$("$MS" analyze --dump "$T/pre.trace" | grep '"type":"alloc"' | grep -c '"wrapped"')
[ "$N" -gt 4 ] || fail "only $N wrapped allocations"
echo "wrapped allocations: $N"

# Pause 1: the first backup copy fails (digests off: their read-backs are
# DtoH copies too and would shift the count; tests/preload covers them).
# Resume 1: creates N+1 (ok), N+2 (OOM).  Resume 2: creates N+3.., maps
# N+2, N+3 ok, N+4 fails.  Resume 3: the first restore copy fails.
export MEMSAVER_SKIP_UNCHANGED=0
export FAKECUDA_FAIL="cuMemcpyDtoHAsync:1:CUDA_ERROR_UNKNOWN,cuMemCreate:$((N + 2)):CUDA_ERROR_OUT_OF_MEMORY,cuMemMap:$((N + 4)):CUDA_ERROR_INVALID_VALUE,cuMemcpyHtoDAsync:1:CUDA_ERROR_LAUNCH_FAILED"
"$MS" run -p "$POL" --trace "$T/t.trace" -- "$DEMO" "${ARGS[@]}" --hold-at 1 --hold-file "$T/go" \
	--hold-timeout 60 --expect-kv any --expect-workspace zero --json >"$T/out" 2>"$T/err" &
run=$!
BGPIDS+=($run)
wait_for "$T/out" 'holding at step' || fail "never held"
pid=$(held_pid "$T/out")
unset FAKECUDA_FAIL

ctl() { "$MS" ctl --pid "$pid" "$@" >"$T/ctl.out" 2>&1; }
state() { # EXPECT_PAUSED(0|1) USED
	"$MS" ctl --pid "$pid" status >"$T/st.json" || fail "status"
	py '
import json, sys
s = json.load(open(sys.argv[1])); paused = sys.argv[2] == "1"
for k in ("weights", "kv", "graph", "workspace"):
    c = s["categories"][k]
    if paused:
        assert c["state"] == "paused" and c["resident_bytes"] == 0 and c["released_bytes"] == c["wrapped_bytes"], (k, c)
    else:
        assert c["state"] == "resident" and c["released_bytes"] == 0 and c["resident_bytes"] == c["wrapped_bytes"], (k, c)
assert (len(s["paused"]) == 4) == paused, s["paused"]
' "$T/st.json" "$1" || { cat "$T/st.json"; fail "inconsistent status ($2)"; }
	local u
	u=$(usr2_reading "$T/out" "$pid")
	[ "$u" = "$2" ] || fail "used memory $u, want $3 ($2)"
}
resident=$(usr2_reading "$T/out" "$pid")
wrapped=$("$MS" ctl --pid "$pid" status | py 'import json,sys; print(sum(c["wrapped_bytes"] for c in json.load(sys.stdin)["categories"].values()))')

# 1. failed backup copy
ctl pause; rc=$?; cat "$T/ctl.out"
[ $rc -eq 1 ] || fail "pause with a failed DtoH: exit $rc, want 1"
grep -q 'backup copy failed' "$T/ctl.out" || fail "pause error does not name the copy"
grep -q 'nothing was released' "$T/ctl.out" || fail "pause error does not say nothing was released"
state 0 "$resident" "after the failed pause"
ok "failed backup copy: pause fails, nothing released"
ctl pause || { cat "$T/ctl.out"; fail "retried pause"; }
paused=$(usr2_reading "$T/out" "$pid")
state 1 "$paused" "paused"
[ $((resident - paused)) -ge "$wrapped" ] || fail "retried pause released $((resident - paused)) < $wrapped"
ok "retried pause released $((resident - paused)) bytes"

# 2. out of memory in cuMemCreate
ctl resume; rc=$?; cat "$T/ctl.out"
[ $rc -eq 1 ] || fail "resume with cuMemCreate OOM: exit $rc, want 1"
grep -q 'CUDA_ERROR_OUT_OF_MEMORY' "$T/ctl.out" || fail "OOM not named"
grep -qE "needs $wrapped bytes, [0-9]+ free" "$T/ctl.out" || fail "OOM error does not name the $wrapped bytes needed and the free bytes"
state 1 "$paused" "after the OOM resume"
ok "OOM in cuMemCreate: still paused, nothing mapped"

# 3. failed cuMemMap
ctl resume; rc=$?; cat "$T/ctl.out"
[ $rc -eq 1 ] || fail "resume with a failed cuMemMap: exit $rc, want 1"
grep -q 'CUDA_ERROR_INVALID_VALUE' "$T/ctl.out" || fail "map error not named"
state 1 "$paused" "after the failed map"
ok "failed cuMemMap: still paused, nothing mapped"

# 4. failed restore copy
ctl resume; rc=$?; cat "$T/ctl.out"
[ $rc -eq 1 ] || fail "resume with a failed HtoD: exit $rc, want 1"
grep -q 'restoring contents' "$T/ctl.out" || fail "restore error not named"
state 1 "$paused" "after the failed restore"
ok "failed restore copy: still paused, nothing mapped"

# 5. retry
ctl resume || { cat "$T/ctl.out"; fail "retried resume"; }
state 0 "$resident" "after the retried resume"
touch "$T/go"
wait $run
rc=$?
[ $rc -eq 0 ] || { cat "$T/out" "$T/err"; fail "demo-engine's checks after the retried resume (exit $rc)"; }
"$MS" analyze --dump "$T/t.trace" >"$T/dump" || fail "dump"
py '
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
p = [r["failed"] for r in recs if r["type"] == "pause"]
r = [r["failed"] for r in recs if r["type"] == "resume"]
assert p == [True, False], p
assert r == [True, True, True, False], r
' "$T/dump" || fail "pause/resume records in the trace"
ok "retry resumed; demo-engine checks passed; trace records every failure"
