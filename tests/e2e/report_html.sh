#!/bin/bash
# The report renderers end to end, the way a user runs them: golden traces
# (written by the analyzer unit test's generator) -> `memsaver analyze` ->
# `memsaver report --format html` opened in headless chromium (the DOM must
# hold the SVG bars and the sources table; a screenshot must not be blank;
# laid out in the browser, the residue view, its call-site bars and the
# timeline must be drawn and no text may overflow its box -- checked against
# a broken copy too, so the check itself is known to fail),
# `--format perfetto` checked as trace-event JSON, and the CLI's errors.
# Env: BUILD (build dir), ROOT (repo root).  Exit 77 when chromium is missing.
set -u
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${BUILD:-build}
cd "$ROOT" || exit 1
M=$BUILD/bin/memsaver
GEN=$BUILD/tests/test_analyzer
fail() { echo "FAIL: $*"; exit 1; }
[ -x "$M" ] || fail "$M not built"
[ -x "$GEN" ] || fail "$GEN not built (it writes the golden traces)"
CHROME=$(command -v chromium || command -v chromium-browser || true)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$GEN" --write-traces "$tmp" >/dev/null || fail "cannot write the golden traces"

"$M" analyze "$tmp/full.trace" -o "$tmp/full.json" || fail "analyze full.trace"
"$M" analyze "$tmp/full.trace" "$tmp/two_pauses.trace" -o "$tmp/merged.json" || fail "analyze merge"
"$M" report "$tmp/full.json" >"$tmp/full.txt" || fail "report text"
grep -q 'Footprint 14.18 GiB' "$tmp/full.txt" || fail "text report lacks the footprint line"

# --- perfetto: parses, traceEvents, every event has ph/ts/pid/name, counters have args
check_perfetto() {
	local f=$1
	if command -v python3 >/dev/null; then
		python3 - "$f" <<'PY' || fail "perfetto output $f is not valid trace-event JSON"
import json, sys
d = json.load(open(sys.argv[1]))
ev = d["traceEvents"]
assert isinstance(ev, list) and ev, "traceEvents empty"
for e in ev:
    for k in ("ph", "ts", "pid", "name"):
        assert k in e, "event lacks %s: %r" % (k, e)
    if e["ph"] == "C":
        assert isinstance(e.get("args"), dict) and e["args"], "counter without args: %r" % e
assert any(e["ph"] == "C" for e in ev), "no counters"
assert any(e["ph"] == "i" and e["name"] == "pause" for e in ev), "no pause instant"
PY
	elif command -v jq >/dev/null; then
		jq -e '.traceEvents | length > 0 and all(has("ph") and has("ts") and has("pid") and has("name"))
			and all(if .ph == "C" then (.args | type == "object") else true end)' "$f" >/dev/null ||
			fail "perfetto output $f is not valid trace-event JSON"
	else
		echo "note: neither python3 nor jq; perfetto JSON not validated"
	fi
}
"$M" report --format perfetto -o "$tmp/full.perfetto.json" "$tmp/full.json" || fail "report perfetto"
check_perfetto "$tmp/full.perfetto.json"
"$M" report --format perfetto -o "$tmp/merged.perfetto.json" "$tmp/merged.json" || fail "report perfetto merged"
check_perfetto "$tmp/merged.perfetto.json"

# --- the reports against docs/report.schema.json, where python3-jsonschema is installed
if command -v python3 >/dev/null && python3 -c 'import jsonschema' 2>/dev/null; then
	python3 - "$ROOT/docs/report.schema.json" "$tmp/full.json" "$tmp/merged.json" <<'PY' || fail "a report does not match docs/report.schema.json"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
v = jsonschema.Draft202012Validator(schema)
for f in sys.argv[2:]:
    errs = [e.message for e in v.iter_errors(json.load(open(f)))]
    assert not errs, "%s: %s" % (f, errs[:3])
PY
fi

