#!/usr/bin/env bash
# tests/suites/18-gateway-coalesce.sh: coalesced changes frames.  When a
# subscriber reads slower than changes commit, the changes frames waiting in
# its send queue go out as one frame (gateway/session.c, merge_changes()).
# This checks that what such a client receives is still exactly what
# PROTOCOL.md promises: every change of its granted groups above its cursor
# once, in seq order, none of another group, each frame's changes above the
# cursor of the frame before and at most its own cursor, and that coalescing
# did happen (far fewer frames than changes); and that the ack of a push it
# sends meanwhile is not held behind those queued changes (answers go ahead
# of queued changes frames, gateway/session.c queue_buf()).
#
# Setup: database gwcoal_<pid> on the shared cluster, table issues (group
# column team), one seed row; tokens: the subscriber's grants t1 only, the
# publisher's t1 and t2.  The sanitized gateway (SUITE_GATEWAY) runs with
# --socket-send-buffer 4608 and the subscriber (tests/gateway/test_client,
# --rcvbuf 4096) stops reading after its welcome, so the kernel holds a few
# kilobytes and the rest waits in the gateway's queue: the publisher then
# pushes PUSHES single-op pushes (alternately t1 and t2, each its own commit
# and its own fan-out round, about 600 bytes a change), waiting for each ack;
# once they are all sequenced the subscriber sends a push (refused:
# read_only, but answered by an ack), waits 2 s and drains.  Then a second
# subscriber, the same way, under 150 pushes of 8 kB changes: it falls behind
# (its 1 MiB queue full) by only a few changes, and once drained it must
# rejoin the fan-out (gateway/session.c catch_up(), the gateway's log says
# so) rather than read its own backlog, and still get every change once, in
# order.  Checks (one PASS/FAIL line each) are computed in SQL from the
# frames each printed; last, the gateway stops on SIGTERM with nothing from
# the sanitizers.
set -uo pipefail

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=tests/lib/suite.sh
source "$REPO/tests/lib/suite.sh"
suite_begin gateway-coalesce gwcoal
client="$REPO/build/gateway/test_client"
PUSHES=${PUSHES:-240}

if [[ $SUITE_GATEWAY == "$REPO/build/gateway/synclog-gateway-asan" ]] &&
	! make --no-print-directory -C "$REPO/gateway" gateway-asan test-client-bin >"$tmp/build.log" 2>&1; then
	cat "$tmp/build.log"
	suite_abort "build (make -C gateway gateway-asan test-client-bin, output above)"
fi
make --no-print-directory -C "$REPO/gateway" test-client-bin >"$tmp/build.log" 2>&1 ||
	{ cat "$tmp/build.log"; suite_abort "build (make -C gateway test-client-bin)"; }

db="gwcoal_$$"
suite_create_db "$db" <<'SQL' || suite_abort "setup (database with the synclog extension, output above)"
CREATE TABLE issues (id text PRIMARY KEY, team text NOT NULL, title text);
INSERT INTO issues VALUES ('seed', 't1', 'seed');
SELECT synclog.track('issues', 'team');
SQL
sql() { psql -X -qAt -v ON_ERROR_STOP=1 -d "$db" "$@"; }
tok_sub=$(sql -c "SELECT synclog.create_token('sub', ARRAY['t1'], false)") &&
	tok_pub=$(sql -c "SELECT synclog.create_token('pub', ARRAY['t1','t2'])") &&
	cur0=$(sql -c "SELECT synclog.wait_sequenced()") || suite_abort "setup (tokens, cursor)"

port=$(free_port) || suite_abort "no free port"
log="$tmp/gw.err"
"$SUITE_GATEWAY" --listen "127.0.0.1:$port" --socket-send-buffer 4608 \
	--db "host=${PGHOST:-127.0.0.1} port=${PGPORT:-5432} user=${PGUSER:-postgres} dbname=$db" 2>>"$log" &
gw_pid=$!
for ((i = 0; i < 100; i++)); do
	grep -q "database connected" "$log" && port_open "$port" && break
	kill -0 "$gw_pid" 2>/dev/null || break
	sleep 0.1
done
port_open "$port" || { cat "$log"; suite_abort "gateway started (listening and connected within 10 s)"; }

hello() { # TOKEN CLIENT_ID GROUPS CURSOR
	printf 'send {"type":"hello","client_id":"%s","token":"%s","groups":%s,"cursor":%s,"hlc":"0000000000000001"}\n' \
		"$2" "$1" "$3" "$4"
}

