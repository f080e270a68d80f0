/* libmemsaver.so preloaded into a C program that reaches the fake driver the
 * way libcudart does.  Policy (tests/preload/policy.json): everything this
 * program allocates is weights (backup) unless an explicit region says
 * otherwise; other = keep.  Each test runs in its own forked child and
 * initialises CUDA there. */
#include <pthread.h>
#include <stdint.h>

#include "common.h"

#define MiB ((size_t)1 << 20)
#define CU_OK(call) ck_assert_msg((call) == CUDA_SUCCESS, "%s failed", #call)

static void fill(CUdeviceptr p, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n);
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(i * 31 + seed);
	CU_OK(D.htod(p, b, n));
	free(b);
}

static int check(CUdeviceptr p, size_t n, unsigned seed)
{
	unsigned char *b = malloc(n);
	int ok = D.dtoh(b, p, n) == CUDA_SUCCESS;
	for (size_t i = 0; ok && i < n; i++)
		ok = b[i] == (unsigned char)(i * 31 + seed);
	free(b);
	return ok;
}

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
	ck_assert_msg(strstr(log, "cuIpcGetMemHandle") && strstr(log, "weights"), "log: %s", log);
	free(log);
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

/* A discarded segment keeps its last 2 MiB: PyTorch's caching allocator
 * hands the tail of a segment over 20 MiB to later tensors of any category
 * (seen on an H200: a bs=32 index tensor inside the KV pool's segment). */
START_TEST(test_discard_keeps_segment_tail)
{
	cuda_up();
	CUdeviceptr kv;
	size_t size = 64 * MiB + 4096;
	ck_assert_int_eq(D.region_begin("kv"), 0);
	CU_OK(D.alloc(&kv, size));
	ck_assert_int_eq(D.region_end(), 0);
	fill(kv + size - 2 * MiB, 2 * MiB, 9);
	fill(kv, 4096, 5);
	ck_assert_int_eq(D.pause("kv"), 0);
	ck_assert_int_eq(D.resume("kv"), 0);
	ck_assert_msg(check(kv + size - 2 * MiB, 2 * MiB, 9), "segment tail lost by discard");
	ck_assert_msg(!check(kv, 4096, 5), "the head of a discarded region came back: not discarded");
	CU_OK(D.free(kv));
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
	tcase_add_test(tc, test_discard_keeps_segment_tail);
	tcase_add_test(tc, test_wrap_failure);
	tcase_add_test(tc, test_threads_lose_nothing);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
