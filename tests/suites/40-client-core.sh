#!/usr/bin/env bash
# tests/suites/40-client-core.sh: libsynclog's pure core (client/hlc.c, the
# hybrid logical clock, and client/merge.c, the local model's merge) against
# PROTOCOL.md and the server's conflict rule (pg_ext/merge.c).
#
# Builds tests/client/test_core.c with AddressSanitizer and
# UndefinedBehaviorSanitizer (`make -C client test-bin`) and runs it: HLC parse
# and now/observe sequences from tables, confirmed state + pending ops →
# visible row from a table, and incoming changes applied once, twice and in
# every order.  Then tests/client/test_vectors.c, built the same way
# (`make -C client vectors-test-bin`), runs the shared vectors of
# tests/vectors/ (the cases web/test/vectors.test.mjs runs against the
# browser client) through the same code.  Each test prints its own
# "PASS: client-core: ..." / "PASS: client-vectors: ..." and FAIL lines,
# which this script passes through.  It adds one FAIL line of its own when
# the build fails, when a test dies without saying why (a sanitizer abort),
# or when anything on a test's stderr looks like a sanitizer report.
#
# Needs no database: it ignores the shared cluster.  Takes a few seconds.

set -uo pipefail

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/synclog-client-core.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

if ! make --no-print-directory -C "$REPO/client" test-bin vectors-test-bin >"$tmp/build.log" 2>&1; then
	cat "$tmp/build.log"
	echo "FAIL: client-core: build (make -C client test-bin vectors-test-bin failed, output above)"
	exit 1
fi

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:fast_unwind_on_malloc=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

failed=0

# run NAME BIN [ARG...]: runs one test binary, passes its lines through and
# adds a FAIL line (named NAME) for a sanitizer report or a crash.
run() {
	local name=$1 status
	shift
	"$@" 2>"$tmp/stderr"
	status=$?

	if [[ -s $tmp/stderr ]]; then
		echo "--- $name stderr ---"
		cat "$tmp/stderr"
		echo "---"
	fi
	if grep -qE 'runtime error:|Sanitizer|LeakSanitizer' "$tmp/stderr"; then
		echo "FAIL: $name: sanitizers report nothing (see stderr above)"
		failed=1
	elif ((status != 0)); then
		# A test exits 1 after printing its FAIL lines; anything else is a crash.
		if ((status != 1)); then
			echo "FAIL: $name: test binary exited with status $status"
		fi
		failed=1
	fi
}

run client-core "$REPO/build/client/test_core"
run client-vectors "$REPO/build/client/test_vectors" "$REPO/tests/vectors"
exit "$failed"