# The subscriber: welcome, then not a byte read until $tmp/go exists.
sub_pid=""
suite_at_exit 'suite_kill $sub_pid'
{
	hello "$tok_sub" c-sub '["t1","t2"]' "$cur0"
	echo "recv 10"
	echo "touch $tmp/welcomed"
	echo "stall 120 $tmp/go"
	# a push (refused: its token is read-only) while its changes wait unread
	printf 'send {"type":"push","ops":[{"id":"5f000000-0000-4000-8000-000000000001","table":"issues","row":"sub-1","kind":"upsert","fields":{"team":"t1"},"hlc":"0000000000000002"}]}\n'
	echo "sleep 2000"
	echo "drain 3"
} | timeout -k 5 180 "$client" --rcvbuf 4096 127.0.0.1 "$port" >"$tmp/sub.out" 2>"$tmp/sub.err" &
sub_pid=$!
for ((i = 0; i < 100; i++)); do
	[[ -e $tmp/welcomed ]] && break
	sleep 0.1
done
sleep 0.5 # its (empty) backlog read: it is live

pad=$(printf 'x%.0s' $(seq 1 500))
{
	hello "$tok_pub" c-pub '["t1","t2"]' "$cur0"
	echo "recv 10"
	for ((i = 1; i <= PUSHES; i++)); do
		team=t$((1 + i % 2))
		printf 'timedpush 1 0 {"type":"push","ops":[{"id":"50000000-0000-4000-8000-{i}","table":"issues","row":"r-{i}","kind":"upsert","fields":{"team":"%s","title":"%s"},"hlc":"0000000000000002"}]}\n' \
			"$team" "$pad"
	done
} | timeout -k 5 120 "$client" 127.0.0.1 "$port" >"$tmp/pub.out" 2>"$tmp/pub.err"
acked=$(grep -c '"type":"ack","acked":\["50000000' "$tmp/pub.out")
if ((acked == PUSHES)); then pass "publisher: $PUSHES pushes acked"; else
	tail -n 5 "$tmp/pub.out" | cut -c1-300
	fail "publisher: $PUSHES pushes acked (got $acked)"
fi
sql -c "SELECT synclog.wait_sequenced()" >/dev/null
sleep 1 # the last rounds queued
touch "$tmp/go"
wait "$sub_pid"
sub_pid=""

# check_frames TAG OUT C0 [EXTRA_SQL]: the checks on the frames subscriber TAG
# printed (file OUT) since cursor C0, one PASS/FAIL line each, named "TAG: ...";
# EXTRA_SQL adds rows name|ok|detail (views frames and chg, table lines_TAG).
check_frames() {
	local tag=$1 out=$2 c0=$3 extra=${4:-}
	sql -c "CREATE TABLE lines_$tag (n int, line text)"
	grep -n '' "$out" | sed 's/:/\x1f/' |
		sql -c "COPY lines_$tag FROM STDIN WITH (FORMAT csv, DELIMITER E'\\037', QUOTE E'\\036')"
	sql -F '|' -v c0="$c0" >"$tmp/eval-$tag" <<SQL
CREATE TEMP VIEW lines AS SELECT * FROM lines_$tag;
CREATE TEMP VIEW frames AS
  SELECT n, substr(line, 6)::jsonb AS m FROM lines
   WHERE line LIKE 'RECV %' AND substr(line, 6)::jsonb->>'type' = 'changes';
CREATE TEMP VIEW chg AS
  SELECT f.n, x.o, (x.e->>'seq')::bigint AS seq, x.e->>'group' AS grp, (f.m->>'cursor')::bigint AS fcur,
         (SELECT (p.m->>'cursor')::bigint FROM frames p WHERE p.n < f.n ORDER BY p.n DESC LIMIT 1) AS before
    FROM frames f CROSS JOIN jsonb_array_elements(f.m->'changes') WITH ORDINALITY AS x(e, o);
SELECT 'every t1 change above the cursor arrived, once, in seq order',
       (SELECT coalesce(array_agg(seq ORDER BY n, o), '{}') FROM chg)
         = (SELECT coalesce(array_agg(seq ORDER BY seq), '{}') FROM synclog.ops WHERE grp = 't1' AND seq > :c0),
       (SELECT count(*) FROM chg) || ' changes received, '
         || (SELECT count(*) FROM synclog.ops WHERE grp = 't1' AND seq > :c0) || ' expected';
SELECT 'no change of a group not granted (t2)', NOT EXISTS (SELECT 1 FROM chg WHERE grp IS DISTINCT FROM 't1'),
       (SELECT count(*) FROM chg WHERE grp IS DISTINCT FROM 't1') || ' foreign';
SELECT 'each change above the cursor before its frame, at most its frame''s cursor',
       NOT EXISTS (SELECT 1 FROM chg WHERE seq <= coalesce(before, :c0) OR seq > fcur), '';
SELECT 'frame cursors strictly increase',
       NOT EXISTS (SELECT 1 FROM (SELECT (m->>'cursor')::bigint AS c,
                                         lag((m->>'cursor')::bigint) OVER (ORDER BY n) AS p FROM frames) x
                   WHERE c <= p),
       (SELECT count(*) FROM frames) || ' frames';
SELECT 'the last frame''s cursor is the server''s',
       (SELECT (m->>'cursor')::bigint FROM frames ORDER BY n DESC LIMIT 1) = (SELECT synclog.cursor()), '';
$extra
SQL
	local name ok detail
	while IFS='|' read -r name ok detail; do
		[[ -n $name ]] || continue
		if [[ $ok == t ]]; then pass "$tag: $name ($detail)"; else fail "$tag: $name ($detail)"; fi
	done <"$tmp/eval-$tag"
	[[ -s $tmp/eval-$tag ]] || { cut -c1-200 "$out" | head; fail "$tag: the subscriber's frames could be evaluated"; }
}

