/* memsaver policy check FILE... | policy show [FILE]
 *
 * Overhead: none; reads the file, nothing else.  Example:
 *
 *   $ memsaver policy check tools/policies/sglang.json
 *   tools/policies/sglang.json: ok, 6 rules
 *   {
 *     "version": 1,
 *     "rules": [ { "index": 0, "line": 5, "category": "graph", ... } ],
 *     ...
 *   }
 *   $ memsaver policy check bad.json
 *   bad.json:7:22: unknown category "kvcache" (expected one of weights, kv, graph, workspace, comm, other)
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "tools/memsaver/commands.h"
#include "tracer/policy.h"

static const char usage_text[] =
	"usage: memsaver policy check [-q] FILE...\n"
	"       memsaver policy show [FILE]\n"
	"\n"
	"check  validate policy files; print \"FILE: ok, N rules\" and the effective\n"
	"       policy (JSON), or \"FILE:LINE:COLUMN: what was expected\" on stderr.\n"
	"       Exit 0 when every file is valid, 2 otherwise.\n"
	"show   print the effective policy of FILE, or the built-in default policy.\n"
	"\n"
	"  -q, --quiet   check: print only the \"ok\" line\n"
	"  -h, --help    this text\n"
	"\n"
	"Policy format, version 1 (full reference: docs/policy.md):\n"
	"  {\"version\": 1,\n"
	"   \"rules\": [{\"category\": \"kv\", \"match\": {\"python\": \"*/memory_pool.py:*\"}}, ...],\n"
	"   \"actions\": {\"kv\": \"discard\", \"weights\": \"backup\"},\n"
	"   \"context\": \"trim\"}\n"
	"  categories: weights kv graph workspace comm other\n"
	"  actions:    keep discard zero backup  (defaults: weights/graph/workspace backup,\n"
	"              kv discard, comm/other keep)\n"
	"  match keys (all must hold; rules are tried in order, first match wins):\n"
	"    nvtx       glob on any open NVTX range of the allocating thread\n"
	"    python     glob on any Python frame, rendered FILE:LINE:FUNCTION\n"
	"    library    glob on the basename of the native caller library\n"
	"    capturing  true/false: the thread or stream is capturing a CUDA graph\n"
	"    min_bytes, max_bytes  inclusive size bounds\n"
	"  After the rules: capturing -> graph, libnccl* -> comm,\n"
	"  libcublas*/libcublasLt*/libcudnn* -> workspace, else other.\n"
	"  An explicit msv_region_begin() category wins over every rule.\n";

/* Full text on request (stdout); on a mistake, the synopsis only (stderr). */
static int usage(FILE *f, int rc)
{
	return _msv_usage(f, usage_text, "policy", rc);
}

static int print_policy(const struct msv_policy *p)
{
	json_t *j = _msv_policy_to_json(p);
	if (!j || json_dumpf(j, stdout, JSON_INDENT(2)) != 0) {
		json_decref(j);
		fprintf(stderr, "memsaver policy: cannot write the policy: %s\n", strerror(errno));
		return MSV_EXIT_FAIL;
	}
	json_decref(j);
	fputc('\n', stdout);
	return MSV_EXIT_OK;
}

static int load(const char *path, struct msv_policy **p)
{
	char err[1024];
	if (_msv_policy_load(path, p, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		return MSV_EXIT_USAGE;
	}
	if (_msv_policy_warnings(*p))
		fputs(_msv_policy_warnings(*p), stderr);
	return MSV_EXIT_OK;
}

static int check(int argc, char **argv)
{
	static const struct option opts[] = {
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static char prog[] = "memsaver policy check";
	int quiet = 0, c, rc = MSV_EXIT_OK;
	argv[0] = prog; /* getopt's messages name it */
	optind = 0; /* full re-initialisation: the dispatcher may have used getopt */
	while ((c = getopt_long(argc, argv, "+qh", opts, NULL)) != -1) {
		switch (c) {
		case 'q': quiet = 1; break;
		case 'h': return usage(stdout, MSV_EXIT_OK);
		default: return usage(stderr, MSV_EXIT_USAGE);
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "memsaver policy check: no policy file given\n");
		return usage(stderr, MSV_EXIT_USAGE);
	}
	/* Check every file, so one run lists every broken one. */
	for (int i = optind; i < argc; i++) {
		struct msv_policy *p = NULL;
		if (load(argv[i], &p) != MSV_EXIT_OK) {
			rc = MSV_EXIT_USAGE;
			continue;
		}
		size_t n = _msv_policy_rule_count(p);
		printf("%s: ok, %zu rule%s\n", argv[i], n, n == 1 ? "" : "s");
		if (!quiet && print_policy(p) != MSV_EXIT_OK && rc == MSV_EXIT_OK)
			rc = MSV_EXIT_FAIL;
		_msv_policy_free(p);
	}
	fflush(stdout);
	return rc;
}

static int show(int argc, char **argv)
{
	static const struct option opts[] = {
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static char prog[] = "memsaver policy show";
	int c, rc;
	argv[0] = prog;
	optind = 0;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'h': return usage(stdout, MSV_EXIT_OK);
		default: return usage(stderr, MSV_EXIT_USAGE);
		}
	}
	if (argc - optind > 1) {
		fprintf(stderr, "memsaver policy show: at most one policy file\n");
		return usage(stderr, MSV_EXIT_USAGE);
	}
	struct msv_policy *p = NULL;
	if (optind < argc) {
		if ((rc = load(argv[optind], &p)) != MSV_EXIT_OK)
			return rc;
	} else if (!(p = _msv_policy_default())) {
		fprintf(stderr, "memsaver policy show: out of memory\n");
		return MSV_EXIT_FAIL;
	}
	rc = print_policy(p);
	_msv_policy_free(p);
	fflush(stdout);
	return rc;
}

int _msv_cmd_policy(int argc, char **argv)
{
	if (argc < 2)
		return usage(stderr, MSV_EXIT_USAGE);
	const char *sub = argv[1];
	if (!strcmp(sub, "-h") || !strcmp(sub, "--help") || !strcmp(sub, "help"))
		return usage(stdout, MSV_EXIT_OK);
	if (!strcmp(sub, "check"))
		return check(argc - 1, argv + 1);
	if (!strcmp(sub, "show"))
		return show(argc - 1, argv + 1);
	fprintf(stderr, "memsaver policy: unknown sub-command \"%s\" (expected check or show)\n", sub);
	return usage(stderr, MSV_EXIT_USAGE);
}
