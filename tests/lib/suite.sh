# shellcheck shell=bash
# tests/lib/suite.sh: the plumbing shared by suites that run the sanitized
# gateway against a database of their own on the shared cluster (42-44).
#
# Source it from bash (a suite runs under `set -uo pipefail`); it defines
# functions and sets no shell options.  It works on a few variables of the
# sourcing shell: tmp (the suite's temporary directory), failed (0, or 1 once
# a check failed), gw_pid (the running gateway, "" if none); suite_begin sets
# them.  Databases are made through plain psql, so on the cluster of PGHOST,
# PGPORT, PGUSER (the runner exports the shared one's).
#
#   suite_begin NAME TAG      start a suite: checks are named "NAME: ...";
#                             tmp=$(mktemp -d $TMPDIR/synclog-TAG.XXXXXX),
#                             failed=0, gw_pid=""; exports ASAN_OPTIONS and
#                             UBSAN_OPTIONS (leaks detected, abort on the
#                             first report); traps EXIT (suite_cleanup) and
#                             INT/TERM (exit 1, so EXIT cleans up)
#   suite_at_exit 'CMD'       also eval CMD on exit, before the gateway is
#                             killed (say, 'suite_kill $helper_pid'); hooks
#                             run newest first
#   suite_cleanup             the EXIT trap: the hooks, then kills the gateway,
#                             drops the database of suite_create_db (a warning
#                             if it cannot), removes $tmp
#   pass NAME                 print "PASS: SUITE: NAME"
#   fail NAME                 print "FAIL: SUITE: NAME" and set failed=1; when
#                             SUITE_FAIL_NOTE is set, " (NOTE)" is appended
#   suite_abort NAME          print "FAIL: SUITE: NAME" and exit 1 (a build or
#                             setup step the rest cannot run without)
#   suite_kill PID...         SIGKILL each PID (a child) and reap it, quietly
#   suite_create_db DB        CREATE DATABASE DB, then in one psql session in it
#                             CREATE EXTENSION synclog and the SQL on stdin,
#                             stopping at the first error; output in
#                             $tmp/setup.log, printed on failure (status 1).
#                             DB is dropped on exit, also after a failure here
#   free_port                 print a random port in 20000-59999 on which
#                             nothing answers on 127.0.0.1 (100 tries, else 1)
#   port_open PORT            true if something accepts on 127.0.0.1:PORT
#   gateway_start PORT DB LOG [N]
#                             start $SUITE_GATEWAY on 127.0.0.1:PORT against
#                             database DB, stderr appended to LOG, pid in
#                             gw_pid; wait until LOG holds more than N
#                             (default 0) "database connected" lines and PORT
#                             accepts.  Status 1 if the gateway exits or 10 s
#                             pass first (it is left running: the caller
#                             prints LOG and fails or aborts)
#   gateway_dead              true once the gateway has exited (a zombie
#                             counts: it is our child)
#   gateway_kill              SIGKILL the gateway (or reap a dead one); gw_pid=""
#   gateway_stop              SIGTERM it, wait 10 s at most, then SIGKILL; reap;
#                             gw_pid=""
#   sanitizer_clean FILE...   true when no FILE holds an ASan/UBSan/LSan report
#                             (SANITIZER_RE, grep -E); missing files are clean
#
# SUITE_GATEWAY defaults to $REPO/build/gateway/synclog-gateway-asan (built by
# `make -C gateway gateway-asan`, which the suite runs itself).
#
#     source "$REPO/tests/lib/suite.sh"
#     suite_begin client-x clientx
#     helper_pid=""
#     suite_at_exit 'suite_kill $helper_pid'
#     suite_create_db "x_$$" <<<'CREATE TABLE t (id text PRIMARY KEY)' ||
#         suite_abort "setup (output above)"
#     port=$(free_port) || suite_abort "no free port"
#     gateway_start "$port" "x_$$" "$tmp/gw.err" ||
#         { cat "$tmp/gw.err"; suite_abort "gateway started"; }
#     ...
#     sanitizer_clean "$tmp"/*.err && pass "sanitizers quiet" || fail "sanitizers quiet"
#     exit "$failed"

