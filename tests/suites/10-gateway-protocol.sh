#!/usr/bin/env bash
# tests/suites/10-gateway-protocol.sh: the gateway's frame codec and
# per-connection state machine (gateway/protocol.c) against PROTOCOL.md.
#
# Builds tests/gateway/test_protocol.c with AddressSanitizer and
# UndefinedBehaviorSanitizer (`make -C gateway test-bin`) and runs it: bad and
# good frames from a table, every state of the session against every event,
# the encoders parsed back, and 10,000 random and mutated frames.  The test
# prints its own "PASS: protocol: ..." / "FAIL: protocol: ..." lines, which this
# script passes through.  It adds one FAIL line of its own when the build fails,
# when the test dies without saying why (a sanitizer abort), or when anything
# on the test's stderr looks like a sanitizer report.
#
# Needs no database: it ignores the shared cluster.  Takes a few seconds:
# ASAN_OPTIONS asks for slow unwinding, so that leak traces reach our code
# through jansson, which is built without frame pointers.
# Environment: SEED (passed to the test: repeats a random run; the test prints
# the seed it used).

set -uo pipefail

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
bin="$REPO/build/gateway/test_protocol"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/synclog-proto.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

if ! make --no-print-directory -C "$REPO/gateway" test-bin >"$tmp/build.log" 2>&1; then
	cat "$tmp/build.log"
	echo "FAIL: protocol: build (make -C gateway test-bin failed, output above)"
	exit 1
fi

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:fast_unwind_on_malloc=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

"$bin" 2>"$tmp/stderr"
status=$?

if [[ -s $tmp/stderr ]]; then
	echo "--- test stderr ---"
	cat "$tmp/stderr"
	echo "---"
fi

failed=0
if grep -qE 'runtime error:|Sanitizer|LeakSanitizer' "$tmp/stderr"; then
	echo "FAIL: protocol: sanitizers report nothing (see stderr above)"
	failed=1
fi
if ((status != 0)) && ((failed == 0)); then
	# The test exits 1 after printing its FAIL lines; anything else is a crash.
	if ((status != 1)); then
		echo "FAIL: protocol: test binary exited with status $status"
	fi
	failed=1
fi
exit "$failed"
