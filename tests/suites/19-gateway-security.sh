#!/usr/bin/env bash
# tests/suites/19-gateway-security.sh: the gateway's part of issue 14 (tokens
# out of PostgreSQL's log, connections not yet welcomed limited per address,
# NOTIFY floods bounded), end to end over real WebSockets on loopback.
#
# A private cluster (tests/lib/cluster.sh: these settings must not touch the
# shared one) logs everything a session can make it log: log_statement =
# all, log_min_duration_statement = 0, bind parameters in full, also on
# error.  Database gwsec (table issues, group column team), a plain role
# mallory (LOGIN, nothing else), tokens for four subjects.  One sanitized
# gateway (SUITE_GATEWAY) with --max-connections 100 --hello-timeout 120 and
# the default --max-pending-per-peer (16).  One PASS/FAIL line per check:
#
#   traffic   hellos and pushes with three tokens (each push acked), a hello
#             with an unknown token (unauthorized), and a subscriber (token
#             a) that stays connected throughout;
#   flood     as mallory, 2000 NOTIFY synclog_revoke (distinct payloads, each
#             its own transaction, 2 ms apart, so that they do not all arrive
#             at once): the gateway ran at least one revocation check and
#             fewer than 200 (counted in the server log; a gateway that
#             checks on every notification runs about 2000); 2000 NOTIFY
#             synclog with a stale cursor (1): fewer than 200 fan-out queries;
#             2000 with a cursor far past the log's: at least one and fewer
#             than 200; afterwards a push still reaches the subscriber;
#   revoke    synclog.revoke_token (run with statement logging off in that
#             session, so the suite itself writes no token to the log): the
#             revoked token's connection gets unauthorized and is closed
#             (polled, 20 s at most), the subscriber still answers a ping;
#   log       no token's text (any of the five) in the server log nor in
#             the gateway's, while the server log holds the gateway's
#             authenticate_hash, push_hash and revocation-check statements
#             (so the check cannot pass on an empty log);
#   pending   hostile pending opens 40 WebSocket handshakes from 127.0.0.1
#             that never say hello: exactly 16 accepted, the other 24 refused
#             with HTTP 503; a client from 127.0.0.2 (test_client --bind) gets
#             welcome; another from 127.0.0.1 is refused (503); the gateway
#             logged the refusals naming the address and the limit, in fewer
#             lines than refusals; once the 16 close, a client from 127.0.0.1
#             gets welcome again (polled);
#   and the gateway stops on SIGTERM with nothing from ASan/UBSan.
#
# Nothing is timed: the flood checks count queries, not milliseconds.  Every
# wait is bounded; the gateway, clients and the cluster are stopped and the
# temporary directory removed on every exit (SIGTERM included).

set -uo pipefail

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=tests/lib/suite.sh
source "$REPO/tests/lib/suite.sh"
# shellcheck source=tests/lib/cluster.sh
source "$REPO/tests/lib/cluster.sh"
suite_begin gateway-security gwsec
client="$REPO/build/gateway/test_client"
hostile="$REPO/build/gateway/hostile"
NOTIFIES=${NOTIFIES:-2000}

bg_pids=()
# kill_bg: ends every background client (each under timeout(1), which passes
# SIGTERM on): TERM, 2 s at most, then KILL.
kill_bg() {
	local p i alive
	for p in "${bg_pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for ((i = 0; i < 20; i++)); do
		alive=0
		for p in "${bg_pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		((alive)) || break
		sleep 0.1
	done
	for p in "${bg_pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	for p in "${bg_pids[@]}"; do wait "$p" 2>/dev/null; done
	bg_pids=()
}
# The cluster's EXIT trap replaces suite_begin's: it runs suite_cleanup
# (gateway, database, $tmp) and the clients' cleanup before the cluster stops.
cluster_cleanup_on_exit
cluster_at_exit 'suite_cleanup'
cluster_at_exit 'kill_bg'

if [[ $SUITE_GATEWAY == "$REPO/build/gateway/synclog-gateway-asan" ]] &&
	! make --no-print-directory -C "$REPO/gateway" gateway-asan >"$tmp/build.log" 2>&1; then
	cat "$tmp/build.log"
	suite_abort "build (make -C gateway gateway-asan, output above)"
