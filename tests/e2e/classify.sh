#!/bin/bash
# Issue 3, classification on the fake driver: demo-engine under `memsaver run`
# with tools/demo/demo-policy.json.  From `memsaver analyze --dump` of the
# trace: weights and kv carry their NVTX rule, graph the capture default
# (flag "capturing"), workspace its rule; each category's requested bytes equal
# what demo-engine says it allocated, and each wrapped category's mapped bytes
# equal the device-memory step demo-engine measured around its phase.  Then a
# policy with a library rule ("demo-engine") classifies what no NVTX rule took.
. "$(dirname "$0")/common.bash"

"$MS" run -p "$ROOT/tools/demo/demo-policy.json" --trace "$T/d.trace" -- \
	"$DEMO" --scale 64 --tensors 6 --steps 2 --json >"$T/out" 2>"$T/err" ||
	{ cat "$T/out" "$T/err"; fail "demo-engine under memsaver run failed"; }
"$MS" analyze --dump "$T/d.trace" >"$T/dump" 2>"$T/dump.err" || fail "analyze --dump failed"
[ -s "$T/dump.err" ] && { cat "$T/dump.err"; fail "analyze --dump warned on a clean trace"; }

py '
import json, re, sys
out, dump = sys.argv[1], sys.argv[2]
MiB = 1 << 20
text = open(out).read()
m = re.search(r"weights (\d+) MiB in (\d+) tensors, kv (\d+) MiB, workspace (\d+) MiB, graph pool (\d+) MiB", text)
assert m, "demo-engine did not print its sizes"
want = {"weights": int(m[1]) * MiB, "kv": int(m[3]) * MiB, "workspace": int(m[4]) * MiB, "graph": int(m[5]) * MiB}
ntensors = int(m[2])
read = {}
for l in text.splitlines():
    if l.startswith("{\"phase\""):
        o = json.loads(l); read[o["phase"]] = o["delta_bytes"]
recs = [json.loads(l) for l in open(dump)]
allocs = [r for r in recs if r["type"] == "alloc"]
got, mapped, count = {}, {}, {}
errs = []
for a in allocs:
    c = a["category"]
    got[c] = got.get(c, 0) + a["size"]; mapped[c] = mapped.get(c, 0) + a["mapped"]
    count[c] = count.get(c, 0) + 1
    if "wrapped" not in a["flags"]:
        errs.append("not wrapped: %r" % a)
    if c in ("weights", "kv", "workspace"):
        rule = {"weights": "rule 0", "kv": "rule 1", "workspace": "rule 2"}[c]
        nv = {"weights": "load_weights", "kv": "kv_cache", "workspace": "alloc_workspace"}[c]
        if a["rule_text"] != rule or a["nvtx"] != nv:
            errs.append("%s alloc by %s / nvtx %s" % (c, a["rule_text"], a["nvtx"]))
        if "capturing" in a["flags"]:
            errs.append("%s alloc flagged capturing" % c)
    elif c == "graph":
        if a["rule_text"] != "default: capturing" or "capturing" not in a["flags"]:
            errs.append("graph alloc not by the capture default: %r" % a)
    else:
        errs.append("unexpected category %s" % c)
for c, b in want.items():
    if got.get(c) != b:
        errs.append("%s: trace has %s bytes, demo-engine allocated %d" % (c, got.get(c), b))
if count.get("weights") != ntensors:
    errs.append("weights: %s allocations, demo made %d" % (count.get("weights"), ntensors))
for c, ph in (("weights", "load_weights"), ("kv", "kv_cache"), ("workspace", "alloc_workspace")):
    if mapped.get(c) != read.get(ph):
        errs.append("%s: mapped %s, demo measured %s around %s" % (c, mapped.get(c), read.get(ph), ph))
frees = [r for r in recs if r["type"] == "free"]
if len(frees) != len(allocs):
    errs.append("%d allocs but %d frees" % (len(allocs), len(frees)))
if errs:
    print("\n".join(errs)); sys.exit(1)
print("categories:", {c: got[c] for c in sorted(got)})
' "$T/out" "$T/dump" || fail "classification by NVTX/capture/rule"
ok "nvtx, capture and rule classification; bytes match demo-engine"

# A library rule: everything demo-engine itself allocates outside
# load_weights is kv (first match wins, so even capture-time allocations).
cat >"$T/lib.json" <<'J'
{"version": 1,
 "rules": [{"category": "weights", "match": {"nvtx": "load_weights"}},
           {"category": "kv", "match": {"library": "demo-engine"}}]}
J
"$MS" run -p "$T/lib.json" --no-redirect --trace "$T/l.trace" -- \
	"$DEMO" --scale 16 --steps 1 >"$T/out2" 2>&1 || { cat "$T/out2"; fail "library-rule run failed"; }
"$MS" analyze --dump "$T/l.trace" >"$T/dump2" || fail "analyze --dump (library rule)"
py '
import json, sys
allocs = [json.loads(l) for l in open(sys.argv[1])]
allocs = [a for a in allocs if a["type"] == "alloc"]
cats = {}
for a in allocs:
    cats[a["category"]] = cats.get(a["category"], 0) + 1
    if a["library"] != "demo-engine":
        sys.exit("library %r, want demo-engine" % a["library"])
    if a["category"] == "kv" and a["rule_text"] != "rule 1":
        sys.exit("kv by %s" % a["rule_text"])
    if "wrapped" in a["flags"]:
        sys.exit("wrapped under --no-redirect")
if cats != {"weights": 8, "kv": 4}:
    sys.exit("categories %r, want 8 weights and 4 kv" % cats)
' "$T/dump2" || fail "library rule"
ok "library rule"
