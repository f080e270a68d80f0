#!/bin/bash
# Issue 3, second CUPTI subscriber: a tool injected through
# CUDA_INJECTION64_PATH takes the CUPTI slot (as Nsight or torch.profiler do)
# and then chains to libmemsaver.so's InitializeInjection.  memsaver must warn
# exactly once naming the holder, record that in the trace, keep tracing and
# classifying from its interposer, and the engine must succeed.
. "$(dirname "$0")/common.bash"
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}

cat >"$T/holder.c" <<'C'
#include <cupti.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
static void CUPTIAPI cb(void *u, CUpti_CallbackDomain d, CUpti_CallbackId id, const void *data)
{
	(void)u; (void)d; (void)id; (void)data;
}
__attribute__((visibility("default"))) int InitializeInjection(void)
{
	void *h = dlopen("libcupti.so.13", RTLD_NOW);
	CUptiResult (*sub)(CUpti_SubscriberHandle *, CUpti_CallbackFunc, void *, CUpti_SubscriberParams *) =
		h ? dlsym(h, "cuptiSubscribe_v2") : NULL;
	CUpti_SubscriberHandle s;
	CUpti_SubscriberParams p = {.structSize = sizeof(p), .subscriberName = "holder-tool"};
	if (!sub || sub(&s, cb, NULL, &p) != CUPTI_SUCCESS) {
		fprintf(stderr, "holder: could not subscribe\n");
		return 0;
	}
	fprintf(stderr, "holder: subscribed\n");
	void *next = dlopen(getenv("HOLDER_NEXT"), RTLD_NOW | RTLD_GLOBAL);
	int (*init)(void) = next ? (int (*)(void))dlsym(next, "InitializeInjection") : NULL;
	return init ? init() : 0;
}
C
cc -std=gnu11 -Wall -Wextra -Werror -shared -fPIC -I"$CUDA_HOME/include" -o "$T/holder.so" "$T/holder.c" -ldl ||
	fail "building the holder tool"

HOLDER_NEXT=$B/lib/libmemsaver.so "$MS" run --cupti -p "$ROOT/tools/demo/demo-policy.json" --trace "$T/t.trace" -- \
	env CUDA_INJECTION64_PATH="$T/holder.so" "$DEMO" --scale 16 --steps 2 >"$T/out" 2>"$T/err"
rc=$?
cat "$T/err"
[ $rc -eq 0 ] || { cat "$T/out"; fail "engine exited $rc with the CUPTI slot taken"; }
grep -q 'holder: subscribed' "$T/err" || fail "the holder did not get the slot first (test setup)"
n=$(grep -c 'CUPTI slot is held by CUPTI for holder-tool' "$T/err")
[ "$n" -eq 1 ] || fail "want exactly one warning naming the holder, got $n"
n=$(grep -ci 'cupti' "$T/err" | tr -d ' ')
[ "$n" -eq 1 ] || fail "want one CUPTI line on stderr, got $n"
ok "one warning naming the holder"

"$MS" analyze --dump "$T/t.trace" >"$T/dump" || fail "analyze --dump"
py '
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
meta = [r for r in recs if r["type"] == "meta" and r["key"] == "cupti"]
assert meta and meta[0]["value"] == 0 and "holder-tool" in (meta[0]["why"] or ""), "cupti meta: %r" % meta
allocs = [r for r in recs if r["type"] == "alloc"]
frees = [r for r in recs if r["type"] == "free"]
cats = {}
for a in allocs:
    cats[a["category"]] = cats.get(a["category"], 0) + a["size"]
MiB = 1 << 20
for c in ("weights", "kv", "workspace", "graph"):
    assert cats.get(c), "no %s allocations traced from the interposer: %r" % (c, cats)
assert cats["weights"] == 16 * MiB and cats["kv"] == 32 * MiB and cats["workspace"] == 4 * MiB, cats
assert len(frees) == len(allocs), "%d allocs, %d frees" % (len(allocs), len(frees))
g = [a for a in allocs if a["category"] == "graph"]
assert all("capturing" in a["flags"] for a in g), "graph allocs lost the capture flag"
' "$T/dump" || fail "trace from the interposer alone"
ok "interposer kept tracing and classifying"
