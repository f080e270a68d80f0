/* libmemsaver.so preloaded into a C program that reaches the fake driver the
 * way libcudart does.  Policy (tests/preload/policy.json): everything this
 * program allocates is weights (backup) unless an explicit region says
 * otherwise; other = keep.  Each test runs in its own forked child and
 * initialises CUDA there. */
#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>

#include "common.h"
#include "tests/fakecuda/fakecuda.h"

#define MiB ((size_t)1 << 20)

/* Wrapped memory answers cuMemGetAddressRange and cuPointerGetAttribute
 * like cuMemAlloc memory of the same size. */
START_TEST(test_address_range)
{
	cuda_up();
	size_t size = 3 * MiB + 512;
	CUdeviceptr w, plain, base;
	size_t sz;
	CU_OK(D.alloc(&w, size));
	CU_OK(D.region_begin("other") ? CUDA_ERROR_UNKNOWN : CUDA_SUCCESS);
	CU_OK(D.alloc(&plain, size));
	D.region_end();
	struct msv_rec rw, rp;
	ck_assert(find_alloc(w, &rw) && find_alloc(plain, &rp));
	ck_assert_msg(rw.flags & MSV_F_WRAPPED, "weights not wrapped");
	ck_assert_msg(!(rp.flags & MSV_F_WRAPPED), "other wrapped");
	CUdeviceptr ptrs[2] = {w, plain};
	size_t want_size[2], i;
	for (i = 0; i < 2; i++) {
		CU_OK(D.range(&base, &sz, ptrs[i] + 12345));
		ck_assert_msg(base == ptrs[i], "range base of %s", i ? "plain" : "wrapped");
		want_size[i] = sz;
		CUdeviceptr start = 0;
		size_t asz = 0;
		CU_OK(D.attr(&start, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, ptrs[i] + 777));
		CU_OK(D.attr(&asz, CU_POINTER_ATTRIBUTE_RANGE_SIZE, ptrs[i] + 777));
		ck_assert_msg(start == ptrs[i], "RANGE_START_ADDR of %s", i ? "plain" : "wrapped");
		ck_assert_msg(asz == sz, "RANGE_SIZE %zu vs range %zu (%s)", asz, sz, i ? "plain" : "wrapped");
	}
	ck_assert_msg(want_size[0] == want_size[1], "wrapped range size %zu, cuMemAlloc gives %zu", want_size[0],
		      want_size[1]);
	CU_OK(D.free(w));
	CU_OK(D.free(plain));
}
END_TEST

static CUdeviceptr ipc_ptr;
static CUresult ipc_rc;
static void do_ipc(void *arg)
{
	(void)arg;
	CUipcMemHandle h;
	ipc_rc = D.ipc(&h, ipc_ptr);
}

START_TEST(test_ipc_refused)
{
	cuda_up();
	CU_OK(D.alloc(&ipc_ptr, 4 * MiB));
	char *log = capture_stderr(do_ipc, NULL);
	ck_assert_int_eq(ipc_rc, CUDA_ERROR_INVALID_VALUE);
	ck_assert_msg(strstr(log, "cuIpcGetMemHandle") && strstr(log, "weights") && strstr(log, "preload_test_saver") &&
			      strstr(log, "\"category\": \"comm\""),
		      "log: %s", log);
	free(log);
	log = capture_stderr(do_ipc, NULL); /* said once */
	ck_assert_int_eq(ipc_rc, CUDA_ERROR_INVALID_VALUE);
	ck_assert_msg(!strstr(log, "cuIpcGetMemHandle"), "said twice: %s", log);
	free(log);
	size_t n, refused = 0;
	struct msv_rec *r = trace_records(&n);
	for (size_t i = 0; i < n; i++)
		refused += r[i].type == MSV_REC_SHARED && r[i].api == MSV_SHARE_IPC_REFUSED && r[i].addr == ipc_ptr;
	free(r);
	ck_assert_uint_eq(refused, 1);
	CU_OK(D.free(ipc_ptr));
}
END_TEST

/* An explicit region overrides the policy rules for this thread only. */
static void *other_thread(void *arg)
{
	CU_OK(D.setCurrent(CTX));
	CU_OK(D.alloc((CUdeviceptr *)arg, MiB));
	return NULL;
}

START_TEST(test_region_overrides)
{
	cuda_up();
	CUdeviceptr a, b, c;
	pthread_t t;
	ck_assert_int_eq(D.region_begin("kv"), 0);
	ck_assert_int_ne(D.region_begin("graph"), 0); /* regions do not nest */
	CU_OK(D.alloc(&a, MiB));
	pthread_create(&t, NULL, other_thread, &b);
	pthread_join(t, NULL);
	ck_assert_int_eq(D.region_end(), 0);
	CU_OK(D.alloc(&c, MiB));
	struct msv_rec ra, rb, rc;
	ck_assert(find_alloc(a, &ra) && find_alloc(b, &rb) && find_alloc(c, &rc));
	ck_assert_int_eq(ra.category, MSV_CAT_KV);
	ck_assert(ra.flags & MSV_F_REGION);
	ck_assert_int_eq(rb.category, MSV_CAT_WEIGHTS);
	ck_assert(!(rb.flags & MSV_F_REGION));
	ck_assert_int_eq(rc.category, MSV_CAT_WEIGHTS);
	ck_assert_int_ne(D.region_begin("nonsense"), 0);
	CU_OK(D.free(a));
	CU_OK(D.free(b));
	CU_OK(D.free(c));
}
END_TEST

