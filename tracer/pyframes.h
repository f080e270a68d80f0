/* Python call sites of the calling thread, read from C without the GIL.
 *
 * The library needs no Python headers or libpython at build time: at first
 * use it looks the interpreter up in the process (dlsym RTLD_DEFAULT), picks
 * the frame layout of that CPython minor version, and from then on walks the
 * calling thread's own frame chain by reading memory.  It never takes the GIL,
 * never allocates Python objects, never runs Python code, takes no lock and
 * makes no system call per read.
 *
 * Supported: CPython 3.10, 3.11, 3.12 and 3.13, default (GIL) builds, x86-64
 * and other LP64 little-endian targets.  Anything else reads as "no frames".
 *
 * Functions return int: a count, 0 = success, or a negative errno.
 *
 * Thread-safety: _msv_pyframes_init runs its work once (pthread_once) and may
 * be called from any thread, any number of times; _msv_pyframes_read calls it.
 * _msv_pyframes_read only reads the calling thread's frames, which are stable
 * while that thread is inside the call, so concurrent reads from different
 * threads are safe.  It must not be called from a signal handler that
 * interrupted the interpreter mid-frame-push.
 *
 * Ownership: the caller owns the frame buffers; nothing is retained. */
#ifndef MSV_PYFRAMES_H
#define MSV_PYFRAMES_H

/* Bytes of one rendered frame, including the terminating NUL. */
#define MSV_PYFRAME_LEN 256
/* Frames visited per read at most, whatever max says (guards a corrupt chain). */
#define MSV_PYFRAME_HOPS 256

/* Detect the CPython in this process once.  0 = supported, -ENOENT = no
 * Python in the process (or not yet initialized), -ENOTSUP = a version or
 * build we cannot read (logged once).  Later calls return the first result. */
int _msv_pyframes_init(void);

/* Read the calling thread's Python frames, innermost first, into frames[0..max).
 * Each is "FILE:LINE:FUNCTION", NUL-terminated; when too long, the start of
 * FILE is replaced by "..." so the file's basename, line and function survive.
 * Returns the number of frames written: 0 when there is no Python, the
 * interpreter is finalizing (thread states are being freed), the thread has
 * no Python thread state or no frame, or the version is not supported.  frames may be NULL when max <= 0. */
int _msv_pyframes_read(char (*frames)[MSV_PYFRAME_LEN], int max);

/* The detected version, e.g. "3.12.3", or "" when none; a static string. */
const char *_msv_pyframes_version(void);

#endif
