#!/bin/bash
# Issue 3, crash-safe trace: a trace cut mid-record and one cut mid-string
# (as a process killed while writing leaves them) still give a report and a
# dump of every record before the cut, with a warning; a file that is not a
# trace is a clear error with exit 2.
. "$(dirname "$0")/common.bash"

"$MS" run -p "$ROOT/tools/demo/demo-policy.json" --trace "$T/full.trace" -- \
	"$DEMO" --scale 16 --steps 2 --hold-at 1 --self-pause "" --expect-kv any >"$T/out" 2>&1 ||
	{ cat "$T/out"; fail "recording run failed"; }
"$MS" analyze "$T/full.trace" >"$T/full.json" 2>"$T/full.err" || fail "analyze of the intact trace"
[ -s "$T/full.err" ] && { cat "$T/full.err"; fail "warning on an intact trace"; }

# Record layout (tracer/trace_format.h): 64-byte header, 64-byte records,
# a STRING record (type 1, .size at byte 24) followed by ceil(size/64) blocks.
# Prints: "CUT_MID_RECORD ALLOCS_BEFORE CUT_MID_STRING ALLOCS_BEFORE".
read -r cut1 n1 cut2 n2 < <(py '
import struct, sys
d = open(sys.argv[1], "rb").read()
off, recs = 64, []
while off + 64 <= len(d):
    typ = struct.unpack_from("<H", d, off)[0]
    size = struct.unpack_from("<Q", d, off + 24)[0]
    recs.append((off, typ, size))
    off += 64 + (-(-size // 64) * 64 if typ == 1 else 0)
assert off == len(d), "trace does not parse to its end"
allocs = [o for o, t, s in recs if t == 3]
assert len(allocs) >= 6, "want several alloc records"
mid = allocs[len(allocs) // 2]
s = [(o, sz) for o, t, sz in recs if t == 1 and sz > 8 and o > mid]
assert s, "no string after the middle alloc"
so, sz = s[-1]
na = lambda cut: sum(1 for o in allocs if o + 64 <= cut)
print(mid + 30, na(mid + 30), so + 64 + sz // 2, na(so + 64 + sz // 2))
' "$T/full.trace") || fail "parsing the trace layout"
[ -n "${n2:-}" ] || fail "no cut points found"

for c in "rec:$cut1:$n1" "str:$cut2:$n2"; do
	IFS=: read -r what cut n <<<"$c"
	head -c "$cut" "$T/full.trace" >"$T/$what.trace"
	"$MS" analyze "$T/$what.trace" >"$T/$what.json" 2>"$T/$what.err"
	rc=$?
	[ $rc -eq 0 ] || { cat "$T/$what.err"; fail "torn ($what) trace: analyze exited $rc"; }
	grep -qiE 'torn|truncat|incomplete|cut' "$T/$what.err" || { cat "$T/$what.err"; fail "torn ($what) trace: no warning"; }
	py 'import json,sys; r=json.load(open(sys.argv[1])); assert r["schema_version"] >= 1' "$T/$what.json" ||
		fail "torn ($what) trace: no JSON report"
	"$MS" analyze --dump "$T/$what.trace" >"$T/$what.dump" 2>/dev/null || fail "torn ($what): --dump failed"
	got=$(grep -c '"type":"alloc"' "$T/$what.dump")
	[ "$got" -eq "$n" ] || fail "torn ($what) trace: dump has $got allocs, $n were complete before the cut"
	ok "cut mid-$what at byte $cut: warning, report, $n allocs kept"
done

# Not a trace at all.
head -c 4096 /dev/urandom >"$T/garbage.trace"
"$MS" analyze "$T/garbage.trace" >"$T/g.out" 2>"$T/g.err"
rc=$?
cat "$T/g.err"
[ $rc -eq 2 ] || fail "garbage file: exit $rc, want 2"
grep -q 'garbage.trace' "$T/g.err" || fail "garbage file: the error does not name the file"
grep -qi 'not a memsaver trace' "$T/g.err" || fail "garbage file: the error does not say what is wrong"
[ -s "$T/g.out" ] && fail "garbage file: something was written to stdout"
ok "garbage: exit 2 with a clear error"
# A file cut inside the header is no trace either.
head -c 20 "$T/full.trace" >"$T/short.trace"
"$MS" analyze "$T/short.trace" >/dev/null 2>"$T/s.err"
rc=$?
[ $rc -eq 2 ] || { cat "$T/s.err"; fail "header-only fragment: exit $rc, want 2"; }
ok "header fragment: exit 2"
