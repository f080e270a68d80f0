#!/bin/bash
# Issue 12 on the fake driver: deep pause = memsaver pause + the driver's
# process checkpoint, called from the ctl process on the engine's pid.
# The fake shares one "device" between the processes of FAKECUDA_DEVICE_DIR,
# and its NVML reports device-wide used memory, as a real GPU does.
#   1. demo-engine under `memsaver run --deep-ready`: `ctl pause --deep`
#      brings device used back to the baseline before the engine started
#      (context included); status says checkpointed; other commands are
#      refused; a second deep pause is a no-op; resume while another process
#      holds the memory is refused (bytes named, engine stays checkpointed,
#      driver state not FAILED); then resume restores, device used is what
#      it was, and demo-engine's pattern checks pass.
#   2. CUPTI subscribed (plain `memsaver run`): refused with the reason and
#      the flag, the engine is paused normally, resume works.
#   3. The driver refuses the lock (another profiler: 801) or has no API:
#      one line with the driver's reason, the engine stays normally paused.
#   4. A ctl killed between lock and the end of the checkpoint: status shows
#      the driver's state, the next resume brings the engine back.
#   5. A policy with "residue": "checkpoint": a plain `ctl pause` is deep;
#      the report has the deep pause (residue by source, nothing left
#      after the checkpoint); MEMSAVER_LOG=debug shows resume's steps.
#      Under --cupti the same policy pauses normally, saying why.
. "$(dirname "$0")/common.bash"
export FAKECUDA_DEVICE_DIR=$T/dev FAKECUDA_TOTAL_BYTES=8GiB
mkdir -p "$FAKECUDA_DEVICE_DIR"

# status_field PID KEY: one field of `ctl status` (stderr to $T/status.err).
status_field() {
	"$MS" ctl --pid "$1" status 2>"$T/status.err" | py 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print(v if v is not None else "")' "$2"
}

# start_demo DIR RUNFLAGS...: demo-engine holding under memsaver run; sets PID RUN.
start_demo() {
	local d=$1; shift
	start_held_demo "$d" "$@" -p "${POLICY:-$ROOT/tools/demo/demo-policy.json}" -- \
		--hold-timeout 120 --expect-workspace zero
}

finish_demo() {
	local d=$1
	touch "$d/go"
	wait "$RUN" || { cat "$d/out" "$d/err"; fail "$d: demo-engine's checks failed after resume"; }
	grep -q '"result":"ok"' "$d/out" || fail "$d: demo-engine did not report ok"
}

# ---- 1. deep pause and resume, refusals on the way ----------------------
base=$(nvml_used)
[ "$base" = 0 ] || fail "device not empty before the engine: $base"
d=$T/deep
start_demo "$d" --deep-ready
held=$(nvml_used)
[ "$held" -gt "$base" ] || fail "engine uses no device memory?"
"$MS" ctl --pid "$PID" pause --deep >"$d/p.out" 2>&1 || { cat "$d/p.out" "$d/err"; fail "ctl pause --deep"; }
cat "$d/p.out"
grep -q "pid $PID: paused" "$d/p.out" || fail "no memsaver pause before the checkpoint"
grep -q "pid $PID: deep-paused: checkpointed" "$d/p.out" || fail "no deep-paused line"
now=$(nvml_used)
[ "$now" = "$base" ] || fail "device used while checkpointed: $now, baseline $base"
[ "$(status_field "$PID" state)" = checkpointed ] || fail "status state is not checkpointed"
[ "$(status_field "$PID" driver_state)" = checkpointed ] || fail "status driver_state is not checkpointed"
"$MS" ctl --pid "$PID" snapshot x >"$d/snap.out" 2>&1 && fail "snapshot while checkpointed succeeded"
grep -q "refused: the process is checkpointed" "$d/snap.out" || { cat "$d/snap.out"; fail "snapshot refusal does not say why"; }
"$MS" ctl --pid "$PID" pause --deep >"$d/p2.out" 2>&1 || fail "second deep pause: exit $?"
grep -q "nothing to do: already checkpointed" "$d/p2.out" || fail "second deep pause did not say it did nothing"
ok "deep pause: device used back to the baseline ($base) from $held; status checkpointed"

