# Shell helpers shared by tools/demo/run-demo.sh (make demo) and
# tests/gpu/run.sh (make gpu-test).  Source it; it defines functions only.
# Every function returns 0 on success; messages go to stderr.

# demo_probe_gpu DEMO: is there a usable GPU behind the *system* driver?
# Runs demo-engine once (1 MiB, 1 step) against whatever libcuda.so.1 the
# loader finds; exit 3 means no driver / no device / cuInit failed.
# Sets DEMO_GPU=1|0, DEMO_GPU_NAME, DEMO_PROBE_LINE (why not, when 0).
demo_probe_gpu() {
	local demo=$1 out rc
	DEMO_GPU=0 DEMO_GPU_NAME="" DEMO_PROBE_LINE=""
	out=$("$demo" --scale 1 --steps 1 2>&1)
	rc=$?
	if [ $rc -eq 3 ]; then
		DEMO_PROBE_LINE=$(printf '%s\n' "$out" | grep -m1 'CUDA unavailable' || true)
		return 0
	fi
	DEMO_GPU=1
	DEMO_GPU_NAME=$(printf '%s\n' "$out" | sed -n 's/^demo-engine: device [0-9]*: \(.*\), driver API.*/\1/p' | head -n1)
	[ $rc -eq 0 ] || DEMO_PROBE_LINE="probe run exited $rc"
	return 0
}

# nvidia_smi_gpus: prints `nvidia-smi -L` and succeeds when it lists a GPU.
nvidia_smi_gpus() {
	command -v nvidia-smi >/dev/null 2>&1 || return 1
	local l
	l=$(nvidia-smi -L 2>/dev/null) || return 1
	printf '%s\n' "$l" | grep -q '^GPU ' || return 1
	printf '%s\n' "$l"
}

# msv_has_run MEMSAVER: the CLI exists and has the `run` sub-command.
msv_has_run() {
	[ -x "$1" ] && "$1" run --help >/dev/null 2>&1
}

# wait_for_line FILE REGEX TIMEOUT_S PID: wait until a line of FILE matches
# REGEX (grep -E); fail early when PID exits.  Prints the matching line.
wait_for_line() {
	local file=$1 re=$2 timeout=$3 pid=$4 i=0 line
	while [ $i -lt $((timeout * 10)) ]; do
		line=$(grep -E -m1 "$re" "$file" 2>/dev/null) && { printf '%s\n' "$line"; return 0; }
		kill -0 "$pid" 2>/dev/null || {
			# One last look: the line may have landed just before the exit.
			line=$(grep -E -m1 "$re" "$file" 2>/dev/null) && { printf '%s\n' "$line"; return 0; }
			echo "process $pid exited before printing /$re/" >&2
			return 1
		}
		sleep 0.1
		i=$((i + 1))
	done
	echo "timed out after ${timeout}s waiting for /$re/ in $file" >&2
	return 1
}

# json_extract FILE: the first JSON object in FILE (text around it ignored),
# re-printed compactly; fails when there is none.
json_extract() {
	python3 - "$1" <<'PY'
import json, sys
text = open(sys.argv[1], errors="replace").read()
dec = json.JSONDecoder()
for i, ch in enumerate(text):
    if ch == "{":
        try:
            obj, _ = dec.raw_decode(text[i:])
        except ValueError:
            continue
        print(json.dumps(obj))
        sys.exit(0)
sys.exit(1)
PY
}

# json_sum FILE KEY: the sum of KEY over the per-category entries of the
# first JSON object in FILE (a "categories" object or list, at the top or
# one level down), else KEY at the top.  Prints an integer; fails if absent.
json_sum() {
	python3 - "$1" "$2" <<'PY'
import json, sys
text = open(sys.argv[1], errors="replace").read()
key = sys.argv[2]
dec = json.JSONDecoder()
obj = None
for i, ch in enumerate(text):
    if ch == "{":
        try:
            obj, _ = dec.raw_decode(text[i:])
            break
        except ValueError:
            continue
if not isinstance(obj, dict):
    sys.exit(1)
def cats(o):
    c = o.get("categories")
    if isinstance(c, dict):
        return [v for v in c.values() if isinstance(v, dict)]
    if isinstance(c, list):
        return [v for v in c if isinstance(v, dict)]
    for v in o.values():
        if isinstance(v, dict) and "categories" in v:
            return cats(v)
    return None
entries = cats(obj)
if entries is not None and any(key in e for e in entries):
    print(sum(int(e.get(key, 0)) for e in entries))
elif key in obj:
    print(int(obj[key]))
else:
    sys.exit(1)
PY
}

# json_find FILE KEY: the first value of KEY anywhere in the first JSON
# object of FILE (depth first).  Prints it; fails when absent.
json_find() {
	python3 - "$1" "$2" <<'PY'
import json, sys
text = open(sys.argv[1], errors="replace").read()
dec = json.JSONDecoder()
obj = None
for i, ch in enumerate(text):
    if ch == "{":
        try:
            obj, _ = dec.raw_decode(text[i:])
            break
        except ValueError:
            continue
def find(o, k):
    if isinstance(o, dict):
        if k in o:
            return o[k]
        o = list(o.values())
    if isinstance(o, list):
        for v in o:
            r = find(v, k)
            if r is not None:
                return r
    return None
r = find(obj, sys.argv[2])
if r is None:
    sys.exit(1)
print(r)
PY
}

# demo_reading FILE PHASE: used_bytes of the last `--json` reading of PHASE.
demo_reading() {
	python3 - "$1" "$2" <<'PY'
import json, sys
last = None
for line in open(sys.argv[1], errors="replace"):
    line = line.strip()
    if line.startswith("{") and '"phase"' in line:
        try:
            o = json.loads(line)
        except ValueError:
            continue
        if o.get("phase") == sys.argv[2]:
            last = o["used_bytes"]
if last is None:
    sys.exit(1)
print(last)
PY
}

# mib BYTES: "1234.5 MiB"
mib() {
	awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'
}
