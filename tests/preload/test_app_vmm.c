/* App-owned VMM (saver/app_vmm.h): memory the program creates and maps
 * itself, as PyTorch's expandable segments do (cuMemAddressReserve +
 * cuMemCreate + cuMemMap + cuMemSetAccess in 2 MiB pages), classified by the
 * policy, released by a pause and brought back by a resume at the same
 * addresses, with the program's handle values valid throughout.  Policy
 * (tests/preload/policy.json): weights backup, kv discard, workspace zero;
 * an explicit region picks the category.  Each test runs in its own forked
 * child on the fake driver. */
#include <jansson.h>
#include <stdint.h>

#include "common.h"

#define MiB ((size_t)1 << 20)
#define PAGE (2 * MiB)

static struct {
	CUresult (*reserve)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
	CUresult (*addrFree)(CUdeviceptr, size_t);
	CUresult (*create)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *, unsigned long long);
	CUresult (*map)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long);
	CUresult (*unmap)(CUdeviceptr, size_t);
	CUresult (*setAccess)(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t);
	CUresult (*getAccess)(unsigned long long *, const CUmemLocation *, CUdeviceptr);
} V;

static void vmm_up(void)
{
	cuda_up();
	void *h = dlopen("libcuda.so.1", RTLD_NOW);
	CUresult (*gpa)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *) =
		(__typeof__(gpa))dlsym(h, "cuGetProcAddress_v2");
	ck_assert(gpa != NULL);
	V.reserve = proc(gpa, "cuMemAddressReserve", 10020);
	V.addrFree = proc(gpa, "cuMemAddressFree", 10020);
	V.create = proc(gpa, "cuMemCreate", 10020);
	V.map = proc(gpa, "cuMemMap", 10020);
	V.unmap = proc(gpa, "cuMemUnmap", 10020);
	V.setAccess = proc(gpa, "cuMemSetAccess", 10020);
	V.getAccess = proc(gpa, "cuMemGetAccess", 10020);
}

static const CUmemAllocationProp PROP = {.type = CU_MEM_ALLOCATION_TYPE_PINNED,
					 .location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 0}};

static void set_access(CUdeviceptr va, size_t size, CUmemAccess_flags fl)
{
	CUmemAccessDesc a = {.location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 0}, .flags = fl};
	CU_OK(V.setAccess(va, size, &a, 1));
}

static unsigned long long access_of(CUdeviceptr va)
{
	CUmemLocation loc = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 0};
	unsigned long long fl = 99;
	CU_OK(V.getAccess(&fl, &loc, va));
	return fl;
}

/* An expandable segment: a reservation grown by n pages of category cat
 * ("" = the policy's choice), one handle per page, access as PyTorch sets
 * it (once over the pages just mapped). */
struct seg {
	CUdeviceptr va;
	size_t n;
	CUmemGenericAllocationHandle h[8];
};

static void seg_new(struct seg *s)
{
	s->n = 0;
	CU_OK(V.reserve(&s->va, 8 * PAGE, PAGE, 0, 0));
}

static void seg_grow(struct seg *s, size_t n, const char *cat)
{
	if (*cat)
		ck_assert_int_eq(D.region_begin(cat), 0);
	size_t first = s->n;
	for (size_t i = 0; i < n; i++, s->n++) {
		CU_OK(V.create(&s->h[s->n], PAGE, &PROP, 0));
		CU_OK(V.map(s->va + s->n * PAGE, PAGE, 0, s->h[s->n], 0));
	}
	set_access(s->va + first * PAGE, n * PAGE, CU_MEM_ACCESS_FLAGS_PROT_READWRITE);
	if (*cat)
		ck_assert_int_eq(D.region_end(), 0);
}

static void seg_free(struct seg *s)
{
	for (size_t i = 0; i < s->n; i++) {
		CU_OK(V.unmap(s->va + i * PAGE, PAGE));
		CU_OK(D.release(s->h[i]));
	}
	CU_OK(V.addrFree(s->va, 8 * PAGE));
	s->n = 0;
}

static int zeroed(CUdeviceptr p, size_t n)
{
	unsigned char *b = malloc(n);
	int ok = D.dtoh(b, p, n) == CUDA_SUCCESS;
	for (size_t i = 0; ok && i < n; i++)
		ok = b[i] == 0;
	free(b);
	return ok;
}

/* Classified at the map through the policy: an ALLOC record of the
 * category, flagged app-owned and wrapped, naming the handle. */
