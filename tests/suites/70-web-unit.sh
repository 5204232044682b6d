#!/usr/bin/env bash
# tests/suites/70-web-unit.sh: the browser client's pure logic, in Node.
#
# Checks, one PASS/FAIL line each:
#   - web/ builds (web/build.mjs: web/dist and web/build/lib); a setup step:
#     the suite stops here when it fails;
#   - `tsc --noEmit` in web/ (strict TypeScript over web/src) reports no error;
#   - every test of web/test/*.test.mjs, run by Node's test runner on
#     web/build/lib: one line per test (tests/lib/node-reporter.mjs), named
#     "web-unit: FILE: TEST"; a file that fails to load is one FAIL.
# web/node_modules comes from `make deps` (npm ci); without it the suite
# says so and fails.  Needs no database: it ignores the shared cluster.
# Takes a few seconds.

set -uo pipefail

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WEB=$REPO/web
NAME=web-unit

tmp=$(mktemp -d "${TMPDIR:-/tmp}/synclog-web-unit.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

failed=0
pass() { echo "PASS: $NAME: $1"; }
fail() {
	echo "FAIL: $NAME: $1"
	failed=1
}

if ! command -v node >/dev/null 2>&1; then
	echo "FAIL: $NAME: node is not on PATH (make deps installs Node.js)"
	exit 1
fi
if [[ ! -x $WEB/node_modules/.bin/tsc ]]; then
	echo "FAIL: $NAME: web/node_modules is missing: run \`make deps\` (npm ci in web/)"
	exit 1
fi

if ! (cd "$WEB" && node build.mjs) >"$tmp/build.log" 2>&1; then
	cat "$tmp/build.log"
	echo "FAIL: $NAME: build (node web/build.mjs failed, output above)"
	exit 1
fi
pass "build (web/build.mjs)"

if (cd "$WEB" && node_modules/.bin/tsc --noEmit --pretty false) >"$tmp/tsc.log" 2>&1; then
	pass "tsc --noEmit (strict, web/src)"
else
	cat "$tmp/tsc.log"
	fail "tsc --noEmit (strict, web/src): $(grep -c 'error TS' "$tmp/tsc.log") errors (above)"
fi

shopt -s nullglob
files=("$WEB"/test/*.test.mjs)
shopt -u nullglob
if ((${#files[@]} == 0)); then
	echo "note: no web/test/*.test.mjs yet"
	exit "$failed"
fi

# The runner's exit status is 1 when a test failed: the FAIL lines say which.
# A status without any FAIL line (the runner itself broke) is one failure.
(cd "$WEB" && SYNCLOG_SUITE_NAME=$NAME node --test --test-reporter="$REPO/tests/lib/node-reporter.mjs" \
	"${files[@]}") >"$tmp/node.log" 2>&1
st=$?
cat "$tmp/node.log"
if grep -q '^FAIL: ' "$tmp/node.log"; then
	failed=1
elif ((st != 0)); then
	fail "node --test web/test/*.test.mjs exited with status $st and no failing test (output above)"
elif ! grep -q '^PASS: ' "$tmp/node.log"; then
	fail "node --test web/test/*.test.mjs ran no test (output above)"
fi
exit "$failed"
