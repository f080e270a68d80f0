#!/bin/bash
# Issue 4 on the fake driver: demo-engine holds under `memsaver run` with a
# policy wrapping weights (backup), kv (discard), graph (backup), workspace
# (zero); `memsaver ctl pause` from outside must drop the fake's used memory
# by exactly the mapped bytes of the wrapped allocations in the trace (plus,
# with "context": "trim", the context's stack bytes, with a context record in
# the trace); `ctl status` shows them released; resume brings everything back
# at the same addresses and demo-engine's own checks pass (weights and graph
# bitwise, workspace zero).  Also: double pause and resume-when-resident are
# no-ops with a warning and exit 0; garbage on the socket leaves the engine
# undisturbed.
. "$(dirname "$0")/common.bash"
export FAKECUDA_STACK_THREADS=65536  # stack bytes trimmed = 1024 * this
STACK_BYTES=$((1024 * FAKECUDA_STACK_THREADS))

# scenario CONTEXT EXTRA_EXPECTED_DROP
scenario() {
	local ctx=$1 extra=$2 d=$T/$1 pid before after sock
	mkdir -p "$d"
	py 'import json,sys; p=json.load(open(sys.argv[1])); p["context"]=sys.argv[2]; json.dump(p, open(sys.argv[3],"w"))' \
		"$ROOT/tools/demo/demo-policy.json" "$ctx" "$d/policy.json"
	start_held_demo "$d" -p "$d/policy.json" --trace "$d/t.trace" -o "$d/report.json" -- \
		--hold-timeout 60 --expect-workspace zero
	local run=$RUN
	pid=$PID
	sock=$(ls "$MEMSAVER_SOCKET_DIR"/run-$run/memsaver-$pid.sock) || fail "$ctx: no socket in the run's session"

	# Garbage on the socket: answered or dropped, the engine keeps going.
	py 'import socket,sys
s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(5)
s.sendall(b"\x00\xff garbage {{{\n{\"cmd\": 42}\n" + b"x" * 100000 + b"\n")
try: s.recv(4096)
except Exception: pass
s.close()' "$sock" || fail "$ctx: could not talk to the socket"
	"$MS" ctl --pid "$pid" status >"$d/st0.json" || fail "$ctx: status after garbage"
	kill -0 "$pid" || fail "$ctx: engine died after garbage on its socket"

	before=$(usr2_reading "$d/out" "$pid")
	"$MS" ctl --pid "$pid" pause >"$d/pause.out" 2>&1 || { cat "$d/pause.out"; fail "$ctx: ctl pause failed"; }
	cat "$d/pause.out"
	after=$(usr2_reading "$d/out" "$pid")
	"$MS" ctl --pid "$pid" status >"$d/st1.json" || fail "$ctx: status while paused"
	"$MS" analyze --dump "$d/t.trace" >"$d/dump1" 2>/dev/null || fail "$ctx: dump of the live trace"
	py '
import json, sys
dump, st0, st1, drop, extra = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
recs = [json.loads(l) for l in open(dump)]
wrapped = sum(a["mapped"] for a in recs if a["type"] == "alloc" and "wrapped" in a["flags"])
assert wrapped > 0
assert drop == wrapped + extra, "used memory dropped by %d; wrapped mapped bytes %d + context %d = %d" % (drop, wrapped, extra, wrapped + extra)
s0, s1 = json.load(open(st0)), json.load(open(st1))
rel = sum(c["released_bytes"] for c in s1["categories"].values())
assert rel == wrapped, "status released %d, want %d" % (rel, wrapped)
assert sorted(s1["paused"]) == sorted(["weights", "kv", "graph", "workspace"]), s1["paused"]
for k in ("weights", "kv", "graph", "workspace"):
    c0, c1 = s0["categories"][k], s1["categories"][k]
    assert c1["state"] == "paused" and c1["resident_bytes"] == 0, (k, c1)
    assert c0["wrapped_bytes"] == c1["released_bytes"] and c0["count"] == c1["count"], (k, c0, c1)
assert s1["last_pause"]["released_bytes"] == wrapped and s1["last_pause"]["ok"]
ctxr = [r for r in recs if r["type"] == "context"]
if extra:
    assert any(r["action"] == "trim" and r["bytes"] == extra for r in ctxr), "no context trim record of %d: %r" % (extra, ctxr)
else:
    assert not ctxr, "context keep, yet %r" % ctxr
print("drop %d = wrapped %d + context %d" % (drop, wrapped, extra))
' "$d/dump1" "$d/st0.json" "$d/st1.json" $((before - after)) "$extra" || fail "$ctx: pause accounting"

	# Double pause: a no-op, exit 0, one warning in the engine's log.
	"$MS" ctl --pid "$pid" pause >"$d/pause2.out" 2>&1 || { cat "$d/pause2.out"; fail "$ctx: second pause exit $?"; }
	[ "$(usr2_reading "$d/out" "$pid")" = "$after" ] || fail "$ctx: second pause changed used memory"
	wait_for "$d/err" 'already paused' 5 || fail "$ctx: no warning for the double pause"
	grep -q 'nothing to do: pause of .*already paused' "$d/pause2.out" || fail "$ctx: ctl did not tell the user the second pause did nothing"

	"$MS" ctl --pid "$pid" resume >"$d/resume.out" 2>&1 || { cat "$d/resume.out"; fail "$ctx: ctl resume failed"; }
	[ "$(usr2_reading "$d/out" "$pid")" = "$before" ] || fail "$ctx: used memory after resume is not what it was before the pause"
	"$MS" ctl --pid "$pid" resume >"$d/resume2.out" 2>&1 || fail "$ctx: resume when resident: exit $?"
	wait_for "$d/err" 'nothing is paused' 5 || fail "$ctx: no warning for resume when resident"
	grep -q 'nothing to do: resume of .*nothing is paused' "$d/resume2.out" || fail "$ctx: ctl did not tell the user the resume did nothing"
	"$MS" ctl --pid "$pid" status >"$d/st2.json" || fail "$ctx: status after resume"
	py '
import json, sys
s0, s2 = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert s2["paused"] == [], s2["paused"]
for k, c in s2["categories"].items():
    assert c["released_bytes"] == 0 and c["resident_bytes"] == s0["categories"][k]["resident_bytes"], (k, c)
    assert c["wrapped_bytes"] == s0["categories"][k]["wrapped_bytes"], (k, c)
' "$d/st0.json" "$d/st2.json" || fail "$ctx: status after resume"

	touch "$d/go"
	wait $run
	local rc=$?
	[ $rc -eq 0 ] || { cat "$d/out" "$d/err"; fail "$ctx: demo-engine's checks failed after resume (exit $rc)"; }
	grep -q '"result":"ok"' "$d/out" || fail "$ctx: demo-engine did not report ok"
	# Same addresses: no allocation was made again, and every free names an
	# address the engine got before the pause.
	"$MS" analyze --dump "$d/t.trace" >"$d/dump2" 2>/dev/null || fail "$ctx: final dump"
	py '
import json, sys
r1 = [json.loads(l) for l in open(sys.argv[1])]
r2 = [json.loads(l) for l in open(sys.argv[2])]
a1 = sorted(a["addr"] for a in r1 if a["type"] == "alloc")
a2 = sorted(a["addr"] for a in r2 if a["type"] == "alloc")
f2 = sorted(a["addr"] for a in r2 if a["type"] == "free")
assert a1 == a2 == f2, "addresses changed across pause/resume"
' "$d/dump1" "$d/dump2" || fail "$ctx: addresses"
	[ "$(grep -c 'already paused' "$d/err")" -eq 1 ] || fail "$ctx: want one double-pause warning"
	ok "$ctx: pause dropped exactly the wrapped bytes (+$extra context), resume restored contents at the same addresses"
}

scenario keep 0
scenario trim "$STACK_BYTES"