/* Free a wrapped allocation while paused: nothing leaks, resume works and
 * restores the rest. */
START_TEST(test_free_while_paused)
{
	cuda_up();
	size_t u0 = used();
	CUdeviceptr a, b;
	CU_OK(D.alloc(&a, 5 * MiB));
	CU_OK(D.alloc(&b, 3 * MiB + 100));
	fill(b, 3 * MiB + 100, 7);
	size_t u1 = used();
	ck_assert_int_eq(D.pause(NULL), 0);
	ck_assert_uint_eq(used(), u0);
	CU_OK(D.free(a));
	ck_assert_uint_eq(used(), u0);
	ck_assert_msg(D.resume(NULL) == 0, "resume: %s", D.last_error());
	ck_assert_uint_eq(used(), u1 - 6 * MiB);
	ck_assert_msg(check(b, 3 * MiB + 100, 7), "b not restored");
	/* Free everything while paused: the pause state holds no region. */
	ck_assert_int_eq(D.pause(NULL), 0);
	CU_OK(D.free(b));
	ck_assert_int_eq(D.resume(NULL), 0);
	ck_assert_uint_eq(used(), u0);
}
END_TEST

/* A failed reserve falls back to cuMemAlloc: usable memory, a WRAP_FAIL
 * record, the ALLOC flagged, and a pause leaves it in place. */
START_TEST(test_wrap_failure)
{
	setenv("FAKECUDA_FAIL", "cuMemAddressReserve:1:CUDA_ERROR_OUT_OF_MEMORY", 1);
	cuda_up();
	CUdeviceptr a, b;
	CU_OK(D.alloc(&a, 2 * MiB + 8));
	CU_OK(D.alloc(&b, 2 * MiB + 8));
	fill(a, 2 * MiB + 8, 3);
	struct msv_rec ra, rb;
	ck_assert(find_alloc(a, &ra) && find_alloc(b, &rb));
	ck_assert_msg(ra.flags & MSV_F_WRAP_FAILED, "flags 0x%x", ra.flags);
	ck_assert(!(ra.flags & MSV_F_WRAPPED));
	ck_assert(rb.flags & MSV_F_WRAPPED);
	size_t n, wf = 0;
	struct msv_rec *r = trace_records(&n);
	for (size_t i = 0; i < n; i++)
		if (r[i].type == MSV_REC_WRAP_FAIL) {
			wf++;
			ck_assert_int_eq(r[i].category, MSV_CAT_WEIGHTS);
			ck_assert_uint_eq(r[i].size, 2 * MiB + 8);
			ck_assert_uint_eq(r[i].aux, CUDA_ERROR_OUT_OF_MEMORY);
		}
	free(r);
	ck_assert_uint_eq(wf, 1);
	ck_assert_int_eq(D.pause(NULL), 0);
	ck_assert_msg(check(a, 2 * MiB + 8, 3), "fallback memory unusable while paused");
	ck_assert_int_eq(D.resume(NULL), 0);
	CU_OK(D.free(a));
	CU_OK(D.free(b));
}
END_TEST

/* The segment-tail rule (docs/saver.md): discard and zero keep what
 * PyTorch's caching allocator may have handed to another tensor.  Each row:
 * a segment size, whether it is kept whole, the tail kept otherwise. */
static const struct {
	size_t size;
	int whole;
	size_t tail;
} segments[] = {
	{2 * MiB, 1, 0},                       /* small pool: many tensors */
	{20 * MiB, 1, 0},                      /* large pool buffer for 1-10 MiB requests */
	{10 * MiB, 0, 2 * MiB - 512},          /* a 10 MiB request */
	{12 * MiB, 0, 2 * MiB - 512},          /* 10.5 MiB request: 1.5 MiB remainder */
	{18 * MiB, 0, 2 * MiB - 512},
	{32 * MiB, 0, 2 * MiB - 512},
	{6 * MiB, 0, 0},                       /* not a caching-allocator shape */
	{64 * MiB + 4096, 0, 0},               /* exact size: no remainder to share */
};

static void segment_case(const char *cat, size_t i)
{
	size_t size = segments[i].size, tail = segments[i].whole ? size : segments[i].tail;
	size_t head = size - tail, probe = head < 4096 ? head : 4096;
	CUdeviceptr p;
	ck_assert_int_eq(D.region_begin(cat), 0);
	CU_OK(D.alloc(&p, size));
	ck_assert_int_eq(D.region_end(), 0);
	if (tail)
		fill(p + head, tail, 9);
	if (probe)
		fill(p, probe, 5);
	ck_assert_msg(D.pause(cat) == 0, "pause: %s", D.last_error());
	ck_assert_msg(D.resume(cat) == 0, "resume: %s", D.last_error());
	ck_assert_msg(!tail || check(p + head, tail, 9), "%s segment of %zu bytes: kept tail (%zu bytes) lost", cat,
		      size, tail);
	if (probe && !strcmp(cat, "kv"))
		ck_assert_msg(!check(p, probe, 5), "kv segment of %zu bytes: head came back, not discarded", size);
	if (probe && !strcmp(cat, "workspace")) {
		unsigned char *b = malloc(probe);
		CU_OK(D.dtoh(b, p, probe));
		for (size_t k = 0; k < probe; k++)
			ck_assert_msg(b[k] == 0, "workspace segment of %zu bytes: byte %zu not zeroed", size, k);
		free(b);
	}
	CU_OK(D.free(p));
}

