#!/bin/bash
# Issue 16 item 3: the engine receiving SIGTERM while paused exits at once
# and nothing is lost.  `memsaver run -o` writes the report after every
# pause, so the report on disk when the signal comes describes the paused
# engine; the trace is crash-safe.  A process killed by a signal runs no
# atexit, and the library installs no signal handler (docs/saver.md), so
# nothing is written after the signal: nothing needs to be.
#   1. held and paused: SIGTERM to `memsaver run` (forwarded) -> exit 143
#      promptly, report.json parses and counts the pause, the trace holds
#      the pause record;
#   2. busy and paused (a decode call waiting at the launch gate): SIGTERM
#      still ends it promptly, not after MEMSAVER_GATE_TIMEOUT.
. "$(dirname "$0")/common.bash"

# term_paused NAME DEMO_ARGS...: start, pause from outside, SIGTERM.
term_paused() {
	local d=$T/$1
	shift
	mkdir -p "$d"
	"$MS" run -p "$ROOT/tools/demo/demo-policy.json" -o "$d/report.json" --trace "$d/t.trace" -- \
		"$DEMO" --scale 8 --expect-kv any --json "$@" >"$d/out" 2>"$d/err" &
	local run=$!
	BGPIDS+=($run)
	wait_for "$d/out" '"phase":"capture_graph"' || fail "$d: never reached decode"
	local pid
	pid=$(pgrep -P "$run" -x demo-engine) || fail "$d: no demo-engine under the run"
	"$MS" ctl --pid "$pid" pause >"$d/pause.out" 2>&1 || { cat "$d/pause.out"; fail "$d: pause"; }
	[ -s "$d/report.json" ] || fail "$d: no report after the pause"
	sleep 0.3
	local t0=$(date +%s%N)
	kill -TERM "$run"
	wait "$run"
	local rc=$? ms=$(( ($(date +%s%N) - t0) / 1000000 ))
	[ $rc -eq 143 ] || { cat "$d/err"; fail "$d: exit $rc after SIGTERM, want 143 (killed by SIGTERM)"; }
	[ "$ms" -lt 5000 ] || fail "$d: took $ms ms to end after SIGTERM"
	kill -0 "$pid" 2>/dev/null && fail "$d: the engine outlived the signal"
	py 'import json,sys
r = json.load(open(sys.argv[1]))
assert r["schema_version"] >= 1 and r["pauses"] == 1, r.get("pauses")' "$d/report.json" || fail "$d: report"
	"$MS" analyze --dump "$d/t.trace" >"$d/dump" 2>/dev/null || fail "$d: the trace is unreadable"
	grep -q '"type":"pause"' "$d/dump" || fail "$d: no pause record in the trace"
	echo "$ms"
}

ms=$(term_paused held --steps 4 --hold-at 2 --hold-file "$T/never") || { echo "$ms"; exit 1; }
ok "held and paused: SIGTERM ended it in $ms ms; the report and trace show the pause"
ms=$(term_paused busy --steps 1000000 --verify-every 1000000 --until-file "$T/never") || { echo "$ms"; exit 1; }
grep -q 'waits for resume' "$T/busy/err" || fail "busy: no call waited at the gate"
ok "busy and paused (a call waiting at the gate): SIGTERM ended it in $ms ms"
