#!/bin/bash
# The tensor-parallel loop at 4 and 8 ranks on the fake driver: N engines of
# one `memsaver run`, 3 cycles of `ctl --all pause` / `resume`; every cycle
# reaches every rank, every rank passes its bitwise checks at the end, and
# the wall time of the --all call is printed next to one rank's own time
# (ctl talks to the ranks in parallel).
. "$(dirname "$0")/common.bash"

ranks() { # N
	local n=$1 i
	mkdir -p "$T/$n"
	"$MS" run -p "$ROOT/tools/demo/demo-policy.json" -- sh -c '
		n=$2; i=0
		while [ $i -lt $n ]; do
			"$0" --scale 4 --steps 2 --hold-at 1 --hold-file "$1/go" --hold-timeout 120 --expect-kv any --json >"$1/r$i.out" 2>&1 &
			i=$((i + 1))
		done
		rc=0; for p in $(jobs -p); do wait $p || rc=1; done; exit $rc' "$DEMO" "$T/$n" "$n" >"$T/$n/run.out" 2>&1 &
	local run=$!
	BGPIDS+=($run)
	for ((i = 0; i < n; i++)); do wait_for "$T/$n/r$i.out" 'holding at step' 60 || fail "$n ranks: rank $i never held"; done
	for c in 1 2 3; do
		local t0=$(date +%s%N)
		"$MS" ctl --all --session "run-$run" pause >"$T/$n/p.out" 2>&1 || { cat "$T/$n/p.out"; fail "$n ranks: pause $c"; }
		local wall=$(( ($(date +%s%N) - t0) / 1000000 ))
		[ "$(grep -c ': paused' "$T/$n/p.out")" -eq "$n" ] || { cat "$T/$n/p.out"; fail "$n ranks: pause $c missed a rank"; }
		local slowest=$(sed -n 's/.*(\([0-9]*\) ms)$/\1/p' "$T/$n/p.out" | sort -n | tail -n1)
		"$MS" ctl --all --session "run-$run" resume >"$T/$n/r.out" 2>&1 || { cat "$T/$n/r.out"; fail "$n ranks: resume $c"; }
		[ "$(grep -c ': resumed' "$T/$n/r.out")" -eq "$n" ] || fail "$n ranks: resume $c missed a rank"
		echo "$n ranks, cycle $c: ctl --all pause wall $wall ms, slowest rank $slowest ms"
	done
	touch "$T/$n/go"
	wait $run || { cat "$T/$n/run.out"; fail "$n ranks: a rank failed its checks"; }
	ok "$n ranks: 3 cycles, every rank paused, resumed and passed its checks"
}
ranks 4
ranks 8
