/* The libcuda double: stream capture records async memsets and copies,
 * graph launch replays them, and capture modes follow the CUDA rules. */
#include <pthread.h>
#include <string.h>

#include "test_common.h"

START_TEST(test_capture_and_replay)
{
	fc_setup();
	CUdeviceptr a, b;
	CU_OK(cuMemAlloc(&a, 4096));
	CU_OK(cuMemAlloc(&b, 4096));
	CU_OK(cuMemsetD8(a, 0, 4096));
	CU_OK(cuMemsetD8(b, 0, 4096));
	char host[16] = "captured-hello!";
	CUstream s;
	CU_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));

	CUstreamCaptureStatus st;
	CU_OK(cuStreamIsCapturing(s, &st));
	ck_assert_int_eq(st, CU_STREAM_CAPTURE_STATUS_NONE);
	CU_OK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
	CU_IS(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_GLOBAL), CUDA_ERROR_ILLEGAL_STATE);
	CU_OK(cuMemsetD8Async(a, 0x33, 4096, s));
	CU_OK(cuMemcpyHtoDAsync(b, host, sizeof(host), s));
	CU_OK(cuMemcpyDtoDAsync(b + 16, a, 16, s));
	CU_OK(cuMemsetD32Async(a + 64, 0xcafef00d, 4, s));
	CU_OK(cuMemcpyAsync(b + 32, a + 64, 16, s));
	/* Nothing ran: recorded only. */
	ck_assert_uint_eq(((unsigned char *)a)[0], 0);
	ck_assert_uint_eq(((unsigned char *)b)[0], 0);

	cuuint64_t id = 0;
	CUgraph cg = NULL;
	const CUgraphNode *deps = (const CUgraphNode *)1;
	const CUgraphEdgeData *edges = (const CUgraphEdgeData *)1;
	size_t ndeps = 99;
	CU_OK(cuStreamGetCaptureInfo(s, &st, &id, &cg, &deps, &edges, &ndeps));
	ck_assert_int_eq(st, CU_STREAM_CAPTURE_STATUS_ACTIVE);
	ck_assert_uint_ne(id, 0);
	ck_assert_ptr_nonnull(cg);
	ck_assert_uint_eq(ndeps, 0);
	CU_OK(cuStreamIsCapturing(s, &st));
	ck_assert_int_eq(st, CU_STREAM_CAPTURE_STATUS_ACTIVE);
	/* Synchronizing the legacy stream is unsafe during a global capture... */
	CU_IS(cuStreamSynchronize(NULL), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);

	/* ...and that invalidated this capture: start over. */
	CUgraph g;
	CU_IS(cuStreamEndCapture(s, &g), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
	ck_assert_ptr_null(g);
	CU_OK(cuStreamIsCapturing(s, &st));
	ck_assert_int_eq(st, CU_STREAM_CAPTURE_STATUS_NONE);

	CU_OK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
	CU_OK(cuMemsetD8Async(a, 0x33, 4096, s));
	CU_OK(cuMemcpyHtoDAsync(b, host, sizeof(host), s));
	CU_OK(cuMemcpyDtoDAsync(b + 16, a, 16, s));
	CU_OK(cuMemsetD32Async(a + 64, 0xcafef00d, 4, s));
	CU_OK(cuMemcpyAsync(b + 32, a + 64, 16, s));
	CU_OK(cuStreamEndCapture(s, &g));
	ck_assert_ptr_nonnull(g);
	size_t n = 0;
	CU_OK(cuGraphGetNodes(g, NULL, &n));
	ck_assert_uint_eq(n, 5);
	ck_assert_uint_eq(((unsigned char *)a)[0], 0);

	CUgraphExec e;
	CU_OK(cuGraphInstantiate(&e, g, 0));
	CU_OK(cuGraphLaunch(e, s));
	CU_OK(cuStreamSynchronize(s));
	ck_assert_uint_eq(((unsigned char *)a)[4095], 0x33);
	ck_assert_mem_eq((void *)b, host, sizeof(host));
	ck_assert_uint_eq(((unsigned char *)b)[16], 0x33);
	ck_assert_uint_eq(((uint32_t *)(b + 32))[3], 0xcafef00d);
	ck_assert_uint_eq(((unsigned char *)a)[64 + 16], 0x33); /* memset D32 covered 16 bytes */

	/* Replay again: in order, reading the host buffer at launch time. */
	memcpy(host, "second-launch!!", 16);
	CU_OK(cuMemsetD8(a, 0, 4096));
	CU_OK(cuGraphLaunch(e, NULL));
	ck_assert_mem_eq((void *)b, "second-launch!!", 16);
	ck_assert_uint_eq(((unsigned char *)a)[0], 0x33);
	CU_OK(cuGraphExecDestroy(e));
	CU_OK(cuGraphDestroy(g));

	/* The legacy stream cannot capture. */
	CU_IS(cuStreamBeginCapture(NULL, CU_STREAM_CAPTURE_MODE_GLOBAL),
	      CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
	/* End without begin. */
	CU_IS(cuStreamEndCapture(s, &g), CUDA_ERROR_ILLEGAL_STATE);
}
END_TEST

START_TEST(test_sync_calls_invalidate_own_capture)
{
	fc_setup();
	CUdeviceptr a;
	CUstream s;
	CUgraph g;
	char buf[8];
	CU_OK(cuMemAlloc(&a, 64));
	CU_OK(cuStreamCreate(&s, 0));
	CU_OK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
	CU_IS(cuMemcpyDtoH(buf, a, 8), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
	CUstreamCaptureStatus st;
	CU_OK(cuStreamIsCapturing(s, &st));
	ck_assert_int_eq(st, CU_STREAM_CAPTURE_STATUS_INVALIDATED);
	CU_IS(cuMemsetD8Async(a, 1, 8, s), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
	CU_IS(cuStreamEndCapture(s, &g), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);

	CU_OK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
	CU_IS(cuStreamSynchronize(s), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
	CU_IS(cuStreamEndCapture(s, &g), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);

	/* PyTorch's pattern: relaxed mode around cudaMalloc while capturing. */
	CU_OK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
	CUstreamCaptureMode m = CU_STREAM_CAPTURE_MODE_RELAXED;
	CU_OK(cuThreadExchangeStreamCaptureMode(&m));
	ck_assert_int_eq(m, CU_STREAM_CAPTURE_MODE_GLOBAL);
	CUdeviceptr p;
	CU_OK(cuMemAlloc(&p, 1 * MiB));
	CU_OK(cuThreadExchangeStreamCaptureMode(&m));
	ck_assert_int_eq(m, CU_STREAM_CAPTURE_MODE_RELAXED);
	CU_IS(cuMemAlloc(&p, 1 * MiB), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
	CU_IS(cuStreamEndCapture(s, &g), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
}
END_TEST

struct worker {
	CUcontext ctx;
	CUstreamCaptureMode mode; /* exchanged in before the call */
	int exchange;
	CUstream end_stream;      /* when set: try cuStreamEndCapture on it */
	CUresult rc;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	CUdeviceptr p;
	cuCtxSetCurrent(w->ctx);
	if (w->exchange)
		cuThreadExchangeStreamCaptureMode(&w->mode);
	if (w->end_stream) {
		CUgraph g;
		w->rc = cuStreamEndCapture(w->end_stream, &g);
	} else {
		w->rc = cuMemAlloc(&p, 4096);
	}
	return NULL;
}

static CUresult on_thread(CUcontext ctx, int exchange, CUstreamCaptureMode mode, CUstream end)
{
	struct worker w = { .ctx = ctx, .mode = mode, .exchange = exchange, .end_stream = end };
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, worker_main, &w), 0);
	pthread_join(t, NULL);
	return w.rc;
}

START_TEST(test_capture_modes_across_threads)
{
	CUcontext ctx = fc_setup();
	CUstream s;
	CUgraph g;
	CUstreamCaptureStatus st;
	CU_OK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));

	/* Global capture here: another thread's relaxed cuMemAlloc works. */
	CU_OK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
	CU_OK(on_thread(ctx, 1, CU_STREAM_CAPTURE_MODE_RELAXED, NULL));
	CU_OK(on_thread(ctx, 1, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL, NULL));
	CU_OK(cuStreamIsCapturing(s, &st));
	ck_assert_int_eq(st, CU_STREAM_CAPTURE_STATUS_ACTIVE);
	/* Non-relaxed end from another thread is refused. */
	CU_IS(on_thread(ctx, 0, 0, s), CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD);
	CU_OK(cuStreamEndCapture(s, &g));
	CU_OK(cuGraphDestroy(g));

	/* ... its default (global) mode cuMemAlloc fails and invalidates. */
	CU_OK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
	CU_IS(on_thread(ctx, 0, 0, NULL), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
	CU_OK(cuStreamIsCapturing(s, &st));
	ck_assert_int_eq(st, CU_STREAM_CAPTURE_STATUS_INVALIDATED);
	CU_IS(cuStreamEndCapture(s, &g), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);

	/* A thread-local capture does not bother other threads. */
	CU_OK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
	CU_OK(on_thread(ctx, 0, 0, NULL));
	CU_OK(cuStreamEndCapture(s, &g));
	CU_OK(cuGraphDestroy(g));

	/* A relaxed capture may be ended from another thread. */
	CU_OK(cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_RELAXED));
	CU_OK(on_thread(ctx, 0, 0, NULL));
	CUdeviceptr p;
	CU_OK(cuMemAlloc(&p, 64)); /* own relaxed capture: allowed */
	CU_OK(on_thread(ctx, 0, 0, s));
	CU_OK(cuStreamIsCapturing(s, &st));
	ck_assert_int_eq(st, CU_STREAM_CAPTURE_STATUS_NONE);
}
END_TEST

START_TEST(test_graph_launch_into_capture)
{
	fc_setup();
	CUdeviceptr a;
	CUstream s1, s2;
	CUgraph g1, g2;
	CUgraphExec e1, e2;
	CU_OK(cuMemAlloc(&a, 256));
	CU_OK(cuMemsetD8(a, 0, 256));
	CU_OK(cuStreamCreate(&s1, 0));
	CU_OK(cuStreamCreate(&s2, 0));
	CU_OK(cuStreamBeginCapture(s1, CU_STREAM_CAPTURE_MODE_GLOBAL));
	CU_OK(cuMemsetD8Async(a, 7, 16, s1));
	CU_OK(cuStreamEndCapture(s1, &g1));
	CU_OK(cuGraphInstantiate(&e1, g1, 0));
	CU_OK(cuStreamBeginCapture(s2, CU_STREAM_CAPTURE_MODE_GLOBAL));
	CU_OK(cuGraphLaunch(e1, s2));
	CU_OK(cuMemsetD8Async(a + 8, 9, 8, s2));
	CU_OK(cuStreamEndCapture(s2, &g2));
	ck_assert_uint_eq(((unsigned char *)a)[0], 0);
	CU_OK(cuGraphInstantiate(&e2, g2, 0));
	CU_OK(cuGraphLaunch(e2, s1));
	ck_assert_uint_eq(((unsigned char *)a)[0], 7);
	ck_assert_uint_eq(((unsigned char *)a)[8], 9);
	ck_assert_uint_eq(((unsigned char *)a)[16], 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fakecuda_capture");
	TCase *tc = tcase_create("capture");
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_capture_and_replay);
	tcase_add_test(tc, test_sync_calls_invalidate_own_capture);
	tcase_add_test(tc, test_capture_modes_across_threads);
	tcase_add_test(tc, test_graph_launch_into_capture);
	suite_add_tcase(s, tc);
	return fc_run_suite(s);
}
