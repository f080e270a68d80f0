/* Analyzer tests: hand-made traces (built here with the real trace writer,
 * so no opaque binaries are committed) against expected reports in
 * tests/golden/NAME.report.json, plus torn/malformed traces, the schema
 * check, merge, diff and the renderers.  Every report a test produces goes
 * through check_report(): its sources must add up to unreclaimed_bytes.
 *
 *   MSV_GOLDEN_UPDATE=1 build/tests/test_analyzer   rewrites the expected files
 *   build/tests/test_analyzer --write-traces DIR     writes the golden traces
 *                                                    (tests/e2e uses them) */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "analyzer/analyzer.h"
#include "tracer/categories.h"
#include "tracer/classify.h"
#include "tracer/trace_writer.h"

#define M (1ull << 20)
#define G (1ull << 30)
#define TOTAL (80 * G)
#define RULE_DEFAULT_OTHER (0x8000 | MSV_BY_FALLBACK)
#define RULE_DEFAULT_LIB (0x8000 | MSV_BY_LIBRARY)
#define RULE_DEFAULT_CAPTURE (0x8000 | MSV_BY_CAPTURE)
#define CATBIT(c) (1ull << MSV_CAT_##c)

static char tmpdir[256];
static const char *golden_dir = "tests/golden";

/* ---- trace generator ------------------------------------------------- */

struct gen {
	struct msv_trace_writer *w;
	uint64_t t;
	char path[512];
};

static void g_rec(struct gen *g, struct msv_rec r)
{
	g->t += 1000000; /* 1 ms per record: relative times are deterministic */
	r.t_ns = g->t;
	r.tid = 100;
	_msv_trace_append(g->w, &r);
}

static void g_open(struct gen *g, const char *name, int pid)
{
	snprintf(g->path, sizeof(g->path), "%s/%s.trace", tmpdir, name);
	/* No ck_assert here: --write-traces runs the generators outside Check. */
	void *buf;
	size_t len;
	if (_msv_trace_writer_new(g->path, pid, &g->w) != 0 ||
	    _msv_trace_copy(g->w, &buf, &len) != 0)
		ck_abort_msg("cannot write %s", g->path);
	struct msv_trace_header h;
	memcpy(&h, buf, sizeof(h));
	free(buf);
	g->t = h.start_mono_ns;
}

static void g_meta_str(struct gen *g, int key, const char *s)
{
	g_rec(g, (struct msv_rec){.type = MSV_REC_META, .api = key, .site = _msv_trace_intern(g->w, s)});
}

static void g_meta_num(struct gen *g, int key, uint64_t v)
{
	g_rec(g, (struct msv_rec){.type = MSV_REC_META, .api = key, .size = v});
}

static const char *default_policy =
	"{\"version\":1,\"rules\":[],\"actions\":{\"weights\":\"backup\",\"kv\":\"discard\","
	"\"graph\":\"backup\",\"workspace\":\"backup\",\"comm\":\"keep\",\"other\":\"keep\"},"
	"\"context\":\"trim\"}";

static void g_start(struct gen *g, const char *name, int pid, uint64_t baseline)
{
	g_open(g, name, pid);
	g_meta_str(g, MSV_META_CMDLINE, "python -m sglang.launch_server --model demo");
	g_meta_str(g, MSV_META_HOSTNAME, "node1");
	g_meta_str(g, MSV_META_POLICY, default_policy);
	g_rec(g, (struct msv_rec){.type = MSV_REC_PHASE, .site = _msv_trace_intern(g->w, "baseline"),
				  .size = TOTAL, .aux = baseline, .aux2 = MSV_NO_VALUE});
	g_rec(g, (struct msv_rec){.type = MSV_REC_META, .api = MSV_META_DEVICE_NAME,
				  .site = _msv_trace_intern(g->w, "NVIDIA H100 80GB HBM3"),
				  .device = 0});
	g_meta_num(g, MSV_META_DEVICE_TOTAL, TOTAL);
	g_meta_num(g, MSV_META_GRANULARITY, 2 * M);
	g_meta_num(g, MSV_META_CUPTI, 1);
	g_meta_num(g, MSV_META_STAGING, 256 * M);
}

static void g_phase(struct gen *g, const char *label, uint64_t used)
{
	g_rec(g, (struct msv_rec){.type = MSV_REC_PHASE, .site = _msv_trace_intern(g->w, label),
				  .size = TOTAL, .aux = used, .aux2 = used == MSV_NO_VALUE ? used : used / 2});
}

static void g_alloc(struct gen *g, uint64_t addr, uint64_t size, uint64_t mapped, int cat,
		    unsigned flags, uint16_t rule, const char *lib, const char *py)
{
	g_rec(g, (struct msv_rec){.type = MSV_REC_ALLOC, .addr = addr, .size = size, .aux = mapped,
				  .category = cat, .flags = flags, .rule = rule,
				  .site = _msv_trace_intern(g->w, lib),
				  .pysite = _msv_trace_intern(g->w, py), .api = MSV_API_MEM_ALLOC,
				  .aux2 = 7});
}

static void g_free(struct gen *g, uint64_t addr, uint64_t size)
{
	g_rec(g, (struct msv_rec){.type = MSV_REC_FREE, .addr = addr, .size = size,
				  .api = MSV_API_MEM_FREE});
}

static void g_driver(struct gen *g, int cause, int64_t bytes)
{
	g_rec(g, (struct msv_rec){.type = MSV_REC_DRIVER, .api = cause, .size = (uint64_t)bytes});
}

static void g_context(struct gen *g, int restore, uint64_t bytes)
{
	g_rec(g, (struct msv_rec){.type = MSV_REC_CONTEXT, .api = restore, .size = bytes});
}

static void g_pause(struct gen *g, int resume, uint64_t mask, uint64_t bytes, uint64_t ns,
		    uint64_t copied, uint32_t us, unsigned flags)
{
	g_rec(g, (struct msv_rec){.type = resume ? MSV_REC_RESUME : MSV_REC_PAUSE, .addr = mask,
				  .size = bytes, .aux = ns, .aux2 = copied, .pysite = us,
				  .flags = flags});
}

static void g_close(struct gen *g)
{
	_msv_trace_writer_free(g->w);
	g->w = NULL;
}

/* The full scenario: baseline + context + weights/kv/graph wrapped, other
 * and comm kept, a pause that leaves graph out, one wrap failure, app VMM,
 * driver modules/graph_exec/library, 7 MiB nobody explains, then resume. */
