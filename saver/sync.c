#include "sync.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "own_thread.h"
#include "tracer/driver.h"
#include "tracer/thread.h"

/* One job: the contexts to synchronize and the answer.  A job the pause
 * gave up on is freed by the thread when the GPU finally answers. */
struct sync_job {
	pthread_mutex_t m;
	pthread_cond_t c;
	size_t n;
	CUresult rc;
	int done, abandoned;
	CUcontext ctx[]; /* every distinct context of the regions */
};

/* The syncing thread: generation `gen` waits for a job in `pending`; a
 * thread whose generation is no longer current (it was stuck and a later
 * pause replaced it) ends after its job.  One pause at a time posts. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t posted = PTHREAD_COND_INITIALIZER;
static struct sync_job *pending;
static uint64_t gen;
static int alive, busy;

static void job_free(struct sync_job *j)
{
	pthread_cond_destroy(&j->c);
	pthread_mutex_destroy(&j->m);
	free(j);
}

static CUresult sync_list(const CUcontext *ctx, size_t n)
{
	const struct msv_driver *d = _msv_drv();
	CUresult rc = CUDA_SUCCESS;
	MSV_BUSY_BEGIN();
	for (size_t i = 0; i < n && rc == CUDA_SUCCESS; i++) {
		CUcontext old;
		if ((rc = d->cuCtxPushCurrent(ctx[i])) != CUDA_SUCCESS)
			break;
		rc = d->cuCtxSynchronize();
		d->cuCtxPopCurrent(&old);
	}
	MSV_BUSY_END();
	return rc;
}

static void run_job(struct sync_job *j)
{
	CUresult rc = sync_list(j->ctx, j->n);
	pthread_mutex_lock(&j->m);
	j->rc = rc;
	j->done = 1;
	int abandoned = j->abandoned;
	pthread_cond_signal(&j->c);
	pthread_mutex_unlock(&j->m);
	if (abandoned)
		job_free(j);
}

static void *syncer(void *arg)
{
	uint64_t mine = (uint64_t)(uintptr_t)arg;
	_msv_own_thread_start();
	pthread_mutex_lock(&lock);
	while (mine == gen) {
		if (!pending) {
			pthread_cond_wait(&posted, &lock);
			continue;
		}
		struct sync_job *j = pending;
		pending = NULL;
		pthread_mutex_unlock(&lock);
		run_job(j);
		pthread_mutex_lock(&lock);
		if (mine == gen)
			busy = 0;
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

/* Hand j to the syncing thread, starting one when there is none or the
 * last one is stuck.  0 when no thread could be started.  Locked. */
static int post(struct sync_job *j)
{
	if (!alive || busy) {
		pthread_t t;
		pthread_attr_t a;
		pthread_attr_init(&a);
		pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
		uint64_t next = gen + 1;
		int ok = pthread_create(&t, &a, syncer, (void *)(uintptr_t)next) == 0;
		pthread_attr_destroy(&a);
		if (!ok)
			return 0;
		pthread_setname_np(t, "memsaver-sync");
		gen = next; /* a stuck thread ends when it returns */
		alive = 1;
		pthread_cond_broadcast(&posted);
	}
	pending = j;
	busy = 1;
	pthread_cond_broadcast(&posted);
	return 1;
}

/* A child of fork has no syncing thread; the lock may have been held. */
static void at_fork_child(void)
{
	pthread_mutex_init(&lock, NULL);
	pthread_cond_init(&posted, NULL);
	pending = NULL;
	alive = busy = 0;
}

static void at_fork_prepare(void)
{
	pthread_mutex_lock(&lock);
}

static void at_fork_parent(void)
{
	pthread_mutex_unlock(&lock);
}

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void register_fork(void)
{
	pthread_atfork(at_fork_prepare, at_fork_parent, at_fork_child);
}

CUresult _msv_sync_contexts(struct msv_region **list, size_t n, int timeout_s)
{
	struct sync_job *j = calloc(1, sizeof(*j) + n * sizeof(j->ctx[0]));
	if (!j)
		return CUDA_ERROR_OUT_OF_MEMORY;
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;
		while (k < j->n && j->ctx[k] != list[i]->ctx)
			k++;
		if (k == j->n)
			j->ctx[j->n++] = list[i]->ctx;
	}
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&j->m, NULL);
	pthread_cond_init(&j->c, &ca);
	pthread_condattr_destroy(&ca);
	pthread_once(&fork_once, register_fork);
	pthread_mutex_lock(&lock);
	int posted_ok = timeout_s > 0 && post(j);
	pthread_mutex_unlock(&lock);
	if (!posted_ok) {
		CUresult rc = sync_list(j->ctx, j->n);
		job_free(j);
		return rc;
	}
	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += timeout_s;
	pthread_mutex_lock(&j->m);
	while (!j->done && pthread_cond_timedwait(&j->c, &j->m, &dl) != ETIMEDOUT)
		;
	int done = j->done;
	CUresult rc = done ? j->rc : CUDA_ERROR_TIMEOUT;
	j->abandoned = !done;
	pthread_mutex_unlock(&j->m);
	if (done)
		job_free(j);
	return rc;
}
