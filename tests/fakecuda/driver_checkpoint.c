/* The driver's process checkpoint (cuCheckpointProcess*) in the libcuda double.
 *
 * The real API is called by one process on ANOTHER process's pid; the driver
 * reaches the target through the kernel module.  The double has no kernel
 * module, so each process that sets FAKECUDA_DEVICE_DIR serves a Unix socket
 * $FAKECUDA_DEVICE_DIR/fakecuda-<pid>.sock from cuInit on (one thread per
 * connection), and a cuCheckpointProcess* call on a pid is a request on that
 * pid's socket.  The same sockets answer "usage" so that the NVML double can
 * report device-wide memory (fakecuda_device_used), as the real NVML does.
 *
 * State machine of the target, as documented in cuda.h:
 *   RUNNING -Lock-> LOCKED -Checkpoint-> CHECKPOINTED -Restore-> LOCKED
 *   -Unlock-> RUNNING; any other transition is CUDA_ERROR_ILLEGAL_STATE.
 * - Lock: CUDA_ERROR_NOT_SUPPORTED (801) when a CUPTI subscriber was EVER
 *   installed in the target (measured on driver 580, NOTES-CUDA.md), even
 *   after it unsubscribed.  New API calls of the target block at entry until
 *   it is RUNNING again; Lock waits for the calls in flight to return, and
 *   after timeoutMs (0: forever) gives up, leaves RUNNING and returns
 *   CUDA_ERROR_NOT_READY.
 * - Checkpoint: the target's accounted device memory (fakecuda_get_usage)
 *   becomes "host" memory: its used bytes read 0 until Restore.  Contents
 *   stay where they are (device memory is host memory here).
 * - Restore: needs the held bytes free on the device (total minus what the
 *   other processes of FAKECUDA_DEVICE_DIR use).  Short of it, the double
 *   does what driver 580 does (cuda-checkpoint#44): CUDA_ERROR_OUT_OF_MEMORY
 *   and the process is FAILED for good: later Restore gives
 *   CUDA_ERROR_OPERATING_SYSTEM, Unlock CUDA_ERROR_ILLEGAL_STATE, and every
 *   API call of the target blocks.  A caller must check free memory first.
 * - FAKECUDA_CHECKPOINT_MS: Checkpoint and Restore each take this long in
 *   the target (the copy), default 0; tests kill the caller meanwhile.  The
 *   target finishes the operation whether or not its caller is still there.
 * - FAKECUDA_NO_CHECKPOINT=1: cuGetProcAddress does not know the API (an old
 *   driver); the exported symbols stay, as nobody should link them.
 * - A pid without a socket: CUDA_ERROR_INVALID_VALUE.  The caller must have
 *   called cuInit: CUDA_ERROR_NOT_INITIALIZED otherwise. */
#include "driver_internal.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t ck_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ck_cond = PTHREAD_COND_INITIALIZER;
static _Atomic int ck_state = CU_PROCESS_STATE_RUNNING;
static int ck_inflight;     /* API calls of this process in progress, under ck_lock */
static uint64_t ck_held;    /* bytes checkpointed to "host" */
static _Atomic int ck_cupti_ever;
static _Atomic int ck_inited; /* cuInit ran in this process */
static __thread int ck_depth; /* nested API calls of this thread */
static char ck_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static pid_t ck_owner;

static const char *ck_dir(void)
{
	const char *d = getenv("FAKECUDA_DEVICE_DIR");
	return d && *d ? d : NULL;
}

void _fc_ckpt_cupti_subscribed(void)
{
	atomic_store(&ck_cupti_ever, 1);
}

int _fc_ckpt_hidden(const char *symbol)
{
	const char *e = getenv("FAKECUDA_NO_CHECKPOINT");
	return e && (*e == '1' || *e == 't' || *e == 'o') &&
	       strncmp(symbol, "cuCheckpointProcess", 19) == 0;
}

int _fc_ckpt_released(void)
{
	int s = atomic_load(&ck_state);
	return s == CU_PROCESS_STATE_CHECKPOINTED || s == CU_PROCESS_STATE_FAILED;
}