static void gen_full(struct gen *g)
{
	g_start(g, "full", 4242, 1 * G);
	g_driver(g, MSV_DRV_CONTEXT, 512 * M);
	g_driver(g, MSV_DRV_MODULES, 300 * M);
	const char *load = "model_runner.py:120:load_model\nengine.py:10:main";
	g_alloc(g, 0x10000000, 2 * G, 2 * G, MSV_CAT_WEIGHTS, MSV_F_WRAPPED, 1, "libtorch_cuda.so", load);
	g_alloc(g, 0x90000000, 1 * G + 1 * M, 1 * G + 2 * M, MSV_CAT_WEIGHTS, MSV_F_WRAPPED, 1,
		"libtorch_cuda.so", load);
	g_alloc(g, 0xd0000000, 100 * M, 0, MSV_CAT_WEIGHTS, MSV_F_WRAP_FAILED, 1, "libtorch_cuda.so",
		"model_runner.py:130:load_lora");
	g_rec(g, (struct msv_rec){.type = MSV_REC_WRAP_FAIL, .addr = 0xd0000000, .size = 100 * M,
				  .aux = 2, .category = MSV_CAT_WEIGHTS});
	g_alloc(g, 0x100000000, 8 * G, 8 * G, MSV_CAT_KV, MSV_F_WRAPPED, 2, "libtorch_cuda.so",
		"memory_pool.py:200:__init__");
	g_alloc(g, 0x400000000, 511 * M, 512 * M, MSV_CAT_GRAPH, MSV_F_WRAPPED | MSV_F_CAPTURING,
		RULE_DEFAULT_CAPTURE, "libtorch_cuda.so", "cuda_graph_runner.py:88:capture");
	g_alloc(g, 0x500000000, 64 * M, 64 * M, MSV_CAT_WORKSPACE, MSV_F_WRAPPED, RULE_DEFAULT_LIB,
		"libcublasLt.so.13", NULL);
	g_alloc(g, 0x600000000, 256 * M, 0, MSV_CAT_COMM, 0, RULE_DEFAULT_LIB, "libnccl.so.2", NULL);
	g_alloc(g, 0x700000000, 300 * M, 0, MSV_CAT_OTHER, 0, RULE_DEFAULT_OTHER, "libtorch_cuda.so",
		"sampler.py:50:sample\nscheduler.py:7:step");
	g_alloc(g, 0x720000000, 20 * M, 0, MSV_CAT_OTHER, 0, RULE_DEFAULT_OTHER, "libtorch_cuda.so",
		"utils.py:9:tmp");
	g_alloc(g, 0x740000000, 10 * M, 0, MSV_CAT_OTHER, 0, RULE_DEFAULT_OTHER, NULL, NULL);
	g_free(g, 0x740000000, 10 * M);
	g_rec(g, (struct msv_rec){.type = MSV_REC_VMM_CREATE, .addr = 0xabc, .size = 1 * G,
				  .site = _msv_trace_intern(g->w, "libnccl.so.2")});
	g_rec(g, (struct msv_rec){.type = MSV_REC_VMM_MAP, .addr = 0x800000000, .size = 1 * G, .aux = 0xabc});
	g_rec(g, (struct msv_rec){.type = MSV_REC_VMM_CREATE, .addr = 0xdef, .size = 2 * M});
	g_rec(g, (struct msv_rec){.type = MSV_REC_VMM_RELEASE, .addr = 0xdef});
	g_driver(g, MSV_DRV_GRAPH_EXEC, 128 * M);
	g_driver(g, MSV_DRV_LIBRARY, 32 * M);
	/* In MiB: driver 972 + weights 3174 + kv 8192 + graph 512 + ws 64 +
	 * comm 256 + other 320 + vmm 1024 + 7 unexplained = 14521. */
	g_phase(g, "ready", 1 * G + 14521 * M);
	g_phase(g, "before_pause", 1 * G + 14521 * M);
	g_context(g, 0, 200 * M);
	g_pause(g, 0, CATBIT(WEIGHTS) | CATBIT(KV) | CATBIT(WORKSPACE), 11330 * M, 150000000,
		3138 * M, 100000, 0);
	g_phase(g, "pause", 1 * G + (14521 - 11530) * M);
	g_pause(g, 1, CATBIT(WEIGHTS) | CATBIT(KV) | CATBIT(WORKSPACE), 11330 * M, 200000000,
		3138 * M, 150000, 0);
	g_context(g, 1, 200 * M);
	g_phase(g, "resume", 1 * G + 14521 * M);
	g_free(g, 0x720000000, 20 * M);
	g_phase(g, "exit", 1 * G + 14501 * M);
	g_close(g);
}

/* NVML could not read the device before CUDA init. */
static void gen_unknown_baseline(struct gen *g)
{
	g_start(g, "unknown_baseline", 4243, MSV_NO_VALUE);
	g_driver(g, MSV_DRV_CONTEXT, 400 * M);
	g_alloc(g, 0x10000000, 1 * G, 1 * G, MSV_CAT_WEIGHTS, MSV_F_WRAPPED, 0, NULL, "a.py:1:f");
	g_alloc(g, 0x90000000, 2 * G, 2 * G, MSV_CAT_KV, MSV_F_WRAPPED, 0, NULL, "b.py:2:g");
	g_phase(g, "before_pause", 50 * G);
	g_pause(g, 0, 0x3f, 3 * G, 90000000, 1 * G, 50000, 0);
	g_phase(g, "pause", 47 * G);
	g_close(g);
}

/* Two pauses: the report explains the second. */
static void gen_two_pauses(struct gen *g)
{
	g_start(g, "two_pauses", 4244, 512 * M);
	g_alloc(g, 0x10000000, 1 * G, 1 * G, MSV_CAT_WEIGHTS, MSV_F_WRAPPED, 0, NULL, "a.py:1:f");
	g_alloc(g, 0x90000000, 2 * G, 2 * G, MSV_CAT_KV, MSV_F_WRAPPED, 0, NULL, "b.py:2:g");
	g_phase(g, "before_pause", 512 * M + 3 * G);
	g_pause(g, 0, 0x3f, 3 * G, 80000000, 1 * G, 40000, 0);
	g_phase(g, "pause", 512 * M);
	g_pause(g, 1, 0x3f, 3 * G, 90000000, 1 * G, 50000, 0);
	g_phase(g, "resume", 512 * M + 3 * G);
	g_alloc(g, 0x200000000, 100 * M, 0, MSV_CAT_OTHER, 0, RULE_DEFAULT_OTHER, NULL,
		"c.py:3:h");
	g_phase(g, "before_pause", 512 * M + 3 * G + 100 * M);
	g_pause(g, 0, CATBIT(KV), 2 * G, 20000000, 0, 0, 0);
	g_phase(g, "pause", 512 * M + 1 * G + 100 * M);
	g_close(g);
}

/* Resume fails (out of memory): the state stays paused. */
static void gen_failed_resume(struct gen *g)
{
	g_start(g, "failed_resume", 4245, 1 * G);
	g_driver(g, MSV_DRV_CONTEXT, 256 * M);
	g_alloc(g, 0x10000000, 4 * G, 4 * G, MSV_CAT_WEIGHTS, MSV_F_WRAPPED, 0, NULL, "a.py:1:f");
	g_alloc(g, 0x200000000, 4 * G, 4 * G, MSV_CAT_KV, MSV_F_WRAPPED, 0, NULL, "b.py:2:g");
	g_phase(g, "before_pause", 1 * G + 256 * M + 8 * G);
	g_pause(g, 0, CATBIT(WEIGHTS) | CATBIT(KV), 8 * G, 300000000, 4 * G, 200000, 0);
	g_phase(g, "pause", 1 * G + 256 * M);
	g_pause(g, 1, CATBIT(WEIGHTS) | CATBIT(KV), 0, 5000000, 0, 0, MSV_F_FAILED);
	g_phase(g, "after_failed_resume", 1 * G + 256 * M);
	g_close(g);
}

/* No pause at all: phases, no attribution. */
static void gen_no_pause(struct gen *g)
{
	g_start(g, "no_pause", 4246, 1 * G);
	g_driver(g, MSV_DRV_CONTEXT, 300 * M);
	g_alloc(g, 0x10000000, 1 * G, 1 * G, MSV_CAT_WEIGHTS, MSV_F_WRAPPED, 0, NULL, "a.py:1:f");
	g_phase(g, "exit", 1 * G + 300 * M + 1 * G);
	g_close(g);
}

/* A checkpoint (MSV_F_READING): the tracer's reading at a rare event.  `est`
 * is the tracer's own estimate, which the analyzer must not use once the
 * trace has a "context" reading. */
static void g_ck(struct gen *g, int cause, int mark, uint64_t used, int64_t est, const char *lib,
		 const char *py)
{
	g_rec(g, (struct msv_rec){.type = MSV_REC_DRIVER, .api = cause, .addr = mark, .aux = used,
				  .size = (uint64_t)est, .flags = MSV_F_READING,
				  .site = _msv_trace_intern(g->w, lib), .pysite = _msv_trace_intern(g->w, py)});
}

