/* Test shim around tracer/pyframes.c, loaded into Python with ctypes (which
 * drops the GIL around the call, as PyTorch does before it allocates). */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

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
