/* memsaver run: start an unmodified engine with memsaver attached.
 *
 * Sets CUDA_INJECTION64_PATH and NVTX_INJECTION64_PATH (tracer) and
 * LD_PRELOAD (interposer) to libmemsaver.so, passes the policy, trace and
 * report paths, and returns the engine's exit status.  Everything that
 * would only fail later inside the engine (bad policy, no library, no
 * CUPTI, no GPU) is refused here, before the engine starts. */
#include <cuda.h>
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tools/memsaver/checkpoint.h"
#include "tools/memsaver/commands.h"
#include "tracer/log.h"
#include "tracer/policy.h"

static const char usage[] =
	"usage: memsaver run [-p POLICY] [--trace PATH] [-o REPORT] [OPTIONS] -- COMMAND [ARGS]\n"
	"\n"
	"Run COMMAND (an engine: python -m sglang..., vllm serve..., any CUDA program)\n"
	"with memsaver attached.  No change to the engine is needed.\n"
	"\n"
	"  -p, --policy FILE    classification rules and pause actions (docs/policy.md);\n"
	"                       default: built-in (weights/graph/workspace backup, kv\n"
	"                       discard, comm/other keep)\n"
	"  -t, --trace PATH     write the binary event trace here (%p = pid of each process)\n"
	"  -o, --report PATH    write the JSON report here at exit and after every pause\n"
	"                       and resume (%p = pid)\n"
	"      --cupti          also subscribe to CUPTI: a cross-check that records the\n"
	"                       allocations of code calling the driver without passing\n"
	"                       memsaver's interposer (flag \"cupti\" in `analyze --dump`).\n"
	"                       Off by default: the subscription alone makes the host\n"
	"                       memory grow with the engine's work (2.5 MB per pause/\n"
	"                       resume cycle of the bench engine on an H200, 1.7 GB over\n"
	"                       1000 cycles),\n"
	"                       slows start-up, and forbids `ctl pause --deep`\n"
	"                       (docs/tracer.md)\n"
	"      --no-cupti       trace from the interposer alone (the default, except with\n"
	"                       --no-redirect: the interposer is then out of the way\n"
	"                       and CUPTI is the only observer)\n"
	"      --deep-ready     check at start that the driver has the process checkpoint\n"
	"                       that `memsaver ctl pause --deep` needs (docs/deep-pause.md);\n"
	"                       not with --cupti\n"
	"      --no-redirect    observe and report only: never wrap an allocation; the\n"
	"                       interposer stays out and CUPTI observes\n"
	"      --no-python      do not read Python frames per allocation (cheaper)\n"
	"      --log LEVEL      error, warn (default), info or debug\n"
	"  -h, --help           this text\n"
	"\n"
	"The engine's processes each get a control socket: `memsaver ctl --all pause`\n"
	"reaches them all.  Exit status: the engine's (128+N when killed by signal N);\n"
	"2 when memsaver refused to start it (bad option, policy, report or trace\n"
	"path, no GPU); 127 when COMMAND cannot be run (not found, not executable).\n"
	"\n"
	"Overhead: one classification per cudaMalloc (a few microseconds; Python frames\n"
	"add about 5 us); an atomic load and a branch on kernel launches and copies\n"
	"(the launch gate: decode by graph replay +0.8% on an H200, docs/saver.md).\n"
	"\n"
	"Example:\n"
	"  $ memsaver run -p tools/policies/sglang.json -o /tmp/r-%p.json -- \\\n"
	"        python -m sglang.launch_server --model Qwen/Qwen2-1.5B-Instruct\n"
	"  memsaver: session run-4242; control with `memsaver ctl --all --session run-4242`\n";

static pid_t child;

static void forward(int sig)
{
	if (child > 0)
		kill(child, sig);
}

/* libmemsaver.so next to the binary (build tree or install), or MEMSAVER_LIB. */
static int find_library(char *out, size_t len)
{
	const char *env = getenv("MEMSAVER_LIB");
	if (env && *env)
		return realpath(env, out) && access(out, R_OK) == 0 ? 0 : -ENOENT;
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return -ENOENT;
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	if (!slash)
		return -ENOENT;
	*slash = '\0';
	static const char *const rel[] = {"../lib/libmemsaver.so", "../lib64/libmemsaver.so"};
	for (size_t i = 0; i < 2; i++) {
		char p[PATH_MAX + 64];
		snprintf(p, sizeof(p), "%s/%s", exe, rel[i]);
		if (realpath(p, out) && access(out, R_OK) == 0 && strlen(out) < len)
			return 0;
	}
	return -ENOENT;
}

/* Absolute form of a path whose file may not exist yet (the engine may chdir). */
static int absolute(const char *in, char *out, size_t len)
{
	if (in[0] == '/')
		return snprintf(out, len, "%s", in) < (int)len ? 0 : -ENAMETOOLONG;
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof(cwd)))
		return -errno;
	return snprintf(out, len, "%s/%s", cwd, in) < (int)len ? 0 : -ENAMETOOLONG;
}