/* The residue of a PyTorch engine (issue 13): readings at the context, at
 * each lazy module load, stream creation, capture and instantiation, so
 * that driver memory no call explains is charged to the interval it
 * appeared in.  Allocations, app VMM and a free between readings must not
 * be charged; the pause and resume readings only move the ledger, so the
 * 3 MiB the pause claimed but the device did not give back stay
 * unattributed.  The estimates (999 MiB) are wrong on purpose. */
static void gen_residue(struct gen *g)
{
	uint64_t u = 1 * G;
	g_start(g, "residue", 4247, u);
	g_driver(g, MSV_DRV_CONTEXT, 500 * M);
	u += 500 * M;
	g_phase(g, "context", u);
	const char *fwd = "model.py:97:forward\nengine.py:20:step";
	g_alloc(g, 0x10000000, 2 * G, 2 * G, MSV_CAT_WEIGHTS, MSV_F_WRAPPED, 1, "libtorch_cuda.so",
		"model.py:40:load");
	g_alloc(g, 0x300000000, 100 * M, 0, MSV_CAT_OTHER, 0, RULE_DEFAULT_OTHER, "libtorch_cuda.so",
		"model.py:41:load");
	u += 2 * G + 100 * M + 8 * M;
	g_ck(g, MSV_DRV_LAZY_LOAD, MSV_MARK_MODULE_LOADED, u, 999 * M, "libtorch_cuda.so", "model.py:40:load");
	g_alloc(g, 0x90000000, 32 * M, 32 * M, MSV_CAT_WORKSPACE, MSV_F_WRAPPED, RULE_DEFAULT_LIB,
		"libcublasLt.so.13", fwd);
	u += 32 * M + 66 * M;
	g_ck(g, MSV_DRV_LAZY_LOAD, MSV_MARK_MODULE_LOADED, u, 999 * M, "libcublasLt.so.13", fwd);
	g_rec(g, (struct msv_rec){.type = MSV_REC_VMM_CREATE, .addr = 0xabc, .size = 484 * M,
				  .site = _msv_trace_intern(g->w, "libnccl.so.2")});
	u += 484 * M + 20 * M;
	g_ck(g, MSV_DRV_UNOBSERVED, MSV_MARK_STREAM_CREATED, u, 999 * M, "libtorch_cuda.so",
	     "graphs.py:50:warmup");
	u += 86 * M;
	g_ck(g, MSV_DRV_UNOBSERVED, MSV_MARK_CAPTURE_BEGIN, u, 999 * M, "libtorch_cuda.so",
	     "graphs.py:70:capture_begin");
	g_alloc(g, 0x400000000, 256 * M, 256 * M, MSV_CAT_GRAPH, MSV_F_WRAPPED | MSV_F_CAPTURING,
		RULE_DEFAULT_CAPTURE, "libtorch_cuda.so", "graphs.py:71:capture");
	u += 256 * M + 4 * M;
	g_ck(g, MSV_DRV_LAZY_LOAD, MSV_MARK_MODULE_LOADED, u, 999 * M, "libtorch_cuda.so", "graphs.py:71:capture");
	u += 10 * M;
	g_ck(g, MSV_DRV_GRAPH_EXEC, MSV_MARK_CAPTURE_END, u, 999 * M, "libtorch_cuda.so",
	     "graphs.py:80:capture_end");
	g_free(g, 0x300000000, 100 * M);
	u -= 100 * M;
	g_ck(g, MSV_DRV_UNOBSERVED, MSV_MARK_INSTANTIATE_BEGIN, u, 999 * M, "libtorch_cuda.so",
	     "graphs.py:80:capture_end");
	u += 28 * M;
	g_ck(g, MSV_DRV_GRAPH_EXEC, MSV_MARK_INSTANTIATE_END, u, 999 * M, "libtorch_cuda.so",
	     "graphs.py:80:capture_end");
	u += 12 * M;
	g_phase(g, "ready", u);
	g_phase(g, "before_pause", u);
	g_context(g, 0, 200 * M);
	g_pause(g, 0, CATBIT(WEIGHTS) | CATBIT(WORKSPACE), 2080 * M, 100000000, 2080 * M, 50000, 0);
	u -= 2080 * M + 200 * M - 3 * M;
	g_phase(g, "pause", u);
	g_pause(g, 1, CATBIT(WEIGHTS) | CATBIT(WORKSPACE), 2080 * M, 100000000, 2080 * M, 50000, 0);
	g_context(g, 1, 200 * M);
	u += 2080 * M + 200 * M;
	g_phase(g, "resume", u);
	g_ck(g, MSV_DRV_LAZY_LOAD, MSV_MARK_MODULE_LOADED, u + 5 * M, 999 * M, "libtorch_cuda.so",
	     "model.py:99:sample");
	g_close(g);
}

/* A deep pause (issue 12), then a plain one: the checkpoint readings are
 * the ctl's ("before_checkpoint", "checkpointed", by NVML index), the deep
 * pause's residue is explained at its own pause, not the latest; the
 * readings move no ledger (the resume reading is back at the start). */
static void gen_deep(struct gen *g)
{
	uint64_t u = 1 * G;
	g_start(g, "deep", 4248, u);
	g_driver(g, MSV_DRV_CONTEXT, 300 * M);
	u += 300 * M;
	g_phase(g, "context", u);
	g_alloc(g, 0x10000000, 2 * G, 2 * G, MSV_CAT_WEIGHTS, MSV_F_WRAPPED, 1, "libtorch_cuda.so",
		"model.py:40:load");
	g_alloc(g, 0x100000000, 4 * G, 4 * G, MSV_CAT_KV, MSV_F_WRAPPED, 2, "libtorch_cuda.so",
		"memory_pool.py:200:__init__");
	g_alloc(g, 0x300000000, 100 * M, 0, MSV_CAT_OTHER, 0, RULE_DEFAULT_OTHER, "libtorch_cuda.so",
		"sampler.py:50:sample");
	u += 6 * G + 100 * M;
	g_phase(g, "before_pause", u);
	g_pause(g, 0, CATBIT(WEIGHTS) | CATBIT(KV), 6 * G, 90000000, 2 * G, 40000, 0);
	g_phase(g, "pause", u - 6 * G);
	g_phase(g, "before_checkpoint", u - 6 * G);
	g_phase(g, "checkpointed", 1 * G + 2 * M);
	g_pause(g, 1, CATBIT(WEIGHTS) | CATBIT(KV), 6 * G, 80000000, 2 * G, 40000, 0);
	g_phase(g, "resume", u);
	g_phase(g, "before_pause", u);
	g_pause(g, 0, CATBIT(KV), 4 * G, 30000000, 0, 0, 0);
	g_phase(g, "pause", u - 4 * G);
	g_close(g);
}

static const struct golden {
	const char *name;
	void (*gen)(struct gen *);
} goldens[] = {
	{"full", gen_full},
	{"unknown_baseline", gen_unknown_baseline},
	{"two_pauses", gen_two_pauses},
	{"failed_resume", gen_failed_resume},
	{"no_pause", gen_no_pause},
	{"residue", gen_residue},
	{"deep_pause", gen_deep},
};
#define N_GOLDEN (sizeof(goldens) / sizeof(goldens[0]))

/* ---- helpers --------------------------------------------------------- */