fi
make --no-print-directory -C "$REPO/gateway" test-client-bin hostile-bin >"$tmp/build.log" 2>&1 ||
	{ cat "$tmp/build.log"; suite_abort "build (make -C gateway test-client-bin hostile-bin)"; }

cluster_start "log_statement = 'all'" "log_min_duration_statement = 0" \
	"log_parameter_max_length = -1" "log_parameter_max_length_on_error = -1" ||
	suite_abort "private cluster started"

db=gwsec
suite_create_db "$db" <<'SQL' || suite_abort "setup (database with the synclog extension, output above)"
CREATE TABLE issues (id text PRIMARY KEY, team text NOT NULL, title text);
SELECT synclog.track('issues', 'team');
CREATE ROLE mallory LOGIN;
SQL
sql() { psql -X -qAt -v ON_ERROR_STOP=1 -d "$db" "$@"; }
# The suite's own statements that name a token are not logged (a superuser
# may turn statement logging off for its session), so any token text in the
# server log came from the gateway.
sql_quiet() { sql -c "SET log_statement = none" -c "SET log_min_duration_statement = -1" "$@" -f -; }
tok_a=$(sql -c "SELECT synclog.create_token('alice', ARRAY['t1'])") &&
	tok_b=$(sql -c "SELECT synclog.create_token('bob', ARRAY['t1','t2'])") &&
	tok_c=$(sql -c "SELECT synclog.create_token('carol', ARRAY['t2'])") &&
	tok_r=$(sql -c "SELECT synclog.create_token('rex', ARRAY['t1'])") ||
	suite_abort "setup (tokens)"
tok_x="never-created-$RANDOM$RANDOM-token"
[[ -n $tok_a && -n $tok_b && -n $tok_c && -n $tok_r ]] || suite_abort "setup (tokens are not empty)"

port=$(free_port) || suite_abort "no free port"
log="$tmp/gw.err"
: >"$log"
"$SUITE_GATEWAY" --listen "127.0.0.1:$port" --max-connections 100 --hello-timeout 120 \
	--db "host=$PGHOST port=$PGPORT user=$PGUSER dbname=$db" 2>>"$log" &
gw_pid=$!
for ((i = 0; i < 100; i++)); do
	(($(grep -c "database connected" "$log") >= 4)) && port_open "$port" && break
	kill -0 "$gw_pid" 2>/dev/null || break
	sleep 0.1
done
port_open "$port" || { cat "$log"; suite_abort "gateway started (listening and connected within 10 s)"; }

now_ms() { date +%s%3N; }
# wait_grep SECS FILE ERE: true once FILE has a line matching ERE, false after
# SECS seconds without one.
wait_grep() {
	local end=$(($(now_ms) + $1 * 1000))
	while (($(now_ms) < end)); do
		grep -qE -- "$3" "$2" 2>/dev/null && return 0
		sleep 0.1
	done
	grep -qE -- "$3" "$2" 2>/dev/null
}
hello() { # TOKEN CLIENT_ID GROUPS
	printf 'send {"type":"hello","client_id":"%s","token":"%s","groups":%s,"cursor":0,"hlc":"0000000000000001"}\n' \
		"$2" "$1" "$3"
}
# count_log ERE: lines of the server log after the last marker line (see
# mark_log) that match ERE.
mark_log() { sql -c "SELECT 'gwsec-mark-$1'" >/dev/null; }
count_log() {
	awk -v m="gwsec-mark-$1" -v re="$2" 'index($0, m) { n = 0; next } $0 ~ re { n++ } END { print n + 0 }' "$CLUSTER_LOG"
}
# settle ERE MARK: waits until count_log MARK ERE has not changed for 2 s
# (60 s at most): the gateway has done what the notifications asked.
settle() {
	local last=-1 cur stable=0 i
	for ((i = 0; i < 600 && stable < 20; i++)); do
		cur=$(count_log "$2" "$1")
		if [[ $cur == "$last" ]]; then stable=$((stable + 1)); else stable=0; fi
		last=$cur
		sleep 0.1
	done
}
# PostgreSQL logs each statement the gateway sends (extended protocol) once as
# "execute <unnamed>: SQL" (log_statement; the duration line after it then
# omits the text).
RE_RECHECK='execute <unnamed>: SELECT h FROM pg_catalog.unnest'
RE_FANOUT="execute <unnamed>: SELECT r.j->>'cursor'"

