#!/usr/bin/env bash
# tests/suites/14-hostile.sh: hostile input against one sanitized gateway, end
# to end over real sockets on loopback, while a well-behaved client stays
# connected throughout (issue 6, the hostile input suite).
#
# One gateway (build/gateway/synclog-gateway-asan) with small limits, so that
# a bound on its memory follows from its configuration:
#   --max-connections 64 --max-frame-bytes 65536 --send-queue-bytes 65536
#   --hello-timeout 3 --db-connections 3
# against a database of its own (hostile_<pid>, dropped on exit): tracked
# tables `issues` (group `team`), `canary` (one row, group atk) and one whose
# name is 63 bytes long (PostgreSQL's limit; a longer name naming it must not
# be truncated onto it).
#
# The well-behaved client W (tests/gateway/test_client.c, group wb) connects
# first and pushes one op at a time, each after the ack of the last plus 20 ms:
# 100 pushes before the barrage, then pushes throughout it, then 50 after it;
# meanwhile SQL writes rows of group wb, so it also receives others' changes.
# The barrage, attack after attack, each refused with its exact code and the
# gateway still serving after it (a ping on the attacking connection or a new
# one answered):
#   1. frames over the limit: 70,000 bytes and, from 4 connections at once,
#      32 MB each → error too_large, the connection open (ping → pong);
#   2. fragments: 10,000 one-byte fragments of a valid ping → pong (reassembled);
#      70,000 one-byte fragments → too_large;
#   3. slowloris: the HTTP upgrade a byte every 200 ms → the connection is
#      closed without an answer within 3 + 3 s (--hello-timeout bounds the
#      upgrade too; lws's timers tick every second, the rest is slack for a
#      loaded machine); 200 connections that send one request line and stop
#      → all closed within 3 + 3 s; an upgrade a byte every 5 ms (about 1 s)
#      is still answered 101; the hello a byte every 200 ms → error
#      hello_required and close 1008 within 3 + 3 s (the hello timeout,
#      swept every second);
#   4. flood: 100 WebSocket handshakes held open → with W connected 60 to 63
#      accepted (W + 63 = --max-connections; an attacker's session just
#      closed may still count for a moment), every other one HTTP 503 (as
#      many 503s in the gateway's log), each accepted one welcomed, the
#      count never past the limit; then each accepted connection holds a
#      60,000-byte message all but complete (the gateway buffers 63 of them at
#      once), completes it and gets its pong;
#   5. hostile identifiers: one push of ops naming tables with quotes,
#      semicolons and SQL, backslashes, non-ASCII, spaces, other case, schema
#      qualification, synclog's own tables, 64 and 10,000 bytes (the first 63
#      of the 64 naming the 63-byte table) → unknown_table each (the empty
#      name → invalid_op); columns the same way plus system columns (xmin,
#      ctid, tableoid) → unknown_column each; nothing acked; "\u0000" in a
#      table, a column or a row and a lone surrogate "\ud800" → error
#      bad_frame (the connection open); afterwards the canary row, the tables
#      and synclog.tracked are unchanged and the op log holds nothing of this
#      client; the same characters in a row id and a value (quotes, a
#      semicolon and SQL, a backslash, ü, an emoji, U+2028, $1, %s) are data:
#      acked, stored and sent back byte for byte;
#   6. deep JSON: 32,000 nested arrays (64 kB) and 60,000 unclosed '[' → error
#      too_large naming the nesting limit, 100,000 nested arrays (200 kB) →
#      too_large (the frame limit), 10,000 nested objects → too_large naming
#      the nesting; the connection open;
#   7. numbers out of range: hello cursor 1e400, 2^53, -1 → bad_frame (then a
#      good hello is welcomed); in ops 1e400, 2^64, -2^63-1 → bad_frame (the
#      frame: no 64-bit integer or double holds them), 1e-20000, 0.(20,000
#      zeros)1 and 0e99999999999 → bad_frame (PostgreSQL's numeric, which
#      the push's jsonb cast uses, cannot hold them: before the fix they
#      reached the client as server_unavailable); 2^31 and 1e308 into an
#      int column → invalid_value, hlc "ffffffffffffffff" → clock_skew, a
#      numeric hlc or id → invalid_op, each per op;
#   7b. hello fields: client_id "server" (reserved for SQL writes), a 65-byte
#      client_id, a 4,097-byte token, a 257-byte group → bad_frame, 258 groups
#      → too_large; a client_id made of SQL is only a name (welcomed); a token
#      made of SQL → unauthorized and close 1008;
#   8. invalid UTF-8 in text frames (an overlong '/', a lone continuation
#      byte, a surrogate, a code point above U+10FFFF, a truncated sequence),
#      each on a connection of its own after its welcome → closed with 1007
#      (RFC 6455 §8.1: libwebsockets validates UTF-8 and fails the
#      connection); a raw NUL byte (valid UTF-8) → bad_frame; a binary frame
#      → bad_frame;
#   8b. garbage: 20 frames of unknown types and 9 bad frames are answered
#      with bad_frame and the connection stays (a ping then gets its pong);
#      10 bad frames in a row → the 10th error says so and close 1008;
#   9. broken WebSocket framing, each on a connection of its own: a reserved
#      opcode, a continuation frame with nothing to continue, a fragmented
#      ping, RSV1 set without an extension → close 1002; a 126-byte ping, a
#      64-bit length with its top bit set → the connection failed (1002 or
#      closed outright), nothing allocated for the announced length.
# Then:
#   - W: every push acked (none refused, none timed out), and every change of
#     group wb after its cursor delivered exactly once, in seq order, up to
#     the last one in synclog.ops;
#   - W's latency (push → ack) before, during and after the barrage is
#     printed as a figure, not asserted (timings on a shared machine are
#     noise as often as signal).  A gateway that blocked on an attacker
#     would still fail the check above: W's pushes time out;
#   - memory: the gateway's VmRSS, sampled every 100 ms throughout the barrage,
#     peaks below  B0 + 1.25 × C × (4F + 2Q + 16 kB) + 24 MB,  where B0 is its
#     VmRSS before the barrage, C = --max-connections, F = --max-frame-bytes,
#     Q = --send-queue-bytes.  Per connection the gateway holds at most: a
#     message being reassembled (≤ 2F: the buffer doubles from 1 kB), pushes
#     waiting for the database (reading stops once they reach F: ≤ 2F of
#     parameter copies), its send queue (reading stops past Q: ≤ 2Q with the
#     frame lws is writing) and lws's own per-connection state (its 2 kB rx
#     buffer, the wsi, the handshake's headers: 16 kB).  1.25 covers ASan's
#     redzones and shadow memory; 24 MB the database connections' buffers
#     and results, fan-out frames and allocator slack.  This gateway runs with
#     ASan's quarantine off (quarantine_size_mb=0, as in 13-gateway-faults.sh),
#     else freed memory would stay resident.  With these limits the bound is
#     B0 + about 56 MB, while the barrage streams 128 MB of oversized frames
#     at once: a gateway that buffered them would exceed it (checked: with
#     the frame limit disabled the peak is B0 + 116 MB).  Connections still
#     in their HTTP upgrade are not sessions and --max-connections does not
#     count them; each costs about 8 kB for at most --hello-timeout (the
#     barrage holds 200 of them, inside the slack);
#   - the gateway never exited, answers a new hello after the barrage, exits
#     0 on SIGTERM and has no ASan/UBSan/LSan report on stderr.
#
# Every wait is bounded; every process started is stopped on every exit
# (tests/lib/suite.sh).  Takes about 20 s.