static json_int_t iget(const json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static void check_sum(const json_t *a)
{
	json_int_t sum = 0;
	size_t i;
	json_t *s;
	ck_assert_ptr_nonnull(json_object_get(a, "sources"));
	json_array_foreach(json_object_get(a, "sources"), i, s)
		sum += iget(s, "bytes");
	ck_assert_int_eq(sum, iget(a, "unreclaimed_bytes"));
	ck_assert_int_eq(iget(a, "footprint_bytes") - iget(a, "reclaimed_bytes"),
			 iget(a, "unreclaimed_bytes"));
}

/* Conservation, asserted on every report the tests produce. */
static void check_report(const json_t *r)
{
	char err[512];
	ck_assert_ptr_nonnull(r);
	ck_assert_msg(_msv_report_check(r, "test", err, sizeof(err)) == 0, "%s", err);
	json_t *a = json_object_get(r, "attribution");
	if (a) {
		check_sum(a);
		/* unattributed is always there */
		int found = 0;
		size_t i;
		json_t *s;
		json_array_foreach(json_object_get(a, "sources"), i, s)
			found += strcmp(json_string_value(json_object_get(s, "source")), "unattributed") == 0;
		ck_assert_int_eq(found, 1);
	}
	size_t i;
	json_t *p;
	json_array_foreach(json_object_get(r, "processes"), i, p)
		check_report(p);
}

static json_t *build_checked(const struct msv_trace *t)
{
	json_t *r = _msv_report_build(t);
	check_report(r);
	return r;
}

static struct msv_trace *make(const struct golden *gd, char *path, size_t len)
{
	struct gen g = {0};
	gd->gen(&g);
	snprintf(path, len, "%s", g.path);
	struct msv_trace *t;
	char err[512];
	ck_assert_msg(_msv_trace_load(g.path, &t, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(t->torn, 0);
	return t;
}

static const struct golden *golden_by_name(const char *n)
{
	for (size_t i = 0; i < N_GOLDEN; i++)
		if (strcmp(goldens[i].name, n) == 0)
			return &goldens[i];
	return NULL;
}

static json_t *report_of(const char *name)
{
	char path[512];
	struct msv_trace *t = make(golden_by_name(name), path, sizeof(path));
	json_t *r = build_checked(t);
	_msv_trace_free(t);
	return r;
}

/* Timestamps and paths out: what stays must equal the expected file. */
static void normalize(json_t *r)
{
	json_t *t = json_object_get(r, "trace");
	if (t) {
		json_object_del(t, "start_realtime_ns");
		const char *n = json_string_value(json_object_get(t, "name"));
		if (n) {
			const char *b = strrchr(n, '/');
			json_object_set_new(t, "name", json_string(b ? b + 1 : n));
		}
	}
	size_t i;
	json_t *p;
	json_array_foreach(json_object_get(r, "processes"), i, p)
		normalize(p);
}

static json_t *source(const json_t *r, const char *name, const char *reason)
{
	size_t i;
	json_t *s;
	json_array_foreach(json_object_get(json_object_get(r, "attribution"), "sources"), i, s)
	{
		if (strcmp(json_string_value(json_object_get(s, "source")), name) != 0)
			continue;
		if (reason && strcmp(json_string_value(json_object_get(s, "reason")), reason) != 0)
			continue;
		return s;
	}
	return NULL;
}

static json_int_t source_bytes(const json_t *r, const char *name, const char *reason)
{
	json_t *s = source(r, name, reason);
	ck_assert_msg(s != NULL, "source %s (%s) missing", name, reason ? reason : "any");
	return iget(s, "bytes");
}

static int has_rec(const json_t *r, const char *action, json_int_t bytes)
{
	size_t i;
	json_t *x;
	json_array_foreach(json_object_get(r, "recommendations"), i, x)
		if (strcmp(json_string_value(json_object_get(x, "action")), action) == 0 &&
		    iget(x, "reclaimable_bytes") == bytes)
			return 1;
	return 0;
}

/* ---- golden ---------------------------------------------------------- */

static void golden_compare(const char *name)
{
	json_t *r = report_of(name);
	normalize(r);
	char path[512];
	snprintf(path, sizeof(path), "%s/%s.report.json", golden_dir, name);
	if (getenv("MSV_GOLDEN_UPDATE")) {
		ck_assert_int_eq(json_dump_file(r, path, JSON_INDENT(2)), 0);
		json_decref(r);
		return;
	}
	json_error_t je;
	json_t *want = json_load_file(path, 0, &je);
	ck_assert_msg(want != NULL, "%s: %s (MSV_GOLDEN_UPDATE=1 writes it)", path, je.text);
	check_report(want);
	if (!json_equal(r, want)) {
		char got[512];
		snprintf(got, sizeof(got), "%s/%s.got.json", tmpdir, name);
		json_dump_file(r, got, JSON_INDENT(2));
		ck_abort_msg("report of %s differs from %s; got %s (diff them)", name, path, got);
	}
	json_decref(want);
	json_decref(r);
}

START_TEST(test_golden)
{
	golden_compare(goldens[_i].name);
}
END_TEST

START_TEST(test_full_numbers)
{
	json_t *r = report_of("full");
	json_t *a = json_object_get(r, "attribution");
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(iget(a, "footprint_bytes"), 14521 * M);
	ck_assert_int_eq(iget(a, "reclaimed_bytes"), 11530 * M);
	ck_assert_int_eq(iget(a, "unreclaimed_bytes"), 2991 * M);
	ck_assert_int_eq(source_bytes(r, "category:weights", "wrap failed"), 100 * M);
	ck_assert_int_eq(source_bytes(r, "category:graph", "excluded from this pause"), 511 * M);
	ck_assert_int_eq(source_bytes(r, "category:comm", "not wrapped by policy (action keep)"),
			 256 * M);
	ck_assert_int_eq(source_bytes(r, "category:other", "not wrapped by policy (action keep)"),
			 320 * M);
	ck_assert_ptr_null(source(r, "category:kv", NULL)); /* all of kv was released */
	ck_assert_int_eq(source_bytes(r, "app_vmm", NULL), 1 * G);
	json_t *ctx = source(r, "driver:context", NULL);
	ck_assert_int_eq(iget(ctx, "bytes"), 312 * M);
	ck_assert_int_eq(iget(ctx, "trimmed_bytes"), 200 * M);
	ck_assert_int_eq(iget(ctx, "resident_bytes"), 312 * M);
	ck_assert_int_eq(source_bytes(r, "driver:modules", NULL), 300 * M);
	ck_assert_int_eq(source_bytes(r, "driver:graph_exec", NULL), 128 * M);
	ck_assert_int_eq(source_bytes(r, "driver:library", NULL), 32 * M);
	ck_assert_int_eq(source_bytes(r, "saver:overhead", NULL), 1 * M);
	ck_assert_int_eq(source_bytes(r, "unattributed", NULL), 7 * M);
	/* largest first */
	json_t *first = json_array_get(json_object_get(a, "sources"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(first, "source")), "app_vmm");
	/* top site: innermost Python frame */
	json_t *other = source(r, "category:other", NULL);
	json_t *top = json_array_get(json_object_get(other, "top_sites"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(top, "site")), "sampler.py:50:sample");
	ck_assert_int_eq(iget(top, "bytes"), 300 * M);
	json_t *ws_top = json_array_get(json_object_get(source(r, "app_vmm", NULL), "top_sites"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(ws_top, "site")), "libnccl.so.2");
	/* recommendations */
	ck_assert(has_rec(r, "set actions.other to backup", 320 * M));
	/* comm is shared with the other ranks: releasing it would duplicate it */
	ck_assert(!has_rec(r, "set actions.comm to backup", 256 * M));
	ck_assert(has_rec(r, "include graph in the pause", 511 * M));
	ck_assert(has_rec(r, "investigate wrap failures", 100 * M));
	ck_assert(has_rec(r, "add a rule", 300 * M));
	ck_assert(has_rec(r, "add a rule", 20 * M));
	ck_assert(has_rec(r, "capture fewer batch sizes", 128 * M));
	ck_assert(has_rec(r, "set CUDA_MODULE_LOADING=LAZY", 300 * M));
	/* timings */
	json_t *tm = json_object_get(r, "timings");
	ck_assert_double_eq_tol(json_real_value(json_object_get(tm, "pause_ms")), 150.0, 1e-9);
	ck_assert_double_eq_tol(json_real_value(json_object_get(tm, "resume_ms")), 200.0, 1e-9);
	ck_assert_int_eq(iget(tm, "backup_bytes"), 3138 * M);
	ck_assert_double_eq_tol(json_real_value(json_object_get(tm, "backup_gbps")),
				3138.0 * M / 1e9 / 0.1, 1e-6);
	/* phases: one per PHASE record, per category state */
	json_t *ph = json_object_get(r, "phases");
	ck_assert_int_eq(json_array_size(ph), 6);
	json_t *pp = json_array_get(ph, 3);
	ck_assert_str_eq(json_string_value(json_object_get(pp, "label")), "pause");
	json_t *w = json_object_get(json_object_get(pp, "categories"), "weights");
	ck_assert_int_eq(iget(w, "allocated_bytes"), 3 * G + 101 * M);
	ck_assert_int_eq(iget(w, "resident_bytes"), 100 * M);
	ck_assert_int_eq(iget(w, "released_bytes"), 3 * G + 1 * M);
	ck_assert_int_eq(iget(w, "count"), 3);
	ck_assert_int_eq(iget(pp, "footprint_bytes"), 2991 * M);
	json_t *base = json_array_get(ph, 0);
	ck_assert(json_is_null(json_object_get(base, "process_used_bytes")));
	json_t *res = json_object_get(json_object_get(json_array_get(ph, 4), "categories"), "kv");
	ck_assert_int_eq(iget(res, "resident_bytes"), 8 * G);
	ck_assert_int_eq(json_array_size(json_object_get(r, "timeline")) > 3, 1);
	/* process / device / policy */
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "device"), "name")),
			 "NVIDIA H100 80GB HBM3");
	ck_assert_str_eq(json_string_value(json_object_get(
				 json_object_get(json_object_get(r, "policy"), "actions"), "kv")),
			 "discard");
	json_decref(r);
}
END_TEST