static int is_checkpoint_cbid(uint32_t cbid)
{
	return cbid >= CUPTI_DRIVER_TRACE_CBID_cuCheckpointProcessGetRestoreThreadId &&
	       cbid <= CUPTI_DRIVER_TRACE_CBID_cuCheckpointProcessUnlock;
}

void _fc_ckpt_gate_enter(uint32_t cbid)
{
	if (ck_depth++ || is_checkpoint_cbid(cbid))
		return;
	pthread_mutex_lock(&ck_lock);
	while (atomic_load(&ck_state) != CU_PROCESS_STATE_RUNNING)
		pthread_cond_wait(&ck_cond, &ck_lock);
	ck_inflight++;
	pthread_mutex_unlock(&ck_lock);
}

void _fc_ckpt_gate_exit(uint32_t cbid)
{
	if (--ck_depth || is_checkpoint_cbid(cbid))
		return;
	pthread_mutex_lock(&ck_lock);
	if (--ck_inflight == 0)
		pthread_cond_broadcast(&ck_cond);
	pthread_mutex_unlock(&ck_lock);
}

/* ---- the target's side ---------------------------------------------------- */

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static long op_delay_ms(void)
{
	const char *e = getenv("FAKECUDA_CHECKPOINT_MS");
	return e && *e ? strtol(e, NULL, 10) : 0;
}

static uint64_t others_used(void);

static int do_lock(unsigned timeout_ms)
{
	if (atomic_load(&ck_cupti_ever))
		return CUDA_ERROR_NOT_SUPPORTED;
	pthread_mutex_lock(&ck_lock);
	if (atomic_load(&ck_state) != CU_PROCESS_STATE_RUNNING) {
		pthread_mutex_unlock(&ck_lock);
		return CUDA_ERROR_ILLEGAL_STATE;
	}
	atomic_store(&ck_state, CU_PROCESS_STATE_LOCKED);
	struct timespec end;
	clock_gettime(CLOCK_REALTIME, &end);
	end.tv_sec += timeout_ms / 1000;
	end.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (end.tv_nsec >= 1000000000L)
		end.tv_sec++, end.tv_nsec -= 1000000000L;
	int rc = 0;
	while (ck_inflight > 0 && rc == 0)
		rc = timeout_ms ? pthread_cond_timedwait(&ck_cond, &ck_lock, &end)
				: pthread_cond_wait(&ck_cond, &ck_lock);
	if (ck_inflight > 0) {
		atomic_store(&ck_state, CU_PROCESS_STATE_RUNNING);
		pthread_cond_broadcast(&ck_cond);
		pthread_mutex_unlock(&ck_lock);
		return CUDA_ERROR_NOT_READY;
	}
	pthread_mutex_unlock(&ck_lock);
	return CUDA_SUCCESS;
}

static int do_checkpoint(void)
{
	if (atomic_load(&ck_state) != CU_PROCESS_STATE_LOCKED)
		return CUDA_ERROR_ILLEGAL_STATE;
	sleep_ms(op_delay_ms());
	struct fakecuda_usage u;
	fakecuda_get_usage(&u);
	pthread_mutex_lock(&ck_lock);
	ck_held = u.used;
	atomic_store(&ck_state, CU_PROCESS_STATE_CHECKPOINTED);
	pthread_mutex_unlock(&ck_lock);
	return CUDA_SUCCESS;
}

