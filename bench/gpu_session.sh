#!/bin/bash
# One device call of the GPU proofs of the saver (docs/results.md lists the
# figures and the exact commands).  Writes JSON lines and logs to $OUT (or
# ./gpu-out).  Parts: exit (2-rank shutdown with and without the fix),
# tp (200-cycle tensor-parallel loop, --graph-register, peer access),
# single (bench engine parity, mixed segments).  usage: bench/gpu_session.sh PART...
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
	esac
done
tar czf "$OUT/../gpu-logs.tgz" -C "$OUT" . 2>/dev/null && mv "$OUT/../gpu-logs.tgz" "$OUT/" 2>/dev/null
exit 0
