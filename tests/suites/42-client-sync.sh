#!/usr/bin/env bash
# tests/suites/42-client-sync.sh: libsynclog's network side (client/net.c)
# end to end: the library, sanitized, against the sanitized gateway and the
# shared cluster, over real WebSockets on loopback.
#
# Builds build/gateway/synclog-gateway-asan (`make -C gateway gateway-asan`)
# and tests/client/test_sync.c (`make -C client sync-test-bin`, ASan and
# UBSan over every library source), creates a fresh database csync_<pid>
# with the synclog extension, a tracked table issues (group column team, a
# CHECK on prio) and two tokens (alice: t1 and t2; bob: t1), starts the
# gateway on a free loopback port and runs test_sync's steps in order; each
# prints its own "PASS: client-sync: ..." lines, and this script adds checks
# of PostgreSQL's side with psql:
#   - init: a first sync, tables made from welcome, disconnect;
#   - offline (an unreachable port): writes visible at once and kept in the
#     outbox; synclog_run(200) returns in about 200 ms with DISCONNECTED;
#     synclog_sync → SYNCLOG_ENET at once with a message naming the url;
#   - push: sync pushes them, own changes come back, the outbox empties;
#     here: the rows are in PostgreSQL's table with the values written;
#   - pull: a second client (another file, cursor 0) gets a snapshot and the
#     same values;
#   - reject: prio = -1 → constraint_violation through the reject callback,
#     the row rolled back locally, the op out of the outbox; here: the
#     server's row kept its value;
#   - badtoken: SYNCLOG_EAUTH from sync and from run, no retry; bad urls and
#     tokens refused by synclog_connect;
#   - live: A's write reaches B's synclog_run loop through on_change;
#   - thread: a write made on another thread while synclog_run(10 s) waits
#     is pushed at once; synclog_wakeup makes run return;
#   - resend: 300 writes pushed by a synclog_run loop; the test SIGKILLs the
#     gateway once some are acked, this script restarts it on the same port;
#     the client reconnects by itself; here: synclog.ops holds each op once
#     and the table every row;
#   - hostile: a scripted WebSocket server inside test_sync sends frames that
#     are not JSON, not objects, with wrong field types, a changes frame in
#     three fragments (its fields reach on_change verbatim), a 70 MiB message
#     (past the client's 64 MiB cap) and unauthorized; the client reports each
#     and reconnects, and run ends with SYNCLOG_EAUTH;
#   - lost: the gateway SIGKILLed during a sync → SYNCLOG_ENET.
# It adds one FAIL line when a build or the setup fails, when a step dies
# without saying why (a sanitizer abort), or when anything on a stderr looks
# like a sanitizer report.  Every wait is bounded; the gateway is killed and
# the database dropped on every exit (trap).  Takes about 15 s.

set -uo pipefail

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=tests/lib/suite.sh
source "$REPO/tests/lib/suite.sh"
bin="$REPO/build/client/test_sync"
db="csync_$$"

suite_begin client-sync client-sync

if ! make --no-print-directory -C "$REPO/gateway" gateway-asan >"$tmp/build.log" 2>&1 ||
	! make --no-print-directory -C "$REPO/client" sync-test-bin >>"$tmp/build.log" 2>&1; then
	cat "$tmp/build.log"
	suite_abort "build (make -C gateway gateway-asan; make -C client sync-test-bin, output above)"
fi

if ! suite_create_db "$db" <<'SQL'; then
CREATE TABLE issues (id text PRIMARY KEY, team text NOT NULL, title text,
                     prio int CHECK (prio >= 0));
SELECT synclog.track('issues', 'team');
SQL
	suite_abort "setup (database $db with the synclog extension, output above)"
fi
token() { psql -X -qAt -v ON_ERROR_STOP=1 -d "$db" -c "SELECT synclog.create_token('$1', ARRAY[$2])"; }
tok_a=$(token alice "'t1','t2'") && tok_b=$(token bob "'t1'") || suite_abort "setup (tokens)"
sql() { psql -X -qAt -d "$db" -c "$1" 2>&1; }

port=$(free_port) && dead=$(free_port) && [[ $port != "$dead" ]] || suite_abort "no free port"
url="ws://127.0.0.1:$port/"
dead_url="ws://127.0.0.1:$dead/"

# start_gateway [N]: the gateway on $port, stderr appended to gw.err (see
# gateway_start in tests/lib/suite.sh).
start_gateway() { gateway_start "$port" "$db" "$tmp/gw.err" "$@"; }

