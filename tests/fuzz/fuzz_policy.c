/* Fuzz target: the policy loader (tracer/policy.c) as MEMSAVER_POLICY and
 * `memsaver policy check` reach it, then every use of an accepted policy:
 * its JSON form (policy show) and the classifier over a few call sites. */
#define FUZZ_NAME "policy"
#include "tests/fuzz/fuzz.h"

#include <stdlib.h>
#include <string.h>

#include "tracer/classify.h"
#include "tracer/policy.h"

static void classify_some(const struct msv_policy *p)
{
	static const char *const nvtx[] = {"load_weights", "decode/attn"};
	static const char *const py[] = {"model.py:12:load_weights", "/x/memory_pool.py:3:__init__"};
	static const char *const libs[] = {NULL, "libnccl.so.2", "libcublasLt.so.13", "[x]"};
	for (size_t i = 0; i < 8; i++) {
		struct msv_site s = {
			.nvtx = nvtx, .n_nvtx = i & 1 ? 2 : 0,
			.python = py, .n_python = i & 2 ? 2 : 1,
			.library = libs[i & 3], .capturing = (int)(i >> 2),
			.bytes = (uint64_t)1 << (i * 7), .region = -1,
		};
		enum msv_reason why;
		int rule;
		(void)_msv_classify(p, &s, &why, &rule);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), err[1024];
	struct msv_policy *p = NULL;
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (_msv_policy_parse(text, "fuzz.json", &p, err, sizeof(err)) == 0) {
		json_t *j = _msv_policy_to_json(p);
		char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
		free(s);
		json_decref(j);
		classify_some(p);
		_msv_policy_free(p);
	} else if (!memchr(err, '\0', sizeof(err)) || !err[0]) {
		__builtin_trap(); /* a refusal always says why */
	}
	free(text);
	return 0;
}

#ifdef MSV_FUZZ_REPLAY
#include "tests/fuzz/replay.c"
#endif