static int do_restore(void)
{
	int s = atomic_load(&ck_state);
	if (s == CU_PROCESS_STATE_FAILED)
		return CUDA_ERROR_OPERATING_SYSTEM;
	if (s != CU_PROCESS_STATE_CHECKPOINTED)
		return CUDA_ERROR_ILLEGAL_STATE;
	sleep_ms(op_delay_ms());
	struct fakecuda_usage u;
	fakecuda_get_usage(&u); /* for the total */
	uint64_t others = others_used();
	pthread_mutex_lock(&ck_lock);
	if (others > u.total || ck_held > u.total - others) {
		atomic_store(&ck_state, CU_PROCESS_STATE_FAILED);
		pthread_mutex_unlock(&ck_lock);
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	ck_held = 0;
	atomic_store(&ck_state, CU_PROCESS_STATE_LOCKED);
	pthread_mutex_unlock(&ck_lock);
	return CUDA_SUCCESS;
}

static int do_unlock(void)
{
	pthread_mutex_lock(&ck_lock);
	if (atomic_load(&ck_state) != CU_PROCESS_STATE_LOCKED) {
		pthread_mutex_unlock(&ck_lock);
		return CUDA_ERROR_ILLEGAL_STATE;
	}
	atomic_store(&ck_state, CU_PROCESS_STATE_RUNNING);
	pthread_cond_broadcast(&ck_cond);
	pthread_mutex_unlock(&ck_lock);
	return CUDA_SUCCESS;
}

/* One request line "<op> [arg]", one reply line "<CUresult> <value>". */
static void *serve_one(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[128];
	size_t have = 0;
	while (have < sizeof(buf) - 1) {
		ssize_t r = recv(fd, buf + have, sizeof(buf) - 1 - have, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		have += (size_t)r;
		if (memchr(buf, '\n', have))
			break;
	}
	buf[have] = '\0';
	char op[32] = "";
	unsigned long long a = 0, value = 0;
	int rc = CUDA_ERROR_INVALID_VALUE;
	if (sscanf(buf, "%31s %llu", op, &a) >= 1) {
		if (!strcmp(op, "state"))
			rc = CUDA_SUCCESS, value = (unsigned long long)atomic_load(&ck_state);
		else if (!strcmp(op, "usage")) {
			struct fakecuda_usage u;
			fakecuda_get_usage(&u);
			rc = CUDA_SUCCESS, value = u.used;
		} else if (!strcmp(op, "lock"))
			rc = do_lock((unsigned)a);
		else if (!strcmp(op, "checkpoint"))
			rc = do_checkpoint();
		else if (!strcmp(op, "restore"))
			rc = do_restore();
		else if (!strcmp(op, "unlock"))
			rc = do_unlock();
	}
	char out[64];
	int n = snprintf(out, sizeof(out), "%d %llu\n", rc, value);
	if (send(fd, out, (size_t)n, MSG_NOSIGNAL) < 0 && errno != EPIPE)
		fprintf(stderr, "fakecuda: checkpoint service: send: %s\n", strerror(errno));
	close(fd);
	return NULL;
}

static void *service(void *arg)
{
	int lfd = (int)(intptr_t)arg;
	for (;;) {
		int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL;
		}
		pthread_t th;
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&th, &at, serve_one, (void *)(intptr_t)c) != 0)
			close(c);
		pthread_attr_destroy(&at);
	}
}

static void service_unlink(void)
{
	if (ck_owner == getpid())
		unlink(ck_path);
}

void _fc_ckpt_start(void)
{
	atomic_store(&ck_inited, 1);
	const char *dir = ck_dir();
	if (!dir)
		return;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (snprintf(ck_path, sizeof(ck_path), "%s/fakecuda-%d.sock", dir, (int)getpid()) >=
	    (int)sizeof(ck_path)) {
		fprintf(stderr, "fakecuda: FAKECUDA_DEVICE_DIR too long; no checkpoint service\n");
		return;
	}
	strcpy(sa.sun_path, ck_path);
	unlink(ck_path);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 16) != 0) {
		fprintf(stderr, "fakecuda: checkpoint service on %s: %s\n", ck_path, strerror(errno));
		if (lfd >= 0)
			close(lfd);
		return;
	}
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_t th;
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	int e = pthread_create(&th, &at, service, (void *)(intptr_t)lfd);
	pthread_attr_destroy(&at);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e) {
		fprintf(stderr, "fakecuda: checkpoint service thread: %s\n", strerror(e));
		close(lfd);
		unlink(ck_path);
		return;
	}
	ck_owner = getpid();
	atexit(service_unlink);
}

/* ---- the caller's side ---------------------------------------------------- */

