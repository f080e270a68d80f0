/* demo-engine: a C stand-in for a PyTorch inference engine.
 *
 * It reaches the driver the way libcudart does (driver.c), marks its phases
 * with NVTX ranges, allocates weights, a KV pool, a workspace and a CUDA-graph
 * memory pool the way the caching allocator does during capture, then replays
 * the graph and checks every byte it can predict.  Under memsaver a pause and
 * resume between two decode steps must leave weights and graph state intact
 * (and kv / workspace as the policy promises), or the demo exits 1.
 *
 * Exit status: 0 all checks passed, 1 a check failed, 2 usage error,
 * 3 CUDA unavailable (no driver, no device, cuInit failed),
 * 4 a CUDA call failed after initialisation. */
#include "driver.h"

#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nvtx3/nvToolsExt.h>

enum { EXIT_OK = 0, EXIT_MISMATCH = 1, EXIT_USAGE = 2, EXIT_NOCUDA = 3, EXIT_CUDA = 4 };
enum expect { EXPECT_KEEP, EXPECT_ZERO, EXPECT_ANY };

#define MiB ((size_t)1 << 20)
#define CHUNK (16 * MiB)          /* host staging for fills and read-backs */
#define SLICE 4096u               /* bytes per graph copy */
#define NCONST_SLICES 16          /* graph reads this many slices of capture-time state */
/* Graph output layout: the const slices, one weight slice, one slice copied
 * through a graph-internal buffer, one slice set by a memset node. */
#define OUT_WEIGHT (NCONST_SLICES * SLICE)
#define OUT_TMP (OUT_WEIGHT + SLICE)
#define OUT_MEMSET (OUT_TMP + SLICE)
#define OUT_SIZE (OUT_MEMSET + SLICE)
#define TMP_FILL 0x5a
#define MEMSET_FILL 0xc3
#define POISON 0xee               /* written over the output before each replay */
#define WS_FILL 0xa5

struct opts {
	unsigned long long scale_mib;
	int steps;
	int tensors;
	int device;
	int hold_at;                 /* -1: no hold */
	const char *hold_file;
	int signal_hold;
	double hold_timeout;         /* seconds, 0 = forever */
	const char *self_pause;
	const char *corrupt;         /* testing aid: weights|kv|graph|workspace */
	enum expect kv, ws;
	int verify_every;
	const char *until_file;      /* decode until this file exists (at most steps) */
	int json;
};

struct engine {
	const struct opts *o;
	struct demo_driver drv;
	CUdevice dev;
	int ctx_retained;
	char name[128];

	int nw;
	CUdeviceptr *w;
	size_t *w_size;
	CUdeviceptr kv, ws, g_const, g_work;
	size_t kv_size, ws_size, g_const_size, g_work_size;
	CUstream stream;
	CUgraph graph;
	CUgraphExec exec;
	int capturing;

	uint8_t *host, *want;       /* CHUNK each */
	uint8_t out_want[OUT_SIZE], out_got[OUT_SIZE];

	int have_reading;
	unsigned long long last_used;
	int held;                    /* the hold happened: expectations apply */
};

static volatile sig_atomic_t got_usr1, got_usr2;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		got_usr1 = 1;
	else
		got_usr2 = 1;
}

/* ---- CUDA error reporting ---------------------------------------------- */

static int cu_fail(struct engine *e, CUresult r, const char *call, int line)
{
	const char *msg = NULL;

	e->drv.last = r;
	if (e->drv.getErrorString)
		e->drv.getErrorString(r, &msg);
	fprintf(stderr, "demo-engine: tools/demo/demo_engine.c:%d: %s failed: %s (%s)\n", line, call,
		demo_cu_name(&e->drv, r), msg ? msg : "no description");
	return EXIT_CUDA;
}

