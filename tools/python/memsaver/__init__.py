"""Python binding of libmemsaver.so (ctypes; nothing to build).

The library must already be in the process: run the engine under
``memsaver run``, which preloads it.  Outside ``memsaver run`` set
MEMSAVER_LIB to the library's path.

The names follow torch_memory_saver, so an engine adapter switches by
changing its import::

    from memsaver import torch_memory_saver      # was: from torch_memory_saver import ...

    with torch_memory_saver.region(tag="kv_cache"):
        kv = torch.empty(...)
    torch_memory_saver.pause("kv_cache")          # or pause(["kv", "graph"]); None = all
    torch_memory_saver.resume("kv_cache")

Tags are memsaver categories (weights, kv, graph, workspace, comm, other);
torch_memory_saver's usual tag names are accepted too (kv_cache -> kv,
cuda_graph -> graph, model_weights -> weights).  What a pause does to each
category (discard, zero, backup to host) comes from the memsaver policy,
not from the caller.

Every failure raises MemsaverError with the library's message
(msv_last_error()).  The module also speaks the control socket protocol
(see control()), which needs no library: ``python -m memsaver status``.
"""

import contextlib
import ctypes
import json
import os
import socket as _socket

__all__ = [
    "CATEGORIES",
    "MemsaverError",
    "MemorySaver",
    "torch_memory_saver",
    "available",
    "pause",
    "resume",
    "region",
    "snapshot",
    "report",
    "control",
    "socket_path",
    "library_path",
    "cli_path",
]

CATEGORIES = ("weights", "kv", "graph", "workspace", "comm", "other")

# torch_memory_saver tag names used by SGLang and others.
_ALIASES = {
    "kv_cache": "kv",
    "cuda_graph": "graph",
    "model_weights": "weights",
}


class MemsaverError(RuntimeError):
    """A memsaver call failed; the message is the library's (msv_last_error()).

    ``code`` is the negative errno the C function returned (or None)."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


_lib = None

# Where `pip install` puts the native files (tools/python/build_backend.py),
# and where a source checkout builds them.
_PKG = os.path.dirname(os.path.abspath(__file__))
_CARRIED = os.path.join(_PKG, "_native")
_CHECKOUT_BUILD = os.path.join(_PKG, "..", "..", "..", os.environ.get("MEMSAVER_BUILD", "build"))


def _first(paths):
    for p in paths:
        if p and os.path.isfile(p):
            return os.path.realpath(p)
    return None


def library_path():
    """Path of libmemsaver.so: MEMSAVER_LIB, else the copy pip installed
    with this package, else the build directory of a source checkout
    (MEMSAVER_BUILD, default build/).  None when none exists."""
    return _first([os.environ.get("MEMSAVER_LIB"),
                   os.path.join(_CARRIED, "lib", "libmemsaver.so"),
                   os.path.join(_CHECKOUT_BUILD, "lib", "libmemsaver.so")])


def cli_path():
    """Path of the `memsaver` CLI carried by this package or built in the
    checkout; None when neither exists."""
    return _first([os.path.join(_CARRIED, "bin", "memsaver"),
                   os.path.join(_CHECKOUT_BUILD, "bin", "memsaver")])


def _load():
    """Return the ctypes handle of libmemsaver.so, loading it once."""
    global _lib
    if _lib is not None:
        return _lib
    lib = None
    try:
        candidate = ctypes.CDLL(None)
        candidate.msv_pause  # noqa: B018  (raises AttributeError when absent)
        lib = candidate
    except (OSError, AttributeError):
        path = os.environ.get("MEMSAVER_LIB")
        if path:
            try:
                lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                lib.msv_pause  # noqa: B018
            except (OSError, AttributeError) as e:
                raise MemsaverError(f"MEMSAVER_LIB={path} is not a usable libmemsaver.so: {e}") from None
    if lib is None:
        raise MemsaverError(
            "libmemsaver.so is not loaded in this process: start the engine with "
            "`memsaver run -- <command>` (or set MEMSAVER_LIB to the library's path)"
        )
    names = ["msv_pause", "msv_resume", "msv_snapshot", "msv_report_write", "msv_region_begin"]
    if hasattr(lib, "msv_pause_deep"):  # an older library has none: pause(deep=True) says so
        names.append("msv_pause_deep")
    for name in names:
        getattr(lib, name).argtypes = [ctypes.c_char_p]
        getattr(lib, name).restype = ctypes.c_int
    lib.msv_region_end.argtypes = []
    lib.msv_region_end.restype = ctypes.c_int
    lib.msv_last_error.argtypes = []
    lib.msv_last_error.restype = ctypes.c_char_p
    _lib = lib
    return lib


def available():
    """True when libmemsaver.so can be used from this process."""
    try:
        _load()
        return True
    except MemsaverError:
        return False


def _category(tag):
    name = _ALIASES.get(tag, tag)
    if name not in CATEGORIES:
        valid = ", ".join(CATEGORIES + tuple(_ALIASES))
        raise ValueError(f"unknown memsaver tag {tag!r}; valid: {valid}")
    return name


def _categories(tag):
    """None/"" -> None (every wrapped category); str or list -> "kv,graph"."""
    if tag is None or tag == "":
        return None
    if isinstance(tag, str):
        tags = [t.strip() for t in tag.split(",") if t.strip()]
    else:
        tags = list(tag)
    return ",".join(_category(t) for t in tags) or None


def _check(rc):
    if rc != 0:
        msg = _load().msv_last_error()
        raise MemsaverError(msg.decode(errors="replace") if msg else f"memsaver call failed ({rc})", rc)


def _b(s):
    return None if s is None else os.fsencode(s)


class MemorySaver:
    """The torch_memory_saver-like object; use the module's
    ``torch_memory_saver`` singleton rather than making another."""

    @property
    def enabled(self):
        """True when the library is loaded (calls would reach it)."""
        return available()

    def pause(self, tag=None, deep=False):
        """Release the physical memory of the tag's categories (None: every
        category the policy wraps), keeping the virtual addresses.  Blocks
        until the GPU work is done and any backup is copied.

        deep=True then has the driver checkpoint the rest (CUDA context
        included) to host memory, through the `memsaver` CLI run on this
        process (msv_pause_deep; not for an engine started with `memsaver
        run --cupti`).  Until resume(), every CUDA call of the process
        blocks.  On failure MemsaverError says why; the process may then be
        normally paused."""
        lib = _load()
        if deep and not hasattr(lib, "msv_pause_deep"):
            raise MemsaverError("this libmemsaver.so has no msv_pause_deep: deep pause needs a newer memsaver")
        _check((lib.msv_pause_deep if deep else lib.msv_pause)(_b(_categories(tag))))

    def resume(self, tag=None):
        """Map the tag's categories again at the same addresses and restore
        their contents (after a deep pause, the driver's restore comes
        first).  On out-of-memory the state stays paused and MemsaverError
        names the bytes needed and free."""
        _check(_load().msv_resume(_b(_categories(tag))))

    @contextlib.contextmanager
    def region(self, tag=None, enable_cpu_backup=None):
        """Allocations made by this thread inside the block get the tag's
        category, overriding the policy rules.  Regions do not nest.

        tag None means "other".  enable_cpu_backup is accepted for
        torch_memory_saver compatibility; whether a category is backed up
        is the policy's choice (`memsaver policy check` shows it)."""
        del enable_cpu_backup
        lib = _load()
        cat = _category(tag) if tag is not None else "other"
        _check(lib.msv_region_begin(_b(cat)))
        try:
            yield
        finally:
            _check(lib.msv_region_end())

    def snapshot(self, label):
        """Record a phase marker with a device-memory reading under label."""
        if not label:
            raise ValueError("snapshot needs a non-empty label")
        _check(_load().msv_snapshot(_b(str(label))))

    def report(self, path=None):
        """Write the JSON attribution report to path (None: MEMSAVER_REPORT)
        and return the path written (None when it was the configured one)."""
        _check(_load().msv_report_write(_b(None if path is None else os.fspath(path))))
        return path


