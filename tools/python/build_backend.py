"""PEP 517 build backend of memsaver's Python package, standard library only,
so that `pip install .` needs no network and no setuptools/wheel.

The wheel carries the Python packages (memsaver, torch_memory_saver) and the
native artefacts next to them: memsaver/_native/lib/libmemsaver.so and
memsaver/_native/bin/memsaver (the CLI finds the library at ../lib/, as in
the build tree).  They come from the build directory, made by `make` first:
MEMSAVER_BUILD (or --config-settings build=DIR) picks it, default build/.
Building needs what `make` needs (a C compiler, the CUDA headers, jansson)."""

import base64
import hashlib
import io
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PYSRC = os.path.join(ROOT, "tools", "python")
PACKAGES = ("memsaver", "torch_memory_saver")


def _project():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        text = f.read()
    try:
        import tomllib
        return tomllib.loads(text.decode())["project"]
    except ImportError:  # Python < 3.11: the few flat keys read here
        section = text.decode().split("[project]", 1)[1].split("\n[", 1)[0]
        return {k: v for k, v in re.findall(r'^(\w[\w-]*)\s*=\s*"([^"]*)"', section, re.M)}


def _build_dir(config_settings):
    d = (config_settings or {}).get("build") or os.environ.get("MEMSAVER_BUILD") or "build"
    return d if os.path.isabs(d) else os.path.join(ROOT, d)


def _make(build):
    targets = [os.path.join(build, "lib", "libmemsaver.so"), os.path.join(build, "bin", "memsaver")]
    cmd = ["make", "-C", ROOT, f"BUILD={build}", "-j4"] + targets
    print("memsaver build backend:", " ".join(cmd), file=sys.stderr)
    r = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr)
    if r.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {r.returncode}); the wheel needs "
                           "libmemsaver.so and the CLI built first")
    return targets


def _tag():
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return f"py3-none-{plat}"


class _Wheel:
    def __init__(self, path):
        self.zip = zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED)
        self.record = []

    def add(self, arcname, data, mode=0o644):
        info = zipfile.ZipInfo(arcname, date_time=(2026, 1, 1, 0, 0, 0))
        info.external_attr = (0o100000 | mode) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        self.zip.writestr(info, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        self.record.append(f"{arcname},sha256={digest},{len(data)}")

    def add_file(self, arcname, path):
        with open(path, "rb") as f:
            self.add(arcname, f.read(), 0o755 if os.access(path, os.X_OK) else 0o644)

    def close(self, record_name):
        self.record.append(f"{record_name},,")
        self.zip.writestr(zipfile.ZipInfo(record_name, date_time=(2026, 1, 1, 0, 0, 0)),
                          "\n".join(self.record) + "\n")
        self.zip.close()


def _metadata(proj):
    lines = ["Metadata-Version: 2.1", f"Name: {proj['name']}", f"Version: {proj['version']}",
             f"Summary: {proj.get('description', '')}"]
    if proj.get("requires-python"):
        lines.append(f"Requires-Python: {proj['requires-python']}")
    return "\n".join(lines) + "\n"


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    proj = _project()
    lib, cli = _make(_build_dir(config_settings))
    name = f"{proj['name']}-{proj['version']}-{_tag()}.whl"
    dist_info = f"{proj['name']}-{proj['version']}.dist-info"
    whl = _Wheel(os.path.join(wheel_directory, name))
    for pkg in PACKAGES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(PYSRC, pkg)):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for fn in sorted(filenames):
                if fn.endswith((".py", ".json")):
                    path = os.path.join(dirpath, fn)
                    whl.add_file(os.path.relpath(path, PYSRC), path)
    whl.add_file("memsaver/_native/lib/libmemsaver.so", lib)
    whl.add_file("memsaver/_native/bin/memsaver", cli)
    pol = os.path.join(ROOT, "tools", "policies")
    for fn in sorted(os.listdir(pol)):
        if fn.endswith(".json"):
            whl.add_file(f"memsaver/_native/share/policies/{fn}", os.path.join(pol, fn))
    whl.add(f"{dist_info}/METADATA", _metadata(proj).encode())
    whl.add(f"{dist_info}/WHEEL", (f"Wheel-Version: 1.0\nGenerator: memsaver build_backend\n"
                                   f"Root-Is-Purelib: false\nTag: {_tag()}\n").encode())
    scripts = proj.get("scripts", {})
    if scripts:
        ep = "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items())
        whl.add(f"{dist_info}/entry_points.txt", ep.encode())
    whl.add(f"{dist_info}/top_level.txt", ("\n".join(PACKAGES) + "\n").encode())
    whl.close(f"{dist_info}/RECORD")
    return name


def build_sdist(sdist_directory, config_settings=None):
    """The files git tracks: enough to run `make` and build the wheel."""
    proj = _project()
    base = f"{proj['name']}-{proj['version']}"
    files = subprocess.run(["git", "-C", ROOT, "ls-files", "-z"], check=True,
                           capture_output=True).stdout.decode().split("\0")
    name = f"{base}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for f in filter(None, files):
            if os.path.isfile(os.path.join(ROOT, f)):
                tar.add(os.path.join(ROOT, f), arcname=f"{base}/{f}", recursive=False)
        pkg_info = _metadata(proj).encode()
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        info.size = len(pkg_info)
        tar.addfile(info, io.BytesIO(pkg_info))
    return name
