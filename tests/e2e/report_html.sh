#!/bin/bash
# The report renderers end to end, the way a user runs them: golden traces
# (written by the analyzer unit test's generator) -> `memsaver analyze` ->
# `memsaver report --format html` opened in headless chromium (the DOM must
# hold the SVG bars and the sources table; a screenshot must not be blank),
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
chrome --screenshot="$tmp/full.png" --window-size=1280,1600 "file://$tmp/full.html" >/dev/null ||
	fail "chromium --screenshot"
[ -f "$tmp/full.png" ] || fail "no screenshot written"
size=$(stat -c %s "$tmp/full.png")
[ "$size" -gt 20000 ] || fail "screenshot is only $size bytes (blank page?)"
head -c 8 "$tmp/full.png" | od -An -tx1 | grep -q '89 50 4e 47' || fail "screenshot is not a PNG"
echo "ok: html ($bars bars, screenshot $size bytes), perfetto and CLI errors"