/* Send "<op> <arg>" to pid's service; 0 and the reply, or a CUresult. */
static CUresult ask(int pid, const char *op, unsigned long long a, unsigned long long *value)
{
	const char *dir = ck_dir();
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (!dir || pid <= 0 ||
	    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/fakecuda-%d.sock", dir, pid) >=
		    (int)sizeof(sa.sun_path))
		return CUDA_ERROR_INVALID_VALUE;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return CUDA_ERROR_OPERATING_SYSTEM;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return CUDA_ERROR_INVALID_VALUE;
	}
	char req[64], rep[64];
	int n = snprintf(req, sizeof(req), "%s %llu\n", op, a);
	size_t have = 0;
	CUresult rc = CUDA_ERROR_OPERATING_SYSTEM;
	if (send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
		for (;;) {
			ssize_t r = recv(fd, rep + have, sizeof(rep) - 1 - have, 0);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			have += (size_t)r;
		}
		rep[have] = '\0';
		int code;
		unsigned long long v;
		if (sscanf(rep, "%d %llu", &code, &v) == 2) {
			rc = (CUresult)code;
			if (value)
				*value = v;
		}
	}
	close(fd);
	return rc;
}

static uint64_t sum_used(int skip_self)
{
	const char *dir = ck_dir();
	uint64_t sum = 0;
	DIR *d = dir ? opendir(dir) : NULL;
	struct dirent *e;
	if (!d)
		return 0;
	while ((e = readdir(d)) != NULL) {
		int pid, end = 0;
		unsigned long long v;
		if (sscanf(e->d_name, "fakecuda-%d.sock%n", &pid, &end) != 1 || e->d_name[end])
			continue;
		if (pid == (int)getpid()) {
			if (!skip_self) {
				struct fakecuda_usage u;
				fakecuda_get_usage(&u);
				sum += u.used;
			}
			continue;
		}
		if (ask(pid, "usage", 0, &v) == CUDA_SUCCESS)
			sum += v;
	}
	closedir(d);
	return sum;
}

static uint64_t others_used(void)
{
	return sum_used(1);
}

FC_EXPORT void fakecuda_device_used(uint64_t *used, int *shared)
{
	if (shared)
		*shared = ck_dir() != NULL;
	if (!used)
		return;
	if (ck_dir() && ck_owner == getpid()) {
		*used = sum_used(0);
	} else {
		struct fakecuda_usage u;
		fakecuda_get_usage(&u);
		*used = u.used + (ck_dir() ? sum_used(1) : 0);
	}
}

static CUresult remote(int pid, const char *op, unsigned long long a, unsigned long long *v)
{
	if (!atomic_load(&ck_inited))
		return CUDA_ERROR_NOT_INITIALIZED;
	return ask(pid, op, a, v);
}

static CUresult do_get_state(int pid, CUprocessState *state)
{
	unsigned long long v = 0;
	if (!state)
		return CUDA_ERROR_INVALID_VALUE;
	CUresult rc = remote(pid, "state", 0, &v);
	if (rc == CUDA_SUCCESS)
		*state = (CUprocessState)v;
	return rc;
}

static CUresult do_restore_tid(int pid, int *tid)
{
	unsigned long long v = 0;
	if (!tid)
		return CUDA_ERROR_INVALID_VALUE;
	CUresult rc = remote(pid, "state", 0, &v);
	if (rc == CUDA_SUCCESS)
		*tid = pid;
	return rc;
}

FC_EXPORT CUresult cuCheckpointProcessGetRestoreThreadId(int pid, int *tid)
TRACE(cuCheckpointProcessGetRestoreThreadId, do_restore_tid(pid, tid), pid, tid)

FC_EXPORT CUresult cuCheckpointProcessGetState(int pid, CUprocessState *state)
TRACE(cuCheckpointProcessGetState, do_get_state(pid, state), pid, state)

FC_EXPORT CUresult cuCheckpointProcessLock(int pid, CUcheckpointLockArgs *args)
TRACE(cuCheckpointProcessLock, remote(pid, "lock", args ? args->timeoutMs : 0, NULL), pid, args)

FC_EXPORT CUresult cuCheckpointProcessCheckpoint(int pid, CUcheckpointCheckpointArgs *args)
TRACE(cuCheckpointProcessCheckpoint, remote(pid, "checkpoint", 0, NULL), pid, args)

FC_EXPORT CUresult cuCheckpointProcessRestore(int pid, CUcheckpointRestoreArgs *args)
TRACE(cuCheckpointProcessRestore, remote(pid, "restore", 0, NULL), pid, args)

FC_EXPORT CUresult cuCheckpointProcessUnlock(int pid, CUcheckpointUnlockArgs *args)
TRACE(cuCheckpointProcessUnlock, remote(pid, "unlock", 0, NULL), pid, args)