/* The folder PATH will be written into exists and takes new files; else 0 with
 * the reason in why.  A %p in the folder part cannot be checked until the
 * process exists, so it passes. */
static int writable_dir(const char *path, char *why, size_t len)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		snprintf(dir, sizeof(dir), ".");
	if (strchr(dir, '%') || access(dir, W_OK | X_OK) == 0)
		return 1;
	snprintf(why, len, "%.200s: folder %.200s: %s", path, dir, strerror(errno));
	return 0;
}

/* A GPU the engine can use: libcuda loads, cuInit works, one device at least. */
static int check_gpu(char *why, size_t len)
{
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(why, len, "libcuda.so.1 cannot be loaded (%s): no NVIDIA driver on this machine", dlerror());
		return -1;
	}
	CUresult (*init)(unsigned) = (CUresult(*)(unsigned))dlsym(h, "cuInit");
	CUresult (*count)(int *) = (CUresult(*)(int *))dlsym(h, "cuDeviceGetCount");
	int n = 0;
	CUresult r = init ? init(0) : CUDA_ERROR_NOT_FOUND;
	if (r == CUDA_SUCCESS && count)
		r = count(&n);
	if (r != CUDA_SUCCESS || n == 0) {
		snprintf(why, len, "the CUDA driver reports no usable GPU (cuInit/cuDeviceGetCount returned %d, %d devices)",
			 (int)r, n);
		return -1;
	}
	return 0;
}

