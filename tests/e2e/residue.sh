#!/bin/bash
# Issue 13 on the fake driver: the checkpoints the tracer takes at stream
# creation, capture begin/end and graph instantiation reach the report.  The
# fake charges FAKECUDA_GRAPH_EXEC_BYTES per live graph exec and nothing
# else behind memsaver's back, so driver:graph_exec must equal it exactly, at
# the instantiation site, the intervals no call explains must be 0, and
# unattributed 0; the sources add up to unreclaimed.  Then the same with
# CUPTI off (the interposer's checkpoints alone).
. "$(dirname "$0")/common.bash"

check() {
	local tag=$1 exec_bytes=$2
	shift 2
	FAKECUDA_GRAPH_EXEC_BYTES=$exec_bytes "$MS" run "$@" -p "$ROOT/tools/demo/demo-policy.json" \
		--trace "$T/$tag.trace" -- "$DEMO" --scale 64 --steps 4 --hold-at 2 --self-pause "" \
		--expect-kv any >"$T/$tag.out" 2>"$T/$tag.err" ||
		{ cat "$T/$tag.out" "$T/$tag.err"; fail "$tag: demo-engine under memsaver run failed"; }
	"$MS" analyze "$T/$tag.trace" -o "$T/$tag.json" 2>"$T/$tag.aerr" ||
		{ cat "$T/$tag.aerr"; fail "$tag: analyze failed"; }
	"$MS" analyze --dump "$T/$tag.trace" >"$T/$tag.dump" || fail "$tag: analyze --dump failed"
	py '
import json, sys
tag, path, dump, want = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
r = json.load(open(path))
a = r["attribution"]
src = {s["source"]: s for s in a["sources"]}
errs = []
if sum(s["bytes"] for s in a["sources"]) != a["unreclaimed_bytes"]:
    errs.append("sources do not add up to unreclaimed")
g = src.get("driver:graph_exec")
if not g or g["bytes"] != want:
    errs.append("driver:graph_exec %r, want %d" % (g and g["bytes"], want))
elif not g["top_sites"] or not g["top_sites"][0]["site"].startswith("graph instantiation at demo-engine"):
    errs.append("graph_exec top site %r" % g["top_sites"])
elif "measured" not in g:
    errs.append("graph_exec does not say how it was measured")
u = src.get("driver:unobserved")
if not u or u["bytes"] != 0 or u["count"] < 3:
    errs.append("driver:unobserved %r, want 0 bytes over >= 3 intervals" % u)
elif not any("before graph capture at demo-engine" in t["site"] for t in u["top_sites"]):
    errs.append("no interval ends at the capture: %r" % u["top_sites"])
if src["unattributed"]["bytes"] != 0:
    errs.append("unattributed %d" % src["unattributed"]["bytes"])
marks = [json.loads(l) for l in open(dump)]
ck = [m for m in marks if m["type"] == "driver" and m["cause"] in ("unobserved", "graph_exec")]
if len(ck) < 4:
    errs.append("%d checkpoint records in the dump" % len(ck))
if errs:
    print("\n".join("%s: %s" % (tag, e) for e in errs)); sys.exit(1)
' "$tag" "$T/$tag.json" "$T/$tag.dump" "$exec_bytes" || fail "$tag: report"
	ok "$tag: graph_exec $exec_bytes bytes at the instantiation, intervals 0, unattributed 0"
}

check cupti 6291456 --cupti
check interposer 4194304 --no-cupti
