#!/bin/bash
# `memsaver ctl --all pause --deep` is all or nothing across the ranks of one
# run: with the second rank's checkpoint failing, the first rank is restored
# and both are unlocked and left normally paused, and the failing rank is
# named; then a deep pause of both brings device used back to the baseline,
# `ctl --all status` shows both checkpointed, one `ctl --all resume` restores
# both (every rank before unlocking any) and both pass their checks.
. "$(dirname "$0")/common.bash"
export FAKECUDA_DEVICE_DIR=$T/dev FAKECUDA_TOTAL_BYTES=8GiB
mkdir -p "$FAKECUDA_DEVICE_DIR"

states() {
	"$MS" ctl --all --session "run-$run" status 2>/dev/null | py 'import json,sys
s = json.load(sys.stdin); print(" ".join(s[k]["state"] for k in sorted(s)))'
}

base=$(nvml_used)
"$MS" run --deep-ready -p "$ROOT/tools/demo/demo-policy.json" -- sh -c '
	"$0" --scale 8 --steps 2 --hold-at 1 --hold-file "$1/go" --hold-timeout 120 --expect-kv any --json >"$1/a.out" 2>&1 &
	"$0" --scale 8 --steps 2 --hold-at 1 --hold-file "$1/go" --hold-timeout 120 --expect-kv any --json >"$1/b.out" 2>&1 &
	wait $!; rb=$?; wait; ra=$?
	exit $((ra | rb))' "$DEMO" "$T" >"$T/run.out" 2>&1 &
run=$!
BGPIDS+=($run)
wait_for "$T/a.out" 'holding at step' || fail "a never held"
wait_for "$T/b.out" 'holding at step' || fail "b never held"
held=$(nvml_used)

FAKECUDA_FAIL=cuCheckpointProcessCheckpoint:2:CUDA_ERROR_UNKNOWN \
	"$MS" ctl --all --session "run-$run" pause --deep >"$T/p1.out" 2>&1 && fail "deep pause with a failing rank succeeded"
cat "$T/p1.out"
grep -q "deep pause failed: cuCheckpointProcessCheckpoint(pid [0-9]*) returned CUDA_ERROR_UNKNOWN.*every rank was brought back and stays normally paused" "$T/p1.out" || fail "the failure does not name the rank"
[ "$(states)" = "paused paused" ] || fail "after the rollback: $(states), want both paused"
[ "$(nvml_used)" -gt "$base" ] || fail "after the rollback nothing is on the device"
"$MS" ctl --all --session "run-$run" resume >/dev/null 2>&1 || fail "resume after the rollback"
ok "a failing rank rolls the deep pause back: both unlocked and normally paused"

"$MS" ctl --all --session "run-$run" pause --deep >"$T/p2.out" 2>&1 || { cat "$T/p2.out"; fail "ctl --all pause --deep"; }
cat "$T/p2.out"
[ "$(grep -c 'deep-paused: checkpointed' "$T/p2.out")" -eq 2 ] || fail "not both ranks deep-paused"
[ "$(states)" = "checkpointed checkpointed" ] || fail "status: $(states)"
[ "$(nvml_used)" = "$base" ] || fail "device used while both are checkpointed: $(nvml_used), baseline $base"
"$MS" ctl --all --session "run-$run" resume >"$T/r.out" 2>&1 || { cat "$T/r.out"; fail "ctl --all resume"; }
[ "$(grep -c 'restored from the driver checkpoint' "$T/r.out")" -eq 2 ] || fail "not both restored"
[ "$(grep -c 'resumed' "$T/r.out")" -eq 2 ] || fail "not both resumed"
[ "$(nvml_used)" = "$held" ] || fail "device used after resume $(nvml_used), before $held"
touch "$T/go"
wait $run || { cat "$T/run.out" "$T/a.out" "$T/b.out"; fail "an engine failed its checks"; }
ok "ctl --all deep pause: both checkpointed (device at baseline), both restored and checked"
