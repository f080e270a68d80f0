/* Shared by the C benchmarks in bench/ (standalone programs, not the
 * library): a monotonic clock, the process's resident set and a check that
 * ends the benchmark on the first failing driver call. */
#ifndef MSV_BENCH_UTIL_H
#define MSV_BENCH_UTIL_H

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double bench_now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static inline long bench_rss_kib(void)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/self/status", "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

/* The driver library for dlsym; without one the benchmark ends with 77
 * (skipped), saying why. */
static inline void *bench_libcuda(void)
{
	void *h = dlopen("libcuda.so.1", RTLD_NOW);
	if (!h) {
		fprintf(stderr, "%s\n", dlerror());
		exit(77);
	}
	return h;
}

#define BENCH_CHECK(x)                                                                             \
	do {                                                                                       \
		CUresult r_ = (x);                                                                 \
		if (r_ != CUDA_SUCCESS) {                                                          \
			fprintf(stderr, "%s:%d: %s failed: %d\n", __FILE__, __LINE__, #x, (int)r_); \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

#endif