START_TEST(test_classified_at_map)
{
	vmm_up();
	struct seg a, b;
	seg_new(&a);
	seg_new(&b);
	seg_grow(&a, 2, "");
	seg_grow(&b, 1, "kv");
	struct msv_rec r;
	ck_assert(find_alloc(a.va + PAGE, &r));
	ck_assert_int_eq(r.category, MSV_CAT_WEIGHTS); /* the library rule: this program */
	ck_assert_msg((r.flags & (MSV_F_APP_VMM | MSV_F_WRAPPED)) == (MSV_F_APP_VMM | MSV_F_WRAPPED), "flags 0x%x",
		      r.flags);
	ck_assert_uint_eq(r.aux2, a.h[1]);
	ck_assert_uint_eq(r.size, PAGE);
	ck_assert(find_alloc(b.va, &r));
	ck_assert_int_eq(r.category, MSV_CAT_KV);
	ck_assert(r.flags & MSV_F_REGION);
	seg_free(&a);
	seg_free(&b);
	size_t n, frees = 0;
	struct msv_rec *t = trace_records(&n);
	for (size_t i = 0; i < n; i++)
		frees += t[i].type == MSV_REC_FREE && (t[i].addr == a.va || t[i].addr == a.va + PAGE || t[i].addr == b.va);
	free(t);
	ck_assert_uint_eq(frees, 3);
}
END_TEST

/* Released on pause, back at the same addresses on resume; contents per
 * action: weights backed up, kv discarded, workspace zero-filled. */
START_TEST(test_contents_per_action)
{
	vmm_up();
	const char *cats[] = {"weights", "kv", "workspace"};
	struct seg s[3];
	size_t u0 = used();
	for (int i = 0; i < 3; i++) {
		seg_new(&s[i]);
		seg_grow(&s[i], 2, cats[i]);
		fill(s[i].va, 2 * PAGE, 11 + i);
	}
	size_t u1 = used();
	ck_assert_uint_eq(u1 - u0, 12 * MiB);
	ck_assert_msg(D.pause(NULL) == 0, "pause: %s", D.last_error());
	ck_assert_msg(used() == u0, "paused: %zu bytes still used", used() - u0);
	/* The report counts the mapped handles in their categories, not as
	 * app_vmm: released, nothing of them is left. */
	char path[64];
	snprintf(path, sizeof(path), "/tmp/msv-app-vmm-%d.json", (int)getpid());
	ck_assert_int_eq(D.report_write(path), 0);
	json_t *rep = json_load_file(path, 0, NULL);
	unlink(path);
	ck_assert(rep != NULL);
	size_t k;
	json_t *src;
	json_array_foreach(json_object_get(json_object_get(rep, "attribution"), "sources"), k, src)
		ck_assert_msg(strcmp(json_string_value(json_object_get(src, "source")), "app_vmm") != 0,
			      "app_vmm source of %lld bytes while everything is released",
			      (long long)json_integer_value(json_object_get(src, "bytes")));
	json_decref(rep);
	ck_assert_msg(D.resume(NULL) == 0, "resume: %s", D.last_error());
	ck_assert_uint_eq(used(), u1);
	ck_assert_msg(check(s[0].va, 2 * PAGE, 11), "weights not restored");
	ck_assert_msg(!check(s[1].va, 2 * PAGE, 12), "kv came back: not discarded");
	ck_assert_msg(zeroed(s[2].va, 2 * PAGE), "workspace not zero-filled");
	for (int i = 0; i < 3; i++)
		seg_free(&s[i]);
	ck_assert_uint_eq(used(), u0);
}
END_TEST

/* Access is the program's, re-applied after every map: a page it made
 * read-only stays read-only. */
START_TEST(test_access_reapplied)
{
	vmm_up();
	struct seg s;
	seg_new(&s);
	seg_grow(&s, 2, "kv");
	set_access(s.va + PAGE, PAGE, CU_MEM_ACCESS_FLAGS_PROT_READ);
	for (int cycle = 0; cycle < 3; cycle++) {
		ck_assert_msg(D.pause("kv") == 0, "pause: %s", D.last_error());
		ck_assert_msg(D.resume("kv") == 0, "resume: %s", D.last_error());
		ck_assert_uint_eq(access_of(s.va), CU_MEM_ACCESS_FLAGS_PROT_READWRITE);
		ck_assert_uint_eq(access_of(s.va + PAGE), CU_MEM_ACCESS_FLAGS_PROT_READ);
	}
	set_access(s.va + PAGE, PAGE, CU_MEM_ACCESS_FLAGS_PROT_READWRITE);
	seg_free(&s);
}
END_TEST