START_TEST(test_segment_tail_discard)
{
	cuda_up();
	segment_case("kv", (size_t)_i);
}
END_TEST

START_TEST(test_segment_tail_zero)
{
	cuda_up();
	segment_case("workspace", (size_t)_i);
}
END_TEST

/* FAKECUDA_SYNC_HOLD: the GPU stays busy while the file exists. */
static char hold[64];

static void hold_gpu(void)
{
	snprintf(hold, sizeof(hold), "/tmp/msv-hold-%d", (int)getpid());
	FILE *f = fopen(hold, "w");
	ck_assert(f != NULL);
	fclose(f);
	setenv("FAKECUDA_SYNC_HOLD", hold, 1);
}

static void wait_entered(void)
{
	char e[80];
	snprintf(e, sizeof(e), "%s.entered", hold);
	for (int i = 0; i < 500 && access(e, F_OK) != 0; i++)
		usleep(10000);
	ck_assert_msg(access(e, F_OK) == 0, "the pause never reached its synchronize");
	unlink(e);
}

static void *pause_thread(void *arg)
{
	CU_OK(D.setCurrent(CTX));
	*(int *)arg = D.pause(NULL);
	return NULL;
}

struct others {
	CUdeviceptr wrapped, made;
	int done;
};

/* What other threads of the engine do while a pause waits for the GPU:
 * allocate (wrapped and pass-through), query pointers, free pass-through
 * memory (a free of wrapped memory waits for the GPU, as cuMemFree does).
 * Relaxed mode, as PyTorch allocates while another thread captures. */
static void *other_work(void *arg)
{
	struct others *o = arg;
	CUdeviceptr b, start = 0;
	CUstreamCaptureMode m = CU_STREAM_CAPTURE_MODE_RELAXED;
	CU_OK(D.setCurrent(CTX));
	CU_OK(D.exchangeMode(&m));
	CU_OK(D.alloc(&o->made, MiB));
	CU_OK(D.attr(&start, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, o->wrapped + 5));
	ck_assert_int_eq(D.region_begin("other"), 0);
	CU_OK(D.alloc(&b, MiB));
	ck_assert_int_eq(D.region_end(), 0);
	CU_OK(D.free(b));
	o->done = start == o->wrapped;
	return NULL;
}

/* The regions lock is not held while the pause waits for the GPU: other
 * threads allocate, free and query meanwhile (the GPU work being waited
 * for may need them), and a capture on another thread is not invalidated. */
START_TEST(test_pause_leaves_others_running)
{
	hold_gpu();
	cuda_up();
	CUdeviceptr w;
	CU_OK(D.alloc(&w, 4 * MiB));
	fill(w, 4 * MiB, 3);
	CUstream cs;
	CUgraph g;
	CU_OK(D.streamCreate(&cs, CU_STREAM_NON_BLOCKING));
	CU_OK(D.beginCapture(cs, CU_STREAM_CAPTURE_MODE_GLOBAL));
	int prc = -1;
	pthread_t pt, ot;
	pthread_create(&pt, NULL, pause_thread, &prc);
	wait_entered();
	struct others o = {.wrapped = w};
	pthread_create(&ot, NULL, other_work, &o);
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 5;
	int joined = pthread_timedjoin_np(ot, NULL, &dl) == 0;
	unlink(hold);
	pthread_join(pt, NULL);
	ck_assert_msg(joined, "alloc/query/free of another thread blocked behind the pause");
	ck_assert(o.done);
	ck_assert_msg(prc == 0, "pause: %s", D.last_error());
	CU_OK(D.endCapture(cs, &g));
	ck_assert_int_eq(D.resume(NULL), 0);
	ck_assert(check(w, 4 * MiB, 3));
	CU_OK(D.free(w));
	CU_OK(D.free(o.made));
}
END_TEST

/* A free of a region the pause is working on returns at once; the pause
 * releases it when it is done, and nothing leaks. */
START_TEST(test_free_during_pause)
{
	hold_gpu();
	cuda_up();
	size_t u0 = used();
	CUdeviceptr w, keep;
	CU_OK(D.alloc(&w, 4 * MiB));
	CU_OK(D.alloc(&keep, 2 * MiB));
	int prc = -1;
	pthread_t pt;
	pthread_create(&pt, NULL, pause_thread, &prc);
	wait_entered();
	CU_OK(D.free(w));
	unlink(hold);
	pthread_join(pt, NULL);
	ck_assert_int_eq(prc, 0);
	ck_assert_uint_eq(used(), u0);
	ck_assert_int_eq(D.resume(NULL), 0);
	ck_assert_uint_eq(used(), u0 + 2 * MiB);
	CU_OK(D.free(keep));
	ck_assert_uint_eq(used(), u0);
}
END_TEST