# --- traffic ----------------------------------------------------------------------------
# The subscriber: token a, group t1, connected until $tmp/sub.stop exists.
{
	hello "$tok_a" c-sub '["t1"]'
	echo "recv 10"
	echo "touch $tmp/sub.welcomed"
	echo "readuntil $tmp/sub.ping 300"
	echo 'send {"type":"ping"}'
	echo "readuntil $tmp/sub.stop 300"
} | timeout -k 5 400 "$client" 127.0.0.1 "$port" >"$tmp/sub.out" 2>"$tmp/sub.err" &
bg_pids+=($!)
wait_grep 20 "$tmp/sub.out" '"type":"welcome"' || { cat "$tmp/sub.out"; fail "traffic: the subscriber is welcomed"; }

n=0
for t in a b c; do
	var=tok_$t
	team=t1
	[[ $t == c ]] && team=t2
	{
		hello "${!var}" "c-$t" "[\"$team\"]"
		echo "recv 10"
		printf 'timedpush 3 0 {"type":"push","ops":[{"id":"1900000%s-0000-4000-8000-{i}","table":"issues","row":"%s-{i}","kind":"upsert","fields":{"team":"%s","title":"x"},"hlc":"0000000000000002"}]}\n' "$t" "$t" "$team"
	} | timeout -k 5 60 "$client" 127.0.0.1 "$port" >"$tmp/push-$t.out" 2>&1
	n=$((n + $(grep -c '"type":"ack","acked":\["1900000[abc]' "$tmp/push-$t.out")))
done
if ((n == 9)); then pass "traffic: 9 pushes with 3 tokens acked"; else
	tail -n 3 "$tmp"/push-*.out | cut -c1-300
	fail "traffic: 9 pushes with 3 tokens acked (got $n)"
fi
{
	hello "$tok_x" c-x '["t1"]'
	echo "expectclose 10"
} | timeout -k 5 30 "$client" 127.0.0.1 "$port" >"$tmp/unknown.out" 2>&1
if grep -q '"code":"unauthorized"' "$tmp/unknown.out"; then pass "traffic: an unknown token gets unauthorized"; else
	cut -c1-300 "$tmp/unknown.out"
	fail "traffic: an unknown token gets unauthorized"
fi
sql -c "SELECT synclog.wait_sequenced()" >/dev/null
wait_grep 20 "$tmp/sub.out" '"row": ?"b-000000000003"' ||
	{ tail -n 3 "$tmp/sub.out" | cut -c1-300; fail "traffic: the subscriber got the t1 changes"; }

# --- flood ------------------------------------------------------------------------------
# flood CHANNEL PAYLOAD_SQL: NOTIFIES notifications as mallory, each in its
# own transaction (PostgreSQL folds equal notifications of one transaction),
# 2 ms apart: spread over seconds, so that a gateway that answered each
# notification (or each one arriving after its last query) with a query would
# send about as many queries as notifications, instead of having them all
# coalesced by arriving at once.
flood() {
	psql -X -q -v ON_ERROR_STOP=1 -U mallory -d "$db" -c \
		"DO \$\$ BEGIN FOR i IN 1..$NOTIFIES LOOP PERFORM pg_notify('$1', $2); COMMIT; PERFORM pg_sleep(0.002); END LOOP; END \$\$" \
		>"$tmp/flood.out" 2>&1 || { cat "$tmp/flood.out"; return 1; }
}
# check_bounded NAME MARK ERE MIN: between MIN and 199 matching statements.
check_bounded() {
	local got
	settle "$3" "$2"
	got=$(count_log "$2" "$3")
	if ((got >= $4 && got < 200)); then pass "$1 ($got queries for $NOTIFIES notifications)"; else
		fail "$1 (got $got queries for $NOTIFIES notifications)"
	fi
}

