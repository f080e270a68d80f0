/* Test shim around tracer/pyframes.c, loaded into Python with ctypes (which
 * drops the GIL around the call, as PyTorch does before it allocates). */
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tracer/pyframes.h"

#define EXPORT __attribute__((visibility("default")))

/* The calling thread's frames joined with '\n' into out; returns the count,
 * or -ENOSPC when out is too small. */
EXPORT int msv_test_frames(char *out, int len)
{
	char frames[64][MSV_PYFRAME_LEN];
	int n = _msv_pyframes_read(frames, 64), i, w = 0, l;

	if (len <= 0)
		return -ENOSPC;
	out[0] = '\0';
	for (i = 0; i < n; i++) {
		l = (int)strlen(frames[i]);
		if (w + l + 2 > len)
			return -ENOSPC;
		memcpy(out + w, frames[i], (size_t)l);
		w += l;
		out[w++] = '\n';
		out[w] = '\0';
	}
	return n;
}

/* At most max frames: checks the cap. */
EXPORT int msv_test_frames_max(int max)
{
	char frames[4][MSV_PYFRAME_LEN];

	return _msv_pyframes_read(frames, max > 4 ? 4 : max);
}

EXPORT const char *msv_test_version(void)
{
	return _msv_pyframes_version();
}

EXPORT int msv_test_init(void)
{
	return _msv_pyframes_init();
}

/* Nanoseconds per read of up to max frames, averaged over iters calls. */
EXPORT double msv_test_bench(int iters, int max)
{
	char frames[64][MSV_PYFRAME_LEN];
	struct timespec a, b;
	volatile int sink = 0;
	int i;

	if (max > 64)
		max = 64;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (i = 0; i < iters; i++)
		sink += _msv_pyframes_read(frames, max);
	clock_gettime(CLOCK_MONOTONIC, &b);
	(void)sink;
	return ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / iters;
}

/* Reads made while the interpreter was finalizing, by msv_test_read_forever. */
static volatile int reads_finalizing;

EXPORT int msv_test_reads_finalizing(void)
{
	return reads_finalizing;
}

/* Called from a daemon thread through ctypes (GIL released) and never
 * returns: reads the thread's frames every 100 us until the process exits.
 * During shutdown CPython frees the thread states of daemon threads while
 * they run C code (Py_FinalizeEx), so a read once finalization has begun
 * must find no frames.  The interpreter's own flag is checked before each
 * read: finalization never ends once begun, so a read that started after
 * the flag was set and still returned frames read a freed thread state; the
 * test process exits 3 there and then. */
EXPORT void msv_test_read_forever(void)
{
	int (*finalizing)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "Py_IsFinalizing");
	char frames[8][MSV_PYFRAME_LEN];
	struct timespec gap = {0, 100 * 1000};
	static const char msg[] = "FAIL: frames read after the interpreter began finalizing\n";

	if (!finalizing)
		finalizing = (int (*)(void))dlsym(RTLD_DEFAULT, "_Py_IsFinalizing");
	for (;;) {
		int fin = finalizing && finalizing();
		int n = _msv_pyframes_read(frames, 8);
		if (fin && n > 0) {
			if (write(2, msg, sizeof(msg) - 1) < 0)
				_exit(4);
			_exit(3);
		}
		if (fin)
			reads_finalizing++;
		nanosleep(&gap, NULL);
	}
}