# Another process takes the memory: the restore is refused before the driver is asked.
py 'import ctypes, sys, time, os
c = ctypes.CDLL(sys.argv[1] + "/libcuda.so.1")
ctx = ctypes.c_void_p(); p = ctypes.c_ulonglong()
assert c.cuInit(0) == 0 and c.cuCtxCreate_v2(ctypes.byref(ctx), 0, 0) == 0
assert c.cuMemAlloc_v2(ctypes.byref(p), ctypes.c_size_t(int(sys.argv[2]))) == 0
open(sys.argv[3], "w").write("ok")
while os.path.exists(sys.argv[3]): time.sleep(0.05)' "$FAKE" $(( (8 << 30) - (512 << 20) - (128 << 20) )) "$d/hog" &
hog=$!
BGPIDS+=($hog)
wait_for "$d/hog" ok || fail "memory hog did not start"
"$MS" ctl --pid "$PID" resume >"$d/oom.out" 2>&1 && fail "resume with the memory taken succeeded"
cat "$d/oom.out"
grep -qE "restore refused: GPU 0 has [0-9]+ bytes .* free, the checkpoint needs [0-9]+ bytes .*stays checkpointed" "$d/oom.out" || fail "OOM refusal does not name the bytes"
[ "$(status_field "$PID" driver_state)" = checkpointed ] || fail "after the refused restore the driver state is not checkpointed"
rm -f "$d/hog"; wait $hog
ok "restore refused while another process holds the memory; still checkpointed"

"$MS" ctl --pid "$PID" resume >"$d/r.out" 2>&1 || { cat "$d/r.out"; fail "ctl resume"; }
cat "$d/r.out"
grep -q "pid $PID: restored from the driver checkpoint" "$d/r.out" || fail "resume did not restore"
grep -q "pid $PID: resumed" "$d/r.out" || fail "resume did not resume the categories"
[ "$(nvml_used)" = "$held" ] || fail "device used after resume $(nvml_used), before the pause $held"
[ "$(status_field "$PID" state)" = running ] || fail "status after resume is not running"
finish_demo "$d"
ok "resume restored, unlocked and resumed; demo-engine's checks pass"

# ---- 2. CUPTI subscribed: refused, paused normally -------------------------
d=$T/cupti
start_demo "$d" --cupti
"$MS" ctl --pid "$PID" pause --deep >"$d/p.out" 2>&1 && fail "deep pause of a CUPTI process succeeded"
cat "$d/p.out"
grep -q "deep pause refused: pid $PID subscribed to CUPTI.*801.*without --cupti; paused normally instead" "$d/p.out" || fail "CUPTI refusal does not say why and what to do"
[ "$(status_field "$PID" state)" = paused ] || fail "not normally paused after the refusal"
"$MS" ctl --pid "$PID" resume >/dev/null 2>&1 || fail "resume after the CUPTI refusal"
finish_demo "$d"
ok "CUPTI: refused with the reason and the flag; paused normally; resume works"

# ---- 3. the driver refuses the lock, or has no checkpoint -------------------
d=$T/refuse
start_demo "$d" --deep-ready
FAKECUDA_FAIL=cuCheckpointProcessLock:1:CUDA_ERROR_NOT_SUPPORTED "$MS" ctl --pid "$PID" pause --deep >"$d/p.out" 2>&1 && fail "deep pause with the lock refused succeeded"
cat "$d/p.out"
grep -q "deep pause failed: cuCheckpointProcessLock(pid $PID) returned CUDA_ERROR_NOT_SUPPORTED.*the engine stays normally paused" "$d/p.out" || fail "lock refusal line"
[ "$(status_field "$PID" state)" = paused ] || fail "not normally paused after the lock refusal"
"$MS" ctl --pid "$PID" resume >/dev/null 2>&1 || fail "resume after the lock refusal"
FAKECUDA_NO_CHECKPOINT=1 "$MS" ctl --pid "$PID" pause --deep >"$d/p2.out" 2>&1 && fail "deep pause without the API succeeded"
grep -q "deep pause refused: this driver .* has no cuCheckpointProcess.*paused normally instead" "$d/p2.out" || { cat "$d/p2.out"; fail "no-API refusal line"; }
"$MS" ctl --pid "$PID" resume >/dev/null 2>&1 || fail "resume after the no-API refusal"
FAKECUDA_FAIL=cuCheckpointProcessCheckpoint:1:CUDA_ERROR_UNKNOWN "$MS" ctl --pid "$PID" pause --deep >"$d/p3.out" 2>&1 && fail "deep pause with a failing checkpoint succeeded"
grep -q "deep pause failed: cuCheckpointProcessCheckpoint" "$d/p3.out" || { cat "$d/p3.out"; fail "checkpoint failure line"; }
[ "$(status_field "$PID" state)" = paused ] || fail "a failed checkpoint did not unlock: state $(status_field "$PID" state)"
"$MS" ctl --pid "$PID" resume >/dev/null 2>&1 || fail "resume after the failed checkpoint"
finish_demo "$d"
ok "driver refusals (lock 801, no API, checkpoint error): one line, engine unlocked and normally paused"

