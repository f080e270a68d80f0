"""The helpers of torch_memory_saver.utils that callers import."""

import contextlib
import os

import memsaver


def get_binary_path_from_package(name="torch_memory_saver_hook_mode_preload"):
    """The library to put in LD_PRELOAD.  torch_memory_saver ships one per
    hook mode; memsaver has one library for every mode, so name only has to
    be one of torch_memory_saver's."""
    if not name.startswith("torch_memory_saver"):
        raise ValueError(f"{name!r} is not a torch_memory_saver library name")
    path = memsaver.library_path()
    if path is None:
        raise FileNotFoundError("libmemsaver.so not found: pip install memsaver, or set MEMSAVER_LIB")
    return path


@contextlib.contextmanager
def change_env(key, value):
    """Set os.environ[key] inside the block; restore (or remove) it after."""
    old = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old