/* A fork while a pause is in flight: the child's first free returns. */
START_TEST(test_fork_during_pause)
{
	hold_gpu();
	cuda_up();
	CUdeviceptr w, v;
	CU_OK(D.alloc(&w, 4 * MiB));
	CU_OK(D.alloc(&v, 2 * MiB));
	int prc = -1;
	pthread_t pt;
	pthread_create(&pt, NULL, pause_thread, &prc);
	wait_entered();
	pid_t child = fork();
	if (child == 0) {
		alarm(5);
		D.free(w);
		D.free(v);
		_exit(0);
	}
	int st = -1;
	for (int i = 0; i < 600 && waitpid(child, &st, WNOHANG) == 0; i++)
		usleep(10000);
	unlink(hold);
	pthread_join(pt, NULL);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the forked child hung or died (status 0x%x)", st);
	ck_assert_int_eq(prc, 0);
	ck_assert_int_eq(D.resume(NULL), 0);
}
END_TEST

/* The backup must be complete before the unmap (FAKECUDA_DEFER_ASYNC runs
 * async work only when synchronized): _i = 0 when no copy stream can be
 * created (synchronous copies), _i = 1 with copy streams, so the deferred
 * fake is known to be honest. */
START_TEST(test_backup_complete_before_unmap)
{
	setenv("FAKECUDA_DEFER_ASYNC", "1", 1);
	if (_i == 0)
		setenv("FAKECUDA_FAIL", "cuStreamCreate:1+:CUDA_ERROR_OUT_OF_MEMORY", 1);
	cuda_up();
	CUdeviceptr w;
	CU_OK(D.alloc(&w, 40 * MiB));
	fill(w, 40 * MiB, 11);
	ck_assert_msg(D.pause(NULL) == 0, "pause: %s", D.last_error());
	ck_assert_msg(D.resume(NULL) == 0, "resume: %s", D.last_error());
	ck_assert_msg(check(w, 40 * MiB, 11), "%s", _i == 0 ? "backup taken on the NULL stream was never waited for"
							: "backup on the copy streams was never waited for");
	CU_OK(D.ctxSync());
	CU_OK(D.free(w));
}
END_TEST

/* A first pause prepares a large backup in pieces on several threads
 * (saver/host_backup.h) while copying into the pieces already prepared:
 * the bytes come back exactly, every async copy stays inside one piece
 * (the fake refuses one that spans two), the buffer is kept for the next
 * pause and its pieces are unregistered with it.  _i = 1: the second
 * registration fails, so the buffer is used pageable and the pieces that
 * were registered are unregistered at once. */
/* The fake driver's counters (tests/fakecuda/fakecuda.h): calls made to an
 * exported symbol, and msv_restore kernels run. */
static void *fake_sym(const char *name)
{
	void *fake = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
	void *f = fake ? dlsym(fake, name) : NULL;
	ck_assert_msg(f != NULL, "the fake driver has no %s", name);
	return f;
}

static uint64_t fake_calls(const char *name)
{
	return ((uint64_t(*)(const char *))fake_sym("fakecuda_call_count"))(name);
}

/* cuMemAlloc'd (wrapped) memory filled with fill()'s pattern. */
static CUdeviceptr alloc_filled(size_t n, unsigned seed)
{
	CUdeviceptr p;
	CU_OK(D.alloc(&p, n));
	fill(p, n, seed);
	return p;
}

static uint64_t fake_restore_launches(void)
{
	struct fakecuda_usage u;
	((void (*)(struct fakecuda_usage *))fake_sym("fakecuda_get_usage"))(&u);
	return u.restore_launches;
}

START_TEST(test_backup_prepared_in_pieces)
{
	setenv("FAKECUDA_DEFER_ASYNC", "1", 1);
	if (_i == 1)
		setenv("FAKECUDA_FAIL", "cuMemHostRegister:2:CUDA_ERROR_OUT_OF_MEMORY", 1);
	cuda_up();
	size_t size = 200 * MiB; /* pieces of 64 MiB: 64 + 64 + 64 + 8 */
	CUdeviceptr w;
	CU_OK(D.alloc(&w, size));
	fill(w, size, 61);
	uint64_t reg0 = fake_calls("cuMemHostRegister"), unreg0 = fake_calls("cuMemHostUnregister");
	for (int cycle = 0; cycle < 2; cycle++) {
		ck_assert_msg(D.pause(NULL) == 0, "pause %d: %s", cycle, D.last_error());
		ck_assert_msg(D.resume(NULL) == 0, "resume %d: %s", cycle, D.last_error());
		ck_assert_msg(check(w, size, 61), "cycle %d: the backup lost bytes", cycle);
	}
	ck_assert_uint_eq(fake_calls("cuMemHostRegister") - reg0, 4); /* once, not per pause */
	ck_assert_uint_eq(fake_calls("cuMemHostUnregister") - unreg0, _i == 0 ? 0 : 3);
	CU_OK(D.ctxSync());
	CU_OK(D.free(w));
	ck_assert_uint_eq(fake_calls("cuMemHostUnregister") - unreg0, _i == 0 ? 4 : 3);
}
END_TEST