# ---- 4. ctl killed in the middle -----------------------------------------
d=$T/kill
export FAKECUDA_CHECKPOINT_MS=1500 # in the engine: its driver copies that long
start_demo "$d" --deep-ready
"$MS" ctl --pid "$PID" pause --deep >"$d/p.out" 2>&1 &
ctl=$!
seen=
for ((i = 0; i < 200; i++)); do
	seen=$(status_field "$PID" state)
	[ "$seen" = locked ] && break
	sleep 0.02
done
[ "$seen" = locked ] || fail "never saw the engine locked (last state: $seen)"
kill -9 $ctl; wait $ctl 2>/dev/null
sleep 2 # the driver finishes the checkpoint without its caller
[ "$(status_field "$PID" driver_state)" = checkpointed ] || fail "driver state after the kill is not checkpointed"
[ "$(status_field "$PID" state)" = checkpointed ] || fail "status does not report the driver's state"
grep -q 'the engine was last told "locked", the driver says checkpointed' "$T/status.err" || fail "status does not say the note is stale"
[ "$(nvml_used)" = 0 ] || fail "device used after the killed deep pause: $(nvml_used)"
"$MS" ctl --pid "$PID" resume >"$d/r.out" 2>&1 || { cat "$d/r.out"; fail "resume after a killed ctl"; }
grep -q "restored from the driver checkpoint" "$d/r.out" || fail "resume after the kill did not restore"
finish_demo "$d"
ok "ctl killed mid-checkpoint: status shows the driver's state; the next resume brings the engine back"

# ---- 5. the policy key "residue": "checkpoint" -----------------------------
unset FAKECUDA_CHECKPOINT_MS
POLICY=$T/residue.json
py 'import json, sys; p = json.load(open(sys.argv[1])); p["residue"] = "checkpoint"; json.dump(p, open(sys.argv[2], "w"))' \
	"$ROOT/tools/demo/demo-policy.json" "$POLICY"
d=$T/policy
start_demo "$d" --deep-ready --report "$d/report.json"
[ "$(status_field "$PID" residue)" = checkpoint ] || fail "status does not carry the policy's residue"
"$MS" ctl --pid "$PID" pause >"$d/p.out" 2>&1 || { cat "$d/p.out" "$d/err"; fail "plain ctl pause under residue checkpoint"; }
cat "$d/p.out"
grep -q "pid $PID: deep-paused: checkpointed" "$d/p.out" || fail "the policy's residue did not make the pause deep"
[ "$(nvml_used)" = "$base" ] || fail "device used while checkpointed by policy: $(nvml_used)"
MEMSAVER_LOG=debug "$MS" ctl --pid "$PID" resume >"$d/r.out" 2>&1 || { cat "$d/r.out"; fail "resume after the policy's deep pause"; }
cat "$d/r.out"
grep -qE "resume steps: status [0-9]+ ms, cuInit [0-9]+ ms, .*restore [0-9]+ ms, unlock [0-9]+ ms, .*memsaver resume [0-9]+ ms.*since main" "$d/r.out" || fail "MEMSAVER_LOG=debug does not show resume's steps"
"$MS" ctl --pid "$PID" report -o "$d/live.json" >/dev/null 2>&1 || fail "ctl report after the deep pause"
py 'import json, sys
d = json.load(open(sys.argv[1]))["deep_pause"]
assert d["left_bytes"] == 0, d
assert d["checkpointed_bytes"] > 0 and d["resumed"] is True, d
assert d["pause_index"] == 0 and d["residue_bytes"] == sum(s["bytes"] for s in d["sources"]), d
assert d["device_used_before_bytes"] - d["device_used_after_bytes"] == d["checkpointed_bytes"], d' "$d/live.json" || fail "the report's deep_pause"
"$MS" report "$d/live.json" >"$d/report.txt" || fail "memsaver report of the live report"
grep -q "^Deep pause" "$d/report.txt" && grep -q "left on the GPU while checkpointed: 0 B above the baseline" "$d/report.txt" \
	|| { cat "$d/report.txt"; fail "memsaver report does not show the deep pause"; }
finish_demo "$d"
ok "residue checkpoint: a plain ctl pause is deep; the report shows the residue and 0 B left; debug shows resume's steps"

d=$T/policy-cupti
start_demo "$d" --cupti
"$MS" ctl --pid "$PID" pause >"$d/p.out" 2>&1 && fail "a policy deep pause of a CUPTI engine exited 0"
grep -q "deep pause (the policy's \"residue\": \"checkpoint\") refused: pid $PID subscribed to CUPTI.*without --cupti; paused normally instead" "$d/p.out" || { cat "$d/p.out"; fail "the policy's refusal line"; }
[ "$(status_field "$PID" state)" = paused ] || fail "not normally paused after the policy's refusal"
"$MS" ctl --pid "$PID" resume >/dev/null 2>&1 || fail "resume after the policy's refusal"
finish_demo "$d"
ok "residue checkpoint under --cupti: paused normally, one line says why"
