/* FAKECUDA_OTHERS_FILE: device memory held by other processes.
 *
 * The file holds one size (plain bytes or 8GiB, 512MiB, as the other
 * FAKECUDA_* sizes); a missing, empty or unreadable file means 0.  It is
 * read at every allocation check and every cuMemGetInfo, so a test (or a
 * helper standing in for another engine) can take memory while an engine
 * is paused and give it back later: allocations that no longer fit fail
 * with CUDA_ERROR_OUT_OF_MEMORY and cuMemGetInfo reports the smaller free,
 * as on a GPU shared by several processes.  fakecuda_get_usage() still
 * reports this process alone. */
#include "driver_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *path;
static pthread_once_t path_once = PTHREAD_ONCE_INIT;

static void path_load(void)
{
	path = getenv("FAKECUDA_OTHERS_FILE");
}

uint64_t _fc_others_bytes(void)
{
	pthread_once(&path_once, path_load);
	if (!path || !*path)
		return 0;
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	char buf[64] = "";
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *end;
	unsigned long long v = strtoull(buf, &end, 10);
	uint64_t mul = 1;
	switch (*end) {
	case 'K': case 'k': mul = 1ull << 10; break;
	case 'M': case 'm': mul = 1ull << 20; break;
	case 'G': case 'g': mul = 1ull << 30; break;
	case 'T': case 't': mul = 1ull << 40; break;
	default: break;
	}
	return (uint64_t)v * mul;
}