/* Threads of this process named `name` (/proc/self/task/N/comm). */
static int threads_named(const char *name)
{
	int n = 0;
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char path[300], comm[64] = "";
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		FILE *f = fopen(path, "r");
		if (f && fgets(comm, sizeof(comm), f) && strncmp(comm, name, strlen(name)) == 0)
			n++;
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	return n;
}

/* The synchronize of a pause runs on one thread that lives across pauses
 * (saver/sync.h), not on a new thread (a new CUDA thread for the driver)
 * per pause. */
START_TEST(test_sync_thread_reused)
{
	cuda_up();
	CUdeviceptr w;
	CU_OK(D.alloc(&w, 4 * MiB));
	for (int i = 0; i < 5; i++) {
		ck_assert_int_eq(D.pause(NULL), 0);
		ck_assert_int_eq(D.resume(NULL), 0);
		ck_assert_int_eq(threads_named("memsaver-sync"), 1);
	}
	CU_OK(D.free(w));
}
END_TEST

/* A free waits for the context that owns the region, not the current one:
 * work queued in the owner context runs before the memory goes. */
START_TEST(test_free_waits_for_owner_context)
{
	setenv("FAKECUDA_DEFER_ASYNC", "1", 1);
	cuda_up();
	CUdeviceptr w;
	CU_OK(D.alloc(&w, 4 * MiB));
	CU_OK(D.memsetAsync(w, 7, 4 * MiB, NULL)); /* queued on CTX's legacy stream */
	CUcontext other;
	CU_OK(D.ctxCreate(&other, 0, 0));
	CU_OK(D.setCurrent(other));
	CU_OK(D.free(w));
	CU_OK(D.setCurrent(CTX));
	ck_assert_msg(D.ctxSync() == CUDA_SUCCESS, "work queued on the owner context ran after the unmap");
}
END_TEST

/* A failed synchronize fails the free and keeps the memory, like cuMemFree. */
START_TEST(test_free_sync_error)
{
	setenv("FAKECUDA_FAIL", "cuCtxSynchronize:1:CUDA_ERROR_ILLEGAL_ADDRESS", 1);
	cuda_up();
	CUdeviceptr w;
	CU_OK(D.alloc(&w, 4 * MiB));
	fill(w, 4 * MiB, 1);
	ck_assert_int_eq(D.free(w), CUDA_ERROR_ILLEGAL_ADDRESS);
	ck_assert_msg(check(w, 4 * MiB, 1), "memory went with a failed free");
	CU_OK(D.free(w));
}
END_TEST

/* A resume whose restore fails and whose rollback cannot unmap leaves the
 * region mapped with stale contents: the next pause must not copy them
 * over the good backup (_i even: pause, then resume), and the next resume
 * restores the backup (_i odd: resume at once).  The restore fails on the
 * copy engines (_i < 2: resumed 1.1 s after the pause) or in memsaver's
 * restore kernel (_i >= 2: resumed at once; the first launch is the
 * pause's digest). */
START_TEST(test_stale_region_keeps_backup)
{
	setenv("FAKECUDA_FAIL",
	       _i < 2 ? "cuMemcpyHtoDAsync_v2:1:CUDA_ERROR_UNKNOWN,cuMemUnmap:2:CUDA_ERROR_UNKNOWN"
		      : "cuLaunchKernel:2:CUDA_ERROR_UNKNOWN,cuMemUnmap:2:CUDA_ERROR_UNKNOWN",
	       1);
	cuda_up();
	CUdeviceptr w;
	CU_OK(D.alloc(&w, 4 * MiB));
	fill(w, 4 * MiB, 21);
	ck_assert_int_eq(D.pause(NULL), 0);
	if (_i < 2)
		usleep(1100 * 1000);
	ck_assert_int_ne(D.resume(NULL), 0);
	if (_i % 2 == 0)
		ck_assert_msg(D.pause(NULL) == 0, "pause: %s", D.last_error());
	ck_assert_msg(D.resume(NULL) == 0, "resume: %s", D.last_error());
	ck_assert_msg(check(w, 4 * MiB, 21), "%s", _i % 2 == 0 ? "the half-restored contents replaced the backup"
							       : "a region left mapped by the rollback was never restored");
	CU_OK(D.free(w));
}
END_TEST

/* The sharing rule (saver/shared.h): memory whose handle the application
 * retained is neither released nor duplicated by a cycle; once every
 * retained handle is released it is released like the rest. */
