/* Helpers shared by the fakecuda tests (header only, static functions).
 * Every test runs in its own forked child (CK_FORK), so configuration set
 * with setenv() before the first CUDA call in the test applies to it. */
#ifndef FAKECUDA_TEST_COMMON_H
#define FAKECUDA_TEST_COMMON_H

#include <check.h>
#include <dlfcn.h>
#include <cuda.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fakecuda.h"

#define CU_OK(call)                                                          \
	do {                                                                 \
		CUresult r_ = (call);                                        \
		ck_assert_msg(r_ == CUDA_SUCCESS, "%s = %d", #call, (int)r_); \
	} while (0)

#define CU_IS(call, want)                                                         \
	do {                                                                      \
		CUresult r_ = (call);                                             \
		ck_assert_msg(r_ == (want), "%s = %d, want %d", #call, (int)r_, (int)(want)); \
	} while (0)

#define MiB (1ull << 20)
#define GiB (1ull << 30)

/* cuInit + primary context current; returns the context. */
static inline CUcontext fc_setup(void)
{
	CUcontext ctx;
	CU_OK(cuInit(0));
	CU_OK(cuDevicePrimaryCtxRetain(&ctx, 0));
	CU_OK(cuCtxSetCurrent(ctx));
	return ctx;
}

static inline uint64_t fc_used(void)
{
	size_t free_b, total;
	CU_OK(cuMemGetInfo(&free_b, &total));
	return total - free_b;
}

/* 1 when reading *p kills a child with SIGSEGV or SIGBUS. */
static inline int fc_read_faults(const volatile unsigned char *p)
{
	pid_t pid = fork();
	if (pid == 0) {
		/* Die of the signal itself, even under a sanitizer's handler. */
		signal(SIGSEGV, SIG_DFL);
		signal(SIGBUS, SIG_DFL);
		volatile unsigned char c = *p;
		(void)c;
		_exit(0);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	return WIFSIGNALED(st) && (WTERMSIG(st) == SIGSEGV || WTERMSIG(st) == SIGBUS);
}

static inline int fc_run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif /* FAKECUDA_TEST_COMMON_H */
