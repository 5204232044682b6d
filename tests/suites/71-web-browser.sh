#!/usr/bin/env bash
# tests/suites/71-web-browser.sh: the browser client in headless Chromium,
# against a database and a synclog-gateway that serves the build.
#
# Builds web/ (web/build.mjs), the sanitized gateway
# (build/gateway/synclog-gateway-asan) and CLI
# (build/client/synclog-cli-asan), makes the directory the gateway serves
# with --static (web/test/browser/prepare.mjs: a copy of web/dist,
# the test pages under /test/, their workers bundled beside sqlite3.wasm),
# creates a database webbr_<pid> with the extension, a tracked table
# `issues` (group column `team`, CHECK (prio >= 0)) and tokens, starts the
# gateway on a free loopback port, and runs each web/test/browser/*.test.mjs
# with Node's test runner, one file at a time (each test drives its own
# Chromium through web/test/browser/harness.mjs).  One line per test
# (tests/lib/node-reporter.mjs), "web-browser: FILE: TEST"; then
#   - every Chromium and gateway the tests started has exited;
#   - the suite's gateway exits 0 on SIGTERM with nothing from ASan/UBSan.
#
# The tests get: SYNCLOG_WEB_URL (http://127.0.0.1:PORT, the served origin),
# SYNCLOG_WS_URL, SYNCLOG_TOKEN (groups team-a, team-b), SYNCLOG_TOKEN_A
# (team-a), SYNCLOG_TOKEN_RO (team-a, read only), PGDATABASE and the PG*
# variables of the database, SYNCLOG_GATEWAY, SYNCLOG_GATEWAY_DB and
# SYNCLOG_STATIC (to start gateways of their own: harness.startGateway),
# SYNCLOG_CLI (build/client/synclog-cli-asan), SYNCLOG_PID_DIR
# (where the harness records the browsers and gateways it starts) and a
# TMPDIR inside the suite's directory.
#
# Run by tests/run-all.sh against the shared cluster; run alone
# (`bash tests/suites/71-web-browser.sh`) it starts a throwaway cluster of
# its own (tests/lib/cluster.sh; the extension must be installed: `make
# install`).  Every process it or the tests start (cluster, gateways,
# Chromium) is stopped on every exit, also on failure or SIGTERM.  Every wait
# is bounded.  Needs Debian's chromium (`make deps`).

set -uo pipefail

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export REPO
WEB=$REPO/web
# shellcheck source=tests/lib/suite.sh
source "$REPO/tests/lib/suite.sh"

suite_begin web-browser webbr
own_cluster=0
pid_dir=$tmp/pids
mkdir -p "$pid_dir" "$tmp/node-tmp"

# recorded_alive: prints the recorded processes (chromium-<pid>,
# gateway-<pid>) still running, whose command line is still that program's
# (not a reused pid); forgets the others.
recorded_alive() {
	local f pid want
	for f in "$pid_dir"/chromium-* "$pid_dir"/gateway-*; do
		[[ -f $f ]] || continue
		pid=$(<"$f")
		want=chromium
		[[ $f == */gateway-* ]] && want=synclog-gateway
		if [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$want"; then
			echo "${f##*/}"
		else
			rm -f "$f"
		fi
	done
}

# kill_recorded: SIGKILL what the harness recorded and is still running: a
# Chromium is a process group leader (puppeteer starts it detached), so its
# whole group; a gateway, the process.
kill_recorded() {
	local f pid
	for f in $(recorded_alive); do
		pid=${f#*-}
		case $f in
		chromium-*) kill -KILL -- "-$pid" 2>/dev/null ;;
		*) kill -KILL "$pid" 2>/dev/null ;;
		esac
		rm -f "$pid_dir/$f"
	done
}

web_cleanup() {
	kill_recorded
	suite_cleanup
	if ((own_cluster)); then
		cluster_stop
	fi
}
trap web_cleanup EXIT

if [[ -z ${PGPORT:-} ]]; then
	# shellcheck source=tests/lib/cluster.sh
	source "$REPO/tests/lib/cluster.sh"
	cluster_start || suite_abort "a throwaway cluster (tests/lib/cluster.sh, output above)"
	own_cluster=1
	echo "cluster of its own: $CLUSTER_DIR, port $PGPORT"
fi

chromium=${SYNCLOG_CHROMIUM:-/usr/bin/chromium}
[[ -x $chromium ]] || suite_abort "Chromium: $chromium not found (make deps installs Debian's chromium)"
[[ -x $WEB/node_modules/.bin/esbuild ]] ||
	suite_abort "web/node_modules is missing: run \`make deps\` (npm ci in web/)"

if ! make --no-print-directory -C "$REPO/gateway" gateway-asan >"$tmp/build.log" 2>&1; then
	cat "$tmp/build.log"
	suite_abort "build (make -C gateway gateway-asan, output above)"
fi
if ! make --no-print-directory -C "$REPO/client" cli-asan >"$tmp/build.log" 2>&1; then
	cat "$tmp/build.log"
	suite_abort "build (make -C client cli-asan, output above)"
