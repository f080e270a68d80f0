#!/bin/bash
# One device call of the GPU proofs of the saver (docs/results.md lists the
# figures and the exact commands).  Writes JSON lines and logs to $OUT (or
# ./gpu-out).  Parts: exit (2-rank shutdown with and without the fix),
# tp (200-cycle tensor-parallel loop), share (--graph-register, peer access),
# single (bench engine parity, mixed segments), rss (driver host memory over
# VMM cycles), attach (memsaver attach), tms (torch_memory_saver drop-in),
# deep (deep pause), residue, expandable, soak (1000 cycles: do resources stay
# flat), modes (the tracer with and without CUPTI), speed (host memory for
# backups, skipping unchanged chunks), pairs (allocation-pair cost through
# PyTorch's allocator), resume-delay (resume latency against the time paused),
# mixed.  usage: bench/gpu_session.sh PART...
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/gpu-out}
BUILD=${BUILD:-$ROOT/build}
mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
nvidia-smi -L | tee "$OUT/devices.txt"
git -C "$ROOT" rev-parse HEAD > "$OUT/commit.txt" 2>/dev/null
for part in "$@"; do
	case $part in
	exit)
		# The old order: the process group destroyed while the graphs live.
		hold=$(mktemp -d)
		timeout 240 python3 -m torch.distributed.run --nproc-per-node 2 "$ROOT/bench/engines/qwen_like.py" \
			--cycles 0 --kv-fraction 0.3 --decode-steps 20 --exit-order group-first --exit-timeout 60 \
			> "$OUT/exit-group-first.jsonl" 2> "$OUT/exit-group-first.log"
		echo "{\"bench\":\"exit\",\"order\":\"group-first\",\"rc\":$?}" | tee -a "$OUT/results.jsonl"
		timeout 240 python3 "$ROOT/bench/proof_tp2.py" --build "$BUILD" --no-memsaver --out "$OUT/exit-plain" \
			| tee -a "$OUT/results.jsonl"
		;;
	tp)
		timeout 420 python3 "$ROOT/bench/proof_tp2.py" --build "$BUILD" --cycles "${TP_CYCLES:-200}" \
			--out "$OUT/tp200" > "$OUT/tp200.jsonl"
		tail -n 1 "$OUT/tp200.jsonl" | tee -a "$OUT/results.jsonl"
		;;
	share)
		timeout 200 python3 "$ROOT/bench/proof_tp2.py" --build "$BUILD" --cycles 5 --graph-register \
			--out "$OUT/tp-register" > "$OUT/tp-register.jsonl"
		tail -n 1 "$OUT/tp-register.jsonl" | tee -a "$OUT/results.jsonl"
		timeout 120 "$BUILD/bin/memsaver" run -p "$ROOT/bench/policies/wrap-all.json" -- \
			python3 "$ROOT/bench/peer_check.py" 2> "$OUT/peer.log" | tee -a "$OUT/results.jsonl"
		;;
	single)
		timeout 120 python3 "$ROOT/bench/mixed_segments.py" 2> "$OUT/mixed.log" | tee -a "$OUT/results.jsonl"
		timeout 300 python3 "$ROOT/bench/proof.py" --build "$BUILD" --cycles 20 --skip-baseline \
			--out "$OUT/proof" 2> "$OUT/proof.log" | tee -a "$OUT/results.jsonl"
		;;
	mixed)
		timeout 120 python3 "$ROOT/bench/mixed_segments.py" 2> "$OUT/mixed.log" | tee -a "$OUT/results.jsonl"
		;;
	speed)
		timeout 120 "$BUILD/bin/bench-pin_bw" 4 | tee -a "$OUT/results.jsonl"
		mkdir -p "$OUT/skip"
		timeout 240 "$BUILD/bin/memsaver" run -p "$ROOT/bench/policies/wrap-all.json" --trace "$OUT/skip/skip.trace" -- \
			python3 "$ROOT/bench/skip_check.py" --cycles 20 > "$OUT/skip.jsonl" 2> "$OUT/skip/skip.log"
		tail -n 1 "$OUT/skip.jsonl" | tee -a "$OUT/results.jsonl"
		"$BUILD/bin/memsaver" analyze "$OUT/skip/skip.trace" -o "$OUT/skip/skip-report.json" &&
			python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(json.dumps({"bench":"skip_events","pauses":[{k:e.get(k) for k in ("duration_ms","backup_bytes","backup_skipped_bytes")} for e in r["events"] if e["kind"]=="pause"]}))' \
			"$OUT/skip/skip-report.json" | tee -a "$OUT/results.jsonl"
		;;
	pairs)
		timeout 400 python3 "$ROOT/bench/pair_overhead.py" --build "$BUILD" --path torch | tee -a "$OUT/results.jsonl"
		;;
	resume-delay)
		# The driver scrubs released memory after a pause; a resume that
		# comes before it is done shares the copy engines with it.
		for s in ${RESUME_DELAYS:-0 0.5 1}; do
			timeout 150 python3 "$ROOT/bench/proof.py" --build "$BUILD" --cycles 6 --skip-baseline --skip-pairs \
				--first-pause-after-s 3 --paused-s "$s" --out "$OUT/resume-delay-$s" 2> "$OUT/resume-delay-$s.log" |
				grep -E '"bench": "(latency|parity)"' | tee -a "$OUT/results.jsonl"
		done
		;;
	residue)
		mkdir -p "$OUT/residue"
		OUT=$OUT/residue timeout 360 python3 "$ROOT/bench/residue.py" --build "$BUILD" ${RESIDUE_ONLY:+--only $RESIDUE_ONLY} \
			> "$OUT/residue.jsonl" 2> "$OUT/residue/residue.log"
		echo "{\"bench\":\"residue\",\"rc\":$?}" | tee -a "$OUT/results.jsonl"
		grep '"bench": "residue"' "$OUT/residue.jsonl" | cut -c1-1500 | tee -a "$OUT/results.jsonl"
		;;
	expandable)
		mkdir -p "$OUT/expandable"
		OUT=$OUT/expandable timeout 300 python3 "$ROOT/bench/expandable.py" --build "$BUILD" --cycles 20 \
			> "$OUT/expandable.jsonl" 2> "$OUT/expandable/expandable.log"
		echo "{\"bench\":\"expandable\",\"rc\":$?}" | tee -a "$OUT/results.jsonl"
		cut -c1-1500 "$OUT/expandable.jsonl" | tee -a "$OUT/results.jsonl"
		;;
	rss)
		timeout 120 "$BUILD/bin/bench-vmm_rss" 40 100 | tee -a "$OUT/results.jsonl"
		;;
	attach)
		OUT=$OUT/attach BUILD=$BUILD timeout 240 bash "$ROOT/bench/attach_proof.sh" > "$OUT/attach.jsonl" 2>&1
		echo "{\"bench\":\"attach_proof\",\"rc\":$?}" | tee -a "$OUT/results.jsonl"
		;;
	tms)
		mkdir -p "$OUT/tms"
		(cd "$OUT/tms" && OUT=$OUT/tms timeout 240 "$BUILD/bin/memsaver" run -o "$OUT/tms/tms-report.json" -- \
			env PYTHONPATH="$ROOT/tools/python" python3 "$ROOT/bench/tms_dropin.py" --cycles 5) \
			> "$OUT/tms.jsonl" 2> "$OUT/tms/tms.log"
		echo "{\"bench\":\"tms_dropin\",\"rc\":$?}" | tee -a "$OUT/results.jsonl"
		tail -n 1 "$OUT/tms.jsonl" | tee -a "$OUT/results.jsonl"
		;;
	deep)
		mkdir -p "$OUT/deep"
		OUT=$OUT/deep timeout 300 python3 "$ROOT/bench/deep_pause.py" --build "$BUILD" --cycles "${DEEP_CYCLES:-20}" \
			> "$OUT/deep.jsonl" 2> "$OUT/deep/deep.log"
		echo "{\"bench\":\"deep_pause\",\"rc\":$?}" | tee -a "$OUT/results.jsonl"
		tail -n 1 "$OUT/deep.jsonl" | tee -a "$OUT/results.jsonl"
		;;
	soak)
		# Issue 16: the engine alone first (its own growth), then 1000 cycles under memsaver.
		mkdir -p "$OUT/soak"
		timeout 130 python3 "$ROOT/bench/soak.py" --no-memsaver --cycles "${SOAK_CYCLES:-1000}" --deadline-s 110 \
			--out "$OUT/soak" > "$OUT/soak-plain.jsonl" 2> "$OUT/soak/soak-plain.log"
		tail -n 1 "$OUT/soak-plain.jsonl" | tee -a "$OUT/results.jsonl"
		timeout "$(( ${SOAK_DEADLINE:-380} + 20 ))" python3 "$ROOT/bench/soak.py" --build "$BUILD" \
			--cycles "${SOAK_CYCLES:-1000}" --deadline-s "${SOAK_DEADLINE:-380}" --baseline "$OUT/soak-plain.jsonl" \
			--out "$OUT/soak" > "$OUT/soak.jsonl" 2> "$OUT/soak/soak.log"
		echo "{\"bench\":\"soak\",\"rc\":$?}" | tee -a "$OUT/results.jsonl"
		tail -n 1 "$OUT/soak.jsonl" | tee -a "$OUT/results.jsonl"
		;;
	modes)
		# Issue 12: the bench engine traced with CUPTI and with --deep-ready (interposer only).
		mkdir -p "$OUT/modes"
		OUT=$OUT/modes timeout 540 python3 "$ROOT/bench/tracer_modes.py" --build "$BUILD" \
			> "$OUT/modes.jsonl" 2> "$OUT/modes/modes.log"
		echo "{\"bench\":\"tracer_modes\",\"rc\":$?}" | tee -a "$OUT/results.jsonl"
		cut -c1-3000 "$OUT/modes.jsonl" | tee -a "$OUT/results.jsonl"
		;;
	esac
done
tar czf /tmp/gpu-logs.tgz --exclude='*.trace' -C "$OUT" . 2>/dev/null && mv /tmp/gpu-logs.tgz "$OUT/" 2>/dev/null
exit 0
