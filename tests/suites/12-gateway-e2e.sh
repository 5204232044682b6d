#!/usr/bin/env bash
# tests/suites/12-gateway-e2e.sh: synclog-gateway end to end, over real
# WebSockets on loopback, against the shared cluster.
#
# Builds the sanitized gateway (build/gateway/synclog-gateway-asan, ASan and
# UBSan) and the test client (tests/gateway/test_client.c, a hand-written RFC
# 6455 client that does not use libwebsockets), creates a fresh database
# gwe2e_<pid> with the synclog extension, a tracked table `issues` (group
# column `team`, a CHECK constraint on `prio`) and tokens, starts the gateway
# on a free loopback port and checks, one PASS/FAIL line each:
#   - the gateway exits 1 with a message for an unreachable --db, and for a
#     --listen address already in use;
#   - hello → welcome with the intersection of asked and granted groups and
#     the tracked tables; an unknown or revoked token → error unauthorized and
#     the connection closed;
#   - push → ack with one acked op and one rejected op (constraint_violation,
#     from the extension), the row in the table;
#   - a frame before hello → hello_required, the connection stays open;
#     garbage → bad_frame, and the gateway still serves another client; a
#     client that keeps sending garbage is closed;
#     ping → pong; a fragmented message is reassembled; an oversized frame →
#     too_large and the connection stays open;
#   - live changes: a change pushed by client A reaches B (same group) and not
#     C (another group); reconnecting with a cursor gets only later changes;
#     cursor 0 gets a snapshot;
#   - the database connection killed under the gateway: it reconnects and
#     serves again;
#   - SIGTERM → exit status 0, and nothing from the sanitizers on its stderr
#     (detect_leaks=1).
# Every wait is bounded; the gateway is killed and the database dropped on
# every exit (trap), also on failure.

set -uo pipefail

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
gw="$REPO/build/gateway/synclog-gateway-asan"
client="$REPO/build/gateway/test_client"
db="gwe2e_$$"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/synclog-gwe2e.XXXXXX")
created=0
gw_pid=""
failed=0

