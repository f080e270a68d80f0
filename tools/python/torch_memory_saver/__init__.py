"""torch_memory_saver's Python API, backed by memsaver.

Code written against torch_memory_saver runs unchanged::

    from torch_memory_saver import torch_memory_saver

    with torch_memory_saver.region(tag="weights", enable_cpu_backup=True):
        model = load_model()
    with torch_memory_saver.region(tag="kv_cache"):
        kv = torch.empty(...)
    with torch_memory_saver.cuda_graph(graph, pool=pool, tag="cuda_graph"):
        out = model(static_input)
    torch_memory_saver.pause("kv_cache")
    torch_memory_saver.resume("kv_cache")
    with torch_memory_saver.disable():
        buf = torch.empty(...)      # never paused, stays an ordinary cudaMalloc

What differs from torch_memory_saver (docs/python.md says more):

* A tag is a memsaver category (TAGS below; MEMSAVER_TMS_TAGS adds more as
  "tag=category,...").  Tags of one category pause and resume together.
  An unknown tag raises ValueError instead of becoming a new pool.
* What a pause does to a category (discard, zero, backup) is the policy's
  action, not enable_cpu_backup.  A region that asks for a CPU backup of a
  category the policy discards gets a warning, once per tag.
* hook_mode ("preload" or "torch") and memory_margin_bytes are accepted and
  change nothing: memsaver always interposes the driver, and a resume that
  runs out of memory rolls back and raises instead of exiting.
* get_cpu_backup() is not available (memsaver has no API for it yet).

The library must be in the process (LD_PRELOAD); configure_subprocess()
sets that up for child processes as torch_memory_saver's does.
"""

import contextlib
import logging
import os
import sys
import threading

import memsaver
from memsaver import MemsaverError

from .utils import change_env, get_binary_path_from_package

__all__ = [
    "TAGS",
    "TorchMemorySaver",
    "torch_memory_saver",
    "configure_subprocess",
    "get_binary_path_from_package",
    "change_env",
]

logger = logging.getLogger(__name__)

_TAG_DEFAULT = "default"

# The tags SGLang (srt/constants.py), verl and slime pass, and the memsaver
# category each lands in.  "default" is what torch_memory_saver calls an
# untagged region; untagged memory is "other" in memsaver too.
TAGS = {
    "default": "other",
    "weights": "weights",
    "weights_drafter": "weights",
    "model_weights": "weights",
    "kv_cache": "kv",
    "cuda_graph": "graph",
}


def _tag_table():
    table = dict(TAGS)
    table.update({c: c for c in memsaver.CATEGORIES})
    extra = os.environ.get("MEMSAVER_TMS_TAGS", "")
    for item in filter(None, (x.strip() for x in extra.split(","))):
        tag, sep, cat = item.partition("=")
        if not sep or cat.strip() not in memsaver.CATEGORIES:
            raise ValueError(f"MEMSAVER_TMS_TAGS: {item!r} is not TAG=CATEGORY "
                             f"(categories: {', '.join(memsaver.CATEGORIES)})")
        table[tag.strip()] = cat.strip()
    return table


def category_of(tag):
    """The memsaver category of a torch_memory_saver tag (None: "default")."""
    table = _tag_table()
    key = _TAG_DEFAULT if tag is None else tag
    if key not in table:
        raise ValueError(f"torch_memory_saver tag {key!r} has no memsaver category; known tags: "
                         f"{', '.join(sorted(table))}; add it with MEMSAVER_TMS_TAGS={key}=CATEGORY")
    return table[key]


class _State(threading.local):
    def __init__(self):
        super().__init__()
        self.open = []  # categories of the regions this thread has open, innermost last