/* Every cu* result is checked; the expression text names the call. */
#define CK(e, call)                                                   \
	do {                                                          \
		CUresult r_ = (call);                                 \
		if (r_ != CUDA_SUCCESS)                               \
			return cu_fail((e), r_, #call, __LINE__);      \
	} while (0)

/* ---- deterministic contents -------------------------------------------- */

/* One 64-bit word per 8 bytes, a function of (seed, word index): a zeroed
 * page, a page of another tensor or a page mapped at the wrong offset all
 * read back different. */
static inline uint64_t pat_word(uint64_t seed, uint64_t w)
{
	uint64_t v = (w + 1) * 0x9e3779b97f4a7c15ull ^ seed;

	v ^= v >> 31;
	v *= 0xbf58476d1ce4e5b9ull;
	v ^= v >> 29;
	return v;
}

/* off must be a multiple of 8. */
static void pat_fill(uint8_t *buf, uint64_t seed, size_t off, size_t len)
{
	uint64_t w = off / 8;
	size_t i = 0;

	for (; i + 8 <= len; i += 8, w++) {
		uint64_t v = pat_word(seed, w);
		memcpy(buf + i, &v, 8);
	}
	if (i < len) {
		uint64_t v = pat_word(seed, w);
		memcpy(buf + i, &v, len - i);
	}
}

static uint64_t seed_of(const char *what, int idx)
{
	uint64_t h = 1469598103934665603ull;

	for (; *what; what++)
		h = (h ^ (uint8_t)*what) * 1099511628211ull;
	return h ^ ((uint64_t)(idx + 1) * 0xd1b54a32d192ed03ull);
}

enum content { C_PATTERN, C_ZERO, C_FILL };

/* Upload the pattern of (what, idx) into [dptr, dptr+size). */
static int upload_pattern(struct engine *e, CUdeviceptr dptr, size_t size, uint64_t seed)
{
	for (size_t off = 0; off < size; off += CHUNK) {
		size_t n = size - off < CHUNK ? size - off : CHUNK;
		pat_fill(e->host, seed, off, n);
		CK(e, e->drv.memcpyHtoD(dptr + off, e->host, n));
	}
	/* Pageable HtoD may return before the DMA lands; later work runs on a
	 * non-blocking stream that does not order after the legacy stream. */
	CK(e, e->drv.streamSynchronize(NULL));
	return 0;
}

static void report_mismatch(const char *what, int idx, size_t off, const uint8_t *want,
			    const uint8_t *got, size_t n)
{
	size_t i = 0, bad = 0;

	while (i < n && want[i] == got[i])
		i++;
	for (size_t j = i; j < n; j++)
		bad += want[j] != got[j];
	fprintf(stderr,
		"demo-engine: MISMATCH %s[%d] at offset %zu (0x%zx): expected 0x%02x, got 0x%02x "
		"(%zu of the next %zu bytes differ)\n",
		what, idx, off + i, off + i, want[i], got[i], bad, n - i);
}

/* Read [dptr, dptr+size) back and compare bitwise with what it must hold. */
static int verify(struct engine *e, const char *what, int idx, CUdeviceptr dptr, size_t size,
		  enum content c, uint64_t seed_or_fill)
{
	for (size_t off = 0; off < size; off += CHUNK) {
		size_t n = size - off < CHUNK ? size - off : CHUNK;
		CK(e, e->drv.memcpyDtoH(e->host, dptr + off, n));
		if (c == C_PATTERN)
			pat_fill(e->want, seed_or_fill, off, n);
		else
			memset(e->want, c == C_ZERO ? 0 : (int)seed_or_fill, n);
		if (memcmp(e->want, e->host, n)) {
			report_mismatch(what, idx, off, e->want, e->host, n);
			return EXIT_MISMATCH;
		}
	}
	return 0;
}

/* ---- readings ------------------------------------------------------------ */

static int reading(struct engine *e, const char *phase, int step)
{
	size_t free_b = 0, total_b = 0;
	unsigned long long used;
	long long delta;

	CK(e, e->drv.memGetInfo(&free_b, &total_b));
	used = (unsigned long long)(total_b - free_b);
	delta = e->have_reading ? (long long)(used - e->last_used) : 0;
	e->last_used = used;
	e->have_reading = 1;
	if (e->o->json) {
		printf("{\"phase\":\"%s\"", phase);
		if (step >= 0)
			printf(",\"step\":%d", step);
		printf(",\"used_bytes\":%llu,\"delta_bytes\":%lld,\"free_bytes\":%zu,"
		       "\"total_bytes\":%zu}\n",
		       used, delta, free_b, total_b);
	} else {
		printf("phase %s: device used %llu MiB (%+lld MiB)\n", phase, used / MiB,
		       delta / (long long)MiB);
	}
	fflush(stdout);
	return 0;
}

/* ---- phases -------------------------------------------------------------- */

static int load_weights(struct engine *e, size_t total)
{
	size_t parts = 0, given = 0;
	int rc;

	/* Unequal tensor sizes, multiples of 512 bytes and not of 2 MiB, so a
	 * redirect has to round and must still keep every byte in place. */
	for (int i = 0; i < e->nw; i++)
		parts += (size_t)(i % 4 + 1);
	for (int i = 0; i < e->nw; i++) {
		size_t sz = total / parts * (size_t)(i % 4 + 1) / 512 * 512;
		if (i == e->nw - 1)
			sz = total - given;
		e->w_size[i] = sz;
		given += sz;
		CK(e, e->drv.memAlloc(&e->w[i], sz));
		rc = upload_pattern(e, e->w[i], sz, seed_of("weights", i));
		if (rc)
			return rc;
	}
	return 0;
}

static int kv_cache(struct engine *e)
{
	CK(e, e->drv.memAlloc(&e->kv, e->kv_size));
	return upload_pattern(e, e->kv, e->kv_size, seed_of("kv", 0));
}

static int alloc_workspace(struct engine *e)
{
	CK(e, e->drv.memAlloc(&e->ws, e->ws_size));
	/* A fill makes a `zero` action visible after resume. */
	CK(e, e->drv.memsetD8(e->ws, WS_FILL, e->ws_size));
	CK(e, e->drv.streamSynchronize(NULL));
	return 0;
}

static size_t const_slice_off(const struct engine *e, int k)
{
	return (e->g_const_size / NCONST_SLICES) * (size_t)k / 8 * 8;
}

static size_t weight_slice_off(const struct engine *e)
{
	return e->w_size[e->nw - 1] / 2 / 8 * 8;
}

/* What one replay must leave in the output buffer. */
static void expected_output(struct engine *e)
{
	for (int k = 0; k < NCONST_SLICES; k++)
		pat_fill(e->out_want + k * SLICE, seed_of("graph", 0), const_slice_off(e, k), SLICE);
	pat_fill(e->out_want + OUT_WEIGHT, seed_of("weights", e->nw - 1), weight_slice_off(e), SLICE);
	memset(e->out_want + OUT_TMP, TMP_FILL, SLICE);
	memset(e->out_want + OUT_MEMSET, MEMSET_FILL, SLICE);
}

/* Record the graph's work on the capturing stream. */
static int record(struct engine *e)
{
	CUdeviceptr out = e->g_work, tmp = e->g_work + OUT_SIZE;
	CUstream s = e->stream;

	CK(e, e->drv.memsetD8Async_ptsz(out, 0, OUT_SIZE, s));
	for (int k = 0; k < NCONST_SLICES; k++)
		CK(e, e->drv.memcpyDtoDAsync_ptsz(out + (size_t)k * SLICE,
						  e->g_const + const_slice_off(e, k), SLICE, s));
	CK(e, e->drv.memcpyDtoDAsync_ptsz(out + OUT_WEIGHT, e->w[e->nw - 1] + weight_slice_off(e),
					  SLICE, s));
	CK(e, e->drv.memsetD8Async_ptsz(tmp, TMP_FILL, SLICE, s));
	CK(e, e->drv.memcpyDtoDAsync_ptsz(out + OUT_TMP, tmp, SLICE, s));
	CK(e, e->drv.memsetD8Async_ptsz(out + OUT_MEMSET, MEMSET_FILL, SLICE, s));
	return 0;
}

static int capture_graph(struct engine *e)
{
	CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_RELAXED;
	CUresult r1, r2;
	int rc;

	CK(e, e->drv.streamCreate(&e->stream, CU_STREAM_NON_BLOCKING));
	CK(e, e->drv.streamBeginCapture_ptsz(e->stream, CU_STREAM_CAPTURE_MODE_GLOBAL));
	e->capturing = 1;
	/* PyTorch's caching allocator: cudaMalloc of a private-pool segment is
	 * an unsafe call under global capture, so it flips the thread to
	 * relaxed around it. */
	CK(e, e->drv.threadExchangeStreamCaptureMode(&mode));
	r1 = e->drv.memAlloc(&e->g_const, e->g_const_size);
	r2 = r1 == CUDA_SUCCESS ? e->drv.memAlloc(&e->g_work, e->g_work_size) : CUDA_SUCCESS;
	CK(e, e->drv.threadExchangeStreamCaptureMode(&mode));
	CK(e, r1);
	CK(e, r2);
	rc = record(e);
	if (rc)
		return rc;
	e->capturing = 0;
	CK(e, e->drv.streamEndCapture_ptsz(e->stream, &e->graph));
	/* Capture-time state: written once before the first replay, read by
	 * every replay, never written by one (what a pause must preserve). */
	rc = upload_pattern(e, e->g_const, e->g_const_size, seed_of("graph", 0));
	if (rc)
		return rc;
	CK(e, e->drv.graphInstantiateWithFlags(&e->exec, e->graph, 0));
	expected_output(e);
	return 0;
}

static int replay(struct engine *e, int step)
{
	CUdeviceptr out = e->g_work;

	CK(e, e->drv.memsetD8Async_ptsz(out, POISON, OUT_SIZE, e->stream));
	CK(e, e->drv.graphLaunch_ptsz(e->exec, e->stream));
	CK(e, e->drv.streamSynchronize(e->stream));
	CK(e, e->drv.memcpyDtoH(e->out_got, out, OUT_SIZE));
	if (memcmp(e->out_want, e->out_got, OUT_SIZE)) {
		size_t i = 0;
		while (e->out_want[i] == e->out_got[i])
			i++;
		const char *part = i < OUT_WEIGHT ? "capture-time state (graph pool)"
				   : i < OUT_TMP  ? "weights slice"
				   : i < OUT_MEMSET ? "graph-internal buffer"
						    : "memset node";
		fprintf(stderr, "demo-engine: step %d: graph output wrong at byte %zu (%s)\n", step, i,
			part);
		report_mismatch("graph_output", 0, 0, e->out_want, e->out_got, OUT_SIZE);
		return EXIT_MISMATCH;
	}
	return 0;
}

/* What a `zero` pause keeps of a segment (the segment-tail rule of
 * docs/saver.md): a caching allocator may have handed that tail to another
 * tensor, so memsaver restores it instead of zeroing it. */
static size_t kept_tail(size_t size)
{
	const size_t mib = 1u << 20;
	if (size == 2 * mib || size == 20 * mib)
		return size;
	return size >= 10 * mib && size % (2 * mib) == 0 ? 2 * mib - 512 : 0;
}

/* Full bitwise checks of weights, and of kv / workspace as expected. */
static int verify_all(struct engine *e)
{
	int rc = 0;

	for (int i = 0; i < e->nw; i++) {
		rc = verify(e, "weights", i, e->w[i], e->w_size[i], C_PATTERN, seed_of("weights", i));
		if (rc)
			return rc;
	}
	/* Before a hold kv must be intact whatever comes after it; `any`
	 * without a hold means an outside pause may come at any time. */
	if (e->o->kv == EXPECT_KEEP || (!e->held && e->o->hold_at >= 0))
		rc = verify(e, "kv", 0, e->kv, e->kv_size, C_PATTERN, seed_of("kv", 0));
	else if (e->o->kv == EXPECT_ZERO)
		rc = verify(e, "kv", 0, e->kv, e->kv_size, C_ZERO, 0);
	if (rc)
		return rc;
	if (e->o->ws == EXPECT_ZERO && !e->held)
		return verify(e, "workspace", 0, e->ws, e->ws_size, C_FILL, WS_FILL);
	if (e->o->ws == EXPECT_ZERO) {
		size_t head = e->ws_size - kept_tail(e->ws_size);
		rc = verify(e, "workspace", 0, e->ws, head, C_ZERO, 0);
		if (!rc && head < e->ws_size)
			rc = verify(e, "workspace tail", 0, e->ws + head, e->ws_size - head, C_FILL, WS_FILL);
	}
	return rc;
}

/* ---- hold ---------------------------------------------------------------- */

/* --corrupt: damage one page the way a broken pause would (zeroed, or for
 * a category expected to read zero, non-zero), so a test can prove the
 * checks notice.  kv under --expect-kv any is not checked, by design. */
static int corrupt(struct engine *e)
{
	const char *what = e->o->corrupt;
	CUdeviceptr p;
	int val = 0;

	if (!strcmp(what, "weights")) {
		p = e->w[e->nw / 2] + e->w_size[e->nw / 2] / 3 / 8 * 8;
	} else if (!strcmp(what, "kv")) {
		p = e->kv + e->kv_size / 2;
		val = e->o->kv == EXPECT_ZERO;
	} else if (!strcmp(what, "graph")) {
		p = e->g_const + const_slice_off(e, NCONST_SLICES / 2);
	} else {
		p = e->ws + e->ws_size / 2;
		val = e->o->ws == EXPECT_ZERO;
	}
	printf("demo-engine: --corrupt %s: writing 0x%02x over 4096 bytes at 0x%llx\n", what, val,
	       (unsigned long long)p);
	CK(e, e->drv.memsetD8(p, (unsigned char)val, 4096));
	CK(e, e->drv.streamSynchronize(NULL));
	return 0;
}

typedef int (*msv_fn)(const char *);

static int self_pause(struct engine *e, int resume)
{
	msv_fn fn = (msv_fn)dlsym(RTLD_DEFAULT, resume ? "msv_resume" : "msv_pause");
	const char *(*last_error)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "msv_last_error");
	const char *cats = e->o->self_pause;
	int rc;

	if (!fn) {
		if (!resume)
			printf("demo-engine: --self-pause: memsaver is not loaded in this process "
			       "(no msv_pause); nothing paused\n");
		return 1;
	}
	rc = fn(cats);
	if (rc) {
		fprintf(stderr, "demo-engine: %s(\"%s\") returned %d: %s\n",
			resume ? "msv_resume" : "msv_pause", cats, rc,
			last_error ? last_error() : "no message");
		return -1;
	}
	printf("demo-engine: %s(\"%s\") done\n", resume ? "msv_resume" : "msv_pause", cats);
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int hold(struct engine *e, int step)
{
	const struct opts *o = e->o;
	struct sigaction sa;
	int paused = 0, rc;

	rc = reading(e, "hold", step);
	if (rc)
		return rc;
	if (o->self_pause) {
		int s = self_pause(e, 0);
		if (s < 0)
			return EXIT_MISMATCH;
		paused = s == 0;
		if (paused && (rc = reading(e, "self_paused", step)))
			return rc;
	}
	if (o->hold_file || o->signal_hold) {
		double deadline = o->hold_timeout > 0 ? now_s() + o->hold_timeout : 0;
		const struct timespec tick = {0, 10 * 1000 * 1000};

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_signal;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGUSR1, &sa, NULL);
		sigaction(SIGUSR2, &sa, NULL);
		if (o->hold_file)
			printf("demo-engine: holding at step %d (pid %d); continue when %s exists\n", step,
			       (int)getpid(), o->hold_file);
		else
			printf("demo-engine: holding at step %d (pid %d); continue on SIGUSR1\n", step,
			       (int)getpid());
		printf("demo-engine: (kill -USR2 %d prints a device-memory reading meanwhile)\n",
		       (int)getpid());
		fflush(stdout);
		for (;;) {
			if (o->hold_file && access(o->hold_file, F_OK) == 0)
				break;
			if (o->signal_hold && got_usr1)
				break;
			if (got_usr2) {
				got_usr2 = 0;
				if ((rc = reading(e, "held", step)))
					return rc;
			}
			if (deadline > 0 && now_s() > deadline) {
				fprintf(stderr, "demo-engine: hold timed out after %g s\n", o->hold_timeout);
				printf("demo-engine: hold timed out\n");
				return EXIT_MISMATCH;
			}
			nanosleep(&tick, NULL);
		}
		printf("demo-engine: continuing at step %d\n", step);
	}
	if (paused) {
		if (self_pause(e, 1) < 0)
			return EXIT_MISMATCH;
	}
	e->held = 1;
	if (o->corrupt && (rc = corrupt(e)))
		return rc;
	return reading(e, "resumed", step);
}

