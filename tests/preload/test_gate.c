/* The launch gate (saver/gate.h), preloaded on the fake driver.  A pause
 * from outside is made the way the control socket makes it: on a thread
 * named "memsaver-ctl".  main() re-executes the program once with
 * MEMSAVER_GATE_TIMEOUT=2 and MEMSAVER_PAUSE_TIMEOUT=1 (options are read
 * when the library loads).  Each test runs in its own forked child. */
#include <pthread.h>
#include <time.h>

#include "common.h"

#define MiB ((size_t)1 << 20)

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + t.tv_nsec / 1e9;
}

struct op {
	int resume; /* 0: pause */
	int delay_ms;
	int rc;
};

static void *ctl_thread(void *arg)
{
	struct op *o = arg;
	pthread_setname_np(pthread_self(), "memsaver-ctl");
	usleep((useconds_t)o->delay_ms * 1000);
	o->rc = o->resume ? D.resume(NULL) : D.pause(NULL);
	return NULL;
}

/* A pause or resume from outside, synchronously. */
static int ctl(int resume)
{
	struct op o = {.resume = resume};
	pthread_t t;
	pthread_create(&t, NULL, ctl_thread, &o);
	pthread_join(t, NULL);
	return o.rc;
}

static CUdeviceptr gp;
static CUresult grc;
static double gwaited;

static void copy_in(void *arg)
{
	(void)arg;
	unsigned char b[4096];
	memset(b, 7, sizeof(b));
	double t0 = now();
	grc = D.htod(gp, b, sizeof(b));
	gwaited = now() - t0;
}

/* A copy while paused from outside waits (one log line) and runs after the
 * resume, into the memory brought back. */
START_TEST(test_waits_until_resume)
{
	cuda_up();
	CU_OK(D.alloc(&gp, 4 * MiB));
	fill(gp, 4 * MiB, 5);
	struct msv_rec a;
	ck_assert_msg(find_alloc(gp, &a) && (a.flags & MSV_F_WRAPPED), "the allocation is not wrapped");
	size_t before = used();
	ck_assert_int_eq(ctl(0), 0);
	ck_assert_msg(used() < before, "the pause released nothing");
	struct op r = {.resume = 1, .delay_ms = 300};
	pthread_t t;
	pthread_create(&t, NULL, ctl_thread, &r);
	char *log = capture_stderr(copy_in, NULL);
	pthread_join(t, NULL);
	ck_assert_int_eq(r.rc, 0);
	ck_assert_msg(grc == CUDA_SUCCESS, "copy while paused: %d", grc);
	ck_assert_msg(gwaited > 0.25, "the copy did not wait for the resume (%.3f s)", gwaited);
	ck_assert_msg(strstr(log, "waits for resume") && strstr(log, "cuMemcpyHtoD"), "log: %s", log);
	free(log);
	unsigned char b[4096];
	CU_OK(D.dtoh(b, gp, sizeof(b)));
	for (size_t i = 0; i < sizeof(b); i++)
		ck_assert_int_eq(b[i], 7);
	CU_OK(D.free(gp));
}
END_TEST

/* The deadline: still paused after MEMSAVER_GATE_TIMEOUT, the call fails
 * with CUDA_ERROR_TIMEOUT, says so, and did nothing. */
START_TEST(test_deadline)
{
	cuda_up();
	CU_OK(D.alloc(&gp, 4 * MiB));
	fill(gp, 4 * MiB, 9);
	ck_assert_int_eq(ctl(0), 0);
	char *log = capture_stderr(copy_in, NULL);
	ck_assert_msg(grc == CUDA_ERROR_TIMEOUT, "want CUDA_ERROR_TIMEOUT, got %d", grc);
	ck_assert_msg(gwaited > 1.9 && gwaited < 10, "waited %.3f s with MEMSAVER_GATE_TIMEOUT=2", gwaited);
	ck_assert_msg(strstr(log, "MEMSAVER_GATE_TIMEOUT") && strstr(log, "CUDA_ERROR_TIMEOUT"), "log: %s", log);
	free(log);
	ck_assert_int_eq(ctl(1), 0);
	ck_assert_msg(check(gp, 4 * MiB, 9), "the timed-out copy wrote something");
	CU_OK(D.free(gp));
}
END_TEST

/* Work into a capturing stream records and runs nothing: it passes the
 * closed gate, and the capture survives the pause.  (It records into kept
 * memory: the fake checks a node's memory when it is recorded.) */