class _Shared:
    """Process-wide state every TorchMemorySaver instance shares (SGLang
    makes more than one; torch_memory_saver keeps one native state too)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pools = {}  # category -> torch.cuda.MemPool
        self.actions = None  # category -> action, from the library's status
        self.warned = set()
        self.hook_mode = "preload"
        self.memory_margin_bytes = 0


_shared = _Shared()
_tls = _State()


def _torch():
    """torch when the caller already imported it (a torch-free engine never
    pays for the import)."""
    return sys.modules.get("torch")


def _actions():
    """category -> action of the running library, read once from its own
    control socket; {} when the socket is off (MEMSAVER_CONTROL=0)."""
    with _shared.lock:
        if _shared.actions is None:
            try:
                st = memsaver.control("status", pid=os.getpid(), timeout=5)["status"]
                _shared.actions = {c: v.get("action") for c, v in st.get("categories", {}).items()}
            except (MemsaverError, OSError, KeyError, ValueError):
                _shared.actions = {}
        return _shared.actions


def _check_backup(tag, cat, enable_cpu_backup):
    action = _actions().get(cat)
    if enable_cpu_backup and action in ("discard", "zero", "keep"):
        key = (tag, "backup")
        if key not in _shared.warned:
            _shared.warned.add(key)
            logger.warning(
                "torch_memory_saver tag %r asked for a CPU backup, but memsaver's policy has "
                "action %r for category %r: %s; set \"actions\": {\"%s\": \"backup\"} in the policy",
                tag, action, cat,
                "its contents are lost on pause" if action != "keep" else "it is never released",
                cat)


def _pool(cat):
    """The torch MemPool of a category, so that blocks of one category never
    share a cached segment with another (a segment pauses as a whole)."""
    torch = _torch()
    if torch is None or not hasattr(torch.cuda, "MemPool"):
        return None
    with _shared.lock:
        if cat not in _shared.pools:
            _shared.pools[cat] = torch.cuda.MemPool()
        return _shared.pools[cat]


@contextlib.contextmanager
def _use_pool(pool):
    if pool is None:
        yield
    else:
        with _torch().cuda.use_mem_pool(pool):
            yield


@contextlib.contextmanager
def _region(cat):
    """Open a memsaver region of cat on this thread; an outer region of ours
    is closed for the duration (memsaver regions do not nest) and reopened."""
    lib = memsaver._load()
    outer = _tls.open[-1] if _tls.open else None
    if outer is not None:
        memsaver._check(lib.msv_region_end())
    try:
        memsaver._check(lib.msv_region_begin(cat.encode()))
    except MemsaverError:
        if outer is not None:
            memsaver._check(lib.msv_region_begin(outer.encode()))
        raise
    _tls.open.append(cat)
    try:
        yield
    finally:
        _tls.open.pop()
        memsaver._check(lib.msv_region_end())
        if outer is not None:
            memsaver._check(lib.msv_region_begin(outer.encode()))


def _keep_category():
    """A category the policy never wraps, for disable(): its allocations
    stay ordinary cudaMalloc memory (IPC-capable, never paused)."""
    acts = _actions()
    for cat in ("other", "comm") + memsaver.CATEGORIES:
        if acts.get(cat) == "keep":
            return cat
    if acts:
        raise MemsaverError("disable(): memsaver's policy wraps every category, so nothing can be "
                            "allocated outside its regions; give one category the action keep")
    return "other"  # the built-in policy keeps it


class TorchMemorySaver:
    """torch_memory_saver.TorchMemorySaver.  Every instance drives the one
    libmemsaver.so of the process; use the module's torch_memory_saver."""

    @contextlib.contextmanager
    def region(self, tag=_TAG_DEFAULT, enable_cpu_backup=False):
        """Allocations this thread makes inside get the tag's category.  With
        torch imported they also come from a memory pool of that category."""
        cat = category_of(tag)
        memsaver._load()
        _check_backup(tag, cat, enable_cpu_backup)
        with _use_pool(_pool(cat)), _region(cat):
            yield

    @contextlib.contextmanager
    def cuda_graph(self, cuda_graph, pool=None, stream=None, capture_error_mode="global",
                   tag=_TAG_DEFAULT, enable_cpu_backup=False):
        """torch.cuda.graph(...) whose capture-time allocations (the graph's
        memory pool) get the tag's category; an untagged capture is "graph",
        which is where memsaver puts capture-time memory anyway."""
        torch = _torch()
        if torch is None:
            import torch  # noqa: F811  (cuda_graph needs torch by definition)
        cat = "graph" if tag in (None, _TAG_DEFAULT) else category_of(tag)
        memsaver._load()
        _check_backup(tag, cat, enable_cpu_backup)
        with torch.cuda.graph(cuda_graph, pool=pool, stream=stream,
                              capture_error_mode=capture_error_mode):
            with _region(cat):
                yield

    @contextlib.contextmanager
    def disable(self):
        """Allocations inside are never paused: they get a category the
        policy keeps (and, with torch, come from a fresh pool dropped at the
        end, so no paused segment serves them)."""
        cat = _keep_category()
        torch = _torch()
        pool = torch.cuda.MemPool() if torch is not None and hasattr(torch.cuda, "MemPool") else None
        with _use_pool(pool), _region(cat):
            yield

    def pause(self, tag=None):
        """Release the physical memory of the tag's category (None: every
        category the policy wraps), keeping the addresses.  Waits for the
        GPU first; pausing what is paused is a no-op with a warning."""
        cats = None if tag is None else category_of(tag)
        memsaver.pause(cats)

    def resume(self, tag=None):
        """Map the tag's category again at the same addresses and restore
        what the policy backs up.  Out of memory raises MemsaverError and
        leaves it paused."""
        cats = None if tag is None else category_of(tag)
        memsaver.resume(cats)

    @property
    def enabled(self):
        """True when libmemsaver.so is in this process."""
        return memsaver.available()

    @property
    def hook_mode(self):
        return _shared.hook_mode

    @hook_mode.setter
    def hook_mode(self, mode):
        # memsaver interposes the driver in every mode; the value is kept
        # for callers that read it back, and may be set at any time.
        if mode not in ("preload", "torch"):
            raise ValueError(f"hook_mode must be 'preload' or 'torch', not {mode!r}")
        _shared.hook_mode = mode

    @property
    def memory_margin_bytes(self):
        return _shared.memory_margin_bytes

    @memory_margin_bytes.setter
    def memory_margin_bytes(self, value):
        # A memsaver resume that does not fit rolls back and raises; there is
        # no margin to keep.
        _shared.memory_margin_bytes = int(value)

    def get_cpu_backup(self, x):
        raise NotImplementedError(
            "get_cpu_backup: memsaver keeps backups in its own staging memory and has no API "
            "that hands them out; read the tensor after resume() instead")


torch_memory_saver = TorchMemorySaver()


def _prepend(value, current):
    parts = [p for p in (current or "").split(":") if p and p != value]
    return ":".join([value] + parts)


@contextlib.contextmanager
def configure_subprocess():
    """Environment for child processes started inside the block: libmemsaver.so
    preloaded and injected (as `memsaver run` does), so the torch_memory_saver
    calls of the child reach it.  MEMSAVER_* settings of this process pass on."""
    lib = memsaver.library_path()
    if lib is None:
        raise MemsaverError("configure_subprocess: libmemsaver.so not found (pip install memsaver, "
                            "or set MEMSAVER_LIB)")
    with contextlib.ExitStack() as stack:
        stack.enter_context(change_env("LD_PRELOAD", _prepend(lib, os.environ.get("LD_PRELOAD"))))
        for key in ("CUDA_INJECTION64_PATH", "NVTX_INJECTION64_PATH"):
            if not os.environ.get(key):
                stack.enter_context(change_env(key, lib))
        yield