/* ---- main flow ----------------------------------------------------------- */

static int phase(struct engine *e, const char *name, int (*fn)(struct engine *))
{
	int rc;

	nvtxRangePushA(name);
	rc = fn(e);
	nvtxRangePop();
	if (rc)
		return rc;
	return reading(e, name, -1);
}

static int load_weights_phase(struct engine *e)
{
	return load_weights(e, (size_t)(e->o->scale_mib * MiB));
}

static int decode(struct engine *e)
{
	const struct opts *o = e->o;
	int rc = 0, full = 0, step;

	for (step = 0; step < o->steps; step++) {
		if (step == o->hold_at && (rc = hold(e, step)))
			return rc;
		nvtxRangePushA("decode");
		rc = replay(e, step);
		nvtxRangePop();
		if (rc)
			return rc;
		/* A stat per step: cheap next to a replay, and a pause from
		 * outside may land on any step before the file appears. */
		int last = step == o->steps - 1 || (o->until_file && access(o->until_file, F_OK) == 0);
		if (step == o->hold_at || last || (step + 1) % o->verify_every == 0) {
			if ((rc = verify_all(e)))
				return rc;
			full++;
		}
		if (last) {
			step++;
			break;
		}
	}
	printf("demo-engine: %d decode steps, graph output checked every step, full checks %d\n",
	       step, full);
	return reading(e, "decode", -1);
}