set -uo pipefail

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=../lib/suite.sh
source "$REPO/tests/lib/suite.sh"
suite_begin hostile hostile

client="$REPO/build/gateway/test_client"
hostile="$REPO/build/gateway/hostile"
DB="hostile_$$"
bg_pids=()
sampler_pid=""

# Stops background clients: they run under timeout(1), which passes SIGTERM on.
stop_bg() {
	local p
	for p in "${bg_pids[@]}" $sampler_pid; do kill -TERM "$p" 2>/dev/null; done
	for p in "${bg_pids[@]}" $sampler_pid; do
		for ((i = 0; i < 20; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		suite_kill "$p"
	done
	bg_pids=()
	sampler_pid=""
}
suite_at_exit stop_bg

now_ms() { date +%s%3N; }
sql() { psql -X -qAt -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
show() {
	echo "--- $(basename "$1"):"
	cut -c1-300 "$1" 2>/dev/null | tail -n 30
	echo "---"
}
# wait_grep SECS FILE ERE [PID]: true once FILE has a line matching ERE; false
# after SECS, or once PID (the process writing FILE) ended without one.
wait_grep() {
	local end=$(($(now_ms) + $1 * 1000))
	while (($(now_ms) < end)); do
		grep -qE -- "$3" "$2" 2>/dev/null && return 0
		[[ -z ${4:-} ]] || kill -0 "$4" 2>/dev/null || break
		sleep 0.05
	done
	grep -qE -- "$3" "$2" 2>/dev/null
}
# check NAME COND_STATUS FILE: PASS, or show FILE and FAIL.
check() {
	if (($2 == 0)); then pass "$1"; else
		[[ -n ${3:-} ]] && show "$3"
		fail "$1"
	fi
}

if ! make --no-print-directory -C "$REPO/gateway" gateway-asan test-client-bin hostile-bin >"$tmp/build.log" 2>&1; then
	cat "$tmp/build.log"
	suite_abort "build (make -C gateway gateway-asan test-client-bin hostile-bin, output above)"
fi

long63=t23456789012345678901234567890123456789012345678901234567890123
suite_create_db "$DB" <<SQL || suite_abort "setup (output above)"
CREATE TABLE issues (id text PRIMARY KEY, team text NOT NULL, title text, prio int);
SELECT synclog.track('issues', 'team');
CREATE TABLE canary (id text PRIMARY KEY, team text NOT NULL, note text);
SELECT synclog.track('canary', 'team');
INSERT INTO canary VALUES ('c1', 'atk', 'the canary');
CREATE TABLE $long63 (id text PRIMARY KEY, team text NOT NULL, c23456789012345678901234567890123456789012345678901234567890123 text);
SELECT synclog.track('$long63', 'team');
SQL
tok_wb=$(sql -c "SELECT synclog.create_token('wb', ARRAY['wb'])") &&
	tok=$(sql -c "SELECT synclog.create_token('atk', ARRAY['atk'])") ||
	suite_abort "setup (tokens)"

# The database's state an attack must not change: the canary, the tracked
# tables, the tables of the schema.
db_state() {
	sql -c "SELECT id, team, note FROM canary ORDER BY id" \
		-c "SELECT name, pk_column, group_column FROM synclog.tracked ORDER BY name" \
		-c "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace ORDER BY relname" \
		-c "SELECT count(*) FROM issues WHERE team <> 'wb'"
}
db_state >"$tmp/state.before"

# --- the gateway ----------------------------------------------------------------
F=65536 Q=65536 C=64
port=""
for ((try = 0; try < 5; try++)); do
	port=$(free_port) || suite_abort "no free port"
	: >"$tmp/gw.err"
	env ASAN_OPTIONS="$ASAN_OPTIONS:quarantine_size_mb=0" "$SUITE_GATEWAY" --listen "127.0.0.1:$port" \
		--db "host=${PGHOST:-127.0.0.1} port=${PGPORT:-5432} user=${PGUSER:-postgres} dbname=$DB" \
		--max-connections $C --max-frame-bytes $F --send-queue-bytes $Q --hello-timeout 3 \
		--db-connections 3 2>>"$tmp/gw.err" &
	gw_pid=$!
	for ((i = 0; i < 100; i++)); do
		(($(grep -c "database connected" "$tmp/gw.err") >= 3)) && port_open "$port" && break 2
		kill -0 "$gw_pid" 2>/dev/null || break
		sleep 0.1
	done
	grep -q "cannot listen" "$tmp/gw.err" || break
	gateway_kill
done
if [[ -z $gw_pid ]] || gateway_dead || ! port_open "$port"; then
	tail -n 20 "$tmp/gw.err"
	suite_abort "gateway started"
fi
rss() { awk '/^VmRSS/ {print $2}' "/proc/$gw_pid/status" 2>/dev/null; }

# hello TOKEN CLIENT_ID GROUP CURSOR: a hello's JSON.
hello() {
	printf '{"type":"hello","client_id":"%s","token":"%s","groups":["%s"],"cursor":%s,"hlc":"0000000000000001"}' \
		"$2" "$1" "$3" "$4"
}
# run NAME: the test client on script $tmp/NAME.in, output $tmp/NAME.out, at most 120 s.
run() {
	timeout -k 5 120 "$client" 127.0.0.1 "$port" <"$tmp/$1.in" >"$tmp/$1.out" 2>"$tmp/$1.err"
}
run_bg() {
	: >"$tmp/$1.out"
	timeout -k 5 120 "$client" 127.0.0.1 "$port" <"$tmp/$1.in" >"$tmp/$1.out" 2>"$tmp/$1.err" &
	last_pid=$!
	bg_pids+=("$last_pid")
}
wait_pid() {
	local end=$(($(now_ms) + $2 * 1000))
	while kill -0 "$1" 2>/dev/null && (($(now_ms) < end)); do sleep 0.05; done
	kill -TERM "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}
# codes FILE: the code of every error frame in FILE, one per line.
codes() { grep -oE '"type":"error","code":"[a-z_]+"' "$1" | sed 's/.*"code":"//; s/"$//'; }
# alive_after NAME: true when the last frame NAME's client read is a pong
# and the connection was not closed (the gateway still serves it).
pong_last() { grep -E '^(RECV|CLOSED)' "$tmp/$1.out" | tail -n 1 | grep -q '"type":"pong"'; }

start=$SECONDS

# --- W, the well-behaved client -------------------------------------------------
c0=$(sql -c "SELECT synclog.wait_sequenced()")
wop='{"type":"push","ops":[{"id":"14000000-0000-4000-8000-{i}","table":"issues","row":"wb-{i}","kind":"upsert","fields":{"team":"wb","title":"push {i}","prio":1},"hlc":"0000000000000002"}]}'
{
	echo "send $(hello "$tok_wb" well-behaved wb "$c0")"
	echo 'await 1 10 "type":"welcome"'
	echo "mark before"
	echo "timedpush 100 20 $wop"
	echo "touch $tmp/w.before"
	echo "mark during"
	echo "timedpushuntil $tmp/barrage.done 20 400 $wop"
	echo "mark after"
	echo "timedpush 50 20 $wop"
	echo "touch $tmp/w.after"
	echo "readuntil $tmp/w.end 60"
} >"$tmp/w.in"
timeout -k 5 600 "$client" 127.0.0.1 "$port" <"$tmp/w.in" >"$tmp/w.out" 2>"$tmp/w.err" &
w_pid=$!
bg_pids+=("$w_pid")
if ! wait_grep 30 "$tmp/w.out" '^MARK during' "$w_pid"; then
	show "$tmp/w.out"
	tail -n 20 "$tmp/gw.err"
	suite_abort "the well-behaved client connects and pushes (output above)"
fi
b0=$(rss)
echo "gateway VmRSS before the barrage: $b0 kB"
(
	while :; do
		awk '/^VmRSS/ {print $2}' "/proc/$gw_pid/status" 2>/dev/null || exit 0
		sleep 0.1
	done
) >"$tmp/rss.log" &
sampler_pid=$!
# Others' changes for W: 20 server writes of group wb spread over the barrage.
(
	for ((i = 1; i <= 20; i++)); do
		[[ -e $tmp/barrage.done ]] && break
		psql -X -q -d "$DB" -c "INSERT INTO issues VALUES ('srv-$i', 'wb', 'server write $i', $i)" >/dev/null 2>&1
		sleep 1
	done
) &
bg_pids+=("$!")
alive() { kill -0 "$gw_pid" 2>/dev/null; }

# --- 1. frames over the limit ------------------------------------------------------
c="frames over the limit:"
{
	echo "send $(hello "$tok" big-0 atk 0)"
	echo 'await 1 10 "type":"welcome"'
	echo "sendbig 70000"
	echo 'await 1 10 "type":"error"'
	echo 'send {"type":"ping"}'
	echo 'await 1 10 "type":"pong"'
} >"$tmp/big0.in"
run big0
[[ $(codes "$tmp/big0.out") == too_large ]] && pong_last big0
check "$c 70,000 bytes → too_large, the connection still served" $? "$tmp/big0.out"
pids=()
for k in 1 2 3 4; do
	{
		echo "send $(hello "$tok" "big-$k" atk 0)"
		echo 'await 1 10 "type":"welcome"'
		echo "sendbig 32000000"
		echo 'await 1 60 "type":"error"'
		echo 'send {"type":"ping"}'
		echo 'await 1 10 "type":"pong"'
	} >"$tmp/big$k.in"
	run_bg "big$k"
	pids+=("$last_pid")
done
for p in "${pids[@]}"; do wait_pid "$p" 90; done
ok=0
for k in 1 2 3 4; do
	[[ $(codes "$tmp/big$k.out") == too_large ]] && pong_last "big$k" || { show "$tmp/big$k.out"; ok=1; }
done
check "$c 4 connections × 32 MB at once → too_large each, the connections still served" $ok

# --- 2. fragments -----------------------------------------------------------------
c="tiny fragments:"
pad() { printf '{"type":"ping","pad":"%s"}' "$(head -c $(($1 - 23)) /dev/zero | tr '\0' x)"; }
{
	echo "send $(hello "$tok" frag atk 0)"
	echo 'await 1 10 "type":"welcome"'
	echo "sendfrag 10000 $(pad 10000)"
	echo 'await 1 30 "type":"pong"'
	echo "sendfrag 70000 $(pad 70000)"
	echo 'await 1 60 "type":"error"'
	echo 'send {"type":"ping"}'
	echo 'await 1 10 "type":"pong"'
} >"$tmp/frag.in"
t0=$(now_ms)
run frag
echo "fragments: $(($(now_ms) - t0)) ms for 80,000 fragments"
pongs=$(grep -c '"type":"pong"' "$tmp/frag.out")
[[ $(codes "$tmp/frag.out") == too_large ]] && ((pongs == 2)) && pong_last frag
check "$c 10,000 one-byte fragments reassembled (pong), 70,000 → too_large, still served" $? "$tmp/frag.out"

# --- 3. slowloris -------------------------------------------------------------------
c="slowloris:"
timeout -k 5 60 "$hostile" slowhttp 127.0.0.1 "$port" 200 30 >"$tmp/slowhttp.out" 2>&1 &
slowhttp_pid=$!
bg_pids+=("$slowhttp_pid")
timeout -k 5 60 "$hostile" halfopen 127.0.0.1 "$port" 200 30 >"$tmp/halfopen.out" 2>&1 &
halfopen_pid=$!
bg_pids+=("$halfopen_pid")
# Not every slow client is an attacker: an upgrade a byte every 5 ms (about
# 1 s in all, a third of the hello timeout) is answered.
timeout -k 5 60 "$hostile" slowhttp 127.0.0.1 "$port" 5 30 >"$tmp/slowok.out" 2>&1 &
slowok_pid=$!
bg_pids+=("$slowok_pid")
{
	echo "sendslow 200 $(hello "$tok" slow-hello atk 0)"
	echo "expectclose 10"
} >"$tmp/slowhello.in"
t0=$(now_ms)
run slowhello
dt=$(($(now_ms) - t0))
grep -q '"code":"hello_required"' "$tmp/slowhello.out" && grep -q '^CLOSED 1008' "$tmp/slowhello.out" &&
	grep -q '^SLOWSTOP' "$tmp/slowhello.out" && ((dt <= 6000))
check "$c a hello a byte every 200 ms → hello_required, closed 1008 (after $dt ms; --hello-timeout 3)" $? "$tmp/slowhello.out"

# --- 4. flood ---------------------------------------------------------------------------
c="flood beyond --max-connections $C:"
# The slow hello's session must be gone before counting.
for ((i = 0; i < 50; i++)); do grep -q 'client_id=- .*close\|slow-hello.*close' "$tmp/gw.err" && break; sleep 0.1; done
sleep 0.5
timeout -k 5 120 "$hostile" flood 127.0.0.1 "$port" 100 "$tok" atk 60000 "$tmp/flood.release" 60 >"$tmp/flood.out" 2>&1 &
flood_pid=$!
bg_pids+=("$flood_pid")
if wait_grep 60 "$tmp/flood.out" '^HOLDING' "$flood_pid"; then
	sleep 2
	rss_hold=$(rss)
	echo "gateway VmRSS with the flood's messages held: $rss_hold kB"
fi
touch "$tmp/flood.release"
wait_pid "$flood_pid" 60
read -r _ acc _ ref _ oth _ wel _ pon < <(grep '^ACCEPTED' "$tmp/flood.out")
refused_log=$(grep -c 'handshake refused (503)' "$tmp/gw.err")
echo "flood: accepted ${acc:-?}, 503 ${ref:-?} (gateway log: $refused_log), other ${oth:-?}, welcomed ${wel:-?}, pongs ${pon:-?}"
[[ -n ${acc:-} ]] && ((acc <= C - 1 && acc >= C - 4 && ref == 100 - acc && oth == 0 && refused_log == ref))
check "$c at most $((C - 1)) accepted beside W, every other handshake HTTP 503" $? "$tmp/flood.out"
[[ -n ${acc:-} ]] && ((wel == acc && pon == acc))
check "$c each accepted connection welcomed; 60,000-byte messages held on all at once, then answered" $? "$tmp/flood.out"

# --- 5. hostile identifiers -----------------------------------------------------------
c="hostile identifiers:"
ten_k=$(head -c 10000 /dev/zero | tr '\0' t)
# name_op N TABLE FIELDS: an op (id ...-5000000000NN) of the attacker's group.
name_op() {
	printf '{"id":"14000000-0000-4000-8000-5000000000%02d","table":"%s","row":"atk-%d","kind":"upsert","fields":{"team":"atk"%s},"hlc":"0000000000000002"}' \
		"$1" "$2" "$1" "$3"
}
tables=('iss\"ues' 'issues\"; DROP TABLE canary; --' "issues'; DELETE FROM canary; --" 'issues\\' 'issues;'
	'\u00efssues' 'ïssues' 'issues ' ' issues' 'ISSUES' 'Issues' 'public.issues' '\"issues\"' 'synclog.ops'
	'ops' 'tracked' 'pg_class' 'canary\"' "${long63}x" "$ten_k" '*' '%' 'issues\n' '')
columns=('title\"' 'title; DROP TABLE canary' 'ti\\tle' 't\u00eftle' 'TITLE' ' title' 'title '
	'xmin' 'ctid' 'tableoid' 'cmax' '\"title\"' "c23456789012345678901234567890123456789012345678901234567890123x"
	"$ten_k" 'title\t' '1')
{
	n=0
	ops=""
	for t in "${tables[@]}"; do
		ops+="${ops:+,}$(name_op $n "$t" ',"note":"x"')"
		# An empty name is no name at all: a malformed op (PROTOCOL.md).
		[[ -n $t ]] && echo "$n unknown_table" >>"$tmp/names.expected" || echo "$n invalid_op" >>"$tmp/names.expected"
		n=$((n + 1))
	done
	for col in "${columns[@]}"; do
		tbl=issues
		[[ $col == c2345* ]] && tbl=$long63
		ops+=",$(name_op $n "$tbl" ",\"$col\":\"x\"")"
		echo "$n unknown_column" >>"$tmp/names.expected"
		n=$((n + 1))
	done
	echo "send $(hello "$tok" atk-names atk 0)"
	echo 'await 1 10 "type":"welcome"'
	echo "send {\"type\":\"push\",\"ops\":[$ops]}"
	echo 'await 1 20 "type":"ack"'
	echo "send {\"type\":\"push\",\"ops\":[$(name_op 90 'issues\u0000' '')]}"
	echo 'await 1 10 "type":"error"'
	echo "send {\"type\":\"push\",\"ops\":[$(name_op 91 issues ',"title\u0000x":"x"')]}"
	echo 'await 1 10 "type":"error"'
	echo "send {\"type\":\"push\",\"ops\":[{\"id\":\"14000000-0000-4000-8000-500000000092\",\"table\":\"issues\",\"row\":\"r\\u0000\",\"kind\":\"upsert\",\"fields\":{\"team\":\"atk\"},\"hlc\":\"0000000000000002\"}]}"
	echo 'await 1 10 "type":"error"'
	echo "send {\"type\":\"push\",\"ops\":[$(name_op 93 'issues\ud800' '')]}"
	echo 'await 1 10 "type":"error"'
	echo 'send {"type":"ping"}'
	echo 'await 1 10 "type":"pong"'
} >"$tmp/names.in"
nnames=$n
run names
ack=$(grep -m 1 '"type":"ack"' "$tmp/names.out" | sed 's/^RECV //')
# rejected ids → "N code", sorted by N
printf '%s' "$ack" | grep -oE '"id":"14000000-0000-4000-8000-5000000000[0-9]{2}","code":"[a-z_]+"' |
	sed -E 's/.*-5000000000([0-9]{2})","code":"([a-z_]+)"/\1 \2/; s/^0//' | sort -n >"$tmp/names.got"
if [[ -n $ack ]] && printf '%s' "$ack" | grep -q '"acked":\[\]' && cmp -s "$tmp/names.got" "$tmp/names.expected"; then
	pass "$c $nnames ops naming hostile tables and columns → unknown_table / unknown_column each, none acked"
else
	echo "ack: $(printf '%s' "$ack" | cut -c1-400)"
	echo "(< got, > expected):"
	diff "$tmp/names.got" "$tmp/names.expected" | head -n 20
	fail "$c $nnames ops naming hostile tables and columns → unknown_table / unknown_column each, none acked"
fi
[[ $(codes "$tmp/names.out" | tr '\n' ' ') == "bad_frame bad_frame bad_frame bad_frame " ]] && pong_last names
check "$c \\u0000 in a table, a column, a row and a lone surrogate → bad_frame each, still served" $? "$tmp/names.out"
db_state >"$tmp/state.after"
nlog=$(sql -c "SELECT count(*) FROM synclog.ops WHERE client_id = 'atk-names'")
if cmp -s "$tmp/state.before" "$tmp/state.after" && [[ $nlog == 0 ]]; then
	pass "$c the canary, the tables and synclog.tracked unchanged; nothing of this client in the op log"
else
	diff "$tmp/state.before" "$tmp/state.after" | head -n 20
	echo "ops logged for client atk-names: $nlog"
	fail "$c the canary, the tables and synclog.tracked unchanged; nothing of this client in the op log"
fi

# The same characters in values are data: stored and sent back byte for byte.
vrow="x'; DROP TABLE canary; --"
{
	echo "send $(hello "$tok" atk-values atk 0)"
	echo 'await 1 10 "type":"welcome"'
	echo "send {\"type\":\"push\",\"ops\":[{\"id\":\"14000000-0000-4000-8000-600000000001\",\"table\":\"issues\",\"row\":\"$vrow\",\"kind\":\"upsert\",\"fields\":{\"team\":\"atk\",\"title\":\"Robert'); DROP TABLE canary;-- \\\\ \\\" \\u00fc \\ud83d\\ude00 \\u2028 \$1 %s\",\"prio\":7},\"hlc\":\"0000000000000002\"}]}"
	echo 'await 1 10 "type":"ack"'
	echo 'await 1 10 "type":"changes"'
} >"$tmp/values.in"
run values
# Robert'); DROP TABLE canary;-- \ " ü 😀 U+2028 $1 %s, as UTF-8 bytes
want=$(printf 'Robert%s); DROP TABLE canary;-- \\ " \303\274 \360\237\230\200 \342\200\250 $1 %%s' "'" | od -An -tx1 | tr -d ' \n')
got=$(sql -v row="$vrow" <<<"SELECT encode(convert_to(title, 'UTF8'), 'hex') FROM issues WHERE id = :'row'")
db_state >"$tmp/state.values"
grep -q '"acked":\["14000000-0000-4000-8000-600000000001"\]' "$tmp/values.out" && [[ -n $got && $got == "$want" ]] &&
	grep -q 'DROP TABLE canary;-- \\\\ \\" ü 😀' "$tmp/values.out" &&
	[[ $(sed -n 1p "$tmp/state.values") == "$(sed -n 1p "$tmp/state.before")" ]] && diff <(sed '$d' "$tmp/state.values") <(sed '$d' "$tmp/state.before") >/dev/null
if (($? == 0)); then
	pass "$c the same characters in a row id and a value are data: acked, stored and sent back byte for byte, the canary intact"
else
	echo "stored title (hex): ${got:-none}; expected: $want"
	show "$tmp/values.out"
	fail "$c the same characters in a row id and a value are data: acked, stored and sent back byte for byte, the canary intact"
fi

# --- 6. deep JSON -----------------------------------------------------------------------
c="deep JSON:"
{
	echo "send $(hello "$tok" deep atk 0)"
	echo 'await 1 10 "type":"welcome"'
	echo "sendnest 32000"
	echo 'await 1 10 "type":"error"'
	echo "send {\"type\":\"push\",\"ops\":$(head -c 60000 /dev/zero | tr '\0' '[')"
	echo 'await 1 10 "type":"error"'
	echo "sendnest 100000"
	echo 'await 1 10 "type":"error"'
	echo "send {\"type\":\"push\",\"ops\":[$(for ((i = 0; i < 1000; i++)); do printf '{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":'; done)1$(head -c 10000 /dev/zero | tr '\0' '}')]}"
	echo 'await 1 10 "type":"error"'
	echo 'send {"type":"ping"}'
	echo 'await 1 10 "type":"pong"'
} >"$tmp/deep.in"
run deep
[[ $(codes "$tmp/deep.out" | tr '\n' ' ') == "too_large too_large too_large too_large " ]] &&
	(($(grep '"type":"error"' "$tmp/deep.out" | grep -c 'nests JSON deeper') == 3)) && pong_last deep
check "$c 32,000 and 60,000 unclosed arrays, 10,000 objects → too_large (nesting), 100,000 (200 kB) → too_large, still served" $? "$tmp/deep.out"

# --- 7. numbers out of range -------------------------------------------------------------
c="numbers out of range:"
num_op() {
	printf '{"id":%s,"table":"issues","row":"num-%s","kind":"upsert","fields":{"team":"atk","prio":%s},"hlc":%s}' \
		"\"14000000-0000-4000-8000-7000000000$1\"" "$1" "$2" "${3:-\"0000000000000002\"}"
}
{
	for cur in 1e400 9007199254740992 -1; do
		echo "send $(hello "$tok" nums atk "$cur")"
		echo 'await 1 10 "type":"error"'
	done
	echo "send $(hello "$tok" nums atk 0)"
	echo 'await 1 10 "type":"welcome"'
	for v in 1e400 18446744073709551616 -9223372036854775809 1e-20000 "0.$(head -c 20000 /dev/zero | tr '\0' 0)1" 0e99999999999; do
		echo "send {\"type\":\"push\",\"ops\":[$(num_op 01 "$v")]}"
		echo 'await 1 10 "type":"error"'
	done
	echo "send {\"type\":\"push\",\"ops\":[$(num_op 11 2147483648),$(num_op 12 1e308),$(num_op 13 1 '"ffffffffffffffff"'),$(num_op 14 1 123),{\"id\":123456789012345678,\"table\":\"issues\",\"row\":\"num-15\",\"kind\":\"upsert\",\"fields\":{\"team\":\"atk\"},\"hlc\":\"0000000000000002\"}]}"
	echo 'await 1 10 "type":"ack"'
	echo 'send {"type":"ping"}'
	echo 'await 1 10 "type":"pong"'
} >"$tmp/nums.in"
run nums
# The frames' error messages, in order: 3 hellos, then 6 pushes.
grep -oE '"type":"error","code":"[a-z_]+","message":"[^"]*' "$tmp/nums.out" | sed 's/.*"code":"//' >"$tmp/nums.errors"
[[ $(cut -d'"' -f1 "$tmp/nums.errors" | tr '\n' ' ') == "bad_frame bad_frame bad_frame bad_frame bad_frame bad_frame bad_frame bad_frame bad_frame " ]] &&
	(($(grep -c 'outside the range of a 64-bit integer or a double' "$tmp/nums.errors") == 4)) &&
	(($(grep -c 'PostgreSQL cannot hold' "$tmp/nums.errors") == 3)) && grep -q '"type":"welcome"' "$tmp/nums.out"
check "$c hello cursor 1e400, 2^53, -1; op values 1e400, 2^64, -2^63-1 (no double or int64) and 1e-20000, 0.(20,000 digits)1, 0e99999999999 (no PostgreSQL numeric) → bad_frame each" $? "$tmp/nums.out"
ack=$(grep -m 1 '"type":"ack"' "$tmp/nums.out")
ok=0
for want in '"id":"14000000-0000-4000-8000-700000000011","code":"invalid_value"' \
	'"id":"14000000-0000-4000-8000-700000000012","code":"invalid_value"' \
	'"id":"14000000-0000-4000-8000-700000000013","code":"clock_skew"' \
	'"id":"14000000-0000-4000-8000-700000000014","code":"invalid_op"' '"code":"invalid_op"'; do
	[[ $ack == *"$want"* ]] || { echo "missing in the ack: $want"; ok=1; }
done
[[ $ack == *'"acked":[]'* ]] && (($(grep -o '"code":' <<<"$ack" | wc -l) == 5)) && pong_last nums || ok=1
check "$c 2^31 and 1e308 into int → invalid_value, hlc ffff… → clock_skew, numeric hlc and id → invalid_op; none acked" $ok "$tmp/nums.out"

# --- 7b. hello fields out of bounds ------------------------------------------------------------
c="hello fields:"
{
	echo "send $(hello "$tok" server atk 0)"
	echo 'await 1 10 "type":"error"'
	echo "send $(hello "$tok" "$(head -c 65 /dev/zero | tr '\0' c)" atk 0)"
	echo 'await 1 10 "type":"error"'
	echo "send $(hello "$(head -c 4097 /dev/zero | tr '\0' t)" fields atk 0)"
	echo 'await 1 10 "type":"error"'
	echo "send $(hello "$tok" fields "$(head -c 257 /dev/zero | tr '\0' g)" 0)"
	echo 'await 1 10 "type":"error"'
	echo "send {\"type\":\"hello\",\"client_id\":\"fields\",\"token\":\"$tok\",\"groups\":[$(for ((i = 0; i < 257; i++)); do printf '"g%d",' $i; done)\"last\"],\"cursor\":0,\"hlc\":\"0000000000000001\"}"
	echo 'await 1 10 "type":"error"'
	echo "send $(hello "$tok" "c'; DROP TABLE canary; --" atk 0)"
	echo 'await 1 10 "type":"welcome"'
	echo 'send {"type":"ping"}'
	echo 'await 1 10 "type":"pong"'
} >"$tmp/fields.in"
run fields
[[ $(codes "$tmp/fields.out" | tr '\n' ' ') == "bad_frame bad_frame bad_frame bad_frame too_large " ]] &&
	grep -q '"client_id\\" \\"server\\" is reserved' "$tmp/fields.out" && pong_last fields
check "$c client_id \"server\" (reserved) and of 65 bytes, a 4,097-byte token, a 257-byte group → bad_frame; 258 groups → too_large; a client_id of SQL is only a name (welcome)" $? "$tmp/fields.out"
{
	echo "send $(hello "slt_' OR '1'='1" hostile-token atk 0)"
	echo "expectclose 10"
} >"$tmp/badtok.in"
run badtok
grep -q '"code":"unauthorized"' "$tmp/badtok.out" && grep -q '^CLOSED 1008' "$tmp/badtok.out"
check "$c a token of SQL → unauthorized, closed 1008" $? "$tmp/badtok.out"

# --- 8. invalid UTF-8 ----------------------------------------------------------------------
c="invalid UTF-8:"
ok=0
k=0
# {"type":"ping","x":"<bytes>"}
for bytes in c0af 80 eda080 f4908080 e282; do
	k=$((k + 1))
	{
		echo "send $(hello "$tok" "utf8-$k" atk 0)"
		echo 'await 1 10 "type":"welcome"'
		echo "sendhex 7b2274797065223a2270696e67222c2278223a22${bytes}227d"
		echo "expectclose 10"
	} >"$tmp/utf8-$k.in"
	run "utf8-$k"
	grep -q '^CLOSED 1007' "$tmp/utf8-$k.out" && ! grep -q '"type":"pong"' "$tmp/utf8-$k.out" ||
		{ show "$tmp/utf8-$k.out"; ok=1; }
done
check "$c overlong, lone continuation, surrogate, above U+10FFFF, truncated → closed 1007 each" $ok
{
	echo "send $(hello "$tok" nul-byte atk 0)"
	echo 'await 1 10 "type":"welcome"'
	echo "sendhex 7b2274797065223a2270696e67222c2278223a220061227d"
	echo 'await 1 10 "type":"error"'
	echo 'sendbin {"type":"ping"}'
	echo 'await 1 10 "type":"error"'
	echo 'send {"type":"ping"}'
	echo 'await 1 10 "type":"pong"'
} >"$tmp/nul.in"
run nul
[[ $(codes "$tmp/nul.out" | tr '\n' ' ') == "bad_frame bad_frame " ]] && pong_last nul
check "$c a raw NUL byte and a binary frame → bad_frame each, still served" $? "$tmp/nul.out"

# --- 8b. garbage in a row --------------------------------------------------------------------------
c="garbage:"
{
	echo "send $(hello "$tok" garbage atk 0)"
	echo 'await 1 10 "type":"welcome"'
	for ((i = 0; i < 20; i++)); do echo 'send {"type":"x-unknown"}'; done
	echo 'await 20 10 "type":"error"'
	for ((i = 0; i < 9; i++)); do echo 'send not json'; done
	echo 'await 9 10 "type":"error"'
	echo 'send {"type":"ping"}'
	echo 'await 1 10 "type":"pong"'
	for ((i = 0; i < 10; i++)); do echo 'send {"type":'; done
	echo 'expectclose 10'
} >"$tmp/garbage.in"
run garbage
# Before the pong: 29 errors.  After it the errors of the last 10 frames may
# be cut short: the closing error drops what is still queued (session.c), so
# it is the last frame the client gets.
[[ $(sed '/"type":"pong"/q' "$tmp/garbage.out" | codes /dev/stdin | sort | uniq -c | tr -s ' ' | tr '\n' ' ') == " 29 bad_frame " ]] &&
	(($(grep -c '"type":"pong"' "$tmp/garbage.out") == 1)) &&
	grep -E '^RECV' "$tmp/garbage.out" | tail -n 1 | grep -q 'closing the connection after 10 bad frames' &&
	grep -q '^CLOSED 1008' "$tmp/garbage.out"
check "$c 20 unknown types and 9 bad frames answered, the connection kept (pong); 10 bad frames in a row → closed 1008" $? "$tmp/garbage.out"

# --- 9. broken WebSocket framing -----------------------------------------------------------------
c="broken framing:"
ok=0
k=0
z126=$(printf '%0252d' 0)
# A reserved opcode, a continuation with nothing to continue, a fragmented
# ping, RSV1 without an extension → 1002; a 126-byte ping and a length with
# its top bit set → the connection failed (1002, or closed outright).
for raw in 838000000000 808000000000 098000000000 c18000000000 "89fe007e00000000$z126" 81ff800000000000000000000000; do
	k=$((k + 1))
	{
		echo "send $(hello "$tok" "frame-$k" atk 0)"
		echo 'await 1 10 "type":"welcome"'
		echo "sendraw $raw"
		echo "expectclose 10"
	} >"$tmp/frame-$k.in"
	run "frame-$k"
	if ((k <= 4)); then
		grep -q '^CLOSED 1002' "$tmp/frame-$k.out" || { show "$tmp/frame-$k.out"; ok=1; }
	else
		grep -qE '^CLOSED (1002|-1)' "$tmp/frame-$k.out" || { show "$tmp/frame-$k.out"; ok=1; }
	fi
done
check "$c reserved opcode, lone continuation, fragmented ping, RSV1 → 1002; 126-byte ping, 2^63-byte length → connection failed" $ok

# --- the slowloris' outcomes (they ran meanwhile) --------------------------------------------
wait_pid "$slowhttp_pid" 40
wait_pid "$halfopen_pid" 40
wait_pid "$slowok_pid" 40
read -r what ms _ <"$tmp/slowok.out"
grep -qE '^ANSWER [0-9]+ HTTP/1\.1 101' "$tmp/slowok.out"
check "slowloris: an upgrade a byte every 5 ms (within --hello-timeout) is still answered 101 (after ${ms:-?} ms)" $? "$tmp/slowok.out"
read -r what ms _ <"$tmp/slowhttp.out"
[[ $what == CLOSED ]] && ((ms <= 6000))
check "slowloris: the HTTP upgrade a byte every 200 ms → closed unanswered (after ${ms:-?} ms; --hello-timeout 3)" $? "$tmp/slowhttp.out"
halfopen=$(cat "$tmp/halfopen.out" 2>/dev/null)
[[ $halfopen =~ ^HALFOPEN\ closed\ 200\ of\ 200,\ last\ after\ ([0-9]+)\ ms ]] && ((BASH_REMATCH[1] <= 6000))
check "slowloris: 200 connections stopping after a request line → all closed within 3 + 3 s ($halfopen)" $? "$tmp/halfopen.out"

# --- the end of the barrage --------------------------------------------------------------------
touch "$tmp/barrage.done"
kill -TERM "$sampler_pid" 2>/dev/null
wait "$sampler_pid" 2>/dev/null
sampler_pid=""
echo "barrage: $((SECONDS - start)) s"
alive
check "the gateway ran through the barrage" $? "$tmp/gw.err"

# A new client after the barrage.
{
	echo "send $(hello "$tok" after atk 0)"
	echo 'await 1 10 "type":"welcome"'
} >"$tmp/after.in"
run after
grep -q '"type":"welcome"' "$tmp/after.out"
check "a new hello after the barrage gets welcome" $? "$tmp/after.out"

# --- memory ------------------------------------------------------------------------------------
peak=$(sort -n "$tmp/rss.log" | tail -n 1)
nsamples=$(wc -l <"$tmp/rss.log")
bound=$((b0 + (125 * C * ((4 * F + 2 * Q) / 1024 + 16)) / 100 + 24 * 1024))
echo "gateway VmRSS: before $b0 kB, peak $peak kB over $nsamples samples, bound $bound kB"
[[ -n $peak ]] && ((nsamples > 10 && peak < bound))
check "memory: peak VmRSS ${peak:-?} kB < B0 + 1.25 C (4F + 2Q + 16 kB) + 24 MB = $bound kB" $?

# --- W ---------------------------------------------------------------------------------------
if ! wait_grep 60 "$tmp/w.out" '^MARK after' "$w_pid" || ! wait_grep 60 "$tmp/w.out" '^RTT [0-9]+ ' "$w_pid"; then
	echo "W did not finish its pushes"
fi
for ((i = 0; i < 600; i++)); do [[ -e $tmp/w.after ]] && break; kill -0 "$w_pid" 2>/dev/null || break; sleep 0.1; done
sql -c "SELECT synclog.wait_sequenced('30s')" >/dev/null
sql -c "SELECT seq FROM synclog.ops WHERE grp = 'wb' AND seq > $c0 ORDER BY seq" >"$tmp/w.expected"
last=$(tail -n 1 "$tmp/w.expected")
wait_grep 30 "$tmp/w.out" "\"seq\": ?$last[,}]" "$w_pid"
sleep 0.5
touch "$tmp/w.end"
wait_pid "$w_pid" 10

npush=$(grep -c '^RTT ' "$tmp/w.out")
nacks=$(grep -c '"type":"ack"' "$tmp/w.out")
grep '"type":"ack"' "$tmp/w.out" | grep -oE '14000000-0000-4000-8000-[0-9]{12}' | sort >"$tmp/w.acked"
grep -oE '^RTT [0-9]+' "$tmp/w.out" | awk '{ printf "14000000-0000-4000-8000-%012d\n", $2 }' | sort >"$tmp/w.sent"
bad_rtt=$(grep -cE '^RTT [0-9]+ [A-Z]' "$tmp/w.out")
if ((npush >= 150 && nacks == npush && bad_rtt == 0)) && cmp -s "$tmp/w.acked" "$tmp/w.sent" &&
	! grep '"type":"ack"' "$tmp/w.out" | grep -q '"rejected":\[[^]]' && ! grep -qE '^CLOSED|"type":"error"' "$tmp/w.out"; then
	pass "well-behaved client: all $npush pushes acked, none refused, never disconnected"
else
	echo "pushes $npush, acks $nacks, timed out or closed $bad_rtt"
	grep -E '^(CLOSED|ERROR|RTT [0-9]+ [A-Z])|"type":"error"|"rejected":\[[^]]' "$tmp/w.out" | cut -c1-200 | head -n 10
	fail "well-behaved client: all pushes acked, none refused, never disconnected"
fi
grep -E '^RECV \{.*"type": ?"changes"' "$tmp/w.out" | grep -oE '"seq": ?[0-9]+' | grep -oE '[0-9]+$' >"$tmp/w.seqs"
if [[ -s $tmp/w.expected ]] && cmp -s "$tmp/w.seqs" "$tmp/w.expected"; then
	pass "well-behaved client: every change of its group ($(wc -l <"$tmp/w.expected"), its own and SQL's) once, in seq order"
else
	echo "got $(wc -l <"$tmp/w.seqs") changes, expected $(wc -l <"$tmp/w.expected"); duplicates: $(sort -n "$tmp/w.seqs" | uniq -d | head -n 5 | tr '\n' ' ')"
	diff "$tmp/w.seqs" "$tmp/w.expected" | head -n 6
	fail "well-behaved client: every change of its group once, in seq order"
fi
# rtts PHASE: W's round trips (ms) between "MARK PHASE" and the next mark, sorted.
rtts() {
	awk -v p="$1" '/^MARK / { on = ($2 == p) } on && /^RTT [0-9]+ [0-9.]+$/ { print $3 }' "$tmp/w.out" | sort -g
}
# pct P: the P-th percentile of sorted numbers on stdin (nearest rank).
pct() { awk -v p="$1" '{ v[NR] = $1 } END { if (NR == 0) { print "" } else { i = int((NR * p + 99) / 100); if (i < 1) i = 1; print v[i] } }'; }
rtts before >"$tmp/rtt.before"
rtts during >"$tmp/rtt.during"
rtts after >"$tmp/rtt.after"
p50b=$(pct 50 <"$tmp/rtt.before") p99b=$(pct 99 <"$tmp/rtt.before")
p50d=$(pct 50 <"$tmp/rtt.during") p99d=$(pct 99 <"$tmp/rtt.during") maxd=$(pct 100 <"$tmp/rtt.during")
p50a=$(pct 50 <"$tmp/rtt.after")
nb=$(wc -l <"$tmp/rtt.before") nd=$(wc -l <"$tmp/rtt.during")
echo "W push→ack (ms): before p50 $p50b p99 $p99b ($nb); during p50 $p50d p99 $p99d max $maxd ($nd); after p50 $p50a"
if ((nb >= 90 && nd >= 50)); then
	pass "well-behaved client: kept pushing during the barrage ($nb round trips before, $nd during)"
else
	fail "well-behaved client: kept pushing during the barrage (only $nb round trips before, $nd during)"
fi

# --- shutdown ----------------------------------------------------------------------------------
stop_bg
kill -TERM "$gw_pid"
st=124
for ((i = 0; i < 100; i++)); do
	if ! kill -0 "$gw_pid" 2>/dev/null; then
		wait "$gw_pid"
		st=$?
		break
	fi
	sleep 0.1
done
((st == 124)) && gateway_kill
gw_pid=""
if ((st == 0)) && sanitizer_clean "$tmp/gw.err"; then
	pass "gateway: SIGTERM → exit 0, no sanitizer report"
else
	echo "exit status $st (124: still running after 10 s)"
	grep -nE -m 3 "$SANITIZER_RE" "$tmp/gw.err"
	tail -n 30 "$tmp/gw.err"
	fail "gateway: SIGTERM → exit 0, no sanitizer report"
fi
sanitizer_clean "$tmp"/*.err
check "attackers and clients: no sanitizer report" $?
echo "elapsed: $((SECONDS - start)) s"
exit "$failed"
