# Sourced by the end-to-end scenarios (tests/e2e/*.sh); not a test itself.
# Sets B (absolute build dir), MS (the CLI), DEMO, FAKE (fake driver dir), T
# (a private scratch dir removed at exit, also the socket dir), and helpers.
set -u
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${BUILD:-build}
case $BUILD in /*) B=$BUILD ;; *) B=$ROOT/$BUILD ;; esac
MS=$B/bin/memsaver
DEMO=$B/bin/demo-engine
FAKE=$B/fakecuda
T=$(mktemp -d /tmp/msv-e2e.XXXXXX) || exit 1
BGPIDS=()
cleanup() {
	local p
	for p in "${BGPIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
export MEMSAVER_SOCKET_DIR=$T/sock
export LD_LIBRARY_PATH=$FAKE
unset MEMSAVER_SESSION CUDA_INJECTION64_PATH FAKECUDA_FAIL

fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }

# py 'python source' args...: python3 (stdlib) with the args in sys.argv.
py() { local src=$1; shift; python3 -c "$src" "$@"; }

# wait_for FILE REGEX [SECONDS]: until a line of FILE matches.
wait_for() {
	local i n=$(( ${3:-20} * 20 ))
	for ((i = 0; i < n; i++)); do
		grep -qE "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "timed out waiting for /$2/ in $1:"; sed 's/^/    /' "$1"
	return 1
}

# held_pid FILE: the pid demo-engine printed when it started holding.
held_pid() { sed -n 's/.*holding at step [0-9]* (pid \([0-9]*\)).*/\1/p' "$1" | head -n1; }

# start_held_demo DIR RUN_ARGS... -- DEMO_ARGS...: demo-engine under `memsaver
# run RUN_ARGS`, 4 steps at scale 32 holding at step 2 until DIR/go exists
# (stdout DIR/out, stderr DIR/err), DEMO_ARGS added (--hold-timeout, its
# expectations); returns once it holds, with RUN the run's pid (in BGPIDS)
# and PID the engine's.
start_held_demo() {
	local d=$1 run_args=()
	shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do run_args+=("$1"); shift; done
	[ $# -gt 0 ] && shift
	mkdir -p "$d"
	"$MS" run "${run_args[@]}" -- "$DEMO" --scale 32 --steps 4 --hold-at 2 --hold-file "$d/go" \
		--expect-kv any --json "$@" >"$d/out" 2>"$d/err" &
	RUN=$!
	BGPIDS+=($RUN)
	wait_for "$d/out" 'holding at step' || fail "$d: demo-engine never held"
	PID=$(held_pid "$d/out")
}

# demo_reading FILE PHASE: used_bytes of the last JSON reading of PHASE.
demo_reading() {
	py 'import json,sys
v=None
for l in open(sys.argv[1]):
    l=l.strip()
    if l.startswith("{"):
        try: o=json.loads(l)
        except ValueError: continue
        if o.get("phase")==sys.argv[2]: v=o["used_bytes"]
print(v if v is not None else "")' "$1" "$2"
}

# usr2_reading FILE PID: ask a holding demo for a reading, print its used_bytes.
usr2_reading() {
	local n
	n=$(grep -c '"phase":"held"' "$1")
	kill -USR2 "$2" || return 1
	local i
	for ((i = 0; i < 200; i++)); do
		[ "$(grep -c '"phase":"held"' "$1")" -gt "$n" ] && break
		sleep 0.05
	done
	demo_reading "$1" held
}

# nvml_used: device-wide used bytes through the fake NVML (FAKECUDA_DEVICE_DIR
# shares one device), from a process with no CUDA.
nvml_used() {
	py 'import ctypes, sys
n = ctypes.CDLL(sys.argv[1] + "/libnvidia-ml.so.1")
class M(ctypes.Structure): _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]
h = ctypes.c_void_p(); m = M()
assert n.nvmlInit_v2() == 0 and n.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(h)) == 0
assert n.nvmlDeviceGetMemoryInfo(h, ctypes.byref(m)) == 0
print(m.used)' "$FAKE"
}