static int setup(struct engine *e)
{
	int count = 0, ver = 0;
	CUcontext ctx;
	CUresult r;

	if (demo_driver_open(&e->drv)) {
		printf("demo-engine: CUDA unavailable: %s\n", e->drv.error);
		return EXIT_NOCUDA;
	}
	r = e->drv.init(0);
	if (r == CUDA_SUCCESS)
		r = e->drv.deviceGetCount(&count);
	if (r != CUDA_SUCCESS) {
		printf("demo-engine: CUDA unavailable: cuInit failed: %s\n", demo_cu_name(&e->drv, r));
		return EXIT_NOCUDA;
	}
	if (count <= e->o->device) {
		printf("demo-engine: CUDA unavailable: %d device(s), device %d requested\n", count,
		       e->o->device);
		return EXIT_NOCUDA;
	}
	/* cudart's lazy context creation: the device's primary context. */
	r = e->drv.deviceGet(&e->dev, e->o->device);
	if (r == CUDA_SUCCESS)
		r = e->drv.primaryCtxRetain(&ctx, e->dev);
	if (r != CUDA_SUCCESS) {
		printf("demo-engine: CUDA unavailable: no primary context: %s\n",
		       demo_cu_name(&e->drv, r));
		return EXIT_NOCUDA;
	}
	e->ctx_retained = 1;
	CK(e, e->drv.ctxSetCurrent(ctx));
	strcpy(e->name, "unknown device");
	if (e->drv.deviceGetName)
		(void)e->drv.deviceGetName(e->name, sizeof(e->name), e->dev);
	if (e->drv.driverGetVersion)
		(void)e->drv.driverGetVersion(&ver);
	printf("demo-engine: device %d: %s, driver API %d.%d\n", e->o->device, e->name, ver / 1000,
	       ver % 1000 / 10);
	return 0;
}