START_TEST(test_unknown_baseline)
{
	json_t *r = report_of("unknown_baseline");
	json_t *a = json_object_get(r, "attribution");
	ck_assert(json_is_false(json_object_get(a, "baseline_known")));
	ck_assert_int_eq(iget(a, "footprint_bytes"), 50 * G);
	ck_assert_int_eq(iget(a, "unreclaimed_bytes"), 47 * G);
	ck_assert_int_eq(source_bytes(r, "driver:context", NULL), 400 * M);
	ck_assert_int_eq(source_bytes(r, "unattributed", NULL), 47 * G - 400 * M);
	char *notes = json_dumps(json_object_get(a, "notes"), 0);
	ck_assert_ptr_nonnull(strstr(notes, "baseline"));
	free(notes);
	json_decref(r);
}
END_TEST

START_TEST(test_two_pauses_latest_wins)
{
	json_t *r = report_of("two_pauses");
	json_t *a = json_object_get(r, "attribution");
	ck_assert_int_eq(iget(a, "pause_index"), 1);
	ck_assert_int_eq(iget(a, "footprint_bytes"), 3 * G + 100 * M);
	ck_assert_int_eq(iget(a, "reclaimed_bytes"), 2 * G);
	ck_assert_int_eq(source_bytes(r, "category:weights", "excluded from this pause"), 1 * G);
	ck_assert_int_eq(source_bytes(r, "category:other", NULL), 100 * M);
	ck_assert_int_eq(source_bytes(r, "unattributed", NULL), 0);
	ck_assert_int_eq(iget(r, "pauses"), 2);
	json_decref(r);
}
END_TEST

START_TEST(test_failed_resume)
{
	json_t *r = report_of("failed_resume");
	json_t *tm = json_object_get(r, "timings");
	ck_assert(json_is_true(json_object_get(tm, "resume_failed")));
	json_t *ph = json_object_get(r, "phases");
	json_t *last = json_array_get(ph, json_array_size(ph) - 1);
	json_t *w = json_object_get(json_object_get(last, "categories"), "weights");
	ck_assert_int_eq(iget(w, "resident_bytes"), 0);
	ck_assert_int_eq(iget(w, "released_bytes"), 4 * G);
	ck_assert_int_eq(source_bytes(r, "driver:context", NULL), 256 * M);
	ck_assert_int_eq(source_bytes(r, "unattributed", NULL), 0);
	json_decref(r);
}
END_TEST

START_TEST(test_deep_pause)
{
	json_t *r = report_of("deep_pause");
	json_t *d = json_object_get(r, "deep_pause");
	ck_assert_ptr_nonnull(d);
	ck_assert_int_eq(iget(json_object_get(r, "attribution"), "pause_index"), 1);
	ck_assert_int_eq(iget(d, "pause_index"), 0);
	ck_assert_int_eq(iget(d, "residue_bytes"), 400 * M);
	ck_assert_int_eq(iget(d, "checkpointed_bytes"), 398 * M);
	ck_assert_int_eq(iget(d, "left_bytes"), 2 * M);
	ck_assert(json_is_true(json_object_get(d, "resumed")));
	json_int_t sum = 0, other = 0;
	size_t i;
	json_t *x;
	json_array_foreach(json_object_get(d, "sources"), i, x) {
		sum += iget(x, "bytes");
		if (!strcmp(json_string_value(json_object_get(x, "source")), "category:other"))
			other = iget(x, "bytes");
	}
	ck_assert_int_eq(sum, 400 * M);
	ck_assert_int_eq(other, 100 * M);
	/* The checkpoint readings charge nothing: the latest pause leaves the
	 * context and other, and weights it did not name. */
	ck_assert_int_eq(source_bytes(r, "unattributed", NULL), 0);
	ck_assert_int_eq(source_bytes(r, "driver:unobserved", NULL), 0);
	char *txt;
	size_t tl;
	FILE *f = open_memstream(&txt, &tl);
	ck_assert_int_eq(_msv_render_text(r, f), 0);
	fclose(f);
	static const char *const want[] = {"Deep pause", "residue before the checkpoint 400.0 MiB (pause 0)",
					   "checkpointed 398.0 MiB", "2.0 MiB above the baseline"};
	for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++)
		ck_assert_msg(strstr(txt, want[k]) != NULL, "text lacks '%s':\n%s", want[k], txt);
	free(txt);
	json_decref(r);
	/* No deep pause, no key. */
	r = report_of("full");
	ck_assert_ptr_null(json_object_get(r, "deep_pause"));
	json_decref(r);
}
END_TEST

START_TEST(test_no_pause)
{
	json_t *r = report_of("no_pause");
	ck_assert_ptr_null(json_object_get(r, "attribution"));
	ck_assert(json_is_null(json_object_get(json_object_get(r, "timings"), "pause_ms")));
	json_decref(r);
}
END_TEST

/* Same trace bytes -> same report, whether from the file or the writer's
 * memory copy (the live report). */
START_TEST(test_live_equals_file)
{
	struct gen g = {0};
	gen_full(&g); /* closes the writer; rebuild in memory from the file bytes */
	struct msv_trace *tf, *tl;
	char err[512];
	ck_assert_int_eq(_msv_trace_load(g.path, &tf, err, sizeof(err)), 0);
	FILE *f = fopen(g.path, "rb");
	ck_assert_ptr_nonnull(f);
	static unsigned char buf[1 << 20];
	size_t len = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	ck_assert_int_eq(_msv_trace_parse(buf, len, "live", &tl, err, sizeof(err)), 0);
	json_t *a = build_checked(tf), *b = build_checked(tl);
	json_object_set_new(json_object_get(a, "trace"), "name", json_string("x"));
	json_object_set_new(json_object_get(b, "trace"), "name", json_string("x"));
	ck_assert(json_equal(a, b));
	char *sa = json_dumps(a, JSON_COMPACT), *sb = json_dumps(b, JSON_COMPACT);
	ck_assert_str_eq(sa, sb); /* byte-identical, key order included */
	free(sa);
	free(sb);
	json_decref(a);
	json_decref(b);
	_msv_trace_free(tf);
	_msv_trace_free(tl);
}
END_TEST

