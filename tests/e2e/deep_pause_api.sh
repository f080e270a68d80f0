#!/bin/bash
# Deep pause asked by the engine itself (msv_pause_deep through the Python
# module) on the fake driver: the library runs `memsaver ctl pause --deep`
# on its own pid and waits; the checkpoint empties the device to the
# baseline; pause and snapshot are refused while deep; resume() restores
# through the CLI and the device contents written before are intact.  Also:
# under `memsaver run --cupti` the error says why and the process is normally
# paused; MEMSAVER_BIN pointing nowhere is a sentence, not a hang.
# Exit 77 when python3 is missing.
. "$(dirname "$0")/common.bash"
command -v python3 >/dev/null || { echo "skipped: no python3"; exit 77; }
export FAKECUDA_DEVICE_DIR=$T/dev FAKECUDA_TOTAL_BYTES=8GiB PYTHONPATH=$ROOT/tools/python
mkdir -p "$FAKECUDA_DEVICE_DIR"
unset MEMSAVER_BIN

cat >"$T/engine.py" <<'PY'
import ctypes, os, sys
import memsaver

fake, mode = sys.argv[1], sys.argv[2]
cu = ctypes.CDLL(fake + "/libcuda.so.1")
nv = ctypes.CDLL(fake + "/libnvidia-ml.so.1")
class M(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]
def used():
    h, m = ctypes.c_void_p(), M()
    assert nv.nvmlInit_v2() == 0 and nv.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(h)) == 0
    assert nv.nvmlDeviceGetMemoryInfo(h, ctypes.byref(m)) == 0
    return m.used

base = used()
ctx, p = ctypes.c_void_p(), ctypes.c_ulonglong()
assert cu.cuInit(0) == 0 and cu.cuCtxCreate_v2(ctypes.byref(ctx), 0, 0) == 0
n = 64 << 20
assert cu.cuMemAlloc_v2(ctypes.byref(p), ctypes.c_size_t(n)) == 0
pattern = bytes(range(256)) * (4096 // 256)
assert cu.cuMemcpyHtoD_v2(p, pattern, ctypes.c_size_t(len(pattern))) == 0
held = used()
assert held > base, (held, base)

if mode == "nobin":
    os.environ["MEMSAVER_BIN"] = "/nonexistent/memsaver"
    try:
        memsaver.pause(deep=True)
        sys.exit("deep pause without a CLI succeeded")
    except memsaver.MemsaverError as e:
        assert "no" in str(e) and "MEMSAVER_BIN" in str(e), e
        print("ok: no CLI:", e)
    sys.exit(0)
if mode == "cupti":
    try:
        memsaver.pause(deep=True)
        sys.exit("deep pause of a CUPTI process succeeded")
    except memsaver.MemsaverError as e:
        assert "CUPTI" in str(e) and "normally paused" in str(e), e
        print("ok: CUPTI:", e)
    assert memsaver.control("status")["status"]["state"] == "paused"
    memsaver.resume()
    sys.exit(0)

memsaver.pause(deep=True)
st = memsaver.control("status")["status"]
assert st["state"] == "checkpointed", st
assert used() == base, (used(), base)
print("ok: deep-paused from the API: device used back to", base)
for call in (lambda: memsaver.pause(), lambda: memsaver.snapshot("x"), lambda: memsaver.pause(deep=True)):
    try:
        call()
        sys.exit("a call while checkpointed succeeded")
    except memsaver.MemsaverError as e:
        assert "refused" in str(e) and "checkpointed" in str(e), e
print("ok: pause, snapshot and a second deep pause refused while checkpointed")
memsaver.resume()
assert memsaver.control("status")["status"]["state"] == "running"
assert used() == held, (used(), held)
back = ctypes.create_string_buffer(len(pattern))
assert cu.cuMemcpyDtoH_v2(back, p, ctypes.c_size_t(len(pattern))) == 0
assert back.raw == pattern, "device contents changed across the deep pause"
print("ok: resumed from the API; contents intact")
PY

run_engine() { # MODE RUNFLAGS...
	local mode=$1; shift
	timeout 120 "$MS" run "$@" -p "$ROOT/tools/demo/demo-policy.json" -- \
		python3 "$T/engine.py" "$FAKE" "$mode" >"$T/$mode.out" 2>&1
}

run_engine deep --deep-ready || { cat "$T/deep.out"; fail "deep pause and resume from the API"; }
cat "$T/deep.out" | grep '^ok:'
ok "msv_pause_deep / resume through the Python module"

run_engine cupti --cupti || { cat "$T/cupti.out"; fail "deep pause of a CUPTI process from the API"; }
grep '^ok:' "$T/cupti.out"
ok "under --cupti: the reason, normally paused, resume works"

run_engine nobin --deep-ready || { cat "$T/nobin.out"; fail "MEMSAVER_BIN pointing nowhere"; }
grep '^ok:' "$T/nobin.out"
ok "no CLI: one sentence"