START_TEST(test_retained_never_duplicated)
{
	cuda_up();
	size_t u0 = used();
	CUdeviceptr w;
	CU_OK(D.alloc(&w, 64 * MiB));
	fill(w, 64 * MiB, 31);
	size_t u1 = used();
	CUmemGenericAllocationHandle h1, h2;
	CU_OK(D.retainHandle(&h1, (void *)w));
	CU_OK(D.retainHandle(&h2, (void *)(w + MiB))); /* NCCL may retain once per peer */
	ck_assert_msg(D.pause(NULL) == 0, "pause: %s", D.last_error());
	ck_assert_uint_eq(used(), u1); /* nothing could be freed: the handles hold it */
	ck_assert_msg(D.resume(NULL) == 0, "resume: %s", D.last_error());
	ck_assert_msg(used() == u1, "a cycle duplicated retained memory: %zu bytes more", used() - u1);
	ck_assert(check(w, 64 * MiB, 31));
	CUmemGenericAllocationHandle now;
	CU_OK(D.retainHandle(&now, (void *)w));
	ck_assert_msg(now == h1, "the application's handle no longer backs its address");
	CU_OK(D.release(now));
	CU_OK(D.release(h1));
	CU_OK(D.pause(NULL) ? CUDA_ERROR_UNKNOWN : CUDA_SUCCESS);
	ck_assert_uint_eq(used(), u1); /* one retained handle left */
	CU_OK(D.resume(NULL) ? CUDA_ERROR_UNKNOWN : CUDA_SUCCESS);
	CU_OK(D.release(h2));
	ck_assert_int_eq(D.pause(NULL), 0);
	ck_assert_uint_eq(used(), u0); /* no reference left: released */
	ck_assert_int_eq(D.resume(NULL), 0);
	ck_assert(check(w, 64 * MiB, 31));
	CU_OK(D.free(w));
	/* The trace says who shared it and when it ended. */
	size_t n, retained = 0, ended = 0;
	struct msv_rec *r = trace_records(&n);
	for (size_t i = 0; i < n; i++)
		if (r[i].type == MSV_REC_SHARED && r[i].addr == w) {
			retained += r[i].api == MSV_SHARE_RETAINED;
			ended += r[i].api == MSV_SHARE_ENDED;
		}
	free(r);
	ck_assert_uint_eq(retained, 1); /* once per region, however many handles */
	ck_assert_uint_eq(ended, 1);
}
END_TEST

