#!/bin/bash
# Issue 18 part 4: what a new user hit on the fake driver, each checked the
# way they hit it.  Refusals before the engine starts (report/trace folder,
# --log), exit statuses (README "Exit status"), MEMSAVER_LOG in any case and
# a warning for a bad one, `policy check` warning on graph zero, a real
# reading for `ctl snapshot`, `ctl --all` naming the session it chose, no
# report from a process that never used CUDA, `diff` naming the files and
# refusing to compare a report without a pause, and the HTML chart's exit bar
# agreeing with the table.
. "$(dirname "$0")/common.bash"

ENGINE=(sh -c 'touch "$0"; exec "$1" --scale 1 --steps 1' "$T/started" "$DEMO")

# refused NAME REGEX ARGS...: `memsaver run ARGS -- ENGINE` exits 2 before the engine starts.
refused() {
	local name=$1 re=$2 rc
	shift 2
	rm -f "$T/started"
	"$MS" run "$@" -- "${ENGINE[@]}" >"$T/run.out" 2>"$T/run.err"; rc=$?
	[ $rc -eq 2 ] || { cat "$T/run.err"; fail "$name: exit $rc, want 2"; }
	[ -e "$T/started" ] && fail "$name: the engine was started"
	grep -qE -e "$re" "$T/run.err" || { cat "$T/run.err"; fail "$name: message does not match /$re/"; }
	ok "$name refused: $(grep -m1 -E -e "$re" "$T/run.err")"
}
refused "report in a missing folder" "/nonexistent/r\.json.*refusing to start" -o /nonexistent/r.json
refused "trace in a missing folder" "/nonexistent/t\.trace.*refusing to start" --trace /nonexistent/t.trace
refused "bad --log" "--log bogus" --log bogus
"$MS" run -o "$T/r-%p.json" --log INFO -- "${ENGINE[@]}" >"$T/run.out" 2>"$T/run.err" ||
	{ cat "$T/run.err"; fail "run with --log INFO and %p in the report name"; }
ok "--log INFO and a %p report name are accepted"

# Exit statuses of the table in README.
"$MS" run -- "$T/nonexistent" >/dev/null 2>&1; rc=$?
[ $rc -eq 127 ] || fail "run of a missing command: exit $rc, want 127"
"$MS" ctl --socket "$T/missing.sock" status >/dev/null 2>"$T/ctl.err"; rc=$?
[ $rc -eq 2 ] || { cat "$T/ctl.err"; fail "ctl --socket missing: exit $rc, want 2 (as --pid)"; }
"$MS" ctl --pid 999999 status >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "ctl --pid 999999: exit $rc, want 2"
"$MS" report "$T/missing.json" >/dev/null 2>"$T/rep.err"; rc=$?
[ $rc -eq 2 ] || fail "report of a missing file: exit $rc, want 2"
grep -q -- '-1' "$T/rep.err" && fail "report of a missing file: $(cat "$T/rep.err")"
grep -q "missing.json: No such file" "$T/rep.err" || fail "report of a missing file: $(cat "$T/rep.err")"
ok "exit statuses: 127 no command, 2 no target (--socket and --pid), 2 unreadable report"

# MEMSAVER_LOG: any case; a bad value warns once.
MEMSAVER_LOG=INFO "$MS" run -- "${ENGINE[@]}" >/dev/null 2>"$T/log.err" || fail "run with MEMSAVER_LOG=INFO"
grep -q "memsaver\[[0-9]*\]: info " "$T/log.err" || { cat "$T/log.err"; fail "MEMSAVER_LOG=INFO shows no info line"; }
MEMSAVER_LOG=bogus "$MS" run -- "${ENGINE[@]}" >/dev/null 2>"$T/log.err" || fail "run with MEMSAVER_LOG=bogus"
n=$(grep -c "MEMSAVER_LOG=bogus is not one of" "$T/log.err")
[ "$n" -eq 1 ] || { cat "$T/log.err"; fail "MEMSAVER_LOG=bogus: $n warnings, want 1"; }
ok "MEMSAVER_LOG=INFO works; MEMSAVER_LOG=bogus warns once"

# policy check: graph zero is valid JSON and a valid action, but breaks replays.
printf '{"version": 1,\n "actions": {"kv": "discard",\n   "graph": "zero"}}\n' >"$T/gz.json"
"$MS" policy check -q "$T/gz.json" >/dev/null 2>"$T/gz.err" || fail "policy check of graph zero failed"
grep -qE "gz\.json:3:[0-9]+: warning: graph \"zero\"" "$T/gz.err" || { cat "$T/gz.err"; fail "no warning naming gz.json:3"; }
printf '{"version": 1, "actions": {"graph": "backup"}}\n' >"$T/gb.json"
"$MS" policy check -q "$T/gb.json" >/dev/null 2>"$T/pol.err" || fail "policy check of graph backup"
[ -s "$T/pol.err" ] && fail "graph backup warned: $(cat "$T/pol.err")"
ok "policy check warns on graph zero: $(head -c 100 "$T/gz.err")"