torch_memory_saver = MemorySaver()
pause = torch_memory_saver.pause
resume = torch_memory_saver.resume
region = torch_memory_saver.region
snapshot = torch_memory_saver.snapshot
report = torch_memory_saver.report


# ---- the control socket (no library needed) -------------------------------

def _socket_dir():
    d = os.environ.get("MEMSAVER_SOCKET_DIR")
    if d:
        return d.rstrip("/") or "/"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and xdg.startswith("/"):
        return os.path.join(xdg, "memsaver")
    return f"/tmp/memsaver-{os.geteuid()}"


def socket_path(pid=None, session=None):
    """The control socket of process pid (default: this one) in session
    (default: MEMSAVER_SESSION, else "default"), as saver/control.h says."""
    session = session or os.environ.get("MEMSAVER_SESSION") or "default"
    return os.path.join(_socket_dir(), session, f"memsaver-{pid or os.getpid()}.sock")


def _find(pid=None):
    base = _socket_dir()
    found = []
    try:
        sessions = os.listdir(base)
    except FileNotFoundError:
        sessions = []
    for s in sessions:
        d = os.path.join(base, s)
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for n in names:
            if n.startswith("memsaver-") and n.endswith(".sock"):
                p = n[len("memsaver-"):-len(".sock")]
                if p.isdigit() and (pid is None or int(p) == pid):
                    found.append(os.path.join(d, n))
    return found


def control(cmd, pid=None, socket=None, timeout=None, **fields):
    """Send one request to a control socket and return the reply as a dict.

    The target is socket, else the socket of pid, else the only socket
    found.  fields become request members (tags=..., label=..., path=...).
    Raises MemsaverError when the reply is not ok."""
    if socket is None:
        cands = _find(pid)
        live = []
        for c in cands:
            s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            try:
                s.settimeout(2)
                s.connect(c)
                live.append(c)
            except OSError:
                pass
            finally:
                s.close()
        if len(live) != 1:
            raise MemsaverError(f"{len(live)} live memsaver sockets found under {_socket_dir()}; "
                                "pass pid= or socket=")
        socket = live[0]
    if timeout is None:
        timeout = 600 if cmd in ("pause", "resume") else 10
    req = dict(fields, cmd=cmd)
    with _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(socket)
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(1 << 16)
            if not chunk:
                raise MemsaverError(f"{socket} closed the connection without a reply")
            buf += chunk
    reply = json.loads(buf.split(b"\n", 1)[0])
    if not reply.get("ok"):
        raise MemsaverError(reply.get("error", "request failed"), reply.get("code"))
    return reply