/* The writer's own memory copy, while it is still open, gives the same. */
START_TEST(test_writer_copy_equals_file)
{
	struct gen g = {0};
	g_start(&g, "copy", 77, 1 * G);
	g_alloc(&g, 0x1000, 4 * M, 4 * M, MSV_CAT_KV, MSV_F_WRAPPED, 0, NULL, "x.py:1:f");
	g_phase(&g, "before_pause", 1 * G + 4 * M);
	g_pause(&g, 0, CATBIT(KV), 4 * M, 1000, 0, 0, 0);
	g_phase(&g, "pause", 1 * G);
	void *buf;
	size_t len;
	ck_assert_int_eq(_msv_trace_copy(g.w, &buf, &len), 0);
	struct msv_trace *tl, *tf;
	char err[512];
	ck_assert_int_eq(_msv_trace_parse(buf, len, "live", &tl, err, sizeof(err)), 0);
	free(buf);
	g_close(&g);
	ck_assert_int_eq(_msv_trace_load(g.path, &tf, err, sizeof(err)), 0);
	json_t *a = build_checked(tl), *b = build_checked(tf);
	normalize(a);
	normalize(b);
	json_object_set_new(json_object_get(a, "trace"), "name", json_string("x"));
	json_object_set_new(json_object_get(b, "trace"), "name", json_string("x"));
	ck_assert(json_equal(a, b));
	json_decref(a);
	json_decref(b);
	_msv_trace_free(tl);
	_msv_trace_free(tf);
}
END_TEST

/* ---- torn and malformed ---------------------------------------------- */

static size_t file_size(const char *p)
{
	struct stat st;
	ck_assert_int_eq(stat(p, &st), 0);
	return (size_t)st.st_size;
}

START_TEST(test_torn_mid_record)
{
	char path[512];
	struct msv_trace *t = make(golden_by_name("full"), path, sizeof(path));
	_msv_trace_free(t);
	size_t len = file_size(path);
	ck_assert_int_eq(truncate(path, (off_t)(len - 20)), 0);
	char err[512];
	ck_assert_int_eq(_msv_trace_load(path, &t, err, sizeof(err)), 0);
	ck_assert_int_eq(t->torn, 1);
	ck_assert_ptr_nonnull(strstr(err, path));
	char off[64];
	snprintf(off, sizeof(off), "offset %zu", len - 64);
	ck_assert_msg(strstr(err, off) != NULL, "%s lacks %s", err, off);
	json_t *r = build_checked(t);
	ck_assert(json_is_true(json_object_get(json_object_get(r, "trace"), "torn")));
	json_decref(r);
	_msv_trace_free(t);
}
END_TEST

START_TEST(test_torn_mid_string)
{
	struct gen g = {0};
	g_start(&g, "torn_string", 5, 1 * G);
	g_alloc(&g, 0x1000, 4 * M, 4 * M, MSV_CAT_KV, MSV_F_WRAPPED, 0, NULL, "x.py:1:f");
	g_phase(&g, "before_pause", 1 * G + 4 * M);
	g_pause(&g, 0, CATBIT(KV), 4 * M, 1000, 0, 0, 0);
	g_phase(&g, "pause", 1 * G);
	size_t good = file_size(g.path);
	char longs[300];
	memset(longs, 'a', sizeof(longs) - 1);
	longs[sizeof(longs) - 1] = '\0';
	_msv_trace_intern(g.w, longs); /* 64 + 320 bytes */
	g_close(&g);
	ck_assert_int_eq(truncate(g.path, (off_t)(good + 64 + 100)), 0);
	struct msv_trace *t;
	char err[512];
	ck_assert_int_eq(_msv_trace_load(g.path, &t, err, sizeof(err)), 0);
	ck_assert_int_eq(t->torn, 1);
	ck_assert_ptr_nonnull(strstr(err, "string"));
	json_t *r = build_checked(t);
	ck_assert(json_is_true(json_object_get(json_object_get(r, "trace"), "torn")));
	ck_assert_int_eq(iget(json_object_get(r, "attribution"), "reclaimed_bytes"), 4 * M);
	json_decref(r);
	_msv_trace_free(t);

	/* A zero block at the tail is torn too. */
	ck_assert_int_eq(truncate(g.path, (off_t)(good + 64)), 0);
	ck_assert_int_eq(_msv_trace_load(g.path, &t, err, sizeof(err)), 0);
	ck_assert_int_eq(t->torn, 1);
	_msv_trace_free(t);
}
END_TEST