START_TEST(test_capture_passes)
{
	cuda_up();
	CUdeviceptr w, keep;
	CUstream cs;
	CUgraph g = NULL;
	CU_OK(D.alloc(&w, 4 * MiB));
	ck_assert_int_eq(D.region_begin("other"), 0);
	CU_OK(D.alloc(&keep, 2 * MiB));
	D.region_end();
	CU_OK(D.streamCreate(&cs, CU_STREAM_NON_BLOCKING));
	CU_OK(D.beginCapture(cs, CU_STREAM_CAPTURE_MODE_GLOBAL));
	ck_assert_int_eq(ctl(0), 0);
	double t0 = now();
	CU_OK(D.memsetAsync(keep, 1, 4096, cs));
	ck_assert_msg(now() - t0 < 1, "a launch into a capturing stream waited at the gate");
	CU_OK(D.endCapture(cs, &g));
	ck_assert(g != NULL);
	ck_assert_int_eq(ctl(1), 0);
	CU_OK(D.free(w));
	CU_OK(D.free(keep));
}
END_TEST

/* A pause the application makes itself leaves the gate open: it knows, and
 * may go on working on memory it kept. */
START_TEST(test_self_pause_not_gated)
{
	cuda_up();
	CUdeviceptr w, keep;
	CU_OK(D.alloc(&w, 4 * MiB));
	ck_assert_int_eq(D.region_begin("other"), 0);
	CU_OK(D.alloc(&keep, 2 * MiB));
	D.region_end();
	ck_assert_int_eq(D.pause(NULL), 0);
	gp = keep;
	char *log = capture_stderr(copy_in, NULL);
	ck_assert_msg(grc == CUDA_SUCCESS && gwaited < 1, "copy into kept memory: %d after %.3f s", grc, gwaited);
	ck_assert_msg(!strstr(log, "waits for resume"), "log: %s", log);
	free(log);
	ck_assert_int_eq(D.resume(NULL), 0);
	CU_OK(D.free(w));
	CU_OK(D.free(keep));
}
END_TEST

/* The gate closes before the pause synchronizes; a pause whose synchronize
 * gives up (MEMSAVER_PAUSE_TIMEOUT) released nothing and opens it again:
 * the waiting call then runs. */
START_TEST(test_failed_pause_opens)
{
	char hold[64];
	snprintf(hold, sizeof(hold), "/tmp/msv-gate-hold-%d", (int)getpid());
	FILE *f = fopen(hold, "w");
	ck_assert(f != NULL);
	fclose(f);
	setenv("FAKECUDA_SYNC_HOLD", hold, 1);
	cuda_up();
	CU_OK(D.alloc(&gp, 4 * MiB));
	struct op p = {.resume = 0};
	pthread_t t;
	pthread_create(&t, NULL, ctl_thread, &p);
	char e[80];
	snprintf(e, sizeof(e), "%s.entered", hold);
	for (int i = 0; i < 500 && access(e, F_OK) != 0; i++)
		usleep(10000);
	ck_assert_msg(access(e, F_OK) == 0, "the pause never reached its synchronize");
	copy_in(NULL); /* waits: the gate closed before the synchronize */
	pthread_join(t, NULL);
	unlink(hold);
	unlink(e);
	ck_assert_msg(p.rc != 0, "the pause succeeded with the GPU held");
	ck_assert_msg(grc == CUDA_SUCCESS, "copy after the failed pause: %d", grc);
	ck_assert_msg(gwaited > 0.5, "the copy did not wait while the pause synchronized (%.3f s)", gwaited);
	CU_OK(D.free(gp));
}
END_TEST

int main(int argc, char **argv)
{
	(void)argc;
	if (!getenv("MEMSAVER_GATE_TIMEOUT")) {
		setenv("MEMSAVER_GATE_TIMEOUT", "2", 1);
		setenv("MEMSAVER_PAUSE_TIMEOUT", "1", 1);
		execv("/proc/self/exe", argv);
		perror("execv");
		return 1;
	}
	Suite *s = suite_create("preload_gate");
	TCase *tc = tcase_create("gate");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_waits_until_resume);
	tcase_add_test(tc, test_deadline);
	tcase_add_test(tc, test_capture_passes);
	tcase_add_test(tc, test_self_pause_not_gated);
	tcase_add_test(tc, test_failed_pause_opens);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