check_frames coalesce "$tmp/sub.out" "$cur0" "
SELECT 'the ack of a push sent while changes waited came ahead of them',
       (SELECT min(n) FROM lines WHERE line LIKE 'RECV {\"type\":\"ack\"%')
         < (SELECT max(n) FROM frames),
       'ack at line ' || coalesce((SELECT min(n) FROM lines WHERE line LIKE 'RECV {\"type\":\"ack\"%')::text, 'none')
         || ', last changes frame at line ' || (SELECT max(n) FROM frames);
SELECT 'frames were coalesced (at most a sixth as many frames as changes)',
       (SELECT count(*) FROM frames) * 6 <= (SELECT count(*) FROM chg),
       (SELECT count(*) FROM frames) || ' frames, largest holds '
         || (SELECT max(jsonb_array_length(m->'changes')) FROM frames) || ' changes';"

# --- a subscriber a little behind rejoins the fan-out ---------------------------
# 8 kB changes: the default 1 MiB queue holds about 128; PUSHES2 of them while
# the subscriber does not read take it past the bound (it falls behind), and
# once it drains to half it is well within half the bound behind the
# fan-out, so it rejoins it rather than reading its own backlog.
PUSHES2=${PUSHES2:-150}
cur1=$(sql -c "SELECT synclog.wait_sequenced()")
{
	hello "$tok_sub" c-sub2 '["t1"]' "$cur1"
	echo "recv 10"
	echo "touch $tmp/welcomed2"
	echo "stall 120 $tmp/go2"
	echo "drain 3"
} | timeout -k 5 180 "$client" --rcvbuf 4096 127.0.0.1 "$port" >"$tmp/sub2.out" 2>"$tmp/sub2.err" &
sub_pid=$!
for ((i = 0; i < 100; i++)); do
	[[ -e $tmp/welcomed2 ]] && break
	sleep 0.1
done
sleep 0.5
big=$(printf 'y%.0s' $(seq 1 8000))
{
	hello "$tok_pub" c-pub '["t1"]' "$cur1"
	echo "recv 10"
	echo "timedpush $PUSHES2 0 {\"type\":\"push\",\"ops\":[{\"id\":\"51000000-0000-4000-8000-{i}\",\"table\":\"issues\",\"row\":\"b-{i}\",\"kind\":\"upsert\",\"fields\":{\"team\":\"t1\",\"title\":\"$big\"},\"hlc\":\"0000000000000002\"}]}"
} | timeout -k 5 120 "$client" 127.0.0.1 "$port" >"$tmp/pub2.out" 2>"$tmp/pub2.err"
acked=$(grep -c '"type":"ack","acked":\["51000000' "$tmp/pub2.out")
if ((acked == PUSHES2)); then pass "rejoin: publisher: $PUSHES2 pushes acked"; else
	tail -n 3 "$tmp/pub2.out" | cut -c1-300
	fail "rejoin: publisher: $PUSHES2 pushes acked (got $acked)"
fi
sql -c "SELECT synclog.wait_sequenced()" >/dev/null
sleep 1
touch "$tmp/go2"
wait "$sub_pid"
sub_pid=""
if grep -q 'client_id=c-sub2: behind' "$log" && grep -q 'client_id=c-sub2: drained; rejoining the fan-out' "$log"; then
	pass "rejoin: the subscriber fell behind and rejoined the fan-out"
else
	grep 'c-sub2' "$log" | tail -n 5
	fail "rejoin: the subscriber fell behind and rejoined the fan-out"
fi
check_frames rejoin "$tmp/sub2.out" "$cur1"

gateway_stop
if sanitizer_clean "$log"; then pass "ASan/UBSan report nothing"; else
	grep -E "$SANITIZER_RE" -A 20 "$log" | head -40
	fail "ASan/UBSan report nothing"
fi
exit "$failed"
