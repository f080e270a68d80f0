"""Checks tracer/pyframes.c from inside Python.

usage: python3 frames_probe.py PROBE_LIBRARY

The probe library wraps _msv_pyframes_read; ctypes releases the GIL around
the call, so the read happens exactly as in an allocation under PyTorch.  Each
check compares the frames the library returns with traceback.extract_stack()
taken on the same line.  Exit status 0 when every check passed.
"""
import ctypes
import errno
import sys
import threading
import traceback

lib = ctypes.CDLL(sys.argv[1])
# The probe's own frame is the innermost one: the line that calls the library.
PROBE_LINE = next(i for i, l in enumerate(open(__file__, encoding="utf-8"), 1)
                  if l.rstrip().endswith("# PROBE" + "CALL"))
lib.msv_test_frames.argtypes = [ctypes.c_char_p, ctypes.c_int]
lib.msv_test_frames.restype = ctypes.c_int
lib.msv_test_version.restype = ctypes.c_char_p
lib.msv_test_bench.argtypes = [ctypes.c_int, ctypes.c_int]
lib.msv_test_bench.restype = ctypes.c_double
failures = []


def probe():
    buf = ctypes.create_string_buffer(64 * 256)
    n = lib.msv_test_frames(buf, len(buf))  # PROBECALL
    assert n >= 0, n
    text = buf.value.decode("utf-8")
    got = text.split("\n")[:-1] if text else []
    assert len(got) == n, (n, got)
    return got


def expected(stack):
    # extract_stack() lists outermost first and ends with the probing line.
    return ["%s:%d:%s" % (fs.filename, fs.lineno, fs.name) for fs in reversed(stack)]


def check(name, got, stack):
    want = ["%s:%d:probe" % (__file__, PROBE_LINE)] + expected(stack)
    if got != want:
        failures.append(name)
        print("FAIL %s\n  got:  %s\n  want: %s" % (name, "\n        ".join(got), "\n        ".join(want)))
    else:
        print("ok   %s (%d frames, innermost %s)" % (name, len(got), got[0]))


def level3():
    got, stack = probe(), traceback.extract_stack(); return got, stack


def level2():
    return level3()


def level1():
    return level2()


class Holder:
    def method(self):
        got, stack = probe(), traceback.extract_stack(); return got, stack


def gen():
    got, stack = probe(), traceback.extract_stack(); yield got, stack


def via_c_callback():
    # sorted() calls the key from C: 3.12+ pushes a C-stack shim frame there.
    out = []
    sorted([2, 1], key=lambda x: out.append((probe(), traceback.extract_stack())) or x)
    return out[0]


def fünf():
    got, stack = probe(), traceback.extract_stack(); return got, stack


def 函数():
    got, stack = probe(), traceback.extract_stack(); return got, stack


# The library reuses what it rendered for a frame at the same address with
# the same code at the same instruction: one function probing from two lines,
# and two functions alike probing from one caller line, alternate and repeat.
def two_lines(first):
    if first:
        got, stack = probe(), traceback.extract_stack(); return got, stack
    got, stack = probe(), traceback.extract_stack(); return got, stack


def twin_a():
    got, stack = probe(), traceback.extract_stack(); return got, stack


def twin_b():
    got, stack = probe(), traceback.extract_stack(); return got, stack


def recurse(k):
    if k == 0:
        got, stack = probe(), traceback.extract_stack(); return got, stack
    return recurse(k - 1)


def main():
    print("python %s, library says %r, init %d" % (
        sys.version.split()[0], lib.msv_test_version().decode(), lib.msv_test_init()))
    if not (3, 10) <= sys.version_info[:2] <= (3, 13):
        # Outside the supported range the library must decline, not guess.
        ok = lib.msv_test_init() == -errno.ENOTSUP and probe() == []
        print("%s unsupported version declined" % ("ok  " if ok else "FAIL"))
        return 0 if ok else 1
    if lib.msv_test_init() != 0:
        print("FAIL library does not support this python")
        return 1
    version = lib.msv_test_version().decode()
    if version != sys.version.split()[0]:
        failures.append("version")
        print("FAIL version %r != %r" % (version, sys.version.split()[0]))

    check("nested", *level1())
    check("method", *Holder().method())
    check("generator", *next(gen()))
    check("c-callback", *via_c_callback())
    check("latin1-name", *fünf())
    check("ucs2-name", *函数())
    for i, w in enumerate("aabbabab"):
        check("repeat, line %s (%d)" % (w, i), *two_lines(w == "a"))
        check("repeat, twin %s (%d)" % (w, i), *(twin_a() if w == "a" else twin_b()))

    # A long file name keeps its tail: "..." + end of path + line + function.
    long_name = "/very/" + "long/" * 80 + "memory_pool.py"
    ns = {"probe": probe, "traceback": traceback}
    exec(compile("def alloc():\n    got, stack = probe(), traceback.extract_stack(); return got, stack\n",
                 long_name, "exec"), ns)
    got, stack = ns["alloc"]()
    inner = got[1] if len(got) > 1 else ""
    if not (inner.startswith("...") and inner.endswith("/memory_pool.py:2:alloc") and len(inner) == 255):
        failures.append("long-file")
        print("FAIL long-file: %r (len %d)" % (inner, len(inner)))
    else:
        print("ok   long-file (%d bytes, %s)" % (len(inner), inner[-40:]))
        check("long-file-outer", got[:1] + got[2:], stack[:-1])

    # Deeper than the probe's 64 frames: the cap holds and the innermost are kept.
    got, stack = recurse(100)
    want = ["%s:%d:probe" % (__file__, PROBE_LINE)] + expected(stack)
    want = want[:64]
    if got != want:
        failures.append("deep")
        print("FAIL deep: got %d frames, first mismatch %s" % (
            len(got), next((g, w) for g, w in zip(got + [""] * 64, want) if g != w)))
    else:
        print("ok   deep (capped at %d)" % len(got))
    if lib.msv_test_frames_max(2) != 2 or lib.msv_test_frames_max(0) != 0:
        failures.append("max")
        print("FAIL max")

    # Another thread reads its own frames, not the main thread's.
    result = {}

    def worker():
        result["r"] = level1()

    t = threading.Thread(target=worker, name="probe-thread")
    t.start()
    t.join()
    check("thread", *result["r"])

    # Several threads at once, each many times.
    errors = []

    def hammer(i):
        for _ in range(200):
            got, stack = level1()
            if got[1:] != expected(stack):
                errors.append((i, got))
                return

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        failures.append("threads")
        print("FAIL threads: %r" % (errors[0],))
    else:
        print("ok   threads (8 x 200 reads)")

    def bench(k):
        # A small function 12 frames deep, as in an engine's allocation path.
        if k:
            return bench(k - 1)
        return (lib.msv_test_bench(100000, 64), len(traceback.extract_stack()),
                lib.msv_test_bench(100000, 1))

    per_read, depth, one = bench(10)
    print("cost: %.0f ns per read of %d frames, %.0f ns capped at 1 frame" % (per_read, depth, one))

    if failures:
        print("FAILED: %s" % ", ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