# A child that calls cuInit and makes no context (a compile worker importing
# torch) writes no report, though memsaver was active in it (its trace is
# there); the process that used the GPU does.
mkdir -p "$T/rep" "$T/tr"
"$MS" run -o "$T/rep/%p.json" --trace "$T/tr/%p.trace" -- sh -c \
	'python3 -c "import ctypes; assert ctypes.CDLL(\"libcuda.so.1\").cuInit(0) == 0"; exec "$0" --scale 1 --steps 1' \
	"$DEMO" >/dev/null 2>"$T/kids.err" || { cat "$T/kids.err"; fail "run with a CUDA-less child"; }
n=$(ls "$T/tr" | wc -l)
[ "$n" -eq 2 ] || { ls -l "$T/tr"; fail "$n traces, want 2 (memsaver active in both processes)"; }
n=$(ls "$T/rep" | wc -l)
[ "$n" -eq 1 ] || { ls -l "$T/rep"; fail "$n reports, want 1 (the CUDA process's only)"; }
ok "of two processes under memsaver, only the one with a context wrote a report"

# Two separate runs, each holding: ctl snapshot reads memory; ctl --all names its choice.
start() { # start NAME: a holding demo-engine under its own `memsaver run`
	"$MS" run -o "$T/$1.json" -- "$DEMO" --scale 8 --steps 3 --hold-at 1 --hold-file "$T/$1.go" \
		--hold-timeout 60 >"$T/$1.out" 2>"$T/$1.err" &
	BGPIDS+=($!)
	eval "run_$1=$!"
	wait_for "$T/$1.out" 'holding at step' || fail "$1: demo-engine never held"
}
start one
sleep 0.05 # the second session directory is the newer one
start two
pid_one=$(held_pid "$T/one.out") pid_two=$(held_pid "$T/two.out")
"$MS" ctl --pid "$pid_one" snapshot mylabel >/dev/null || fail "ctl snapshot"
"$MS" ctl --pid "$pid_one" report -o "$T/snap.json" || fail "ctl report"
py 'import json,sys
r=json.load(open(sys.argv[1]))
ph=[p for p in r["phases"] if p["label"]=="mylabel"]
assert ph, "no mylabel phase"
assert isinstance(ph[0]["device_used_bytes"], int) and ph[0]["device_used_bytes"] > 0, ph[0]' "$T/snap.json" ||
	fail "ctl snapshot recorded no reading"
ok "ctl snapshot records a device reading"
"$MS" ctl --all status >/dev/null 2>"$T/all.err" || { cat "$T/all.err"; fail "ctl --all status"; }
grep -q "session run-$run_two (the newest)" "$T/all.err" || { cat "$T/all.err"; fail "ctl --all does not name its session"; }
grep -q "pid $pid_one  session run-$run_one" "$T/all.err" || { cat "$T/all.err"; fail "ctl --all does not name the other session"; }
ok "ctl --all names the session it chose and the one it left"

# diff: file names, and a report without a pause is not compared.
"$MS" ctl --pid "$pid_two" report -o "$T/nopause.json" || fail "ctl report (two)"
"$MS" ctl --pid "$pid_one" pause >/dev/null || fail "pause one"
"$MS" ctl --pid "$pid_one" resume >/dev/null || fail "resume one"
"$MS" ctl --pid "$pid_one" report -o "$T/paused.json" || fail "ctl report (one)"
"$MS" diff "$T/paused.json" "$T/nopause.json" >"$T/diff.out" || fail "diff"
grep -q "^A: $T/paused.json" "$T/diff.out" || { cat "$T/diff.out"; fail "diff does not name file A"; }
grep -q "^B: $T/nopause.json" "$T/diff.out" || { cat "$T/diff.out"; fail "diff does not name file B"; }
grep -q "B has no pause" "$T/diff.out" || { cat "$T/diff.out"; fail "diff does not say B has no pause"; }
grep -q "^footprint" "$T/diff.out" && { cat "$T/diff.out"; fail "diff compares a footprint that was never measured"; }
"$MS" diff "$T/paused.json" "$T/paused.json" | grep -q "^footprint .* 0 B" || fail "diff of two paused reports"
ok "diff names the files and says B has no pause"

# HTML: at exit the footprint is 0 B, so the chart draws no exit bar.
touch "$T/one.go" "$T/two.go"
wait "$run_one" || fail "run one exited $?"
wait "$run_two" || fail "run two exited $?"
"$MS" report --format html -o "$T/r.html" "$T/one.json" || fail "html report"
py 'import json,re,sys
r=json.load(open(sys.argv[1]))
ex=[p for p in r["phases"] if p["label"]=="exit"][0]
assert ex["footprint_bytes"]==0, ex
bars=re.findall(r"<rect class=\"bar\"[^>]*><title>exit: ([^<]*)</title>", open(sys.argv[2]).read())
assert not bars, "exit bars: %s" % bars' "$T/one.json" "$T/r.html" || fail "the HTML chart draws an exit bar"
ok "the HTML chart's exit phase matches its 0 B footprint"