static void teardown(struct engine *e)
{
	/* Best effort: report failures, free the rest anyway. */
	if (e->capturing) {
		CUgraph g = NULL;
		if (e->drv.streamEndCapture_ptsz(e->stream, &g) == CUDA_SUCCESS && g)
			e->drv.graphDestroy(g);
	}
#define TRY(call)                                                            \
	do {                                                                 \
		CUresult r_ = (call);                                        \
		if (r_ != CUDA_SUCCESS)                                      \
			(void)cu_fail(e, r_, #call, __LINE__);               \
	} while (0)
	if (e->exec)
		TRY(e->drv.graphExecDestroy(e->exec));
	if (e->graph)
		TRY(e->drv.graphDestroy(e->graph));
	if (e->stream)
		TRY(e->drv.streamDestroy(e->stream));
	if (e->g_work)
		TRY(e->drv.memFree(e->g_work));
	if (e->g_const)
		TRY(e->drv.memFree(e->g_const));
	if (e->ws)
		TRY(e->drv.memFree(e->ws));
	if (e->kv)
		TRY(e->drv.memFree(e->kv));
	for (int i = 0; e->w && i < e->nw; i++)
		if (e->w[i])
			TRY(e->drv.memFree(e->w[i]));
#undef TRY
}

static int run(struct engine *e)
{
	const struct opts *o = e->o;
	size_t weights = (size_t)(o->scale_mib * MiB);
	int rc;

	e->nw = o->tensors;
	e->w = calloc((size_t)e->nw, sizeof(*e->w));
	e->w_size = calloc((size_t)e->nw, sizeof(*e->w_size));
	e->host = malloc(CHUNK);
	e->want = malloc(CHUNK);
	if (!e->w || !e->w_size || !e->host || !e->want) {
		fprintf(stderr, "demo-engine: out of host memory\n");
		return EXIT_CUDA;
	}
	e->kv_size = 2 * weights;
	e->ws_size = weights / 4;
	e->g_const_size = weights / 8 < MiB ? MiB : weights / 8;
	/* The output and the graph-internal buffer, plus slack the way a pool
	 * segment is bigger than what one graph uses. */
	e->g_work_size = e->g_const_size / 4 < OUT_SIZE + SLICE ? OUT_SIZE + SLICE : e->g_const_size / 4;

	rc = setup(e);
	if (rc)
		return rc;
	printf("demo-engine: weights %llu MiB in %d tensors, kv %zu MiB, workspace %zu MiB, "
	       "graph pool %zu MiB, %d steps\n",
	       o->scale_mib, e->nw, e->kv_size / MiB, e->ws_size / MiB,
	       (e->g_const_size + e->g_work_size) / MiB, o->steps);
	if ((rc = reading(e, "init", -1)))
		return rc;
	if ((rc = phase(e, "load_weights", load_weights_phase)))
		return rc;
	if ((rc = phase(e, "kv_cache", kv_cache)))
		return rc;
	if ((rc = phase(e, "alloc_workspace", alloc_workspace)))
		return rc;
	if ((rc = phase(e, "capture_graph", capture_graph)))
		return rc;
	return decode(e);
}

/* ---- options ------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: demo-engine [options]\n"
		"A C stand-in for a PyTorch inference engine: loads weights, a KV pool, a\n"
		"workspace and a CUDA-graph pool through the driver API (dlopen + cuGetProcAddress_v2),\n"
		"replays the graph, and checks every byte it can predict.\n"
		"\n"
		"  --scale MiB             total weight size (default 64); kv = 2x, workspace = 1/4,\n"
		"                          graph pool = 1/8 (at least 1 MiB) + 1/4 of that\n"
		"  --tensors N             weight tensors (default 8)\n"
		"  --steps N               decode steps (default 10)\n"
		"  --device N              CUDA device ordinal (default 0)\n"
		"  --verify-every N        full weight/kv/workspace read-back every N steps (default 1;\n"
		"                          always after a hold and at the last step; the graph output\n"
		"                          is checked every step)\n"
		"  --until-file PATH       stop decoding after the step that finds PATH (at most --steps;\n"
		"                          a test pauses and resumes a busy engine meanwhile)\n"
		"  --hold-at STEP          hold before decode step STEP (0-based)\n"
		"  --hold-file PATH        ... until PATH exists (polled every 10 ms)\n"
		"  --signal-hold           ... until SIGUSR1 arrives\n"
		"  --hold-timeout SEC      give up (exit 1) after SEC seconds on hold (default: never)\n"
		"  --self-pause CATS       at the hold, call msv_pause(CATS) / msv_resume(CATS) when\n"
		"                          libmemsaver.so is loaded (\"\" = every wrapped category)\n"
		"  --expect-kv keep|zero|any        kv after the hold (default keep)\n"
		"  --expect-workspace any|zero      workspace after the hold (default any)\n"
		"  --json                  phase readings as JSON lines\n"
		"  --corrupt CATEGORY      testing aid: after the hold, damage one page of weights,\n"
		"                          kv, graph or workspace; the run must then exit 1\n"
		"  -h, --help\n"
		"\n"
		"While holding, `kill -USR2 PID` prints a device-memory reading.\n"
		"Exit: 0 all checks passed, 1 a check failed, 2 usage, 3 CUDA unavailable,\n"
		"4 a CUDA call failed after initialisation.\n"
		"\n"
		"Example (pause/resume from outside while it holds):\n"
		"  demo-engine --scale 256 --steps 8 --hold-at 3 --hold-file /tmp/go --expect-kv any &\n"
		"  # wait for \"demo-engine: holding at step 3 (pid 4242); continue when /tmp/go exists\"\n"
		"  memsaver ctl --pid 4242 pause; memsaver ctl --pid 4242 resume; touch /tmp/go; wait\n"
		"Output:\n"
		"  phase load_weights: device used 779 MiB (+256 MiB)\n");
}

static int parse_int(const char *s, long long lo, long long hi, long long *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int parse_expect(const char *s, enum expect *out, int allow_keep)
{
	if (allow_keep && !strcmp(s, "keep"))
		*out = EXPECT_KEEP;
	else if (!strcmp(s, "zero"))
		*out = EXPECT_ZERO;
	else if (!strcmp(s, "any"))
		*out = EXPECT_ANY;
	else
		return -1;
	return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	enum { O_SCALE = 256, O_STEPS, O_TENSORS, O_DEVICE, O_HOLD_AT, O_HOLD_FILE, O_SIGNAL_HOLD,
	       O_HOLD_TIMEOUT, O_SELF_PAUSE, O_EXPECT_KV, O_EXPECT_WS, O_VERIFY_EVERY, O_JSON, O_CORRUPT, O_UNTIL_FILE };
	static const struct option longopts[] = {
		{"scale", required_argument, NULL, O_SCALE},
		{"steps", required_argument, NULL, O_STEPS},
		{"tensors", required_argument, NULL, O_TENSORS},
		{"device", required_argument, NULL, O_DEVICE},
		{"hold-at", required_argument, NULL, O_HOLD_AT},
		{"hold-file", required_argument, NULL, O_HOLD_FILE},
		{"signal-hold", no_argument, NULL, O_SIGNAL_HOLD},
		{"hold-timeout", required_argument, NULL, O_HOLD_TIMEOUT},
		{"self-pause", required_argument, NULL, O_SELF_PAUSE},
		{"expect-kv", required_argument, NULL, O_EXPECT_KV},
		{"expect-workspace", required_argument, NULL, O_EXPECT_WS},
		{"verify-every", required_argument, NULL, O_VERIFY_EVERY},
		{"json", no_argument, NULL, O_JSON},
		{"corrupt", required_argument, NULL, O_CORRUPT},
		{"until-file", required_argument, NULL, O_UNTIL_FILE},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	long long v;
	int c;

	*o = (struct opts){.scale_mib = 64, .steps = 10, .tensors = 8, .hold_at = -1,
			   .kv = EXPECT_KEEP, .ws = EXPECT_ANY, .verify_every = 1};
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		const char *bad = NULL;
		switch (c) {
		case O_SCALE:
			if (parse_int(optarg, 1, 1 << 20, &v))
				bad = "--scale wants MiB between 1 and 1048576";
			o->scale_mib = (unsigned long long)v;
			break;
		case O_STEPS:
			if (parse_int(optarg, 1, 1000000, &v))
				bad = "--steps wants a positive count";
			o->steps = (int)v;
			break;
		case O_TENSORS:
			if (parse_int(optarg, 1, 4096, &v))
				bad = "--tensors wants 1..4096";
			o->tensors = (int)v;
			break;
		case O_DEVICE:
			if (parse_int(optarg, 0, 1024, &v))
				bad = "--device wants an ordinal";
			o->device = (int)v;
			break;
		case O_HOLD_AT:
			if (parse_int(optarg, 0, 1000000, &v))
				bad = "--hold-at wants a step number";
			o->hold_at = (int)v;
			break;
		case O_HOLD_FILE:
			o->hold_file = optarg;
			break;
		case O_SIGNAL_HOLD:
			o->signal_hold = 1;
			break;
		case O_HOLD_TIMEOUT:
			if (parse_int(optarg, 0, 86400, &v))
				bad = "--hold-timeout wants seconds";
			o->hold_timeout = (double)v;
			break;
		case O_SELF_PAUSE:
			o->self_pause = optarg;
			break;
		case O_EXPECT_KV:
			if (parse_expect(optarg, &o->kv, 1))
				bad = "--expect-kv wants keep, zero or any";
			break;
		case O_EXPECT_WS:
			if (parse_expect(optarg, &o->ws, 0))
				bad = "--expect-workspace wants any or zero";
			break;
		case O_VERIFY_EVERY:
			if (parse_int(optarg, 1, 1000000, &v))
				bad = "--verify-every wants a positive count";
			o->verify_every = (int)v;
			break;
		case O_JSON:
			o->json = 1;
			break;
		case O_UNTIL_FILE:
			o->until_file = optarg;
			break;
		case O_CORRUPT:
			if (strcmp(optarg, "weights") && strcmp(optarg, "kv") && strcmp(optarg, "graph") &&
			    strcmp(optarg, "workspace"))
				bad = "--corrupt wants weights, kv, graph or workspace";
			o->corrupt = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(EXIT_OK);
		default:
			usage(stderr);
			return -1;
		}
		if (bad) {
			fprintf(stderr, "demo-engine: %s (got \"%s\")\n", bad, optarg);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "demo-engine: unexpected argument \"%s\"\n", argv[optind]);
		return -1;
	}
	if (o->corrupt && o->hold_at < 0) {
		fprintf(stderr, "demo-engine: --corrupt acts at the hold: add --hold-at\n");
		return -1;
	}
	if ((o->hold_file || o->signal_hold || o->self_pause) && o->hold_at < 0) {
		if (!o->self_pause) {
			fprintf(stderr, "demo-engine: --hold-file/--signal-hold need --hold-at\n");
			return -1;
		}
		o->hold_at = o->steps / 2;
	}
	if (o->hold_at >= o->steps) {
		fprintf(stderr, "demo-engine: --hold-at %d is not a step of 0..%d\n", o->hold_at,
			o->steps - 1);
		return -1;
	}
	if (o->hold_at >= 0 && !o->hold_file && !o->signal_hold && !o->self_pause && !o->corrupt) {
		fprintf(stderr, "demo-engine: --hold-at needs --hold-file, --signal-hold, --self-pause "
				"or --corrupt\n");
		return -1;
	}
	if (o->hold_at < 0 && (o->kv == EXPECT_ZERO || o->ws == EXPECT_ZERO)) {
		fprintf(stderr, "demo-engine: a `zero` expectation applies after a hold: add --hold-at\n");
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct engine *e;
	int rc;

	/* Line-buffered even into a pipe: a script waits for the holding line. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (parse_opts(argc, argv, &o))
		return EXIT_USAGE;
	e = calloc(1, sizeof(*e));
	if (!e) {
		fprintf(stderr, "demo-engine: out of host memory\n");
		return EXIT_CUDA;
	}
	e->o = &o;
	rc = run(e);
	if (e->ctx_retained) {
		teardown(e);
		if (rc == 0 && reading(e, "freed", -1))
			rc = EXIT_CUDA;
		CUresult r = e->drv.primaryCtxRelease(e->dev);
		if (r != CUDA_SUCCESS && !rc)
			rc = cu_fail(e, r, "cuDevicePrimaryCtxRelease", __LINE__);
	}
	if (rc == EXIT_OK)
		printf(o.json ? "{\"result\":\"ok\",\"steps\":%d}\n" : "demo-engine: ok (%d steps, all checks passed)\n",
		       o.steps);
	else if (rc == EXIT_MISMATCH)
		printf(o.json ? "{\"result\":\"mismatch\"}\n" : "demo-engine: FAILED (a check failed)\n");
	else if (rc == EXIT_CUDA)
		printf(o.json ? "{\"result\":\"cuda_error\"}\n" : "demo-engine: FAILED (a CUDA call failed)\n");
	free(e->w);
	free(e->w_size);
	free(e->host);
	free(e->want);
	free(e);
	return rc;
}