static void expect_bad(const void *buf, size_t len, const char *needle)
{
	struct msv_trace *t = (void *)1;
	char err[512];
	ck_assert_int_eq(_msv_trace_parse(buf, len, "bad.trace", &t, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(t);
	ck_assert_msg(strstr(err, "bad.trace") && strstr(err, needle), "error '%s' lacks '%s'", err,
		      needle);
}

START_TEST(test_malformed)
{
	unsigned char buf[256];
	struct msv_trace_header h = {0};
	memcpy(h.magic, MSV_TRACE_MAGIC, 8);
	h.version = MSV_TRACE_VERSION;
	h.rec_size = MSV_REC_SIZE;
	memset(buf, 0, sizeof(buf));

	expect_bad("MSVT", 4, "offset 0");
	memcpy(buf, &h, sizeof(h));
	memcpy(buf, "NOTATRACE", 8);
	expect_bad(buf, 64, "magic");
	memcpy(buf, &h, sizeof(h));
	((struct msv_trace_header *)buf)->version = 2;
	expect_bad(buf, 64, "version 2");
	memcpy(buf, &h, sizeof(h));
	((struct msv_trace_header *)buf)->rec_size = 32;
	expect_bad(buf, 64, "record size 32");
	memcpy(buf, &h, sizeof(h));
	struct msv_rec r = {.type = 99};
	memcpy(buf + 64, &r, sizeof(r));
	expect_bad(buf, 128, "offset 64");
	r = (struct msv_rec){.type = MSV_REC_STRING, .addr = 5, .size = 3};
	memcpy(buf + 64, &r, sizeof(r));
	expect_bad(buf, 192, "out of order");

	/* An empty trace (header only) is valid and gives an empty report. */
	memcpy(buf, &h, sizeof(h));
	struct msv_trace *t;
	char err[256];
	ck_assert_int_eq(_msv_trace_parse(buf, 64, "empty", &t, err, sizeof(err)), 0);
	json_t *rep = build_checked(t);
	ck_assert_int_eq(json_array_size(json_object_get(rep, "phases")), 0);
	json_decref(rep);
	_msv_trace_free(t);
	ck_assert_int_ne(_msv_trace_load("/nonexistent/x.trace", &t, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/x.trace"));
}
END_TEST

/* ---- schema check ---------------------------------------------------- */

START_TEST(test_schema_version)
{
	json_t *r = report_of("full");
	char err[512];
	json_object_set_new(r, "schema_version", json_integer(2));
	ck_assert_int_eq(_msv_report_check(r, "old.json", err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "old.json"));
	ck_assert_ptr_nonnull(strstr(err, "schema_version 2"));
	json_object_del(r, "schema_version");
	ck_assert_int_eq(_msv_report_check(r, "old.json", err, sizeof(err)), -EINVAL);
	json_object_set_new(r, "schema_version", json_integer(1));
	ck_assert_int_eq(_msv_report_check(r, "ok.json", err, sizeof(err)), 0);
	/* Sources that do not add up are refused. */
	json_t *s0 = json_array_get(json_object_get(json_object_get(r, "attribution"), "sources"), 0);
	json_object_set_new(s0, "bytes", json_integer(iget(s0, "bytes") + 1));
	ck_assert_int_eq(_msv_report_check(r, "bad.json", err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "add up"));
	json_decref(r);

	/* From a file. */
	char path[512];
	snprintf(path, sizeof(path), "%s/v2.json", tmpdir);
	FILE *f = fopen(path, "w");
	fputs("{\"schema_version\": 2}", f);
	fclose(f);
	ck_assert_ptr_null(_msv_report_load(path, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, path));
}
END_TEST

/* ---- merge and diff -------------------------------------------------- */

START_TEST(test_merge)
{
	char p1[512], p2[512];
	struct msv_trace *t[3];
	t[0] = make(golden_by_name("full"), p1, sizeof(p1));
	t[1] = make(golden_by_name("two_pauses"), p2, sizeof(p2));
	t[2] = make(golden_by_name("no_pause"), p2, sizeof(p2));
	json_t *m = _msv_report_merge(t, 3);
	check_report(m);
	json_t *a = build_checked(t[0]), *b = build_checked(t[1]);
	json_t *aa = json_object_get(a, "attribution"), *ba = json_object_get(b, "attribution");
	json_t *tot = json_object_get(m, "totals");
	static const char *const k[] = {"footprint_bytes", "reclaimed_bytes", "unreclaimed_bytes"};
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(iget(tot, k[i]), iget(aa, k[i]) + iget(ba, k[i]));
	ck_assert_int_eq(iget(tot, "processes"), 3);
	ck_assert_int_eq(iget(tot, "processes_with_pause"), 2);
	ck_assert_int_eq(json_array_size(json_object_get(m, "processes")), 3);
	/* per source: unattributed is keyed once and sums both */
	json_t *ts = json_object_get(tot, "sources");
	ck_assert_int_eq(iget(ts, "unattributed"), 7 * M + 0);
	ck_assert_int_eq(iget(ts, "category:other (not wrapped by policy (action keep))"),
			 320 * M + 100 * M);
	ck_assert_int_eq(source_bytes(m, "category:other", NULL), 420 * M);
	json_t *ma = json_object_get(m, "attribution");
	check_sum(ma);
	/* text/html/perfetto work on merged reports too */
	char *txt;
	size_t tl;
	FILE *f = open_memstream(&txt, &tl);
	ck_assert_int_eq(_msv_render_text(m, f), 0);
	ck_assert_int_eq(_msv_render_html(m, f), 0);
	ck_assert_int_eq(_msv_render_perfetto(m, f), 0);
	fclose(f);
	ck_assert_ptr_nonnull(strstr(txt, "3 processes merged"));
	free(txt);
	json_decref(m);
	json_decref(a);
	json_decref(b);
	for (int i = 0; i < 3; i++)
		_msv_trace_free(t[i]);
}
END_TEST

START_TEST(test_diff)
{
	json_t *a = report_of("full"), *b = report_of("two_pauses");
	json_t *d = _msv_report_diff(a, b);
	ck_assert_ptr_nonnull(d);
	json_t *ch = json_object_get(d, "change");
	ck_assert_int_eq(iget(ch, "unreclaimed_bytes"),
			 iget(json_object_get(b, "attribution"), "unreclaimed_bytes") -
				 iget(json_object_get(a, "attribution"), "unreclaimed_bytes"));
	json_int_t sa = 0, sb = 0, sc = 0;
	size_t i;
	json_t *s;
	json_array_foreach(json_object_get(d, "sources"), i, s)
	{
		sa += iget(s, "a_bytes");
		sb += iget(s, "b_bytes");
		sc += iget(s, "change_bytes");
		ck_assert_int_eq(iget(s, "change_bytes"), iget(s, "b_bytes") - iget(s, "a_bytes"));
	}
	ck_assert_int_eq(sa, 2991 * M);
	ck_assert_int_eq(sb, 1 * G + 100 * M);
	ck_assert_int_eq(sc, iget(ch, "unreclaimed_bytes"));
	char *txt;
	size_t tl;
	FILE *f = open_memstream(&txt, &tl);
	ck_assert_int_eq(_msv_render_diff_text(d, f), 0);
	fclose(f);
	ck_assert_ptr_nonnull(strstr(txt, "reclaimed share"));
	ck_assert_ptr_nonnull(strstr(txt, "app_vmm"));
	free(txt);
	json_decref(d);
	json_decref(a);
	json_decref(b);
}
END_TEST

/* ---- renderers and dump ---------------------------------------------- */

START_TEST(test_render_text)
{
	json_t *r = report_of("full");
	char *txt;
	size_t tl;
	FILE *f = open_memstream(&txt, &tl);
	ck_assert_int_eq(_msv_render_text(r, f), 0);
	fclose(f);
	static const char *const want[] = {"Footprint 14.18 GiB", "(79.4%)", "app_vmm",
					   "category:graph", "excluded from this pause",
					   "sampler.py:50:sample", "Recommendations",
					   "set actions.other to backup", "pause     150.0 ms",
					   "unattributed", "7.0 MiB"};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		ck_assert_msg(strstr(txt, want[i]) != NULL, "text lacks '%s':\n%s", want[i], txt);
	free(txt);
	json_decref(r);
}
END_TEST

START_TEST(test_render_html)
{
	json_t *r = report_of("full");
	char *txt;
	size_t tl;
	FILE *f = open_memstream(&txt, &tl);
	ck_assert_int_eq(_msv_render_html(r, f), 0);
	fclose(f);
	static const char *const want[] = {"<!DOCTYPE html>", "<svg", "<rect class=\"bar\"",
					   "id=\"sources\"", "category:graph", "driver:context",
					   "</html>"};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		ck_assert_msg(strstr(txt, want[i]) != NULL, "html lacks '%s'", want[i]);
	ck_assert_ptr_null(strstr(txt, "<script"));
	ck_assert_ptr_null(strstr(txt, "http://www.w3.org/2000/svg\" src")); /* nothing fetched */
	free(txt);
	json_decref(r);
}
END_TEST

START_TEST(test_render_perfetto)
{
	json_t *r = report_of("full");
	char *txt;
	size_t tl;
	FILE *f = open_memstream(&txt, &tl);
	ck_assert_int_eq(_msv_render_perfetto(r, f), 0);
	fclose(f);
	json_error_t je;
	json_t *doc = json_loads(txt, 0, &je);
	ck_assert_msg(doc != NULL, "%s", je.text);
	json_t *evs = json_object_get(doc, "traceEvents");
	ck_assert(json_is_array(evs));
	size_t i, counters = 0, instants = 0;
	json_t *e;
	json_array_foreach(evs, i, e)
	{
		ck_assert(json_is_string(json_object_get(e, "ph")));
		ck_assert(json_is_number(json_object_get(e, "ts")));
		ck_assert(json_is_integer(json_object_get(e, "pid")));
		ck_assert(json_is_string(json_object_get(e, "name")));
		const char *ph = json_string_value(json_object_get(e, "ph"));
		if (strcmp(ph, "C") == 0) {
			counters++;
			ck_assert(json_is_object(json_object_get(e, "args")));
		}
		if (strcmp(ph, "i") == 0)
			instants++;
	}
	ck_assert_uint_gt(counters, 7);
	ck_assert_uint_ge(instants, 8); /* 6 phases + pause + resume */
	json_decref(doc);
	free(txt);
	json_decref(r);
}
END_TEST

START_TEST(test_dump)
{
	char path[512];
	struct msv_trace *t = make(golden_by_name("full"), path, sizeof(path));
	int saw_alloc = 0, saw_phase = 0;
	for (size_t i = 0; i < t->n; i++) {
		json_t *o = _msv_trace_record_json(t, &t->recs[i]);
		ck_assert_ptr_nonnull(o);
		const char *ty = json_string_value(json_object_get(o, "type"));
		ck_assert_ptr_nonnull(ty);
		if (strcmp(ty, "alloc") == 0 && !saw_alloc++) {
			ck_assert_str_eq(json_string_value(json_object_get(o, "python")),
					 "model_runner.py:120:load_model\nengine.py:10:main");
			ck_assert_str_eq(json_string_value(json_object_get(o, "category")), "weights");
		}
		if (strcmp(ty, "phase") == 0 && !saw_phase++)
			ck_assert_str_eq(json_string_value(json_object_get(o, "label")), "baseline");
		json_decref(o);
	}
	ck_assert(saw_alloc && saw_phase);
	_msv_trace_free(t);
}
END_TEST

/* Many allocations: the timeline stays bounded. */
START_TEST(test_timeline_bounded)
{
	struct gen g = {0};
	g_start(&g, "many", 9, 0);
	for (uint64_t i = 0; i < 20000; i++) {
		g_alloc(&g, 0x1000 + i * 4096, 4096, 0, (int)(i % MSV_CAT_COUNT), 0, 0, NULL, NULL);
		if (i % 3 == 0)
			g_free(&g, 0x1000 + i * 4096, 4096);
	}
	g_phase(&g, "exit", 1 * G);
	g_close(&g);
	struct msv_trace *t;
	char err[256];
	ck_assert_int_eq(_msv_trace_load(g.path, &t, err, sizeof(err)), 0);
	json_t *r = build_checked(t);
	size_t n = json_array_size(json_object_get(r, "timeline"));
	ck_assert_uint_le(n, 2100);
	ck_assert_uint_gt(n, 100);
	json_decref(r);
	_msv_trace_free(t);
}
END_TEST

/* Issue 13: every MiB of the residue has a named source; only the pause's
 * own mismatch is unattributed. */
START_TEST(test_residue_numbers)
{
	json_t *r = report_of("residue");
	json_t *a = json_object_get(r, "attribution");
	ck_assert_ptr_nonnull(a);
	/* F = 500 ctx + 2048 + 100 - 100 + 32 + 256 + 484 vmm + driver 8+66+20+86+4+10+28+12 */
	ck_assert_int_eq(iget(a, "footprint_bytes"), 3554 * M);
	ck_assert_int_eq(iget(a, "unreclaimed_bytes"), (3554 - 2277) * M);
	ck_assert_int_eq(source_bytes(r, "driver:lazy_load", NULL), (8 + 66 + 4) * M);
	ck_assert_int_eq(source_bytes(r, "driver:unobserved", NULL), (20 + 86 + 0 + 12) * M);
	ck_assert_int_eq(source_bytes(r, "driver:graph_exec", NULL), (10 + 28) * M);
	ck_assert_int_eq(source_bytes(r, "driver:context", NULL), 300 * M);
	ck_assert_int_eq(source_bytes(r, "app_vmm", NULL), 484 * M);
	ck_assert_int_eq(source_bytes(r, "category:graph", "excluded from this pause"), 256 * M);
	ck_assert_int_eq(source_bytes(r, "unattributed", NULL), 3 * M);
	json_t *lazy = source(r, "driver:lazy_load", NULL);
	ck_assert_int_eq(iget(lazy, "count"), 3);
	ck_assert_ptr_nonnull(json_object_get(lazy, "measured"));
	json_t *top = json_array_get(json_object_get(lazy, "top_sites"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(top, "site")),
			 "libcublasLt.so.13 at model.py:97:forward");
	ck_assert_int_eq(iget(top, "bytes"), 66 * M);
	json_t *un = source(r, "driver:unobserved", NULL);
	top = json_array_get(json_object_get(un, "top_sites"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(top, "site")),
			 "before graph capture at libtorch_cuda.so at graphs.py:70:capture_begin, since stream "
			 "creation at libtorch_cuda.so at graphs.py:50:warmup");
	ck_assert_int_eq(iget(top, "bytes"), 86 * M);
	json_t *ge = source(r, "driver:graph_exec", NULL);
	top = json_array_get(json_object_get(ge, "top_sites"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(top, "site")),
			 "graph instantiation at libtorch_cuda.so at graphs.py:80:capture_end");
	ck_assert(has_rec(r, "pause --deep", (300 + 78 + 118 + 38) * M));
	ck_assert(has_rec(r, "add snapshot markers", 0));
	/* The phase view counts the charged intervals as driver bytes. */
	json_t *ph = json_object_get(r, "phases");
	json_t *bp = json_array_get(ph, 3);
	ck_assert_str_eq(json_string_value(json_object_get(bp, "label")), "before_pause");
	ck_assert_int_eq(iget(bp, "driver_bytes"), (500 + 78 + 118 + 38) * M);
	json_decref(r);
}
END_TEST

/* Without a "context" reading the checkpoints cannot be anchored: the
 * tracer's estimates are taken as they are. */
START_TEST(test_residue_without_anchor)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/noanchor.trace", tmpdir);
	struct gen g;
	g_start(&g, "noanchor", 4248, 1 * G);
	g_driver(&g, MSV_DRV_CONTEXT, 500 * M);
	g_ck(&g, MSV_DRV_LAZY_LOAD, MSV_MARK_MODULE_LOADED, 1 * G + 600 * M, 64 * M, "libcublasLt.so.13",
	     NULL);
	g_phase(&g, "before_pause", 1 * G + 600 * M);
	g_pause(&g, 0, 0x3f, 0, 1000, 0, 0, 0);
	g_phase(&g, "pause", 1 * G + 600 * M);
	g_close(&g);
	struct msv_trace *t = NULL;
	char err[512];
	ck_assert_int_eq(_msv_trace_load(g.path, &t, err, sizeof(err)), 0);
	json_t *r = build_checked(t);
	ck_assert_int_eq(source_bytes(r, "driver:lazy_load", NULL), 64 * M);
	ck_assert_int_eq(source_bytes(r, "unattributed", NULL), 36 * M);
	json_decref(r);
	_msv_trace_free(t);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("analyzer");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_golden, 0, (int)N_GOLDEN);
	tcase_add_test(tc, test_full_numbers);
	tcase_add_test(tc, test_unknown_baseline);
	tcase_add_test(tc, test_two_pauses_latest_wins);
	tcase_add_test(tc, test_failed_resume);
	tcase_add_test(tc, test_no_pause);
	tcase_add_test(tc, test_deep_pause);
	tcase_add_test(tc, test_live_equals_file);
	tcase_add_test(tc, test_writer_copy_equals_file);
	tcase_add_test(tc, test_torn_mid_record);
	tcase_add_test(tc, test_torn_mid_string);
	tcase_add_test(tc, test_malformed);
	tcase_add_test(tc, test_schema_version);
	tcase_add_test(tc, test_merge);
	tcase_add_test(tc, test_diff);
	tcase_add_test(tc, test_render_text);
	tcase_add_test(tc, test_render_html);
	tcase_add_test(tc, test_render_perfetto);
	tcase_add_test(tc, test_dump);
	tcase_add_test(tc, test_timeline_bounded);
	tcase_add_test(tc, test_residue_numbers);
	tcase_add_test(tc, test_residue_without_anchor);
	suite_add_tcase(s, tc);
	return s;
}

/* --write-traces DIR: the golden traces for the end-to-end scripts. */
static int write_traces(const char *dir)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s", dir);
	for (size_t i = 0; i < N_GOLDEN; i++) {
		struct gen g = {0};
		goldens[i].gen(&g);
		printf("%s\n", g.path);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--write-traces") == 0)
		return write_traces(argv[2]);
	const char *root = getenv("ROOT");
	static char gd[4096];
	if (root) {
		snprintf(gd, sizeof(gd), "%s/tests/golden", root);
		golden_dir = gd;
	}
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/msv-analyzer-XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	if (!failed) {
		char cmd[512];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tmpdir);
	}
	return failed ? 1 : 0;
}