cleanup() {
	if [[ -n $gw_pid ]]; then
		kill -KILL "$gw_pid" 2>/dev/null
		wait "$gw_pid" 2>/dev/null
	fi
	if ((created)); then
		psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 ||
			echo "warning: could not drop database $db"
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

pass() { echo "PASS: gateway-e2e: $1"; }
fail() {
	echo "FAIL: gateway-e2e: $1"
	failed=1
}
# check NAME FILE PATTERN...: PASS when every extended regex is in FILE.
check() {
	local name=$1 file=$2
	shift 2
	local p
	for p in "$@"; do
		if ! grep -qE -- "$p" "$file"; then
			echo "--- $name: no match for: $p; client output:"
			cut -c1-400 "$file"
			echo "---"
			fail "$name"
			return 1
		fi
	done
	pass "$name"
}

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:fast_unwind_on_malloc=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

if ! make --no-print-directory -C "$REPO/gateway" gateway-asan test-client-bin >"$tmp/build.log" 2>&1; then
	cat "$tmp/build.log"
	echo "FAIL: gateway-e2e: build (make -C gateway gateway-asan test-client-bin, output above)"
	exit 1
fi

created=1
if ! psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $db" >"$tmp/setup.log" 2>&1 ||
	! psql -X -q -v ON_ERROR_STOP=1 -d "$db" >>"$tmp/setup.log" 2>&1 <<'SQL'; then
CREATE EXTENSION synclog;
CREATE TABLE issues (id text PRIMARY KEY, team text NOT NULL, title text,
                     prio int CHECK (prio >= 0));
SELECT synclog.track('issues', 'team');
SQL
	cat "$tmp/setup.log"
	echo "FAIL: gateway-e2e: setup (database $db with the synclog extension, output above)"
	exit 1
fi
token() { psql -X -qAt -v ON_ERROR_STOP=1 -d "$db" -c "SELECT synclog.create_token('$1', ARRAY[$2])"; }
tok_alice=$(token alice "'t1','t2'") && tok_bob=$(token bob "'t1'") && tok_carol=$(token carol "'t2'") &&
	tok_revoked=$(token mallory "'t1'") &&
	psql -X -q -v ON_ERROR_STOP=1 -d "$db" -c "SELECT synclog.revoke_token('$tok_revoked')" >/dev/null ||
	{
		echo "FAIL: gateway-e2e: setup (tokens)"
		exit 1
	}

# A free loopback port: nothing answers on it.
free_port() {
	local lo=32768 p i
	# Below the kernel's ephemeral ports: one of those may be the local end
	# of an outgoing connection, which a listener cannot bind.
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null
	((lo > 21000)) || lo=60000
	for i in $(seq 1 100); do
		p=$((20000 + RANDOM % (lo - 20000)))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}
port=$(free_port) || {
	echo "FAIL: gateway-e2e: no free port"
	exit 1
}
conninfo="host=${PGHOST:-127.0.0.1} port=${PGPORT:-5432} user=${PGUSER:-postgres} dbname=$db"

# --- start-up failures -------------------------------------------------------
timeout -k 5 30 "$gw" --listen "127.0.0.1:$port" \
	--db "host=127.0.0.1 port=1 dbname=nowhere connect_timeout=2" >/dev/null 2>"$tmp/nodb.err"
st=$?
if ((st == 1)) && grep -q "cannot reach the database" "$tmp/nodb.err"; then
	pass "unreachable --db: exit 1 with a message"
else
	cat "$tmp/nodb.err"
	fail "unreachable --db: exit 1 with a message (status $st)"
fi
timeout -k 5 30 "$gw" --listen "127.0.0.1:${PGPORT:-5432}" --db "$conninfo" >/dev/null 2>"$tmp/inuse.err"
st=$?
if ((st == 1)) && grep -q "cannot listen" "$tmp/inuse.err"; then
	pass "--listen address in use: exit 1 with a message"
else
	cat "$tmp/inuse.err"
	fail "--listen address in use: exit 1 with a message (status $st)"
fi

# --- the gateway -------------------------------------------------------------
"$gw" --listen "127.0.0.1:$port" --db "$conninfo" 2>"$tmp/gw.err" &
gw_pid=$!
up=0
for _ in $(seq 1 100); do
	if grep -q "database connected" "$tmp/gw.err" 2>/dev/null &&
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		up=1
		break
	fi
	kill -0 "$gw_pid" 2>/dev/null || break
	sleep 0.1
done
if ((!up)); then
	cat "$tmp/gw.err"
	echo "FAIL: gateway-e2e: gateway started (listening and connected within 10 s)"
	exit 1
fi

# run NAME: the test client with the script on stdin, output in $tmp/NAME.out
run() { timeout -k 5 60 "$client" 127.0.0.1 "$port" >"$tmp/$1.out" 2>"$tmp/$1.err"; }
hello() { # TOKEN CLIENT_ID GROUPS CURSOR
	printf 'send {"type":"hello","client_id":"%s","token":"%s","groups":%s,"cursor":%s,"hlc":"0000000000000001"}\n' \
		"$2" "$1" "$3" "$4"
}
op() { # ID ROW TEAM FIELDS_EXTRA
	printf '{"id":"%s","table":"issues","row":"%s","kind":"upsert","fields":{"team":"%s"%s},"hlc":"0000000000000002"}' \
		"$1" "$2" "$3" "$4"
}

{
	hello "$tok_alice" c-alice '["t1","t9"]' 0
	echo "recv 5"
	echo "drain 1"
} | run welcome
check "hello → welcome with the intersection of groups, tables present" "$tmp/welcome.out" \
	'^RECV \{"type":"welcome","cursor":[0-9]+,"hlc":"[0-9a-f]{16}","groups":\["t1"\],"tables":\{"issues":\{"pk":"id","group":"team"'

{
	hello "not-a-token" c-bad '["t1"]' 0
	echo "expectclose 5"
} | run badtoken
check "unknown token → error unauthorized, connection closed" "$tmp/badtoken.out" \
	'"code":"unauthorized"' '^CLOSED'
{
	hello "$tok_revoked" c-revoked '["t1"]' 0
	echo "expectclose 5"
} | run revoked
check "revoked token → error unauthorized, connection closed" "$tmp/revoked.out" \
	'"code":"unauthorized"' '^CLOSED'

ops="[$(op 10000000-0000-0000-0000-000000000001 r1 t1 ',"title":"first","prio":1'),$(op 10000000-0000-0000-0000-000000000002 r2 t1 ',"prio":-1')]"
{
	hello "$tok_alice" c-alice '["t1","t2"]' 0
	echo "recv 5"
	echo "send {\"type\":\"push\",\"ops\":$ops}"
	echo "drain 2"
} | run push
check "push → ack with one acked op and one rejected op (constraint_violation)" "$tmp/push.out" \
	'"type":"ack","acked":\["10000000-0000-0000-0000-000000000001"\],"rejected":\[\{"id":"10000000-0000-0000-0000-000000000002","code":"constraint_violation"'
if [[ $(psql -X -qAt -d "$db" -c "SELECT title || '/' || prio FROM issues WHERE id = 'r1'") == "first/1" ]] &&
	[[ $(psql -X -qAt -d "$db" -c "SELECT count(*) FROM issues WHERE id = 'r2'") == 0 ]]; then
	pass "pushed row in the table, rejected one not"
else
	fail "pushed row in the table, rejected one not"
fi

{
	echo 'send {"type":"ping"}'
	echo "recv 5"
	hello "$tok_alice" c-early '["t1"]' 0
	echo "recv 5"
} | run early
check "frame before hello → hello_required, connection stays open" "$tmp/early.out" \
	'"code":"hello_required"' '"type":"welcome"'

{
	echo 'send this is not json'
	echo "recv 5"
} | run garbage
{
	hello "$tok_bob" c-second '["t1"]' 0
	echo "recv 5"
} | run second
check "garbage → bad_frame" "$tmp/garbage.out" '"code":"bad_frame"'
{
	for _ in $(seq 1 12); do echo 'send {"no":"type"}'; done
	echo "expectclose 5"
} | run keepsgarbage
check "a client that keeps sending garbage is closed" "$tmp/keepsgarbage.out" '"code":"bad_frame"' '^CLOSED'
check "a second client is still served after garbage" "$tmp/second.out" '"type":"welcome"'

{
	hello "$tok_alice" c-ping '["t1"]' 0
	echo "recv 5"
	echo 'send {"type":"ping"}'
	echo "drain 1"
	echo 'sendfrag 4 {"type":"ping","note":"this message comes in four fragments"}'
	echo "drain 1"
	echo "sendbig 1200000"
	echo "drain 2"
	echo 'send {"type":"ping"}'
	echo "drain 1"
} | run ping
check "ping → pong" "$tmp/ping.out" '^RECV \{"type":"pong","hlc":"[0-9a-f]{16}"\}'
if (($(grep -c '"type":"pong"' "$tmp/ping.out") >= 3)); then
	pass "fragmented message reassembled; connection open after too_large"
else
	cut -c1-300 "$tmp/ping.out"
	fail "fragmented message reassembled; connection open after too_large"
fi
check "oversized frame → too_large" "$tmp/ping.out" '"code":"too_large"'

# --- live changes -------------------------------------------------------------
{
	hello "$tok_bob" c-bob '["t1"]' 0
	echo "drain 4"
} | run live_b &
pb=$!
{
	hello "$tok_carol" c-carol '["t2"]' 0
	echo "drain 4"
} | run live_c &
pc=$!
# wait (bounded) until B and C have their backlog (a snapshot): then they are live
for _ in $(seq 1 100); do
	(($(grep -l '"type":"snapshot"' "$tmp/live_b.out" "$tmp/live_c.out" 2>/dev/null | wc -l) == 2)) && break
	sleep 0.1
done
sleep 0.5
ops="[$(op 20000000-0000-0000-0000-000000000001 fan-t1 t1 ',"title":"for t1"'),$(op 20000000-0000-0000-0000-000000000002 fan-t2 t2 ',"title":"for t2"')]"
{
	hello "$tok_alice" c-alice '["t1","t2"]' 0
	echo "recv 5"
	echo "send {\"type\":\"push\",\"ops\":$ops}"
	echo "drain 2"
} | run live_a
wait "$pb" "$pc"
if grep -qE '"type":"changes".*"row": ?"fan-t1"' "$tmp/live_b.out" && ! grep -qE 'fan-t2' "$tmp/live_b.out" &&
	grep -qE '"type":"changes".*"row": ?"fan-t2"' "$tmp/live_c.out" && ! grep -qE 'fan-t1' "$tmp/live_c.out"; then
	pass "live: A's change reaches B in its group, not C in another group"
else
	echo "--- B:"; cut -c1-400 "$tmp/live_b.out"; echo "--- C:"; cut -c1-400 "$tmp/live_c.out"; echo "---"
	fail "live: A's change reaches B in its group, not C in another group"
fi
if grep -E '"row": ?"fan-t1"' "$tmp/live_b.out" | grep -qE '"group": ?"t1"'; then
	pass "live: a change names its group"
else
	fail "live: a change names its group"
fi
if (($(grep -oE '"row": ?"fan-t1"' "$tmp/live_b.out" | wc -l) == 1)); then
	pass "live: each change sent once"
else
	fail "live: each change sent once"
fi

cur=$(psql -X -qAt -d "$db" -c "SELECT synclog.wait_sequenced()")
{
	hello "$tok_alice" c-alice '["t1"]' 0
	echo "recv 5"
	echo "send {\"type\":\"push\",\"ops\":[$(op 30000000-0000-0000-0000-000000000001 late-1 t1 ',"title":"late"')]}"
	echo "drain 2"
} | run late_a
{
	hello "$tok_bob" c-bob '["t1"]' "$cur"
	echo "drain 2"
} | run resume
if grep -qE '"type":"changes".*"row": ?"late-1"' "$tmp/resume.out" && ! grep -qE 'fan-t1|"row": ?"r1"|"type":"snapshot"' "$tmp/resume.out"; then
	pass "reconnect with a cursor gets only later changes"
else
	echo "cursor was $cur"; cut -c1-400 "$tmp/resume.out"
	fail "reconnect with a cursor gets only later changes"
fi
{
	hello "$tok_bob" c-bob '["t1"]' 0
	echo "drain 2"
} | run snap
check "cursor 0 gets a snapshot of its groups" "$tmp/snap.out" \
	'"type":"snapshot","rows":\[.*"row": ?"fan-t1".*"done":true' '"row": ?"late-1"'
if grep -q 'fan-t2' "$tmp/snap.out"; then fail "snapshot holds only granted groups"; else pass "snapshot holds only granted groups"; fi

# --- database lost under the gateway ------------------------------------------
psql -X -qAt -d postgres -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	WHERE datname = '$db' AND pid <> pg_backend_pid() AND backend_type = 'client backend'" >/dev/null
ok=0
for _ in $(seq 1 20); do
	sleep 0.5
	{
		hello "$tok_bob" c-after '["t1"]' 0
		echo "recv 3"
	} | run after
	if grep -q '"type":"welcome"' "$tmp/after.out"; then
		ok=1
		break
	fi
done
if ((ok)); then pass "database connection lost: the gateway reconnects and serves"; else
	cut -c1-300 "$tmp/after.out"
	fail "database connection lost: the gateway reconnects and serves"
fi

# --- shutdown -----------------------------------------------------------------
kill -TERM "$gw_pid"
st=124
for _ in $(seq 1 100); do
	if ! kill -0 "$gw_pid" 2>/dev/null; then
		wait "$gw_pid"
		st=$?
		break
	fi
	sleep 0.1
done
gw_pid_done=$gw_pid
if ((st == 124)); then
	kill -KILL "$gw_pid" 2>/dev/null
	wait "$gw_pid" 2>/dev/null
fi
gw_pid=""
if ((st == 0)); then pass "SIGTERM → exit status 0"; else fail "SIGTERM → exit status 0 (got $st)"; fi

if grep -qE 'runtime error:|Sanitizer|LeakSanitizer' "$tmp/gw.err" "$tmp/nodb.err" "$tmp/inuse.err" "$tmp"/*.err; then
	echo "--- gateway stderr:"; cat "$tmp/gw.err" "$tmp/nodb.err" "$tmp/inuse.err"; echo "---"
	fail "ASan/UBSan report nothing"
else
	pass "ASan/UBSan report nothing"
fi
for l in connect hello "auth failure" close; do
	if ! grep -q "$l" "$tmp/gw.err"; then
		fail "one log line per connection event ($l missing)"
		l=""
		break
	fi
done
[[ -n $l ]] && pass "one log line per connection event (connect, hello, auth failure, close)"
: "$gw_pid_done"
exit "$failed"