mark_log revoke
if flood synclog_revoke "'r' || i"; then
	check_bounded "flood: $NOTIFIES NOTIFY synclog_revoke from a plain role → at least 1 and fewer than 200 revocation checks" \
		revoke "$RE_RECHECK" 1
else
	fail "flood: NOTIFY synclog_revoke as mallory (output above)"
fi
mark_log stale
if flood synclog "'1'"; then
	check_bounded "flood: $NOTIFIES NOTIFY synclog with a stale cursor → fewer than 200 fan-out queries" \
		stale "$RE_FANOUT" 0
else
	fail "flood: NOTIFY synclog (stale) as mallory (output above)"
fi
mark_log high
if flood synclog "(4000000000000000 + i)::text"; then
	check_bounded "flood: $NOTIFIES NOTIFY synclog with cursors past the log → at least 1 and fewer than 200 fan-out queries" \
		high "$RE_FANOUT" 1
else
	fail "flood: NOTIFY synclog (past the log) as mallory (output above)"
fi
{
	hello "$tok_b" c-after '["t1"]'
	echo "recv 10"
	printf 'timedpush 1 0 {"type":"push","ops":[{"id":"19100000-0000-4000-8000-000000000001","table":"issues","row":"after-flood","kind":"upsert","fields":{"team":"t1","title":"x"},"hlc":"0000000000000003"}]}\n'
} | timeout -k 5 60 "$client" 127.0.0.1 "$port" >"$tmp/after.out" 2>&1
if wait_grep 20 "$tmp/sub.out" '"row": ?"after-flood"'; then pass "flood: afterwards a push still reaches the subscriber"; else
	tail -n 3 "$tmp/after.out" "$tmp/sub.out" | cut -c1-300
	fail "flood: afterwards a push still reaches the subscriber"
fi

# --- revoke -----------------------------------------------------------------------------
{
	hello "$tok_r" c-rev '["t1"]'
	echo "recv 10"
	echo "touch $tmp/rev.welcomed"
	echo "expectclose 60"
} | timeout -k 5 90 "$client" 127.0.0.1 "$port" >"$tmp/rev.out" 2>&1 &
rev_pid=$!
bg_pids+=("$rev_pid")
wait_grep 20 "$tmp/rev.out" '"type":"welcome"' || { cut -c1-300 "$tmp/rev.out"; fail "revoke: the victim is welcomed"; }
sql_quiet -v t="$tok_r" <<<"SELECT synclog.revoke_token(:'t')" >/dev/null || fail "revoke: synclog.revoke_token ran"
if wait_grep 20 "$tmp/rev.out" '^CLOSED' && grep -q '"code":"unauthorized"' "$tmp/rev.out"; then
	pass "revoke: the revoked token's connection gets unauthorized and is closed"
else
	cut -c1-300 "$tmp/rev.out"
	fail "revoke: the revoked token's connection gets unauthorized and is closed"
fi
touch "$tmp/sub.ping"
if wait_grep 20 "$tmp/sub.out" '"type":"pong"'; then pass "revoke: another token's connection stays open"; else
	tail -n 3 "$tmp/sub.out" | cut -c1-300
	fail "revoke: another token's connection stays open"
fi

# --- log --------------------------------------------------------------------------------
leaks=""
for t in a b c r x; do
	var=tok_$t
	grep -qF -- "${!var}" "$CLUSTER_LOG" && leaks+=" $t (server log)"
	grep -qF -- "${!var}" "$log" && leaks+=" $t (gateway log)"
done
n_auth=$(grep -c 'synclog.authenticate_hash(pg_catalog.decode(\$1' "$CLUSTER_LOG")
n_push=$(grep -c 'synclog.push_hash(' "$CLUSTER_LOG")
n_check=$(grep -cF "${RE_RECHECK#execute <unnamed>: }" "$CLUSTER_LOG")
if [[ -z $leaks ]]; then pass "log: no token's text in the server's nor the gateway's log"; else
	fail "log: no token's text in the server's nor the gateway's log (found:$leaks)"