/* The program's handle value stays valid across cycles: properties answer,
 * a retain returns the same value (and keeps the memory resident until
 * released again, saver/shared.h), releases free exactly what they
 * should. */
START_TEST(test_handle_across_cycles)
{
	vmm_up();
	size_t u0 = used();
	struct seg s;
	seg_new(&s);
	seg_grow(&s, 1, "weights");
	fill(s.va, PAGE, 3);
	for (int cycle = 0; cycle < 3; cycle++) {
		ck_assert_msg(D.pause("weights") == 0, "pause: %s", D.last_error());
		CUmemAllocationProp p;
		memset(&p, 0xff, sizeof(p));
		CU_OK(D.handleProps(&p, s.h[0])); /* paused: the original's properties */
		ck_assert_int_eq(p.location.type, CU_MEM_LOCATION_TYPE_DEVICE);
		ck_assert_int_eq(p.location.id, 0);
		ck_assert_msg(D.resume("weights") == 0, "resume: %s", D.last_error());
		memset(&p, 0xff, sizeof(p));
		CU_OK(D.handleProps(&p, s.h[0]));
		ck_assert_int_eq(p.type, CU_MEM_ALLOCATION_TYPE_PINNED);
		ck_assert_msg(check(s.va, PAGE, 3), "cycle %d: contents lost", cycle);
	}
	CUmemGenericAllocationHandle got = 0;
	CU_OK(D.retainHandle(&got, (void *)(s.va + 4096)));
	ck_assert_uint_eq(got, s.h[0]);
	size_t u1 = used();
	ck_assert_int_eq(D.pause("weights"), 0);
	ck_assert_msg(used() == u1, "a retained handle's memory was released");
	ck_assert_int_eq(D.resume("weights"), 0);
	CU_OK(D.release(got)); /* the retain's reference */
	ck_assert_int_eq(D.pause("weights"), 0);
	ck_assert_msg(used() == u0, "released again, still resident");
	ck_assert_int_eq(D.resume("weights"), 0);
	ck_assert(check(s.va, PAGE, 3));
	seg_free(&s);
	ck_assert_uint_eq(used(), u0);
}
END_TEST

/* Freed while paused, and after cycles: nothing leaks (fake cuMemGetInfo
 * counts the physical memory). */
START_TEST(test_no_leak)
{
	vmm_up();
	size_t u0 = used();
	struct seg a, b;
	seg_new(&a);
	seg_new(&b);
	seg_grow(&a, 3, "weights");
	seg_grow(&b, 2, "weights");
	fill(b.va, 2 * PAGE, 5);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(D.pause(NULL), 0);
		ck_assert_int_eq(D.resume(NULL), 0);
	}
	ck_assert_int_eq(D.pause(NULL), 0);
	seg_free(&a); /* unmapped and released while paused */
	ck_assert_uint_eq(used(), u0);
	ck_assert_msg(D.resume(NULL) == 0, "resume: %s", D.last_error());
	ck_assert_uint_eq(used(), u0 + 2 * PAGE);
	ck_assert(check(b.va, 2 * PAGE, 5));
	/* Released before unmapped (legal): the memory goes with the unmap. */
	CU_OK(D.release(b.h[0]));
	CU_OK(D.release(b.h[1]));
	ck_assert_int_eq(D.pause(NULL), 0);
	ck_assert_int_eq(D.resume(NULL), 0);
	ck_assert(check(b.va, 2 * PAGE, 5));
	CU_OK(V.unmap(b.va, 2 * PAGE)); /* two mappings in one call */
	CU_OK(V.addrFree(b.va, 8 * PAGE));
	ck_assert_uint_eq(used(), u0);
}
END_TEST

/* A driver that hands released values out again (FAKECUDA_REUSE_HANDLES):
 * memsaver's own memory gets the value the paused handle had; the program's
 * value still means its own memory, a create while paused never returns a
 * value the program holds, and a double free is refused as the driver
 * refuses it, harming nobody. */
