#!/bin/bash
# Issue 17, late attach on the fake driver: demo-engine runs WITHOUT memsaver;
# `memsaver attach` puts BPF uprobes on its libcuda.so.1.
#  1. Attached before the engine touches CUDA (stopped before exec, --lib):
#     every allocation is in the trace with the exact size demo-engine printed,
#     classified by library + size rules (the Python rule is named as one that
#     cannot match), graph memory by the capture default; the report has the
#     before_attach source and the notes on what attach cannot see.
#  2. Attached late, while the engine holds all its memory: the libcuda it
#     mapped is found, the frees of memory allocated before the attach arrive,
#     the session ends with the process and writes its report.
# Exit 77 where BPF or uprobes are not permitted, or the CLI has no BPF.
. "$(dirname "$0")/common.bash"

"$MS" attach $$ --duration 0.1 >"$T/probe.out" 2>"$T/probe.err"
if grep -qE "without BPF support|needs root|no uprobe events|loading the BPF programs failed" "$T/probe.err"; then
	echo "skipped: $(head -n1 "$T/probe.err")"
	exit 77
fi
# This shell has no libcuda: attach must say so, not fail obscurely.
grep -q "has not loaded libcuda.so.1" "$T/probe.err" || { cat "$T/probe.err"; fail "attach to a process without libcuda"; }

cat >"$T/policy.json" <<'EOF'
{"version": 1, "rules": [
  {"category": "kv", "match": {"library": "demo-engine", "min_bytes": 67108864}},
  {"category": "workspace", "match": {"library": "demo-engine", "min_bytes": 16777216, "max_bytes": 16777216}},
  {"category": "weights", "match": {"library": "demo-engine", "capturing": false}},
  {"category": "other", "match": {"python": "*:forward"}}]}
EOF

# 1. Stopped before exec: the probes are in before the first driver call.
sh -c 'kill -STOP $$; exec "$0" --scale 64 --tensors 6 --steps 2' "$DEMO" >"$T/out1" 2>&1 &
P=$!
BGPIDS+=("$P")
for ((i = 0; i < 100; i++)); do
	[ "$(sed -n 's/^State:\s*\(.\).*/\1/p' /proc/$P/status 2>/dev/null)" = T ] && break
	sleep 0.05
done
"$MS" attach "$P" --lib "$FAKE/libcuda.so.1" -p "$T/policy.json" --trace "$T/a1.trace" \
	-o "$T/r1.json" 2>"$T/err1" &
A=$!
wait_for "$T/err1" "driver functions probed" || fail "attach did not start"
kill -CONT "$P"
wait "$P" || { cat "$T/out1"; fail "demo-engine failed"; }
wait "$A" || { cat "$T/err1"; fail "memsaver attach failed"; }
cat "$T/err1"
grep -q "process exited" "$T/err1" || fail "attach did not end with the process"
grep -q "rule 3 .*Python frames.*never matches" "$T/err1" || fail "the Python rule was not named as unmatchable"
"$MS" analyze --dump "$T/a1.trace" >"$T/dump1" 2>"$T/dump1.err" || fail "analyze --dump of the attach trace"
[ -s "$T/dump1.err" ] && { cat "$T/dump1.err"; fail "analyze --dump warned on the attach trace"; }

py '
import json, re, sys
out, dump, rep = sys.argv[1:4]
MiB = 1 << 20
m = re.search(r"weights (\d+) MiB in (\d+) tensors, kv (\d+) MiB, workspace (\d+) MiB, graph pool (\d+) MiB", open(out).read())
assert m, "demo-engine did not print its sizes"
want = {"weights": int(m[1]) * MiB, "kv": int(m[3]) * MiB, "workspace": int(m[4]) * MiB, "graph": int(m[5]) * MiB}
recs = [json.loads(l) for l in open(dump)]
allocs = [r for r in recs if r["type"] == "alloc"]
got, count, errs = {}, {}, []
for a in allocs:
    c = a["category"]
    got[c] = got.get(c, 0) + a["size"]
    count[c] = count.get(c, 0) + 1
    if not (a["library"] or "").startswith("demo-engine:"):
        errs.append("call site not symbolized to demo-engine: %r" % a["library"])
    if c == "graph" and ("capturing" not in a["flags"] or a["rule_text"] != "default: capturing"):
        errs.append("graph alloc not by the capture default: %r" % a)
    if c != "graph" and a["rule_text"] not in ("rule 0", "rule 1", "rule 2"):
        errs.append("%s alloc by %s" % (c, a["rule_text"]))
