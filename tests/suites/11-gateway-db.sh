#!/usr/bin/env bash
# tests/suites/11-gateway-db.sh: the gateway's asynchronous libpq layer
# (gateway/db.c) against the shared cluster.
#
# Builds tests/gateway/test_db.c with AddressSanitizer and
# UndefinedBehaviorSanitizer (`make -C gateway test-db-bin`), creates a fresh
# database gwdb_<pid> with the synclog extension, and runs the test against it:
# connecting through a multi-host conninfo, synclog.cursor(), 100 queued
# queries answered in order, a tricky parameter echoed unchanged, a syntax
# error that does not break the queue, notifications, and the loss of the
# connection (pg_terminate_backend from psql): queued queries fail with
# server_unavailable and the layer reconnects and LISTENs again by itself.  The
# test prints its own "PASS: db: ..." / "FAIL: db: ..." lines, which this
# script passes through.  It adds one FAIL line of its own when the build or
# the database setup fails, when the test dies without saying why (a sanitizer
# abort, a crash), or when the test's stderr looks like a sanitizer report.
#
# The database is dropped on every exit (trap), also when the test fails.
# Takes a few seconds (one reconnection with backoff).

set -uo pipefail

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
bin="$REPO/build/gateway/test_db"
db="gwdb_$$"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/synclog-gwdb.XXXXXX")
created=0
cleanup() {
	if ((created)); then
		psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 ||
			echo "warning: could not drop database $db"
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

if ! make --no-print-directory -C "$REPO/gateway" test-db-bin >"$tmp/build.log" 2>&1; then
	cat "$tmp/build.log"
	echo "FAIL: db: build (make -C gateway test-db-bin failed, output above)"
	exit 1
fi

created=1
if ! psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $db" >"$tmp/setup.log" 2>&1 ||
	! psql -X -q -v ON_ERROR_STOP=1 -d "$db" -c "CREATE EXTENSION synclog" >>"$tmp/setup.log" 2>&1; then
	cat "$tmp/setup.log"
	echo "FAIL: db: setup (create database $db with the synclog extension, output above)"
	exit 1
fi

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:fast_unwind_on_malloc=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

timeout -k 5 120 "$bin" "$db" 2>"$tmp/stderr"
status=$?

if [[ -s $tmp/stderr ]]; then
	echo "--- test stderr ---"
	cat "$tmp/stderr"
	echo "---"
fi

failed=0
if grep -qE 'runtime error:|Sanitizer|LeakSanitizer' "$tmp/stderr"; then
	echo "FAIL: db: sanitizers report nothing (see stderr above)"
	failed=1
fi
if ((status != 0)) && ((failed == 0)); then
	# The test exits 1 after printing its FAIL lines; anything else is a crash or a timeout.
	if ((status != 1)); then
		echo "FAIL: db: test binary exited with status $status"
	fi
	failed=1
fi
exit "$failed"