START_TEST(test_reused_values_and_double_free)
{
	setenv("FAKECUDA_REUSE_HANDLES", "1", 1);
	vmm_up();
	size_t u0 = used();
	struct seg s;
	seg_new(&s);
	seg_grow(&s, 1, "weights");
	fill(s.va, PAGE, 8);
	ck_assert_int_eq(D.pause("weights"), 0);
	CUmemGenericAllocationHandle c;
	CU_OK(V.create(&c, PAGE, &PROP, 0)); /* the driver offers s.h[0] again */
	ck_assert_uint_ne(c, s.h[0]);
	CUdeviceptr x;
	CU_OK(D.alloc(&x, PAGE)); /* memsaver's region takes the freed value */
	fill(x, PAGE, 9);
	ck_assert_msg(D.resume("weights") == 0, "resume: %s", D.last_error());
	ck_assert(check(s.va, PAGE, 8));
	CUmemGenericAllocationHandle got = 0;
	CU_OK(D.retainHandle(&got, (void *)s.va));
	ck_assert_uint_eq(got, s.h[0]);
	CU_OK(D.release(got));
	CU_OK(D.release(c));
	seg_free(&s);
	ck_assert_int_eq(D.release(s.h[0]), CUDA_ERROR_INVALID_VALUE);
	ck_assert_msg(check(x, PAGE, 9), "a double free hit memsaver's memory");
	CU_OK(D.free(x));
	ck_assert_uint_eq(used(), u0);
}
END_TEST

/* Expandable segments have no tails, but the block that makes a segment
 * grow begins on the page below: a kv page followed by a weights page holds
 * both, so a discard keeps it whole; a kv page followed by kv is
 * discarded. */
START_TEST(test_mixed_page_kept)
{
	vmm_up();
	struct seg s;
	seg_new(&s);
	seg_grow(&s, 1, "kv");
	seg_grow(&s, 1, "kv");
	seg_grow(&s, 1, "weights");
	fill(s.va, 3 * PAGE, 4);
	ck_assert_int_eq(D.pause(NULL), 0);
	ck_assert_int_eq(D.resume(NULL), 0);
	ck_assert_msg(!check(s.va, PAGE, 4), "kv page below kv: not discarded");
	ck_assert_msg(check(s.va + PAGE, 2 * PAGE, 4 + (unsigned)(PAGE * 31)), "kv page below weights lost");
	seg_free(&s);
}
END_TEST

/* cuMemFree of an app mapping is the driver's to refuse; memsaver keeps
 * the mapping. */
START_TEST(test_mem_free_refused)
{
	vmm_up();
	struct seg s;
	seg_new(&s);
	seg_grow(&s, 1, "weights");
	ck_assert_int_ne(D.free(s.va), CUDA_SUCCESS);
	ck_assert_int_eq(D.pause("weights"), 0);
	ck_assert_int_eq(D.resume("weights"), 0);
	seg_free(&s);
}
END_TEST

/* A handle whose memory a pause released cannot be mapped again before the
 * resume: refused, and said once. */
static struct seg paused_seg;
static CUresult map_rc;
static void map_paused(void *arg)
{
	CUdeviceptr *va = arg;
	map_rc = V.map(*va, PAGE, 0, paused_seg.h[0], 0);
}

START_TEST(test_map_while_paused_refused)
{
	vmm_up();
	seg_new(&paused_seg);
	seg_grow(&paused_seg, 1, "weights");
	CUdeviceptr other;
	CU_OK(V.reserve(&other, PAGE, PAGE, 0, 0));
	ck_assert_int_eq(D.pause("weights"), 0);
	char *log = capture_stderr(map_paused, &other);
	ck_assert_int_eq(map_rc, CUDA_ERROR_ILLEGAL_STATE);
	ck_assert_msg(strstr(log, "cuMemMap") && strstr(log, "paused"), "log: %s", log);
	free(log);
	ck_assert_int_eq(D.resume("weights"), 0);
	CU_OK(V.map(other, PAGE, 0, paused_seg.h[0], 0)); /* a second mapping of the same memory */
	CU_OK(V.unmap(other, PAGE));
	CU_OK(V.addrFree(other, PAGE));
	seg_free(&paused_seg);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("preload_app_vmm");
	TCase *tc = tcase_create("app_vmm");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_classified_at_map);
	tcase_add_test(tc, test_contents_per_action);
	tcase_add_test(tc, test_access_reapplied);
	tcase_add_test(tc, test_handle_across_cycles);
	tcase_add_test(tc, test_no_leak);
	tcase_add_test(tc, test_reused_values_and_double_free);
	tcase_add_test(tc, test_mixed_page_kept);
	tcase_add_test(tc, test_mem_free_refused);
	tcase_add_test(tc, test_map_while_paused_refused);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
