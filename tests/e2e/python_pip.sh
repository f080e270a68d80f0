#!/bin/bash
# `pip install .` from a fresh virtualenv, offline (--no-index; the build
# backend, tools/python/build_backend.py, needs only the standard library):
# the installed modules import from the venv, carry libmemsaver.so and the
# CLI, `python -m memsaver` and the `memsaver` command work, and the
# installed CLI runs the torch_memory_saver call sequence under `memsaver
# run` on the fake driver.  Exit 77 when python3 has no venv module.
. "$(dirname "$0")/common.bash"
command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null ||
	{ echo "skipped: python3 with venv and ensurepip is not installed"; exit 77; }
unset PYTHONPATH MEMSAVER_LIB MEMSAVER_BUILD MEMSAVER_POLICY LD_PRELOAD
V=$T/venv
python3 -m venv "$V" || fail "python3 -m venv"
MEMSAVER_BUILD=$BUILD "$V/bin/pip" install --no-index --no-build-isolation "$ROOT" >"$T/pip.log" 2>&1 ||
	{ tail -30 "$T/pip.log"; fail "pip install $ROOT"; }
cd "$T" || exit 1
site=$("$V/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')
lib=$("$V/bin/python" -c 'import memsaver, torch_memory_saver; print(memsaver.library_path())') ||
	fail "the installed modules do not import"
[ "$lib" = "$(realpath "$site/memsaver/_native/lib/libmemsaver.so")" ] ||
	fail "library_path() is $lib, not the copy in the venv"
cmp -s "$lib" "$B/lib/libmemsaver.so" || fail "the installed library differs from $B/lib/libmemsaver.so"
[ -x "$site/memsaver/_native/bin/memsaver" ] || fail "the CLI is not installed executable"
"$V/bin/python" -m memsaver --help | grep -q 'usage: python -m memsaver' || fail "python -m memsaver --help"
"$V/bin/python" -m memsaver status >"$T/status.out" 2>&1
[ $? -eq 2 ] && grep -q 'live memsaver sockets' "$T/status.out" || fail "python -m memsaver status without a process: $(cat "$T/status.out")"
"$V/bin/memsaver" policy show | grep -q '"version": 1' || fail "the memsaver command of the venv"
"$V/bin/memsaver" run -o "$T/report.json" -- "$V/bin/python" "$ROOT/tools/python/tests/tms_callers.py" sglang \
	>"$T/run.log" 2>&1 || { tail -30 "$T/run.log"; fail "memsaver run of the SGLang sequence with the installed package"; }
grep -q 'sglang: every check held' "$T/run.log" || fail "the sequence did not finish"
"$V/bin/memsaver" report "$T/report.json" | grep -q Footprint || fail "report of the run"
"$V/bin/pip" uninstall -y memsaver >/dev/null 2>&1 || fail "pip uninstall"
[ ! -e "$site/memsaver" ] || fail "pip uninstall left $site/memsaver"
ok "pip install in a fresh venv: modules, library, CLI, python -m memsaver, drop-in under memsaver run"
