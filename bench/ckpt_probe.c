/* What the driver's process checkpoint does with a set of processes, called
 * as a ctl would call it but with no memsaver in the way: lock every pid
 * (timeout 10 s), checkpoint every pid, restore every pid, unlock every pid,
 * in that order, each step's result and time printed as a JSON line.  A
 * failed step stops the forward steps; whatever was locked is still
 * restored (if checkpointed) and unlocked.  bench/deep_nccl.py runs it on a
 * two-rank NCCL job, which memsaver's ctl refuses before asking the driver
 * on drivers before 610 (docs/deep-pause.md).
 *
 * usage: bench-ckpt_probe PID...   (exit 77 without the API, 1 on a failure) */
#include <cuda.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"

#define F(name) static __typeof__(&name) p_##name
F(cuInit);
F(cuGetErrorName);
F(cuCheckpointProcessLock);
F(cuCheckpointProcessCheckpoint);
F(cuCheckpointProcessRestore);
F(cuCheckpointProcessUnlock);
F(cuCheckpointProcessGetState);

static const char *err(CUresult r)
{
	const char *s = NULL;
	if (p_cuGetErrorName)
		p_cuGetErrorName(r, &s);
	return s ? s : "?";
}

static int step(const char *what, int pid, CUresult (*fn)(int, void *), void *args)
{
	double t = bench_now_ms();
	CUresult r = fn(pid, args);
	CUprocessState st = 0;
	CUresult sr = p_cuCheckpointProcessGetState(pid, &st);
	printf("{\"bench\":\"ckpt_probe\",\"step\":\"%s\",\"pid\":%d,\"rc\":%d,\"error\":\"%s\",\"ms\":%.1f,"
	       "\"state\":%d}\n",
	       what, pid, (int)r, err(r), bench_now_ms() - t, sr == CUDA_SUCCESS ? (int)st : -1);
	fflush(stdout);
	return r == CUDA_SUCCESS;
}

int main(int argc, char **argv)
{
	int n = argc - 1, pid[64];
	if (n < 1 || n > 64) {
		fprintf(stderr, "usage: bench-ckpt_probe PID...\n");
		return 2;
	}
	for (int i = 0; i < n; i++)
		pid[i] = atoi(argv[i + 1]);
	void *h = bench_libcuda();
#define L(name) p_##name = (__typeof__(p_##name))dlsym(h, #name)
	L(cuInit);
	L(cuGetErrorName);
	L(cuCheckpointProcessLock);
	L(cuCheckpointProcessCheckpoint);
	L(cuCheckpointProcessRestore);
	L(cuCheckpointProcessUnlock);
	L(cuCheckpointProcessGetState);
	if (!p_cuInit || !p_cuCheckpointProcessLock || !p_cuCheckpointProcessGetState || p_cuInit(0) != CUDA_SUCCESS) {
		fprintf(stderr, "no process checkpoint API in this driver\n");
		return 77;
	}
	typedef CUresult (*fn_t)(int, void *);
	CUcheckpointLockArgs la = {.timeoutMs = 10000};
	CUcheckpointCheckpointArgs ca = {0};
	CUcheckpointRestoreArgs ra = {0};
	CUcheckpointUnlockArgs ua = {0};
	int locked = 0, checkpointed = 0, ok = 1;
	while (ok && locked < n)
		if ((ok = step("lock", pid[locked], (fn_t)p_cuCheckpointProcessLock, &la)))
			locked++;
	while (ok && checkpointed < n)
		if ((ok = step("checkpoint", pid[checkpointed], (fn_t)p_cuCheckpointProcessCheckpoint, &ca)))
			checkpointed++;
	int good = ok;
	for (int i = 0; i < checkpointed; i++)
		good &= step("restore", pid[i], (fn_t)p_cuCheckpointProcessRestore, &ra);
	for (int i = 0; i < locked; i++)
		good &= step("unlock", pid[i], (fn_t)p_cuCheckpointProcessUnlock, &ua);
	return good ? 0 : 1;
}
