#!/bin/bash
# Backups prepared ahead of the first pause (MEMSAVER_PREPIN, saver/copy.c):
# demo-engine holds under `memsaver run`; with the default (on), a thread
# prepares every backup once the engine has stopped allocating for 1 s and
# says so; the first pause then copies without making host memory, and the
# resume passes demo-engine's own checks (weights and graph bitwise).  With
# MEMSAVER_PREPIN=0 nothing is prepared ahead and the first pause makes its
# backups itself (the log says how), with the same checks passing.  And a
# decoding engine (launches all the time) gets its backups' host memory
# touched but not registered while it decodes (registering holds driver
# locks its launches would wait for); a pause while it decodes registers
# that memory (the log says all of it was touched ahead), and the engine's
# checks pass.  Without room on
# the host (MEMSAVER_HOST_RESERVE above what is available) nothing is
# prepared, and a pause refuses, naming the bytes, releasing nothing; the
# engine goes on and its checks pass.
. "$(dirname "$0")/common.bash"

# scenario NAME PREPIN
scenario() {
	local name=$1 prepin=$2 d=$T/$1
	MEMSAVER_PREPIN=$prepin start_held_demo "$d" --log info -p "$ROOT/tools/demo/demo-policy.json" -- \
		--hold-timeout 60 --expect-workspace zero
	local run=$RUN pid=$PID
	if [ "$prepin" = 1 ]; then
		wait_for "$d/err" 'backups prepared in the background: [0-9]+ regions' 30 ||
			fail "$name: the background preparation never finished"
	else
		sleep 1.5
		! grep -q 'prepared in the background' "$d/err" || fail "$name: prepared in the background with MEMSAVER_PREPIN=0"
	fi
	"$MS" ctl --pid "$pid" pause >"$d/pause.out" 2>&1 || { cat "$d/pause.out"; fail "$name: ctl pause failed"; }
	wait_for "$d/err" 'paused .*backed up' 10 || fail "$name: no pause line"
	if [ "$prepin" = 1 ]; then
		! grep -q 'backup host memory made for this pause' "$d/err" ||
			fail "$name: the first pause made host memory although it was prepared"
	else
		grep -qE 'backup host memory made for this pause: [0-9.]+ MiB' "$d/err" ||
			fail "$name: the first pause did not say it made its backups"
	fi
	"$MS" ctl --pid "$pid" resume >"$d/resume.out" 2>&1 || { cat "$d/resume.out"; fail "$name: ctl resume failed"; }
	touch "$d/go"
	wait $run || { tail -n 20 "$d/err"; fail "$name: demo-engine failed its checks after the resume"; }
	ok "$name"
}

scenario prepared 1
scenario on_the_spot 0

# busy: decoding for 3 s (--until-file ends the loop); the host memory is
# touched, nothing is registered meanwhile; then a pause and a resume while
# it decodes.
d=$T/busy
mkdir -p "$d"
"$MS" run --log info -p "$ROOT/tools/demo/demo-policy.json" -- "$DEMO" --scale 8 --steps 1000000 \
	--verify-every 1000000 --until-file "$d/stop" --expect-kv any --json >"$d/out" 2>"$d/err" &
run=$!
BGPIDS+=($run)
wait_for "$d/out" '"phase":"capture_graph"' || fail "busy: demo-engine never reached decode"
sleep 3
! grep -q 'prepared in the background' "$d/err" || fail "busy: registered in the background while the engine decoded"
pid=$(pgrep -P "$run" -x demo-engine) || fail "busy: no demo-engine under the run"
"$MS" ctl --pid "$pid" status >"$d/st.json" || fail "busy: status"
py 'import json,sys; s=json.load(open(sys.argv[1])); assert s["backup_host_bytes"] > 0, s["backup_host_bytes"]' "$d/st.json" ||
	fail "busy: no host memory touched ahead while decoding"
"$MS" ctl --pid "$pid" pause >"$d/pause.out" 2>&1 || { cat "$d/pause.out"; fail "busy: ctl pause failed"; }
wait_for "$d/err" 'backup host memory made for this pause' 10 || fail "busy: no log line of the pause's backups"
py 'import re,sys
m = re.search(r"made for this pause: ([0-9.]+) MiB \(([0-9.]+) MiB of it touched ahead\)", open(sys.argv[1]).read())
assert m and float(m.group(1)) > 0 and m.group(1) == m.group(2), m and m.groups()' "$d/err" ||
	{ grep 'made for this pause' "$d/err"; fail "busy: the pause did not register the memory touched ahead"; }
"$MS" ctl --pid "$pid" resume >"$d/resume.out" 2>&1 || { cat "$d/resume.out"; fail "busy: ctl resume failed"; }
touch "$d/stop"
wait $run || { tail -n 20 "$d/err"; fail "busy: demo-engine failed its checks"; }
ok "busy: host memory touched while decoding, nothing registered; a pause registered it all; checks passed"


# no room: the reserve is larger than any host's memory.
d=$T/noroom
MEMSAVER_HOST_RESERVE=1024TiB start_held_demo "$d" --log info -p "$ROOT/tools/demo/demo-policy.json" -- \
	--hold-timeout 60 --expect-workspace any
run=$RUN pid=$PID
wait_for "$d/err" 'backups not prepared in the background: [0-9]+ bytes needed' 30 ||
	fail "no room: the background preparation did not say why it stopped"
if "$MS" ctl --pid "$pid" pause >"$d/pause.out" 2>&1; then
	cat "$d/pause.out"; fail "no room: the pause succeeded"
fi
grep -qE 'the backups need [0-9]+ bytes of host memory and [0-9]+ are available above MEMSAVER_HOST_RESERVE' "$d/pause.out" ||
	{ cat "$d/pause.out"; fail "no room: the refusal does not name the bytes"; }
"$MS" ctl --pid "$pid" status >"$d/st.json" || fail "no room: status"
py 'import json,sys; s=json.load(open(sys.argv[1])); assert not s["paused"], s["paused"]; assert all(c["released_bytes"] == 0 for c in s["categories"].values()), s["categories"]' "$d/st.json" ||
	fail "no room: something was released"
touch "$d/go"
wait $run || { tail -n 20 "$d/err"; fail "no room: demo-engine failed its checks"; }
ok "no room: nothing prepared, the pause refused naming the bytes, nothing released, checks passed"
