"""Checks that tracer/pyframes.c reads no frames once CPython finalizes.

usage: python3 shutdown_probe.py PROBE_LIBRARY

A daemon thread sits in C (ctypes drops the GIL, as PyTorch does around an
allocation) reading its own frames in a loop while the main thread exits.
Py_FinalizeEx frees daemon threads' states right after it marks the runtime
finalizing; a global whose __del__ sleeps during module teardown keeps the
interpreter in that state for a while.  The probe exits 3 if a read made
after finalization began returned frames; otherwise the __del__ prints how
many reads were made during finalization (the shell script wants > 0).
"""
import ctypes
import sys
import threading
import time

lib = ctypes.CDLL(sys.argv[1])
lib.msv_test_read_forever.restype = None
lib.msv_test_reads_finalizing.restype = ctypes.c_int
if lib.msv_test_init() != 0:
    print("reads while finalizing: skipped (version not supported)")
    sys.exit(0)


class Linger:
    def __del__(self, sleep=time.sleep, count=lib.msv_test_reads_finalizing, out=sys.stdout):
        sleep(0.3)
        out.write("reads while finalizing: %d\n" % count())
        out.flush()


# The thread runs the C function itself: a Python function of this module
# on its stack would keep this module's globals, and so Linger, alive.
threading.Thread(target=lib.msv_test_read_forever, daemon=True).start()
time.sleep(0.05)
linger = Linger()
print("main thread exits")