SUITE_GATEWAY=${SUITE_GATEWAY:-$REPO/build/gateway/synclog-gateway-asan}
SANITIZER_RE='runtime error:|Sanitizer|LeakSanitizer'
SUITE_NAME=""
SUITE_DB=""
SUITE_AT_EXIT=()

# shellcheck disable=SC2034 # tmp, failed and gw_pid are the suite's
suite_begin() {
	SUITE_NAME=$1
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/synclog-$2.XXXXXX")
	failed=0
	gw_pid=""
	trap suite_cleanup EXIT
	trap 'exit 1' INT TERM
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:fast_unwind_on_malloc=0
	export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
}

suite_at_exit() {
	SUITE_AT_EXIT=("$1" "${SUITE_AT_EXIT[@]}")
}

suite_cleanup() {
	local hook
	for hook in "${SUITE_AT_EXIT[@]}"; do
		eval "$hook"
	done
	gateway_kill
	if [[ -n $SUITE_DB ]]; then
		psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $SUITE_DB WITH (FORCE)" >/dev/null 2>&1 ||
			echo "warning: could not drop database $SUITE_DB"
	fi
	rm -rf "$tmp"
}

pass() { echo "PASS: $SUITE_NAME: $1"; }
# shellcheck disable=SC2034
fail() {
	echo "FAIL: $SUITE_NAME: $1${SUITE_FAIL_NOTE:+ ($SUITE_FAIL_NOTE)}"
	failed=1
}
suite_abort() {
	echo "FAIL: $SUITE_NAME: $1"
	exit 1
}

suite_kill() {
	local p
	for p in "$@"; do
		kill -KILL "$p" 2>/dev/null
		{ wait "$p"; } 2>/dev/null
	done
}

suite_create_db() {
	SUITE_DB=$1
	if psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $1" >"$tmp/setup.log" 2>&1 &&
		psql -X -q -v ON_ERROR_STOP=1 -d "$1" -c 'CREATE EXTENSION synclog' -f - >>"$tmp/setup.log" 2>&1; then
		return 0
	fi
	cat "$tmp/setup.log"
	return 1
}

port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
	local lo=32768 p i
	# Below the kernel's ephemeral ports: one of those may be the local end
	# of an outgoing connection, which a listener cannot bind.
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null
	((lo > 21000)) || lo=60000
	for ((i = 0; i < 100; i++)); do
		p=$((20000 + RANDOM % (lo - 20000)))
		if ! port_open "$p"; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

gateway_start() {
	local port=$1 db=$2 log=$3 after=${4:-0} i
	: >>"$log"
	"$SUITE_GATEWAY" --listen "127.0.0.1:$port" \
		--db "host=${PGHOST:-127.0.0.1} port=${PGPORT:-5432} user=${PGUSER:-postgres} dbname=$db" 2>>"$log" &
	gw_pid=$!
	for ((i = 0; i < 100; i++)); do
		if (($(grep -c "database connected" "$log") > after)) && port_open "$port"; then
			return 0
		fi
		kill -0 "$gw_pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

gateway_dead() {
	local st
	st=$(ps -o stat= -p "$gw_pid" 2>/dev/null) || return 0
	[[ -z $st || $st == Z* ]]
}

gateway_kill() {
	suite_kill ${gw_pid:+"$gw_pid"}
	gw_pid=""
}

gateway_stop() {
	local i
	if [[ -n $gw_pid ]]; then
		kill -TERM "$gw_pid" 2>/dev/null
		for ((i = 0; i < 100; i++)); do
			kill -0 "$gw_pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
	gateway_kill
}

sanitizer_clean() {
	! grep -qE "$SANITIZER_RE" "$@" 2>/dev/null
}