/* An exported handle or a dma-buf keeps the region resident for good. */
START_TEST(test_exported_stays_resident)
{
	cuda_up();
	CUdeviceptr a, b;
	CU_OK(D.alloc(&a, 8 * MiB));
	CU_OK(D.alloc(&b, 8 * MiB));
	fill(a, 8 * MiB, 41);
	fill(b, 8 * MiB, 42);
	size_t u1 = used();
	CUmemGenericAllocationHandle h;
	int fd = -1, fd2 = -1;
	CU_OK(D.retainHandle(&h, (void *)a));
	CU_OK(D.exportHandle(&fd, h, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
	CU_OK(D.release(h)); /* the export still references it */
	CU_OK(D.dmabuf(&fd2, b, 8 * MiB, CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD, 0));
	ck_assert_int_eq(D.pause(NULL), 0);
	ck_assert_uint_eq(used(), u1);
	ck_assert_int_eq(D.resume(NULL), 0);
	ck_assert_uint_eq(used(), u1);
	ck_assert(check(a, 8 * MiB, 41) && check(b, 8 * MiB, 42));
	close(fd);
	close(fd2);
}
END_TEST

/* The last pause record of this process's trace. */
static struct msv_rec last_pause(void)
{
	size_t n;
	struct msv_rec *r = trace_records(&n), got = {0};
	for (size_t i = 0; i < n; i++)
		if (r[i].type == MSV_REC_PAUSE)
			got = r[i];
	free(r);
	return got;
}

/* A pause copies only the backup chunks that changed since the last backup
 * (saver/digest.h; the fake runs the digest kernel): nothing the second
 * time, exactly the changed chunk after one byte changed, and the backup
 * always has the byte. */
START_TEST(test_backup_skips_unchanged)
{
	cuda_up();
	size_t size = 40 * MiB, chunk = 16 * MiB; /* MEMSAVER_CHUNK default */
	size_t small = 6 * MiB + 100;              /* a second region: one short chunk */
	CUdeviceptr w = alloc_filled(size, 51), w2 = alloc_filled(small, 52);
	size += small; /* what every pause keeps */
	ck_assert_int_eq(D.pause(NULL), 0);
	struct msv_rec p = last_pause();
	ck_assert_uint_eq(p.aux2, size);
	ck_assert_uint_eq(p.site, 0);
	ck_assert_int_eq(D.resume(NULL), 0);
	ck_assert_int_eq(D.pause(NULL), 0);
	p = last_pause();
	ck_assert_msg(p.aux2 == 0 && p.site == size >> 10, "unchanged backup: copied %llu, skipped %llu KiB",
		      (unsigned long long)p.aux2, (unsigned long long)p.site);
	ck_assert_int_eq(D.resume(NULL), 0);
	ck_assert(check(w, size - small, 51));
	ck_assert(check(w2, small, 52));
	/* An RL weight update between pauses: one byte in the second chunk of
	 * the first region, the last byte of the second region. */
	unsigned char b = 0, b2 = 0;
	CU_OK(D.dtoh(&b, w + chunk + 5, 1));
	CU_OK(D.dtoh(&b2, w2 + small - 1, 1));
	b ^= 0x5a, b2 ^= 0xa5;
	CU_OK(D.htod(w + chunk + 5, &b, 1));
	CU_OK(D.htod(w2 + small - 1, &b2, 1));
	ck_assert_int_eq(D.pause(NULL), 0);
	p = last_pause();
	ck_assert_uint_eq(p.aux2, chunk + small);
	ck_assert_uint_eq(p.site, (size - chunk - small) >> 10); /* the record counts KiB */
	ck_assert_int_eq(D.resume(NULL), 0);
	unsigned char got = 0, got2 = 0;
	CU_OK(D.dtoh(&got, w + chunk + 5, 1));
	CU_OK(D.dtoh(&got2, w2 + small - 1, 1));
	ck_assert_msg(got == b && got2 == b2, "a changed byte was not backed up");
	CU_OK(D.htod(w + chunk + 5, (unsigned char[]){(unsigned char)(b ^ 0x5a)}, 1));
	ck_assert(check(w, size - small, 51));
	CU_OK(D.free(w));
	CU_OK(D.free(w2));
}
END_TEST

/* A resume right after a pause restores pinned backups with memsaver's
 * kernel (saver/copy.h; the fake runs it and checks its grid and
 * addresses), one launch a chunk and no copy-engine copies; a resume more
 * than MEMSAVER_RESTORE_KERNEL_MS (1 s) after the pause uses the copy
 * engines.  Both restore every byte, a region whose length is not a
 * multiple of 16 and a byte changed between pauses included. */
START_TEST(test_restore_by_kernel_after_pause)
{
	setenv("FAKECUDA_DEFER_ASYNC", "1", 1);
	cuda_up();
	size_t size = 40 * MiB, small = 6 * MiB + 100; /* 3 chunks of MEMSAVER_CHUNK (16 MiB), and 1 */
	CUdeviceptr w = alloc_filled(size, 71), w2 = alloc_filled(small, 72);
	for (int cycle = 0; cycle < 2; cycle++) {
		unsigned char b = (unsigned char)(0x11 + cycle);
		CU_OK(D.htod(w2 + small - 1, &b, 1)); /* an update before each pause */
		ck_assert_msg(D.pause(NULL) == 0, "pause %d: %s", cycle, D.last_error());
		if (cycle == 1)
			usleep(1100 * 1000);
		uint64_t launches = fake_restore_launches(), copies = fake_calls("cuMemcpyHtoDAsync_v2");
		ck_assert_msg(D.resume(NULL) == 0, "resume %d: %s", cycle, D.last_error());
		launches = fake_restore_launches() - launches;
		copies = fake_calls("cuMemcpyHtoDAsync_v2") - copies;
		ck_assert_uint_eq(launches, cycle == 0 ? 4 : 0);
		ck_assert_uint_eq(copies, cycle == 0 ? 0 : 4);
		ck_assert_msg(check(w, size, 71), "cycle %d: region lost bytes", cycle);
		unsigned char got = 0;
		CU_OK(D.dtoh(&got, w2 + small - 1, 1));
		ck_assert_msg(got == b, "cycle %d: the changed last byte came back as %u, not %u", cycle, got, b);
		CU_OK(D.htod(w2 + small - 1, (unsigned char[]){(unsigned char)((small - 1) * 31 + 72)}, 1));
		ck_assert_msg(check(w2, small, 72), "cycle %d: the short region lost bytes", cycle);
	}
	CU_OK(D.free(w));
	CU_OK(D.free(w2));
}
END_TEST

/* memsaver's kernels that could not be loaded for want of device memory
 * are tried again on the next pass, not for every region of this one
 * (saver/kernels.h): the first pause copies everything with one failed
 * load for its two regions, the resume restores by the kernel, and once a
 * pause has digests the next one skips what did not change. */
START_TEST(test_kernels_retried_after_oom)
{
	setenv("FAKECUDA_FAIL", "cuModuleLoadData:1:CUDA_ERROR_OUT_OF_MEMORY", 1);
	cuda_up();
	size_t size = 16 * MiB, small = 4 * MiB;
	CUdeviceptr w = alloc_filled(size, 81), w2 = alloc_filled(small, 82);
	for (int cycle = 0; cycle < 3; cycle++) {
		uint64_t loads = fake_calls("cuModuleLoadData");
		ck_assert_msg(D.pause(NULL) == 0, "pause %d: %s", cycle, D.last_error());
		ck_assert_uint_eq(fake_calls("cuModuleLoadData") - loads, 1); /* per pass, failed or not */
		struct msv_rec p = last_pause();
		ck_assert_msg(p.site == (cycle == 2 ? (size + small) >> 10 : 0), "pause %d skipped %llu KiB", cycle,
			      (unsigned long long)p.site);
		uint64_t launches = fake_restore_launches();
		ck_assert_msg(D.resume(NULL) == 0, "resume %d: %s", cycle, D.last_error());
		ck_assert_uint_eq(fake_restore_launches() - launches, 2); /* a chunk each */
		ck_assert(check(w, size, 81) && check(w2, small, 82));
	}
	CU_OK(D.free(w));
	CU_OK(D.free(w2));
}
END_TEST

/* Wrapped memory is registrable for GPUDirect RDMA like cuMemAlloc memory. */
START_TEST(test_rdma_capable)
{
	cuda_up();
	CUdeviceptr w;
	CU_OK(D.alloc(&w, 4 * MiB));
	CUmemGenericAllocationHandle h;
	CUmemAllocationProp prop;
	CU_OK(D.retainHandle(&h, (void *)w));
	CU_OK(D.handleProps(&prop, h));
	CU_OK(D.release(h));
	ck_assert_int_eq(prop.allocFlags.gpuDirectRDMACapable, 1);
	CU_OK(D.free(w));
}
END_TEST

/* Report writers on several threads at once: every write succeeds, the
 * file is always one whole report, no temporary file is left. */
#define WRITERS 8
static char report_path[64];
static void *writer(void *arg)
{
	(void)arg;
	for (int i = 0; i < 10; i++)
		if (D.report_write(report_path) != 0)
			return (void *)1;
	return NULL;
}

START_TEST(test_concurrent_report_writes)
{
	cuda_up();
	char dir[] = "/tmp/msv-report-XXXXXX";
	ck_assert(mkdtemp(dir) != NULL);
	snprintf(report_path, sizeof(report_path), "%s/r.json", dir);
	pthread_t t[WRITERS];
	for (int i = 0; i < WRITERS; i++)
		pthread_create(&t[i], NULL, writer, NULL);
	int failed = 0;
	for (int i = 0; i < WRITERS; i++) {
		void *rv;
		pthread_join(t[i], &rv);
		failed += rv != NULL;
	}
	ck_assert_msg(!failed, "%d writers failed: %s", failed, D.last_error());
	json_error_t je;
	json_t *j = json_load_file(report_path, 0, &je);
	ck_assert_msg(j != NULL, "report is not one JSON document: %s (line %d)", je.text, je.line);
	ck_assert(json_integer_value(json_object_get(j, "schema_version")) >= 1);
	json_decref(j);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "test $(ls %s | wc -l) -eq 1", dir);
	ck_assert_msg(system(cmd) == 0, "temporary files left in %s", dir);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert(system(cmd) == 0);
}
END_TEST

/* Many threads allocating at once lose no event. */
#define NTHREADS 8
#define PAIRS 200
static void *churn(void *arg)
{
	size_t size = 4096 + (size_t)(uintptr_t)arg;
	CU_OK(D.setCurrent(CTX));
	if ((uintptr_t)arg % 2)
		D.region_begin("other"); /* half pass through, half wrapped */
	for (int i = 0; i < PAIRS; i++) {
		CUdeviceptr p;
		CU_OK(D.alloc(&p, size));
		CU_OK(D.free(p));
	}
	return NULL;
}

START_TEST(test_threads_lose_nothing)
{
	cuda_up();
	pthread_t t[NTHREADS];
	for (uintptr_t i = 0; i < NTHREADS; i++)
		pthread_create(&t[i], NULL, churn, (void *)i);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	size_t n, allocs = 0, frees = 0;
	struct msv_rec *r = trace_records(&n);
	for (size_t i = 0; i < n; i++) {
		if (r[i].size < 4096 || r[i].size >= 4096 + NTHREADS)
			continue;
		allocs += r[i].type == MSV_REC_ALLOC;
		frees += r[i].type == MSV_REC_FREE;
	}
	free(r);
	ck_assert_uint_eq(allocs, NTHREADS * PAIRS);
	ck_assert_uint_eq(frees, NTHREADS * PAIRS);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("preload_saver");
	TCase *tc = tcase_create("saver");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_address_range);
	tcase_add_test(tc, test_ipc_refused);
	tcase_add_test(tc, test_region_overrides);
	tcase_add_test(tc, test_free_while_paused);
	tcase_add_loop_test(tc, test_segment_tail_discard, 0, sizeof(segments) / sizeof(segments[0]));
	tcase_add_loop_test(tc, test_segment_tail_zero, 0, sizeof(segments) / sizeof(segments[0]));
	tcase_add_test(tc, test_pause_leaves_others_running);
	tcase_add_test(tc, test_free_during_pause);
	tcase_add_test(tc, test_fork_during_pause);
	tcase_add_loop_test(tc, test_backup_complete_before_unmap, 0, 2);
	tcase_add_loop_test(tc, test_backup_prepared_in_pieces, 0, 2);
	tcase_add_test(tc, test_sync_thread_reused);
	tcase_add_test(tc, test_free_waits_for_owner_context);
	tcase_add_test(tc, test_free_sync_error);
	tcase_add_loop_test(tc, test_stale_region_keeps_backup, 0, 4);
	tcase_add_test(tc, test_rdma_capable);
	tcase_add_test(tc, test_backup_skips_unchanged);
	tcase_add_test(tc, test_restore_by_kernel_after_pause);
	tcase_add_test(tc, test_kernels_retried_after_oom);
	tcase_add_test(tc, test_retained_never_duplicated);
	tcase_add_test(tc, test_exported_stays_resident);
	tcase_add_test(tc, test_concurrent_report_writes);
	tcase_add_test(tc, test_wrap_failure);
	tcase_add_test(tc, test_threads_lose_nothing);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