fi
if ((n_auth > 0 && n_push > 0 && n_check > 0)); then
	pass "log: the server log holds the gateway's statements (authenticate_hash $n_auth, push_hash $n_push, revocation check $n_check lines)"
else
	tail -n 20 "$CLUSTER_LOG" | cut -c1-300
	fail "log: the server log holds the gateway's statements (authenticate_hash $n_auth, push_hash $n_push, revocation check $n_check lines)"
fi

# --- pending ----------------------------------------------------------------------------
"$hostile" pending 127.0.0.1 "$port" 40 "$tmp/pending.release" 300 >"$tmp/pending.out" 2>&1 &
pend_pid=$!
bg_pids+=("$pend_pid")
wait_grep 120 "$tmp/pending.out" '^HOLDING' || { cat "$tmp/pending.out"; fail "pending: the 40 handshakes were made"; }
read -r _ acc _ ref _ oth < <(grep '^ACCEPTED' "$tmp/pending.out")
if [[ ${acc:-} == 16 && ${ref:-} == 24 && ${oth:-} == 0 ]]; then
	pass "pending: 40 handshakes from 127.0.0.1 without hello → 16 accepted, 24 refused with HTTP 503"
else
	fail "pending: 40 handshakes from 127.0.0.1 without hello → 16 accepted, 24 refused with HTTP 503 (accepted ${acc:-?}, 503 ${ref:-?}, other ${oth:-?})"
fi
{
	hello "$tok_a" c-other '["t1"]'
	echo "recv 10"
} | timeout -k 5 30 "$client" --bind 127.0.0.2 127.0.0.1 "$port" >"$tmp/other.out" 2>&1
if grep -q '"type":"welcome"' "$tmp/other.out"; then pass "pending: meanwhile a client from 127.0.0.2 gets welcome"; else
	cut -c1-300 "$tmp/other.out"
	fail "pending: meanwhile a client from 127.0.0.2 gets welcome"
fi
{
	hello "$tok_a" c-same '["t1"]'
	echo "recv 10"
} | timeout -k 5 30 "$client" 127.0.0.1 "$port" >"$tmp/same.out" 2>&1
if grep -q '^ERROR handshake refused: HTTP/1.[01] 503' "$tmp/same.out"; then
	pass "pending: meanwhile another client from 127.0.0.1 is refused with HTTP 503"
else
	cut -c1-300 "$tmp/same.out"
	fail "pending: meanwhile another client from 127.0.0.1 is refused with HTTP 503"
fi
n_lines=$(grep -c 'peer=127.0.0.1: handshake refused (503): .*(--max-pending-per-peer 16)' "$log")
if ((n_lines >= 1 && n_lines < 25)); then
	pass "pending: the refusals are logged with the address and the limit, in fewer lines than refusals ($n_lines lines for 25)"
else
	grep 'handshake refused' "$log" | head -5
	fail "pending: the refusals are logged with the address and the limit, in fewer lines than refusals ($n_lines lines for 25)"
fi
touch "$tmp/pending.release"
wait_grep 30 "$tmp/pending.out" '^RELEASED' || fail "pending: the held connections were released"
ok=0
for ((i = 0; i < 40 && !ok; i++)); do
	{
		hello "$tok_a" c-again '["t1"]'
		echo "recv 10"
	} | timeout -k 5 30 "$client" 127.0.0.1 "$port" >"$tmp/again.out" 2>&1
	grep -q '"type":"welcome"' "$tmp/again.out" && ok=1 || sleep 0.5
done
if ((ok)); then pass "pending: once they close, a client from 127.0.0.1 gets welcome again"; else
	cut -c1-300 "$tmp/again.out"
	fail "pending: once they close, a client from 127.0.0.1 gets welcome again"
fi

# --- the end ----------------------------------------------------------------------------
touch "$tmp/sub.stop"
kill_bg
gateway_stop
grep -E '^synclog-gateway: notifications:' "$log"
if sanitizer_clean "$log" "$tmp"/*.err; then pass "ASan/UBSan report nothing"; else
	grep -E "$SANITIZER_RE" -A 20 "$log" "$tmp"/*.err | head -40
	fail "ASan/UBSan report nothing"
fi
exit "$failed"
