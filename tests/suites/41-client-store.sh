#!/usr/bin/env bash
# tests/suites/41-client-store.sh: libsynclog's durable local store
# (client/store.c, on SQLite) against DESIGN.md's local model and PROTOCOL.md.
#
# Builds tests/client/test_store.c with AddressSanitizer and
# UndefinedBehaviorSanitizer (`make -C client store-test-bin`) and runs it on
# SQLite files in a temporary directory: local puts and deletes visible at
# once and in the outbox; reopen keeps outbox, cursor, client_id and clock
# floor; incoming changes (own op confirmed, others' merged, visible = LWW of
# confirmed state and pending ops); ack then change; rejection rolls the row
# back; snapshot replacement rebases pending ops; hostile identifiers from
# welcome.tables are quoted, never executed.  The test prints its own
# "PASS: client-store: ..." / "FAIL: client-store: ..." lines, which this
# script passes through.  It adds one FAIL line of its own when the build
# fails, when the test dies without saying why (a sanitizer abort), or when
# anything on the test's stderr looks like a sanitizer report.
#
# Needs no database server: it ignores the shared cluster.  Takes a few
# seconds.

set -uo pipefail

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
bin="$REPO/build/client/test_store"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/synclog-client-store.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

if ! make --no-print-directory -C "$REPO/client" store-test-bin >"$tmp/build.log" 2>&1; then
	cat "$tmp/build.log"
	echo "FAIL: client-store: build (make -C client store-test-bin failed, output above)"
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
	echo "FAIL: client-store: sanitizers report nothing (see stderr above)"
	failed=1
fi
if ((status != 0)) && ((failed == 0)); then
	# The test exits 1 after printing its FAIL lines; anything else is a crash.
	if ((status != 1)); then
		echo "FAIL: client-store: test binary exited with status $status"
	fi
	failed=1
fi
exit "$failed"