fi
if ! (cd "$WEB" && node build.mjs) >"$tmp/build.log" 2>&1; then
	cat "$tmp/build.log"
	suite_abort "build (node web/build.mjs, output above)"
fi
www=$tmp/www
if ! node "$WEB/test/browser/prepare.mjs" "$www" >"$tmp/prepare.log" 2>&1; then
	cat "$tmp/prepare.log"
	suite_abort "the served directory (web/test/browser/prepare.mjs, output above)"
fi

db=webbr_$$
suite_create_db "$db" <<'SQL' || suite_abort "setup (database $db, output above)"
CREATE TABLE issues (id text PRIMARY KEY, team text NOT NULL, title text,
                     status text DEFAULT 'open', prio int CHECK (prio >= 0),
                     tags jsonb);
SELECT synclog.track('issues', 'team');
SQL
token() { psql -X -qAt -v ON_ERROR_STOP=1 -d "$db" -c "SELECT synclog.create_token($1)"; }
tok=$(token "'web', ARRAY['team-a','team-b']") && tok_a=$(token "'web-a', ARRAY['team-a']") &&
	tok_ro=$(token "'web-ro', ARRAY['team-a'], false") || suite_abort "setup (tokens)"

port=$(free_port) || suite_abort "no free port"
conninfo="host=${PGHOST:-127.0.0.1} port=${PGPORT:-5432} user=${PGUSER:-postgres} dbname=$db"
gw_log=$tmp/gateway.err
: >"$gw_log"
"$SUITE_GATEWAY" --listen "127.0.0.1:$port" --db "$conninfo" --static "$www" 2>>"$gw_log" &
gw_pid=$!
ready=0
for ((i = 0; i < 100; i++)); do
	if grep -q "database connected" "$gw_log" && port_open "$port"; then
		ready=1
		break
	fi
	kill -0 "$gw_pid" 2>/dev/null || break
	sleep 0.1
done
if ((!ready)); then
	cat "$gw_log"
	suite_abort "the gateway started with --static (log above)"
fi

export SYNCLOG_WEB_URL="http://127.0.0.1:$port" SYNCLOG_WS_URL="ws://127.0.0.1:$port"
export SYNCLOG_TOKEN=$tok SYNCLOG_TOKEN_A=$tok_a SYNCLOG_TOKEN_RO=$tok_ro
export PGDATABASE=$db SYNCLOG_GATEWAY=$SUITE_GATEWAY SYNCLOG_GATEWAY_DB=$conninfo SYNCLOG_STATIC=$www
export SYNCLOG_PID_DIR=$pid_dir SYNCLOG_CHROMIUM=$chromium SYNCLOG_SUITE_NAME=web-browser
export TMPDIR=$tmp/node-tmp
export SYNCLOG_CLI=$REPO/build/client/synclog-cli-asan

shopt -s nullglob
files=("$WEB"/test/browser/*.test.mjs)
shopt -u nullglob
((${#files[@]} > 0)) || suite_abort "no web/test/browser/*.test.mjs"

# One file at a time, each under a time limit of its own (SIGTERM lets
# puppeteer close its browser; the EXIT trap kills whatever is left).
for f in "${files[@]}"; do
	name=$(basename "$f")
	log=$tmp/node-${name%.test.mjs}.log
	echo "--- $name"
	(cd "$WEB" && timeout -k 10 "${WEB_TEST_FILE_TIMEOUT:-240}" node --test \
		--test-reporter="$REPO/tests/lib/node-reporter.mjs" "$f") >"$log" 2>&1 </dev/null
	st=$?
	cat "$log"
	if grep -q '^FAIL: ' "$log"; then
		failed=1
	elif ((st == 124 || st == 137)); then
		fail "$name: timed out after ${WEB_TEST_FILE_TIMEOUT:-240} s"
	elif ((st != 0)); then
		fail "$name: node --test exited with status $st and no failing test (output above)"
	elif ! grep -q '^PASS: ' "$log"; then
		fail "$name: ran no test (output above)"
	fi
done

left=$(recorded_alive)
if [[ -z $left ]]; then
	pass "every Chromium and gateway the tests started has exited"
else
	echo "still running: $left"
	fail "every Chromium and gateway the tests started has exited"
	kill_recorded
fi

gateway_stop_status() {
	local i st
	kill -TERM "$gw_pid" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		kill -0 "$gw_pid" 2>/dev/null || break
		ps -o stat= -p "$gw_pid" 2>/dev/null | grep -q '^Z' && break
		sleep 0.1
	done
	if kill -0 "$gw_pid" 2>/dev/null && ! ps -o stat= -p "$gw_pid" 2>/dev/null | grep -q '^Z'; then
		gateway_kill
		return 124
	fi
	wait "$gw_pid"
	st=$?
	gw_pid=""
	return "$st"
}
gateway_stop_status
st=$?
if ((st == 0)) && sanitizer_clean "$gw_log"; then
	pass "the gateway exits 0 on SIGTERM, nothing from the sanitizers"
else
	tail -n 40 "$gw_log"
	fail "the gateway exits 0 on SIGTERM, nothing from the sanitizers (status $st)"
fi
exit "$failed"
