/* CUDA_INJECTION64_PATH: loaded once at the first cuInit, InitializeInjection
 * called once, and a CUPTI subscriber made there sees CU_INIT_FINISHED.
 *
 * The Makefile has no rule for a test injection library, so the test builds
 * a tiny one with $CC (default cc) into a temporary directory; when no
 * compiler is available the test says so and passes. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "test_common.h"

/* Self-contained (no headers): CUPTI enums are ints, handles pointers.
 * 3 = CUPTI_CB_DOMAIN_RESOURCE, 5 = CUPTI_CBID_RESOURCE_CU_INIT_FINISHED. */
static const char probe_src[] =
	"typedef void (*cb_t)(void *, int, unsigned, const void *);\n"
	"int cuptiSubscribe(void **, cb_t, void *);\n"
	"int cuptiEnableCallback(unsigned, void *, int, unsigned);\n"
	"__attribute__((visibility(\"default\"))) int fakeinject_init_calls;\n"
	"__attribute__((visibility(\"default\"))) int fakeinject_init_finished;\n"
	"static void on_cb(void *u, int dom, unsigned cbid, const void *d)\n"
	"{ (void)u; (void)d; if (dom == 3 && cbid == 5) fakeinject_init_finished++; }\n"
	"__attribute__((visibility(\"default\"))) int InitializeInjection(void)\n"
	"{\n"
	"	void *sub;\n"
	"	fakeinject_init_calls++;\n"
	"	if (cuptiSubscribe(&sub, on_cb, 0)) return 0;\n"
	"	cuptiEnableCallback(1, sub, 3, 5);\n"
	"	return 1;\n"
	"}\n";

static char g_dir[64];

/* Returns the path of the built probe, or NULL when it cannot be built. */
static const char *build_probe(void)
{
	static char so[128];
	char src[128], cmd[1024];
	const char *cc = getenv("CC");
	snprintf(g_dir, sizeof(g_dir), "/tmp/fakecuda-inject-XXXXXX");
	if (!mkdtemp(g_dir))
		return NULL;
	snprintf(src, sizeof(src), "%s/probe.c", g_dir);
	snprintf(so, sizeof(so), "%s/probe.so", g_dir);
	FILE *f = fopen(src, "w");
	if (!f)
		return NULL;
	fputs(probe_src, f);
	fclose(f);
	/* Like a real tool, the probe links libcupti: the one next to libcuda. */
	Dl_info info;
	char libdir[256];
	if (!dladdr((void *)cuInit, &info) || !info.dli_fname)
		return NULL;
	snprintf(libdir, sizeof(libdir), "%s", info.dli_fname);
	char *slash = strrchr(libdir, '/');
	if (!slash)
		return NULL;
	*slash = 0;
	snprintf(cmd, sizeof(cmd),
		 "%s -shared -fPIC -o %s %s -L%s -l:libcupti.so.13 -Wl,-rpath,%s 2>/dev/null",
		 cc && *cc ? cc : "cc", so, src, libdir, libdir);
	return system(cmd) == 0 ? so : NULL;
}

static void cleanup(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
	if (g_dir[0] && system(cmd)) {
		/* nothing to do: a leftover temp dir is harmless */
	}
}

START_TEST(test_injection_loaded_once)
{
	const char *so = build_probe();
	if (!so) {
		fprintf(stderr, "test_inject: no C compiler, injection test skipped\n");
		cleanup();
		return;
	}
	setenv("CUDA_INJECTION64_PATH", so, 1);
	ck_assert_ptr_null(dlsym(RTLD_DEFAULT, "fakeinject_init_calls"));
	CU_OK(cuInit(0));
	int *calls = dlsym(RTLD_DEFAULT, "fakeinject_init_calls"); /* RTLD_GLOBAL */
	int *finished = dlsym(RTLD_DEFAULT, "fakeinject_init_finished");
	ck_assert_ptr_nonnull(calls);
	ck_assert_ptr_nonnull(finished);
	ck_assert_int_eq(*calls, 1);
	ck_assert_int_eq(*finished, 1);
	CU_OK(cuInit(0));
	ck_assert_int_eq(*calls, 1);
	ck_assert_int_eq(*finished, 1);
	cleanup();
}
END_TEST

START_TEST(test_injection_bad_path_is_a_warning)
{
	setenv("CUDA_INJECTION64_PATH", "/nonexistent/libnothing.so", 1);
	CU_OK(cuInit(0));
	int n;
	CU_OK(cuDeviceGetCount(&n));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fakecuda_inject");
	TCase *tc = tcase_create("inject");
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_injection_loaded_once);
	tcase_add_test(tc, test_injection_bad_path_is_a_warning);
	suite_add_tcase(s, tc);
	return fc_run_suite(s);
}