# --- errors: exit 2 with the file named
echo '{"schema_version": 2}' >"$tmp/v2.json"
"$M" report "$tmp/v2.json" 2>"$tmp/err" >/dev/null
[ $? -eq 2 ] || fail "schema_version 2 not refused with exit 2"
grep -q "v2.json: schema_version 2" "$tmp/err" || fail "schema error does not name file and version: $(cat "$tmp/err")"
printf 'NOTATRACE-------------------------------------------------------' >"$tmp/bad.trace"
"$M" analyze "$tmp/bad.trace" 2>"$tmp/err" >/dev/null
[ $? -eq 2 ] || fail "malformed trace not refused with exit 2"
grep -q "bad.trace: offset 0" "$tmp/err" || fail "malformed error lacks file/offset: $(cat "$tmp/err")"
cp "$tmp/full.trace" "$tmp/torn.trace"
truncate -s -20 "$tmp/torn.trace"
"$M" analyze "$tmp/torn.trace" -o "$tmp/torn.json" 2>"$tmp/err" || fail "torn trace gave no report"
grep -q "torn.trace: torn tail at byte offset" "$tmp/err" || fail "no torn warning: $(cat "$tmp/err")"
"$M" diff "$tmp/full.json" "$tmp/torn.json" >/dev/null || fail "diff"

# --- html in a browser
"$M" report --format html -o "$tmp/full.html" "$tmp/full.json" || fail "report html"
"$M" report --format html -o "$tmp/merged.html" "$tmp/merged.json" || fail "report html merged"
if [ -z "$CHROME" ]; then
	echo "skipped: chromium is not installed (apt-get install chromium); non-browser checks passed"
	exit 77
fi
chrome() {
	timeout 120 "$CHROME" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
		--disable-background-networking --disable-component-update --disable-sync \
		--user-data-dir="$(mktemp -d -p "$tmp")" "$@" 2>>"$tmp/chrome.log"
}
for page in full merged; do
	chrome --dump-dom "file://$tmp/$page.html" >"$tmp/$page.dom" || fail "chromium --dump-dom $page.html (see log below)$(tail -5 "$tmp/chrome.log")"
	grep -q '<svg' "$tmp/$page.dom" || fail "$page: no svg chart in the DOM"
	bars=$(grep -o '<rect class="bar"' "$tmp/$page.dom" | wc -l)
	[ "$bars" -ge 6 ] || fail "$page: only $bars bar rects in the chart"
	grep -q 'id="sources"' "$tmp/$page.dom" || fail "$page: no sources table"
	for s in app_vmm category:graph category:other driver:context driver:modules unattributed; do
		grep -q ">$s<" "$tmp/$page.dom" || fail "$page: source $s missing from the table"
	done