for c, b in want.items():
    if got.get(c) != b:
        errs.append("%s: trace has %s bytes, demo-engine allocated %d" % (c, got.get(c), b))
if count.get("weights") != int(m[2]):
    errs.append("weights: %s allocations, demo made %s" % (count.get("weights"), m[2]))
if set(got) - set(want):
    errs.append("unexpected categories %s" % (set(got) - set(want)))
frees = [r for r in recs if r["type"] == "free"]
if sorted(f["addr"] for f in frees) != sorted(a["addr"] for a in allocs):
    errs.append("frees do not match the allocations")
phases = [r["label"] for r in recs if r["type"] == "phase"]
if phases != ["baseline", "attach", "exit"]:
    errs.append("phases %s" % phases)
r = json.load(open(rep))
src = {s["source"]: s for s in r["attribution"]["sources"]}
if "before_attach" not in src:
    errs.append("no before_attach source: %s" % list(src))
if not any("memsaver attach" in n for n in r["attribution"]["notes"]):
    errs.append("no note on what attach cannot see")
if r["process"]["cupti"]["attached"] is not False:
    errs.append("cupti.attached should be false")
if errs:
    print("\n".join(errs)); sys.exit(1)
print("sizes", {c: got[c] // MiB for c in got}, "MiB")
' "$T/out1" "$T/dump1" "$T/r1.json" || fail "attach trace does not hold what demo-engine allocated"
"$MS" report "$T/r1.json" >"$T/r1.txt" || fail "memsaver report of the attach report"
grep -q before_attach "$T/r1.txt" || fail "the table lacks before_attach"
ok "attached before the first driver call: every allocation, exact sizes and categories"

# 2. Late: the engine holds its memory; attach finds its libcuda.so.1.
"$DEMO" --scale 64 --tensors 6 --steps 4 --hold-at 1 --hold-file "$T/go" >"$T/out2" 2>&1 &
P=$!
BGPIDS+=("$P")
wait_for "$T/out2" "holding at step 1" || fail "demo-engine did not hold"
"$MS" attach "$P" --trace "$T/a2.trace" -o "$T/r2.json" 2>"$T/err2" &
A=$!
wait_for "$T/err2" "driver functions probed" || fail "late attach did not start"
grep -q "probed in .*libcuda.so.1" "$T/err2" || fail "late attach did not find the mapped libcuda.so.1"
touch "$T/go"
wait "$P" || { cat "$T/out2"; fail "demo-engine failed after the late attach"; }
wait "$A" || { cat "$T/err2"; fail "memsaver attach (late) failed"; }
cat "$T/err2"
"$MS" analyze --dump "$T/a2.trace" >"$T/dump2" || fail "analyze --dump (late)"
py '
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
n_alloc = sum(r["type"] == "alloc" for r in recs)
n_free = sum(r["type"] == "free" for r in recs)
# 6 weight tensors, kv, workspace and two graph-pool buffers, all allocated
# before the attach and freed at the end.
assert n_alloc == 0 and n_free == 10, (n_alloc, n_free)
r = json.load(open(sys.argv[2]))
assert r["saver"]["unmatched_frees"] == 10, r["saver"]
assert any(s["source"] == "before_attach" for s in r["attribution"]["sources"])
' "$T/dump2" "$T/r2.json" || fail "late attach: frees of the memory allocated before it"
ok "attached late: frees of the memory allocated before the attach, report at exit"