if ! start_gateway; then
	cat "$tmp/gw.err"
	suite_abort "gateway started (listening and connected within 10 s)"
fi

# step NAME ARGS...: one test_sync step (its PASS/FAIL lines pass through),
# stderr in NAME.err; exit 0 or 1 is the step's verdict, anything else a crash.
step() {
	local name=$1 st
	shift
	echo "--- step $name"
	timeout -k 5 120 "$bin" "$name" "$@" 2>"$tmp/$name.err"
	st=$?
	if ((st == 1)); then
		failed=1
	elif ((st != 0)); then
		echo "--- $name stderr:"
		head -c 4000 "$tmp/$name.err"
		fail "step $name: test_sync exited with status $st"
	fi
	return "$st"
}

fa="$tmp/a.db"
fb="$tmp/b.db"
t0=$SECONDS

step init "$fa" "$url" "$tok_a"
step offline "$fa" "$dead_url" "$tok_a"
step push "$fa" "$url" "$tok_a"
got=$(sql "SELECT string_agg(id || '|' || team || '|' || title || '|' || prio, ',' ORDER BY id)
	FROM issues WHERE id LIKE 'off-%'")
want='off-1|t1|one|1,off-2|t1|two "quoted" é|2,off-3|t1|three|3'
if [[ $got == "$want" ]]; then
	pass "the pushed rows are in PostgreSQL with the values written"
else
	echo "got:  $got"
	echo "want: $want"
	fail "the pushed rows are in PostgreSQL with the values written"
fi
step pull "$fb" "$url" "$tok_b"
step reject "$fa" "$url" "$tok_a"
got=$(sql "SELECT string_agg(id || '|' || prio, ',' ORDER BY id) FROM issues WHERE id IN ('off-1', 'rej-ok')")
if [[ $got == "off-1|1,rej-ok|5" ]]; then
	pass "the rejected op changed nothing on the server; the other op applied"
else
	echo "got: $got"
	fail "the rejected op changed nothing on the server; the other op applied"
fi
step badtoken "$tmp/c.db" "$url"
step live "$fa" "$fb" "$url" "$tok_a" "$tok_b"
step thread "$fa" "$url" "$tok_a"
step hostile "$tmp/h.db"

# resend: test_sync SIGKILLs the gateway mid-push; restart it on the same port
n=300
connected_before=$(grep -c "database connected" "$tmp/gw.err")
step resend "$tmp/r.db" "$url" "$tok_a" "$n" "$gw_pid" &
step_pid=$!
for _ in $(seq 1 600); do
	gateway_dead && break
	kill -0 "$step_pid" 2>/dev/null || break
	sleep 0.05
done
if gateway_dead; then
	gateway_kill # reaps it
	sleep 1 # the client keeps retrying meanwhile
	start_gateway "$connected_before" || fail "gateway restarted after the kill"
else
	fail "resend: the test killed the gateway (it did not)"
fi
wait "$step_pid" || failed=1
got=$(sql "SELECT count(*) || '|' || count(DISTINCT op_id) FROM synclog.ops WHERE row_id LIKE 'rs-%'")
if [[ $got == "$n|$n" ]]; then
	pass "after the gateway's kill and restart the server has every op exactly once"
else
	echo "synclog.ops: $got (count|distinct), want $n|$n"
	fail "after the gateway's kill and restart the server has every op exactly once"
fi
got=$(sql "SELECT count(*) || '|' || sum(prio) FROM issues WHERE id LIKE 'rs-%' AND title = 'resend ' || prio")
if [[ $got == "$n|$((n * (n + 1) / 2))" ]]; then
	pass "after the gateway's kill and restart every row is in the table with its values"
else
	echo "issues: $got (count|sum), want $n|$((n * (n + 1) / 2))"
	fail "after the gateway's kill and restart every row is in the table with its values"
fi

# lost: test_sync SIGKILLs the gateway during a sync
step lost "$tmp/l.db" "$url" "$tok_a" "$gw_pid"
gateway_dead && gateway_kill # reaps it
echo "steps took $((SECONDS - t0)) s"

if ! sanitizer_clean "$tmp"/*.err; then
	for f in "$tmp"/*.err; do
		[[ -s $f ]] || continue
		echo "--- $(basename "$f"):"
		head -c 6000 "$f"
	done
	echo "---"
	fail "ASan/UBSan report nothing (client steps and gateway)"
else
	pass "ASan/UBSan report nothing (client steps and gateway)"
fi
exit "$failed"