done
# Layout checks run in the browser: a page of the test's loads the report in
# an iframe, measures it and writes the result into its own DOM.
layout() { # report.html -> "RESULT {json}"
	sed "s|REPORT|$1|" >"$tmp/check-$(basename "$1")" <<'HTML'
<!DOCTYPE html><html><body><pre id="result">pending</pre>
<iframe id="f" src="REPORT" width="1280" height="4000"></iframe>
<script>
document.getElementById('f').onload = function () {
  var out = {}, d = this.contentDocument;
  function drawn(sel) {
    return Array.from(d.querySelectorAll(sel)).filter(function (e) {
      var b = e.getBoundingClientRect(); return b.width >= 2 && b.height >= 2; }).length;
  }
  try {
    out.residue_segments = drawn('#residue-bar .seg');
    out.source_rows = d.querySelectorAll('#residue-sources .row').length;
    out.site_segments = drawn('#residue-sources .seg.site');
    out.timeline_areas = drawn('#timeline polygon.area');
    out.marks = d.querySelectorAll('#timeline line.mark').length;
    var over = [];
    d.querySelectorAll('.fit, td, th').forEach(function (e) {
      if (e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1)
        over.push(e.textContent.slice(0, 60));
      var p = e.parentElement.getBoundingClientRect(), r = e.getBoundingClientRect();
      if (r.right > p.right + 1 || r.left < p.left - 1) over.push('outside its box: ' + e.textContent.slice(0, 60));
    });
    d.querySelectorAll('svg text').forEach(function (t) {
      var r = t.getBoundingClientRect(), s = t.ownerSVGElement.getBoundingClientRect();
      if (r.left < s.left - 1 || r.right > s.right + 1 || r.top < s.top - 1 || r.bottom > s.bottom + 1)
        over.push('svg: ' + t.textContent);
    });
    out.overflow = over;
  } catch (e) { out.error = String(e); }
  document.getElementById('result').textContent = 'RESULT ' + JSON.stringify(out);
};
</script></body></html>
HTML
	chrome --allow-file-access-from-files --virtual-time-budget=10000 --dump-dom \
		"file://$tmp/check-$(basename "$1")" | grep -o 'RESULT {.*}' | head -n1
}
# check_layout PAGE RESULT: exit status 0 when the views are drawn and nothing overflows.
check_layout() {
	python3 - "$@" <<'PY'
import json, sys
page, line = sys.argv[1], sys.argv[2]
if not line.startswith("RESULT "):
    sys.exit(f"{page}: the layout check produced no result")
r = json.loads(line[7:])
bad = []
if r.get("error"): bad.append("error " + r["error"])
if r.get("residue_segments", 0) < 1: bad.append("the residue bar is empty")
if r.get("source_rows", 0) < 1: bad.append("no source rows")
if r.get("site_segments", 0) < 1: bad.append("no call-site segments drawn")
if r.get("timeline_areas", 0) < 1: bad.append("the timeline is empty")
if r.get("marks", 0) < 2: bad.append("no pause/resume marks on the timeline")
if r.get("overflow"): bad.append("text overflows its box: %s" % r["overflow"][:5])
if bad:
    sys.exit(f"{page}: " + "; ".join(bad))
print(f"{page}: {r['residue_segments']} residue segments, {r['source_rows']} sources, "
      f"{r['site_segments']} call-site segments, {r['timeline_areas']} timeline areas, no overflow")
PY
}
for page in full merged; do
	check_layout "$page.html" "$(layout "$tmp/$page.html")" || fail "layout of $page.html"
done
# The check must catch what it is for: a label squeezed into a box too small,
# and a residue bar with nothing drawn.
sed 's|</style>|.row .name{white-space:nowrap;width:3em;overflow:hidden}</style>|' "$tmp/full.html" >"$tmp/squeezed.html"
check_layout squeezed.html "$(layout "$tmp/squeezed.html")" 2>"$tmp/err" && fail "the overflow check missed squeezed labels"
grep -q 'overflows' "$tmp/err" || fail "squeezed.html failed for another reason: $(cat "$tmp/err")"
sed 's|</style>|#residue-bar .seg{width:0 !important}</style>|' "$tmp/full.html" >"$tmp/empty.html"
check_layout empty.html "$(layout "$tmp/empty.html")" 2>"$tmp/err" && fail "the empty-chart check missed an empty residue bar"
grep -q 'residue bar is empty' "$tmp/err" || fail "empty.html failed for another reason: $(cat "$tmp/err")"
grep -q 'id="residue"' "$tmp/full.dom" || fail "no residue section"
grep -q 'sampler.py:50:sample' "$tmp/full.dom" || fail "call sites missing from the residue view"
chrome --screenshot="$tmp/full.png" --window-size=1280,1600 "file://$tmp/full.html" >/dev/null ||
	fail "chromium --screenshot"
[ -f "$tmp/full.png" ] || fail "no screenshot written"
size=$(stat -c %s "$tmp/full.png")
[ "$size" -gt 20000 ] || fail "screenshot is only $size bytes (blank page?)"
head -c 8 "$tmp/full.png" | od -An -tx1 | grep -q '89 50 4e 47' || fail "screenshot is not a PNG"
echo "ok: html ($bars bars, residue view and timeline laid out without overflow, screenshot $size bytes), perfetto and CLI errors"