/* CUPTI where the engine will look: LD_LIBRARY_PATH, else the toolkit. */
static int find_cupti(char *dir, size_t len)
{
	dir[0] = '\0';
	void *h = dlopen("libcupti.so.13", RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
	if (!h)
		h = dlopen("libcupti.so.13", RTLD_LAZY | RTLD_LOCAL);
	if (h)
		return 0;
	const char *home = getenv("CUDA_HOME");
	snprintf(dir, len, "%s/lib64", home && *home ? home : "/usr/local/cuda");
	char p[PATH_MAX + 32];
	snprintf(p, sizeof(p), "%s/libcupti.so.13", dir);
	return access(p, R_OK) == 0 ? 0 : -ENOENT;
}

static int setenv_path(const char *name, const char *value, int prepend)
{
	const char *old = getenv(name);
	if (!old || !*old)
		return setenv(name, value, 1);
	char buf[8192];
	if (prepend)
		snprintf(buf, sizeof(buf), "%s:%s", value, old);
	else
		snprintf(buf, sizeof(buf), "%s:%s", old, value);
	return setenv(name, buf, 1);
}

int _msv_cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{"policy", required_argument, 0, 'p'}, {"trace", required_argument, 0, 't'},
		{"report", required_argument, 0, 'o'}, {"no-cupti", no_argument, 0, 'C'},
		{"no-redirect", no_argument, 0, 'R'},  {"no-python", no_argument, 0, 'P'},
		{"log", required_argument, 0, 'l'},    {"help", no_argument, 0, 'h'},
		{"deep-ready", no_argument, 0, 'D'},   {"cupti", no_argument, 0, 'U'},
		{0, 0, 0, 0},
	};
	const char *policy = NULL, *trace = NULL, *report = NULL, *log = NULL;
	int cupti = -1, redirect = 1, python = 1, deep_ready = 0, c;
	optind = 0;
	while ((c = getopt_long(argc, argv, "+p:t:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'p': policy = optarg; break;
		case 't': trace = optarg; break;
		case 'o': report = optarg; break;
		case 'C': cupti = 0; break;
		case 'U': cupti = 1; break;
		case 'D': deep_ready = 1; break;
		case 'R': redirect = 0; break;
		case 'P': python = 0; break;
		case 'l':
			if (_msv_log_parse(optarg) < 0) {
				fprintf(stderr, "memsaver run: --log %s: want error, warn, info or debug\n", optarg);
				return MSV_EXIT_USAGE;
			}
			log = optarg;
			break;
		case 'h': fputs(usage, stdout); return MSV_EXIT_OK;
		default: fputs(usage, stderr); return MSV_EXIT_USAGE;
		}
	}
	/* Without the interposer (--no-redirect) CUPTI is the only observer. */
	if (cupti < 0)
		cupti = !redirect && !deep_ready;
	if (cupti && deep_ready) {
		fprintf(stderr, "memsaver run: --cupti and --deep-ready exclude each other: the driver never "
				"checkpoints a process that subscribed to CUPTI once\n");
		return MSV_EXIT_USAGE;
	}
	if (optind >= argc) {
		fprintf(stderr, "memsaver run: no command given (put it after --)\n\n%s", usage);
		return MSV_EXIT_USAGE;
	}
	char lib[PATH_MAX], pol[PATH_MAX], tr[PATH_MAX], rep[PATH_MAX], why[512], cupti_dir[PATH_MAX];
	if (find_library(lib, sizeof(lib)) != 0) {
		fprintf(stderr, "memsaver run: libmemsaver.so not found next to this binary (../lib/) nor at "
				"$MEMSAVER_LIB; refusing to start the engine\n");
		return MSV_EXIT_USAGE;
	}
	if (policy) {
		struct msv_policy *p = NULL;
		char err[1024];
		if (_msv_policy_load(policy, &p, err, sizeof(err)) != 0) {
			fprintf(stderr, "memsaver run: %s\nmemsaver run: refusing to start the engine with a bad "
					"policy (check it with `memsaver policy check %s`)\n", err, policy);
			return MSV_EXIT_USAGE;
		}
		if (_msv_policy_warnings(p))
			fputs(_msv_policy_warnings(p), stderr);
		_msv_policy_free(p);
		if (!realpath(policy, pol)) {
			fprintf(stderr, "memsaver run: %s: %s\n", policy, strerror(errno));
			return MSV_EXIT_USAGE;
		}
		setenv("MEMSAVER_POLICY", pol, 1);
	}
	const char *out_paths[] = {trace, report};
	for (int i = 0; i < 2; i++)
		if (out_paths[i] && !writable_dir(out_paths[i], why, sizeof(why))) {
			fprintf(stderr, "memsaver run: %s (the %s could not be written); refusing to start the "
					"engine\n", why, i ? "report" : "trace");
			return MSV_EXIT_USAGE;
		}
	if (check_gpu(why, sizeof(why)) != 0) {
		fprintf(stderr, "memsaver run: %s; refusing to start the engine (there is nothing to save)\n", why);
		return MSV_EXIT_USAGE;
	}
	if (deep_ready) {
		/* Not fatal: the engine still runs, and `ctl pause --deep` falls
		 * back to a plain pause with the same sentence. */
		struct msv_ckpt *api = NULL;
		if (_msv_ckpt_open(&api, 0, why, sizeof(why)) != 0)
			fprintf(stderr, "memsaver run: note: --deep-ready, but %s; `memsaver ctl pause "
					"--deep` will pause normally\n", why);
		_msv_ckpt_free(api);
	}
	if (cupti && find_cupti(cupti_dir, sizeof(cupti_dir)) != 0) {
		fprintf(stderr, "memsaver run: libcupti.so.13 not found (LD_LIBRARY_PATH, $CUDA_HOME/lib64); "
				"install the CUDA toolkit's CUPTI or leave out --cupti to trace from the "
				"interposer alone; refusing to start the engine\n");
		return MSV_EXIT_USAGE;
	}
	if (cupti && cupti_dir[0])
		setenv_path("LD_LIBRARY_PATH", cupti_dir, 0);
	if (trace) {
		if (absolute(trace, tr, sizeof(tr)) != 0)
			return MSV_EXIT_USAGE;
		setenv("MEMSAVER_TRACE", tr, 1);
	}
	if (report) {
		if (absolute(report, rep, sizeof(rep)) != 0)
			return MSV_EXIT_USAGE;
		setenv("MEMSAVER_REPORT", rep, 1);
	}
	char session[64];
	snprintf(session, sizeof(session), "run-%d", (int)getpid());
	setenv("MEMSAVER_SESSION", session, 1);
	setenv("CUDA_INJECTION64_PATH", lib, 1);
	setenv("NVTX_INJECTION64_PATH", lib, 1);
	setenv_path("LD_PRELOAD", lib, 1);
	setenv("MEMSAVER_CUPTI", cupti ? "1" : "0", 1);
	setenv("MEMSAVER_REDIRECT", redirect ? "1" : "0", 1);
	setenv("MEMSAVER_PYTHON_FRAMES", python ? "1" : "0", 1);
	if (log)
		setenv("MEMSAVER_LOG", log, 1);
	/* NCCL registers the buffers of collectives captured in CUDA graphs by
	 * retaining their handles for its peers; such memory can never be
	 * released (saver/shared.h).  Without registration NCCL copies through
	 * its own buffers and the engine's memory stays releasable. */
	if (redirect && !getenv("NCCL_GRAPH_REGISTER")) {
		setenv("NCCL_GRAPH_REGISTER", "0", 1);
		fprintf(stderr, "memsaver: NCCL_GRAPH_REGISTER=0 (graph-captured collectives copy instead of "
				"registering user buffers, which would pin them); set it yourself to choose\n");
	}
	fprintf(stderr, "memsaver: session %s; control with `memsaver ctl --all --session %s`\n", session,
		session);
	fflush(NULL);
	child = fork();
	if (child < 0) {
		fprintf(stderr, "memsaver run: fork: %s\n", strerror(errno));
		return MSV_EXIT_FAIL;
	}
	if (child == 0) {
		execvp(argv[optind], argv + optind);
		fprintf(stderr, "memsaver run: cannot run %s: %s\n", argv[optind], strerror(errno));
		_exit(127);
	}
	struct sigaction sa = {.sa_handler = forward};
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGQUIT, &sa, NULL);
	int status;
	while (waitpid(child, &status, 0) < 0)
		if (errno != EINTR)
			return MSV_EXIT_FAIL;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
