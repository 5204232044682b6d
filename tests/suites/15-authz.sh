#!/usr/bin/env bash
# tests/suites/15-authz.sh: the authorization matrix, end to end over real
# gateways (issue 6): every token x every group, read and write.
#
# Builds the sanitized gateway, the test client (tests/gateway/test_client.c)
# and the sanitized synclog-cli, creates database authz_<pid> on the shared
# cluster (tracked tables items(id, grp, title, n) grouped by grp and
# notes(nid, team, body) grouped by team; groups a, b, c, with rows made by
# pushes through a gateway and by direct SQL captured by the trigger) and
# starts three gateways on free loopback ports: g1 and g2 plain, g3 with
# --allow-origin.  Tokens, one per kind: one [a], two [a,b], all [a,b,c],
# ro [a,b] (can_write false), rev [a,b,c] (revoked before anything runs),
# unknown (well-formed, never created), garbage (not a token at all), empty
# ("").  One PASS/FAIL line per cell, the cell named:
#
#   read/MODE: token K x hello [G]   for every token K, every single group G
#       and the three together, in three modes: snapshot (cursor 0), backlog
#       (cursor > 0, changes made after that cursor) and compacted (the same
#       cursor once compaction removed it: a snapshot again).  32 clients per
#       mode hello at once; once each has its welcome and its backlog, more
#       changes are made in every group (pushes and SQL: inserts, updates,
#       deletes, both tables); the suite waits until each client granted a
#       group has the last of them.  Then, from what each client received
#       (parsed in SQL, groups looked up in synclog.row_meta):
#       - a token that authenticates gets welcome with groups = the groups
#         asked for that the token grants (PROTOCOL.md: the ungranted ones
#         are filtered out, no error) and stays open; revoked, unknown and
#         garbage tokens get error unauthorized and are closed; the empty
#         token gets error bad_frame (a hello needs a 1-byte token) and no
#         welcome;
#       - 0 rows (snapshot rows or changes) of a group not granted;
#       - every row of the granted groups: the snapshot plus the changes
#         after it, applied in order, equal PostgreSQL's rows of those groups
#         field for field (not in backlog mode: that client holds nothing
#         from before its cursor); the changes' seqs are exactly
#         synclog.ops' seqs of those groups after the snapshot's (or
#         hello's) cursor, once each, in order, and each change equals its
#         synclog.ops entry (table, row, kind, fields).
#       The PASS line gives the counts per group: "a: S+C" is S snapshot
#       rows and C changes of group a.
#   write: token K x group G   a push (over g1, hello for [G]) of an upsert of
#       a new row, an upsert of an existing row and a delete, for every token
#       and group: applied exactly when K may write G (every op acked; the
#       group's rows changed as pushed, 3 more ops of G in synclog.ops, other
#       groups untouched), otherwise every op refused with the right code
#       (unauthorized for an ungranted group, read_only for the read-only
#       token) and rows, synclog.ops and synclog.row_meta unchanged in every
#       group (compared before and after).  Tokens that cannot hello:
#       revoked, unknown and garbage get unauthorized and the connection
#       closes, the empty token gets bad_frame and then hello_required for
#       its push; synclog.push with each of them refuses every op
#       unauthorized; nothing changes.
#   write cross-group   moving a row to another group (group_immutable,
#       also by a token that grants both), writing and deleting a row id that
#       exists in an ungranted group (unauthorized, with and without the group
#       column), notes rows of other groups, a new row in an ungranted group,
#       the read-only token on granted and ungranted groups (read_only):
#       each op refused with its code, nothing changes.  And a delete of a
#       row id never seen (acked by design: a tombstone) does not stop the
#       group that owns it from creating the row.
#   revoke round R   3 connections of one token on g1 and 2 on g2
#       (different groups), one connection of another token on each: after
#       synclog.revoke_token every connection of the revoked token gets error
#       unauthorized and is closed within 1000 ms of psql's return (the client
#       stamps the moment it reads the close: test_client --stamp; a negative
#       figure means it came before psql had returned), each measured; the
#       other token's connections stay open and get a change made afterwards;
#       a new hello with the revoked token is refused on both gateways.  Three
#       rounds, the third under load (a writer pipelining 20 pushes of 100
#       ops into the victims' groups, revoked once the first is acked).
#   revoke in flight   a hello whose authentication query reads the token
#       before the revocation commits and is answered after the gateway heard
#       the NOTIFY (both forced with table locks held by two transactions):
#       refused or closed with unauthorized within 1000 ms too.  A gateway
#       that checked only welcomed sessions kept it open for good.
#   origin   g3 (--allow-origin with two origins): listed Origins and no
#       Origin get welcome; an unlisted one, a listed one with a suffix, a
#       different port, "null" and an over-long one are refused with HTTP 403
#       at the handshake; g1 (no allow-list) accepts any Origin.
#   cli   synclog-cli watch (group c) with a token that gets revoked exits 2
#       ("refused the token"), within 20 s, the time printed; sync with it
#       then exits 2 (the CLI's documented status for a refused token), the
#       op stays pending and is not applied; no sanitizer report.
#   and for every gateway: SIGTERM -> exit 0, no sanitizer report.
#
# Every wait is bounded; gateways and clients are stopped, the database
# dropped and the temporary directory removed on every exit (SIGTERM
# included).  Nothing measures speed but the revocations.  Takes 25-45 s.

set -uo pipefail

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=tests/lib/suite.sh
source "$REPO/tests/lib/suite.sh"
client="$REPO/build/gateway/test_client"
cli="$REPO/build/client/synclog-cli-asan"
DB="authz_$$"

suite_begin authz authz
declare -A GW_PID=() GW_PORT=()
bg_pids=()
cli_pid=""

# kill_bg: ends every background client (each under timeout(1), which has a
# process group of its own and passes SIGTERM on): TERM, 2 s, then KILL.
kill_bg() {
	local p i alive
	for p in "${bg_pids[@]}" $cli_pid; do kill -TERM "$p" 2>/dev/null; done
	for ((i = 0; i < 20; i++)); do
		alive=0
		for p in "${bg_pids[@]}" $cli_pid; do kill -0 "$p" 2>/dev/null && alive=1; done
		((alive)) || break
		sleep 0.1
	done
	for p in "${bg_pids[@]}" $cli_pid; do kill -KILL "$p" 2>/dev/null; done
	for p in "${bg_pids[@]}" $cli_pid; do wait "$p" 2>/dev/null; done
	bg_pids=()
	cli_pid=""
}
kill_gateways() {
	local n
	for n in "${!GW_PID[@]}"; do
		[[ -n ${GW_PID[$n]} ]] && suite_kill "${GW_PID[$n]}"
		GW_PID[$n]=""
	done
}
suite_at_exit 'kill_gateways'
suite_at_exit 'kill_bg'
# AUTHZ_KEEP=DIR: on exit, copy the temporary directory (every client's
# output, the gateways' logs) to DIR/authz-<pid>, for a post-mortem.
[[ -n ${AUTHZ_KEEP:-} ]] && suite_at_exit 'cp -r "$tmp" "$AUTHZ_KEEP/authz-$$" 2>/dev/null'

sql() { psql -X -qAt -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
now_us() { echo "${EPOCHREALTIME/./}"; }

# show FILE: the end of a file, lines cut to 300 characters, for a failure.
show() {
	echo "--- $(basename "$1"):"
	cut -c1-300 "$1" 2>/dev/null | tail -n "${2:-20}"
	echo "---"
}

# wait_until SECS CMD...: true once CMD succeeds (tried every 50 ms); false
# after SECS seconds.
wait_until() {
	local end=$(($(now_us) + $1 * 1000000))
	shift
	while (($(now_us) < end)); do
		"$@" && return 0
		sleep 0.05
	done
	"$@"
}

if ! make --no-print-directory -C "$REPO/gateway" gateway-asan test-client-bin >"$tmp/build.log" 2>&1 ||
	! make --no-print-directory -C "$REPO/client" cli-asan >>"$tmp/build.log" 2>&1; then
	cat "$tmp/build.log"
	suite_abort "build (make -C gateway gateway-asan test-client-bin; make -C client cli-asan; output above)"
fi

# --- the database ---------------------------------------------------------------
# Rows in every group by direct SQL (captured by the trigger): items g-s1..s6
# and notes; rows that the write rounds delete later (g-dp-LABEL by a push,
# g-ds-LABEL by SQL) and that the write matrix deletes (g-del-KIND).  Schema t
# holds what the suite parses (not tracked).
KINDS=(one two all ro rev unknown garbage empty)
LABELS=(init pre snapshot backlog compacted)
suite_create_db "$DB" <<SQL || suite_abort "setup (database $DB, output above)"
CREATE TABLE items (id text PRIMARY KEY, grp text NOT NULL, title text, n int);
CREATE TABLE notes (nid int PRIMARY KEY, team text NOT NULL, body text);
SELECT synclog.track('items', 'grp');
SELECT synclog.track('notes', 'team');
-- (rows deleted later must exist: a delete of a row never seen is acked as
-- a tombstone, by design, whatever the token's groups)
INSERT INTO items SELECT g || '-s' || i, g, 'sql ' || g || i, i
  FROM unnest('{a,b,c}'::text[]) g, generate_series(1, 6) i;
INSERT INTO notes SELECT (ascii(g) - 96) * 100 + i, g, 'note ' || g || i
  FROM unnest('{a,b,c}'::text[]) g, generate_series(1, 3) i;
INSERT INTO items SELECT g || '-' || d || '-' || l, g, 'to delete', 0
  FROM unnest('{a,b,c}'::text[]) g, unnest('{dp,ds}'::text[]) d, unnest('{$(IFS=,; echo "${LABELS[*]}")}'::text[]) l;
INSERT INTO items SELECT g || '-del-' || k, g, 'to delete', 0
  FROM unnest('{a,b,c}'::text[]) g, unnest('{$(IFS=,; echo "${KINDS[*]}")}'::text[]) k;
UPDATE items SET title = 'sql updated' WHERE id LIKE '%-s1';
DELETE FROM items WHERE id LIKE '%-s6';
UPDATE notes SET body = 'note updated' WHERE nid % 100 = 2;
CREATE SCHEMA t;
CREATE TABLE t.meta (mode text, name text, kind text, req text[], exp text[], c0 bigint);
CREATE TABLE t.lines (mode text, name text, n int, line text);
SQL

declare -A TOK=() TGROUPS=()
mk_token() { # KIND SUBJECT GROUPS_ARRAY_LITERAL CAN_WRITE
	TOK[$1]=$(sql -c "SELECT synclog.create_token('$2', '$3'::text[], $4)") || suite_abort "setup (token $1)"
	TGROUPS[$1]=$3
}
mk_token one authz-one '{a}' true
mk_token two authz-two '{a,b}' true
mk_token all authz-all '{a,b,c}' true
mk_token ro authz-ro '{a,b}' false
mk_token rev authz-rev '{a,b,c}' true
sql -c "SELECT synclog.revoke_token('${TOK[rev]}')" >/dev/null || suite_abort "setup (revoking token rev)"
TOK[unknown]="slt_$(printf '%064d' 0 | tr 0 7)"
TOK[garbage]="x' OR '1'='1"
TOK[empty]=""
for k in rev unknown garbage empty; do TGROUPS[$k]='{}'; done
# may_write KIND GROUP: true when the token may write the group.
may_write() { [[ $1 == one || $1 == two || $1 == all ]] && [[ ${TGROUPS[$1]} == *"$2"* ]]; }

# --- gateways ---------------------------------------------------------------------
# start_gw NAME ARGS...: a gateway on a free loopback port, stderr in
# $tmp/gw-NAME.err; waits (10 s at most) for "database connected" and the port.
# A port taken meanwhile is retried with another.  1 when it does not start.
start_gw() {
	local name=$1 try port i
	shift
	for ((try = 0; try < 5; try++)); do
		port=$(free_port) || return 1
		"$SUITE_GATEWAY" --listen "127.0.0.1:$port" \
			--db "host=${PGHOST:-127.0.0.1} port=${PGPORT:-5432} user=${PGUSER:-postgres} dbname=$DB" \
			"$@" 2>"$tmp/gw-$name.err" &
		GW_PID[$name]=$!
		GW_PORT[$name]=$port
		for ((i = 0; i < 100; i++)); do
			if ! kill -0 "${GW_PID[$name]}" 2>/dev/null; then
				wait "${GW_PID[$name]}"
				GW_PID[$name]=""
				grep -q "cannot listen" "$tmp/gw-$name.err" && continue 2
				show "$tmp/gw-$name.err"
				return 1
			fi
			grep -q "database connected" "$tmp/gw-$name.err" && port_open "$port" && return 0
			sleep 0.1
		done
		show "$tmp/gw-$name.err"
		return 1
	done
	return 1
}
# stop_gw NAME: SIGTERM; PASS when it exits 0 within 10 s with no sanitizer
# report on its stderr.
stop_gw() {
	local name=$1 pid=${GW_PID[$1]:-} st=124 i
	[[ -n $pid ]] || return 0
	kill -TERM "$pid"
	for ((i = 0; i < 100; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid"
			st=$?
			break
		fi
		sleep 0.1
	done
	((st == 124)) && suite_kill "$pid"
	GW_PID[$name]=""
	if ((st == 0)) && sanitizer_clean "$tmp/gw-$name.err"; then
		pass "gateway $name: SIGTERM -> exit 0, no sanitizer report"
	else
		echo "exit status $st (124: still running after 10 s)"
		grep -m 1 -A 30 -E "$SANITIZER_RE" "$tmp/gw-$name.err"
		show "$tmp/gw-$name.err" 20
		fail "gateway $name: SIGTERM -> exit 0, no sanitizer report"
	fi
}
start_gw g1 || suite_abort "gateway g1 started"
start_gw g2 || suite_abort "gateway g2 started"
start_gw g3 --allow-origin "http://good.example,https://app.example:8443" || suite_abort "gateway g3 started"
P1=${GW_PORT[g1]} P2=${GW_PORT[g2]} P3=${GW_PORT[g3]}

# --- clients ----------------------------------------------------------------------
# hello TOKEN CLIENT_ID GROUPS_JSON CURSOR: the script line of a hello.
hello() {
	printf 'send {"type":"hello","client_id":"%s","token":"%s","groups":%s,"cursor":%s,"hlc":"0000000000000001"}\n' \
		"$2" "$1" "$3" "$4"
}
# run_client NAME PORT [OPTIONS...]: script $tmp/NAME.in, output $tmp/NAME.out,
# 60 s at most; returns the client's status.  It runs in the background and is
# waited for, so that a SIGTERM to the suite is handled at once (bash runs a
# trap only once a foreground command ends).  bg_client: the same without
# waiting (pid in bg_pids and last_pid).
run_client() {
	local n=$1 p=$2 pid st
	shift 2
	timeout -k 5 60 "$client" "$@" 127.0.0.1 "$p" <"$tmp/$n.in" >"$tmp/$n.out" 2>"$tmp/$n.err" &
	pid=$!
	bg_pids+=("$pid")
	wait "$pid"
	st=$?
	unset 'bg_pids[-1]'
	return "$st"
}
bg_client() {
	local n=$1 p=$2
	shift 2
	: >"$tmp/$n.out"
	timeout -k 5 60 "$client" "$@" 127.0.0.1 "$p" <"$tmp/$n.in" >"$tmp/$n.out" 2>"$tmp/$n.err" &
	last_pid=$!
	bg_pids+=("$last_pid")
}
# wait_bg SECS: waits for every background client, at most SECS, then ends them.
wait_bg() {
	local p end=$(($(now_us) + $1 * 1000000))
	for p in "${bg_pids[@]}"; do
		while kill -0 "$p" 2>/dev/null && (($(now_us) < end)); do sleep 0.05; done
	done
	kill_bg
}

# Ops.  OPS is the JSON text of the ops of the push being built: add_upsert
# and add_delete append one op each, with a fresh id and a clock from the wall
# clock (milliseconds, and the microseconds as counter: increasing from one op
# to the next).  No subshells here: the counters must advance.
OPS=""
opn=0
note_n=1000
next_op() {
	local us=${EPOCHREALTIME/./}
	opn=$((opn + 1))
	printf -v OPID '0a000000-0000-4000-8000-%012d' "$opn"
	printf -v HLC '%012x%04x' $((us / 1000)) $((us % 1000))
}
# add_upsert ROW FIELDS [TABLE]: FIELDS is the inside of the fields object.
add_upsert() {
	next_op
	OPS+="${OPS:+,}{\"id\":\"$OPID\",\"table\":\"${3:-items}\",\"row\":\"$1\",\"kind\":\"upsert\",\"fields\":{$2},\"hlc\":\"$HLC\"}"
}
# add_delete ROW [TABLE]
add_delete() {
	next_op
	OPS+="${OPS:+,}{\"id\":\"$OPID\",\"table\":\"${2:-items}\",\"row\":\"$1\",\"kind\":\"delete\",\"hlc\":\"$HLC\"}"
}

# write_round LABEL: changes in every group, half pushed through g1 by token
# all (a new row, an update, a delete, a new note), half by SQL (the same
# kinds).  Returns 1, after saying why, when the push is not acked whole.
write_round() {
	local l=$1 g i=0
	OPS=""
	for g in a b c; do
		i=$((i + 1))
		note_n=$((note_n + 1))
		add_upsert "$g-$l-p" "\"grp\":\"$g\",\"title\":\"pushed $l\",\"n\":$i"
		add_upsert "$g-s2" "\"title\":\"s2 by $l\""
		add_delete "$g-dp-$l"
		add_upsert "$note_n" "\"team\":\"$g\",\"body\":\"$l\"" notes
	done
	{
		hello "${TOK[all]}" "writer-$l" '["a","b","c"]' "$(sql -c 'SELECT synclog.cursor()')"
		echo 'await 1 10 "type":"welcome"'
		echo "send {\"type\":\"push\",\"ops\":[$OPS]}"
		echo 'await 1 20 "type":"ack"'
	} >"$tmp/w-$l.in"
	run_client "w-$l" "$P1"
	if ! grep -q '"type":"ack","acked":\[[^]]*\],"rejected":\[\]' "$tmp/w-$l.out"; then
		show "$tmp/w-$l.out"
		echo "write round $l: the push was not acked whole"
		return 1
	fi
	sql >/dev/null <<SQL
INSERT INTO items SELECT g || '-$l-q', g, 'sql $l', 7 FROM unnest('{a,b,c}'::text[]) g;
UPDATE items SET title = 's3 by $l', n = n + 1 WHERE id IN ('a-s3', 'b-s3', 'c-s3');
DELETE FROM items WHERE id LIKE '%-ds-$l';
UPDATE notes SET body = 'by $l' WHERE nid % 100 = 3;
SQL
}

# --- read matrix ------------------------------------------------------------------
# Every token x hello [a], [b], [c], [a,b,c]: EXP is what the welcome must
# grant (the groups asked for that the token grants, in the order asked).
REQS=(a b c abc)
req_json() { [[ $1 == abc ]] && echo '["a","b","c"]' || echo "[\"$1\"]"; }
exp_groups() { # KIND REQ -> space-separated granted groups
	local g out=""
	for g in $(echo "$2" | grep -o .); do [[ ${TGROUPS[$1]} == *"$g"* ]] && out+="$g "; done
	echo "$out"
}
# load_lines MODE NAME: the client's output lines into t.lines.
load_lines() {
	awk -v m="$1" -v n="$2" 'BEGIN { OFS = "\037" } { print m, n, NR, $0 }' "$tmp/$2.out" >>"$tmp/lines-$1.csv"
}

# read_eval MODE: one row per client of MODE: name|PASS or FAIL|what was seen.
# F is the cursor every granted client has reached.
read_eval() {
	sql -c "COPY t.lines FROM STDIN WITH (FORMAT csv, DELIMITER E'\\037', QUOTE E'\\036')" <"$tmp/lines-$1.csv" ||
		return 1
	sql -v mode="$1" -v f="$2" <<'SQL'
WITH msgs AS (
    SELECT l.name, l.n, substr(l.line, 6)::jsonb AS m FROM t.lines l
     WHERE l.mode = :'mode' AND l.line LIKE 'RECV %'
), rm AS (
    SELECT r.tbl::text AS tbl, r.row_id, r.grp FROM synclog.row_meta r
), snap AS (
    SELECT s.name, s.n, e->>'table' AS tbl, e->>'row' AS rid, e->'fields' AS f,
           (s.m->>'cursor')::bigint AS cur, coalesce(rm.grp, '?') AS grp
      FROM msgs s CROSS JOIN jsonb_array_elements(s.m->'rows') e
      LEFT JOIN rm ON rm.tbl = e->>'table' AND rm.row_id = e->>'row'
     WHERE s.m->>'type' = 'snapshot'
), chg AS (
    SELECT c.name, c.n, o, e->>'table' AS tbl, e->>'row' AS rid, e->'fields' AS f, e->>'kind' AS kind,
           (e->>'seq')::bigint AS seq, coalesce(rm.grp, '?') AS grp
      FROM msgs c CROSS JOIN jsonb_array_elements(c.m->'changes') WITH ORDINALITY AS x(e, o)
      LEFT JOIN rm ON rm.tbl = e->>'table' AND rm.row_id = e->>'row'
     WHERE c.m->>'type' = 'changes'
), cl AS (
    SELECT mt.*,
           (SELECT count(*) FROM msgs WHERE name = mt.name AND m->>'type' = 'welcome') AS welcomes,
           (SELECT m->'groups' FROM msgs WHERE name = mt.name AND m->>'type' = 'welcome' LIMIT 1) AS wgroups,
           (SELECT coalesce(string_agg(m->>'code', ',' ORDER BY n), '') FROM msgs
             WHERE name = mt.name AND m->>'type' = 'error') AS errors,
           EXISTS (SELECT 1 FROM t.lines WHERE mode = :'mode' AND name = mt.name AND line ~ '^CLOSED [0-9]')
               AS closed,
           (SELECT count(*) FROM snap WHERE name = mt.name AND NOT grp = ANY (mt.exp))
             + (SELECT count(*) FROM chg WHERE name = mt.name AND NOT grp = ANY (mt.exp)) AS leaked,
           (SELECT count(*) FROM snap WHERE name = mt.name) AS nsnap,
           (SELECT count(*) FROM chg WHERE name = mt.name) AS nchg,
           (SELECT count(*) FROM msgs WHERE name = mt.name AND m->>'type' = 'snapshot'
               AND (m->>'done')::bool) AS snapdone,
           coalesce((SELECT min(cur) FROM snap WHERE name = mt.name),
                    (SELECT (m->>'cursor')::bigint FROM msgs WHERE name = mt.name AND m->>'type' = 'snapshot'
                      LIMIT 1), mt.c0) AS s0
      FROM t.meta mt WHERE mt.mode = :'mode'
), ev AS (
    SELECT cl.*,
           -- the changes' seqs as received, and what synclog.ops holds for the granted groups
           (SELECT coalesce(array_agg(seq ORDER BY n, o), '{}') FROM chg WHERE name = cl.name) AS got,
           (SELECT coalesce(array_agg(seq ORDER BY seq), '{}') FROM synclog.ops
             WHERE grp = ANY (cl.exp) AND seq > cl.s0 AND seq <= :f) AS want,
           -- the rows rebuilt from the snapshot and the changes, against PostgreSQL's
           (WITH ent AS (
                SELECT tbl, rid, f, -1::bigint AS ord FROM snap WHERE name = cl.name
                UNION ALL SELECT tbl, rid, f, seq FROM chg WHERE name = cl.name AND kind = 'upsert'
            ), kv AS (
                SELECT DISTINCT ON (tbl, rid, k) tbl, rid, k, v
                  FROM ent CROSS JOIN jsonb_each(ent.f) AS x(k, v) ORDER BY tbl, rid, k, ord DESC
            ), mine AS (
                SELECT tbl, rid, jsonb_object_agg(k, v) AS j FROM kv
                 WHERE (tbl, rid) NOT IN (SELECT tbl, rid FROM chg WHERE name = cl.name AND kind = 'delete')
                 GROUP BY tbl, rid
            ), db AS (
                SELECT 'items' AS tbl, i.id AS rid, to_jsonb(i) AS j FROM items i WHERE i.grp = ANY (cl.exp)
                UNION ALL SELECT 'notes', o.nid::text, to_jsonb(o) FROM notes o WHERE o.team = ANY (cl.exp)
            )
            SELECT count(*) FROM mine FULL JOIN db USING (tbl, rid) WHERE mine.j IS DISTINCT FROM db.j
           ) AS wrong_rows,
           -- each change as received against the op log's entry of its seq
           (SELECT count(*) FROM chg LEFT JOIN synclog.ops o ON o.seq = chg.seq
             WHERE chg.name = cl.name
               AND (o.seq IS NULL OR o.table_name <> chg.tbl OR o.row_id <> chg.rid OR o.kind <> chg.kind
                    OR (chg.kind = 'upsert' AND o.fields IS DISTINCT FROM chg.f))) AS wrong_changes,
           (SELECT count(*) FROM items WHERE grp = ANY (cl.exp))
             + (SELECT count(*) FROM notes WHERE team = ANY (cl.exp)) AS db_rows,
           (SELECT string_agg(format('%s: %s+%s', g,
                       (SELECT count(*) FROM snap WHERE name = cl.name AND grp = g),
                       (SELECT count(*) FROM chg WHERE name = cl.name AND grp = g)), ', ' ORDER BY g)
              FROM unnest(cl.exp) g) AS per_group
      FROM cl
)
SELECT name, kind, array_to_string(req, ','), array_to_string(exp, ','),
       CASE
         WHEN kind IN ('one', 'two', 'all', 'ro') THEN
           concat_ws('; ',
             CASE WHEN welcomes <> 1 THEN format('%s welcome frames', welcomes) END,
             CASE WHEN wgroups IS DISTINCT FROM to_jsonb(exp) THEN format('welcome groups %s', wgroups) END,
             CASE WHEN errors <> '' THEN 'errors: ' || errors END,
             CASE WHEN closed THEN 'closed by the server' END,
             CASE WHEN leaked > 0 THEN format('%s rows of ungranted groups', leaked) END,
             CASE WHEN cardinality(exp) > 0 AND mode <> 'backlog' AND snapdone <> 1
                  THEN format('%s complete snapshots', snapdone) END,
             CASE WHEN got <> want THEN format('change seqs %s, expected %s (after cursor %s)',
                                               got, want, s0) END,
             CASE WHEN wrong_changes > 0 THEN format('%s changes differ from synclog.ops', wrong_changes) END,
             CASE WHEN wrong_rows > 0 AND mode <> 'backlog' THEN format('%s rows differ from PostgreSQL''s', wrong_rows) END)
         ELSE
           concat_ws('; ',
             CASE WHEN welcomes <> 0 THEN 'welcomed' END,
             CASE WHEN kind = 'empty' AND errors <> 'bad_frame' THEN 'errors: ' || errors || ' (expected bad_frame)' END,
             CASE WHEN kind <> 'empty' AND (errors <> 'unauthorized' OR NOT closed)
                  THEN format('errors: %s, closed: %s (expected unauthorized, closed)', errors, closed) END,
             CASE WHEN nsnap + nchg > 0 THEN format('%s rows delivered', nsnap + nchg) END)
       END AS problems,
       CASE WHEN cardinality(exp) = 0 THEN format('0 rows; errors [%s]', errors)
            WHEN mode = 'backlog' THEN format('%s changes after cursor %s as in synclog.ops; per group %s',
                                              nchg, s0, per_group)
            ELSE format('%s snapshot rows + %s changes = the %s rows in PostgreSQL; per group %s',
                        nsnap, nchg, db_rows, per_group) END
  FROM ev ORDER BY name;
SQL
}

# read_mode MODE CURSOR: the 32 clients of MODE hello with CURSOR at once on
# g1; once each has its answer and its backlog, a write round; then each
# granted client must get the round's last change of its groups; then the
# verdicts.
read_mode() {
	local mode=$1 c0=$2 k r name f
	local -a names=()
	: >"$tmp/lines-$mode.csv"
	: >"$tmp/meta-$mode.csv"
	for k in "${KINDS[@]}"; do
		for r in "${REQS[@]}"; do
			name="r-$mode-$k-$r"
			names+=("$name")
			{
				hello "${TOK[$k]}" "$name" "$(req_json "$r")" "$c0"
				echo "readuntil $tmp/stop-$mode 60"
			} >"$tmp/$name.in"
			bg_client "$name" "$P1"
			local e
			e=$(exp_groups "$k" "$r")
			printf '%s\037%s\037%s\037{%s}\037{%s}\037%s\n' "$mode" "$name" "$k" \
				"$(echo "$r" | grep -o . | paste -sd,)" "$(echo $e | tr ' ' ,)" "$c0" >>"$tmp/meta-$mode.csv"
		done
	done
	sql -c "COPY t.meta FROM STDIN WITH (FORMAT csv, DELIMITER E'\\037', QUOTE E'\\036')" <"$tmp/meta-$mode.csv" ||
		return 1
	# ready NAME: the client has its answer and, when granted groups, its
	# backlog (a complete snapshot, or a changes frame).
	ready() {
		local n=$1
		grep -qE '"type":"welcome"|^CLOSED|"type":"error"' "$tmp/$n.out" || return 1
		grep -q '"groups":\[\]' "$tmp/$n.out" && return 0
		grep -q '"type":"welcome"' "$tmp/$n.out" || return 0
		if [[ $mode == backlog ]]; then grep -q '"type":"changes"' "$tmp/$n.out"; else grep -q '"done":true' "$tmp/$n.out"; fi
	}
	all_ready() { local n; for n in "${names[@]}"; do ready "$n" || return 1; done; }
	wait_until 30 all_ready || echo "read/$mode: not every client had its answer and backlog within 30 s"
	write_round "$mode" || fail "read/$mode: write round"
	f=$(sql -c "SELECT synclog.wait_sequenced('30s')")
	# has_last NAME: a granted client got the last change of its groups.
	declare -A last=()
	while IFS='|' read -r g s; do last[$g]=$s; done < <(sql -c "SELECT grp, max(seq) FROM synclog.ops WHERE grp IS NOT NULL GROUP BY grp")
	all_caught_up() {
		local n k r g m
		for k in one two all ro; do
			for r in "${REQS[@]}"; do
				n="r-$mode-$k-$r" m=0
				for g in $(exp_groups "$k" "$r"); do ((${last[$g]:-0} > m)) && m=${last[$g]}; done
				((m == 0)) || grep -qE "\"seq\": ?${m}[,}]" "$tmp/$n.out" || return 1
			done
		done
	}
	wait_until 30 all_caught_up || echo "read/$mode: not every granted client got the last change within 30 s"
	sleep 0.3 # the other clients' share of the same fan-out pass, if any
	touch "$tmp/stop-$mode"
	wait_bg 10
	for name in "${names[@]}"; do load_lines "$mode" "$name"; done
	read_eval "$mode" "$f" >"$tmp/eval-$mode.txt" || { cat "$tmp/eval-$mode.txt"; return 1; }
	local cname
	while IFS='|' read -r name k r e problems detail; do
		cname="read/$mode: token $k x hello [$r] (granted [$e])"
		if [[ -z $problems ]]; then
			pass "$cname: $detail"
		else
			echo "--- $name: $problems"
			show "$tmp/$name.out" 8
			fail "$cname: $problems"
		fi
	done <"$tmp/eval-$mode.txt"
	[[ $(wc -l <"$tmp/eval-$mode.txt") -eq ${#names[@]} ]] || fail "read/$mode: a verdict for every client"
}

write_round init || suite_abort "setup (first write round)"
sql -c "SELECT synclog.wait_sequenced('30s')" >/dev/null
read_mode snapshot 0 || fail "read/snapshot: evaluation (output above)"
K=$(sql -c "SELECT synclog.wait_sequenced('30s')")
write_round pre || fail "read/backlog: write round before the hellos"
read_mode backlog "$K" || fail "read/backlog: evaluation (output above)"
# Compaction removes every change older than 1 s: cursor K is gone.
through=$(sql <<'SQL'
SELECT pg_sleep(1.2);
SET synclog.retention = 1;
SELECT synclog.compact();
SQL
)
through=${through##*$'\n'}
if ((through > K)); then
	read_mode compacted "$K" || fail "read/compacted: evaluation (output above)"
else
	fail "read/compacted: compaction removed cursor $K (compacted through $through)"
fi

# --- write matrix -----------------------------------------------------------------
# fp: a fingerprint of everything a push can change, per group: its items and
# notes rows, its ops in synclog.ops, its rows' synclog.row_meta, and the
# totals (ops and row metadata of no group included).  One line, groups
# separated by spaces: "a:ROWS:ROWS_MD5:OPS:META_MD5 b:... c:... all:OPS:META".
fp() {
	sql <<'SQL'
SELECT string_agg(format('%s:%s:%s:%s:%s', g,
         (SELECT count(*) FROM items WHERE grp = g),
         md5((SELECT coalesce(string_agg(i::text, ',' ORDER BY id), '') FROM items i WHERE grp = g)
             || (SELECT coalesce(string_agg(o::text, ',' ORDER BY nid), '') FROM notes o WHERE team = g)),
         (SELECT count(*) FROM synclog.ops WHERE grp = g),
         md5((SELECT coalesce(string_agg(m::text, ',' ORDER BY tbl, row_id), '') FROM synclog.row_meta m
               WHERE grp = g))), ' ' ORDER BY g)
       || format(' all:%s:%s', (SELECT count(*) FROM synclog.ops), (SELECT count(*) FROM synclog.row_meta))
  FROM unnest('{a,b,c}'::text[]) g;
SQL
}
# fp_group FP G: group G's part of a fingerprint.
fp_group() { tr ' ' '\n' <<<"$1" | grep "^$2:"; }
# ack_outcomes FILE: each op of the first ack in FILE as "OP_ID OUTCOME"
# (acked, or the rejection's code), acked ones first.
ack_outcomes() {
	local ack
	ack=$(grep -m 1 '"type":"ack"' "$1") || return 0
	sql -v a="${ack#RECV }" <<'SQL'
SELECT id, 'acked' FROM jsonb_array_elements_text((:'a')::jsonb -> 'acked') id;
SELECT e->>'id', e->>'code' FROM jsonb_array_elements((:'a')::jsonb -> 'rejected') e;
SQL
}
# outcome_of OUTCOMES OP_ID: the outcome of one op ("none" if absent).
outcome_of() {
	local o
	o=$(grep "^$2|" <<<"$1" | cut -d'|' -f2)
	echo "${o:-none}"
}

# One cell: token K pushes, over g1 after a hello for [G], an upsert of a new
# row G-w-K, an upsert of the existing row G-s4 and a delete of G-del-K.
write_cell() {
	local k=$1 g=$2 name="wr-$1-$2" before after outs o expect id ok=1 why="" ids=()
	OPS=""
	add_upsert "$g-w-$k" "\"grp\":\"$g\",\"title\":\"w by $k\",\"n\":5"
	ids+=("$OPID")
	add_upsert "$g-s4" "\"title\":\"w by $k\""
	ids+=("$OPID")
	add_delete "$g-del-$k"
	ids+=("$OPID")
	{
		hello "${TOK[$k]}" "$name" "[\"$g\"]" "$(sql -c 'SELECT synclog.cursor()')"
		case $k in
		one | two | all | ro)
			echo 'await 1 10 "type":"welcome"'
			echo "send {\"type\":\"push\",\"ops\":[$OPS]}"
			echo 'await 1 10 "type":"ack"'
			;;
		*)
			echo 'recv 10'
			echo "send {\"type\":\"push\",\"ops\":[$OPS]}"
			echo 'recv 3'
			;;
		esac
	} >"$tmp/$name.in"
	before=$(fp)
	run_client "$name" "$P1"
	case $k in
	one | two | all | ro)
		outs=$(ack_outcomes "$tmp/$name.out")
		if may_write "$k" "$g"; then expect=acked; elif [[ $k == ro ]]; then expect=read_only; else expect=unauthorized; fi
		for id in "${ids[@]}"; do
			o=$(outcome_of "$outs" "$id")
			[[ $o == "$expect" ]] || { ok=0; why+="op $id: $o, expected $expect; "; }
		done
		;;
	empty)
		expect="bad_frame, then hello_required for the push"
		grep -q '"code":"bad_frame"' "$tmp/$name.out" && grep -q '"code":"hello_required"' "$tmp/$name.out" &&
			! grep -qE '"type":"(welcome|ack)"' "$tmp/$name.out" || { ok=0; why+="not $expect; "; }
		;;
	*)
		expect="unauthorized, closed, no ack"
		grep -q '"code":"unauthorized"' "$tmp/$name.out" && grep -q '^CLOSED [0-9]' "$tmp/$name.out" &&
			! grep -qE '"type":"(welcome|ack)"' "$tmp/$name.out" || { ok=0; why+="not $expect; "; }
		;;
	esac
	after=$(fp)
	if [[ $expect == acked ]]; then
		local h a grow
		for h in a b c; do
			[[ $h == "$g" ]] && continue
			[[ $(fp_group "$before" "$h") == $(fp_group "$after" "$h") ]] || { ok=0; why+="group $h changed; "; }
		done
		IFS=: read -r _ _ _ a _ <<<"$(fp_group "$after" "$g")"
		IFS=: read -r _ _ _ grow _ <<<"$(fp_group "$before" "$g")"
		((a == grow + 3)) || { ok=0; why+="group $g: $((a - grow)) new ops, expected 3; "; }
		[[ $(sql -c "SELECT (SELECT title FROM items WHERE id = '$g-w-$k' AND grp = '$g')
		              || '|' || (SELECT title FROM items WHERE id = '$g-s4')
		              || '|' || (SELECT count(*) FROM items WHERE id = '$g-del-$k')") == "w by $k|w by $k|0" ]] ||
			{ ok=0; why+="rows not as pushed; "; }
	else
		[[ $before == "$after" ]] || { ok=0; why+="the database changed (before: $before; after: $after); "; }
	fi
	if [[ $k == rev || $k == unknown || $k == garbage || $k == empty ]]; then
		# The extension itself, without a gateway: every op refused unauthorized.
		outs=$(sql -v t="${TOK[$k]}" -v o="[$OPS]" <<'SQL'
SELECT string_agg(coalesce(e->>'code', '?'), ',') || '|' || jsonb_array_length(r->'acked')
  FROM synclog.push(:'t', 'authz-sql', (:'o')::jsonb) r, jsonb_array_elements(r->'rejected') e GROUP BY r;
SQL
)
		expect+="; synclog.push: unauthorized x3"
		[[ $outs == "unauthorized,unauthorized,unauthorized|0" ]] || { ok=0; why+="synclog.push: $outs; "; }
		[[ $(fp) == "$before" ]] || { ok=0; why+="synclog.push changed the database; "; }
	fi
	if ((ok)); then
		[[ $expect == acked ]] && expect="3 ops acked and applied, other groups untouched"
		[[ $expect == unauthorized || $expect == read_only ]] && expect="3 ops refused $expect, nothing changed"
		pass "write: token $k x group $g: $expect"
	else
		show "$tmp/$name.out" 6
		fail "write: token $k x group $g: $why"
	fi
}
for k in "${KINDS[@]}"; do
	for g in a b c; do write_cell "$k" "$g"; done
done

# Cross-group ops: each refused with its code, nothing changed.
# cross TOKEN_KIND HELLO_GROUPS_JSON then "CODE|DESCRIPTION|OP-ADDER ARGS" lines.
cross() {
	local k=$1 groups=$2 name="cross-$1" line code desc adder before after outs o
	local -a codes=() descs=() ids=()
	shift 2
	OPS=""
	for line in "$@"; do
		IFS='|' read -r code desc adder <<<"$line"
		eval "$adder"
		codes+=("$code") descs+=("$desc") ids+=("$OPID")
	done
	{
		hello "${TOK[$k]}" "$name" "$groups" "$(sql -c 'SELECT synclog.cursor()')"
		echo 'await 1 10 "type":"welcome"'
		echo "send {\"type\":\"push\",\"ops\":[$OPS]}"
		echo 'await 1 10 "type":"ack"'
	} >"$tmp/$name.in"
	before=$(fp)
	run_client "$name" "$P1"
	after=$(fp)
	outs=$(ack_outcomes "$tmp/$name.out")
	for i in "${!ids[@]}"; do
		o=$(outcome_of "$outs" "${ids[$i]}")
		if [[ $o == "${codes[$i]}" ]]; then
			pass "write cross-group: token $k: ${descs[$i]} -> ${codes[$i]}"
		else
			show "$tmp/$name.out" 4
			fail "write cross-group: token $k: ${descs[$i]} -> $o, expected ${codes[$i]}"
		fi
	done
	if [[ $before == "$after" ]]; then
		pass "write cross-group: token $k: nothing changed"
	else
		echo "before: $before"
		echo "after:  $after"
		fail "write cross-group: token $k: nothing changed"
	fi
}
cross all '["a","b","c"]' \
	'group_immutable|upsert a-s5 with grp b (move a row to another group)|add_upsert a-s5 "\"grp\":\"b\""' \
	'group_immutable|upsert notes 101 with team c|add_upsert 101 "\"team\":\"c\"" notes'
cross two '["a","b"]' \
	'group_immutable|upsert a-s5 with grp b (both groups granted)|add_upsert a-s5 "\"grp\":\"b\",\"title\":\"moved\""' \
	'group_immutable|upsert b-s5 with grp null|add_upsert b-s5 "\"grp\":null"' \
	'unauthorized|upsert c-s5 (a row of group c) claiming grp a|add_upsert c-s5 "\"grp\":\"a\",\"title\":\"mine\""'
cross one '["a","b","c"]' \
	'group_immutable|upsert a-s5 with grp b|add_upsert a-s5 "\"grp\":\"b\""' \
	'unauthorized|upsert b-s5 (a row of group b) claiming grp a|add_upsert b-s5 "\"grp\":\"a\",\"title\":\"mine\""' \
	'unauthorized|upsert b-s5 without the group column|add_upsert b-s5 "\"title\":\"mine\""' \
	'unauthorized|delete b-s5|add_delete b-s5' \
	'unauthorized|upsert notes 201 (group b) claiming team a|add_upsert 201 "\"team\":\"a\",\"body\":\"mine\"" notes' \
	'unauthorized|delete notes 301 (group c)|add_delete 301 notes' \
	'unauthorized|upsert a new row c-new-one in group c|add_upsert c-new-one "\"grp\":\"c\",\"title\":\"x\""'
cross ro '["a","b"]' \
	'read_only|upsert a-s5 (group a, granted, read-only)|add_upsert a-s5 "\"title\":\"ro\""' \
	'read_only|delete c-s5 (group c, not granted)|add_delete c-s5'

# A delete of a row id the server never saw is acked whatever the token (a
# tombstone, so that the outcome does not depend on arrival order), but it
# must not let a token block row ids of groups it cannot write: group b's
# writer then creates the row.
ghost_push() { # NAME TOKEN_KIND GROUPS_JSON: pushes $OPS, outcomes in $outs
	{
		hello "${TOK[$2]}" "$1" "$3" "$(sql -c 'SELECT synclog.cursor()')"
		echo 'await 1 10 "type":"welcome"'
		echo "send {\"type\":\"push\",\"ops\":[$OPS]}"
		echo 'await 1 10 "type":"ack"'
	} >"$tmp/$1.in"
	run_client "$1" "$P1"
	outs=$(ack_outcomes "$tmp/$1.out")
}
OPS=""
add_delete b-ghost
ghost_del=$OPID
ghost_push ghost1 one '["a"]'
o1=$(outcome_of "$outs" "$ghost_del")
OPS=""
add_upsert b-ghost '"grp":"b","title":"created after a stranger deleted it"'
ghost_new=$OPID
ghost_push ghost2 all '["b"]'
o2=$(outcome_of "$outs" "$ghost_new")
if [[ $o1 == acked && $o2 == acked && $(sql -c "SELECT grp FROM items WHERE id = 'b-ghost'") == b ]]; then
	pass "write: token one's delete of a row id never seen (acked: a tombstone) does not stop group b from creating it"
else
	show "$tmp/ghost1.out" 3
	show "$tmp/ghost2.out" 3
	fail "write: token one's delete of a row id never seen does not stop group b from creating it (delete: $o1, create: $o2)"
fi

# --- revocation ---------------------------------------------------------------------
# stamp_of FILE ERE: the time (microseconds) of the first stamped line
# matching ERE, empty if none.
stamp_of() {
	local l
	l=$(grep -m 1 -E "^@[0-9.]+ ($2)" "$1") || return 0
	l=${l%% *}
	l=${l#@}
	echo "${l/./}"
}
# fmt_ms MICROSECONDS: milliseconds with one decimal (negative: the close was
# read before psql had returned).
fmt_ms() {
	local us=$1 sign=""
	((us < 0)) && sign=- us=$((-us))
	printf '%s%d.%d' "$sign" $((us / 1000)) $((us % 1000 / 100))
}
revoke_round() {
	local r=$1 load=${2:-} vt kt cur i name gw groups t0 t1 us ms seq
	local -a vnames=() knames=()
	vt=$(sql -c "SELECT synclog.create_token('victim-$r', '{a,b}')") &&
		kt=$(sql -c "SELECT synclog.create_token('keeper-$r', '{a}')") &&
		cur=$(sql -c "SELECT synclog.wait_sequenced('30s')") || { fail "revoke round $r: setup"; return; }
	# victims: 3 on g1, 2 on g2; a keeper on each
	i=0
	for spec in "g1 [\"a\"]" "g1 [\"b\"]" "g1 [\"a\",\"b\"]" "g2 [\"a\"]" "g2 [\"a\",\"b\"]" "g1 keep" "g2 keep"; do
		read -r gw groups <<<"$spec"
		i=$((i + 1))
		if [[ $groups == keep ]]; then
			name="rk$r-$gw" groups='["a"]'
			hello "$kt" "$name" "$groups" "$cur" >"$tmp/$name.in"
			knames+=("$name")
		else
			name="rv$r-$i-$gw"
			hello "$vt" "$name" "$groups" "$cur" >"$tmp/$name.in"
			vnames+=("$name")
		fi
		echo "readuntil $tmp/rv$r.stop 40" >>"$tmp/$name.in"
		echo "$gw $groups" >"$tmp/$name.spec"
		if [[ $gw == g1 ]]; then bg_client "$name" "$P1" --stamp; else bg_client "$name" "$P2" --stamp; fi
	done
	all_welcomed() { local n; for n in "${vnames[@]}" "${knames[@]}"; do grep -q '"type":"welcome"' "$tmp/$n.out" || return 1; done; }
	if ! wait_until 20 all_welcomed; then
		for name in "${vnames[@]}" "${knames[@]}"; do show "$tmp/$name.out" 3; done
		fail "revoke round $r: every connection welcomed"
		touch "$tmp/rv$r.stop"
		wait_bg 5
		return
	fi
	if [[ -n $load ]]; then
		# Under load: a writer pipelines 20 pushes of 100 ops (groups a and
		# b, 300-byte titles) without waiting; the revocation comes once the
		# first is acked, while the gateways are busy fanning the rest out.
		{
			hello "${TOK[all]}" "loader-$r" '["c"]' "$cur"
			echo 'await 1 10 "type":"welcome"'
			awk -v r="$r" 'BEGIN {
				pad = sprintf("%300s", ""); gsub(/ /, "x", pad)
				for (p = 0; p < 20; p++) {
					line = "send {\"type\":\"push\",\"ops\":["
					for (k = 0; k < 100; k++) {
						n = p * 100 + k; g = (n % 2) ? "b" : "a"
						line = line (k ? "," : "") sprintf("{\"id\":\"0b00000%d-0000-4000-8000-%012d\",\"table\":\"items\",\"row\":\"%s-load%d-%d\",\"kind\":\"upsert\",\"fields\":{\"grp\":\"%s\",\"title\":\"%s\",\"n\":%d},\"hlc\":\"0000000000000002\"}", r, n, g, r, n, g, pad, n)
					}
					print line "]}"
				}
			}'
			echo 'await 20 60 "type":"ack"'
		} >"$tmp/loader-$r.in"
		bg_client "loader-$r" "$P1"
		if ! wait_until 20 grep -q '"type":"ack"' "$tmp/loader-$r.out"; then
			show "$tmp/loader-$r.out" 3
			fail "revoke round $r: the loader's first push acked"
		fi
	fi
	sql -c "SELECT synclog.revoke_token('$vt')" >/dev/null
	t0=$(now_us)
	[[ -n $load ]] && echo "revoke round $r: revoked after $(grep -c '"type":"ack"' "$tmp/loader-$r.out") of the loader's 20 acks"
	all_closed() { local n; for n in "${vnames[@]}"; do grep -q ' CLOSED' "$tmp/$n.out" || return 1; done; }
	wait_until 5 all_closed
	for name in "${vnames[@]}"; do
		read -r gw groups <"$tmp/$name.spec"
		us=$(stamp_of "$tmp/$name.out" 'CLOSED [0-9]+')
		if [[ -z $us ]]; then
			show "$tmp/$name.out" 4
			fail "revoke round $r: connection $name ($gw, groups $groups) closed within 1000 ms (not closed after 5 s)"
			continue
		fi
		ms=$(fmt_ms $((us - t0)))
		if grep -q '"code":"unauthorized"' "$tmp/$name.out" && ((us - t0 <= 1000000)); then
			pass "revoke round $r: connection $name ($gw, groups $groups) gets unauthorized and is closed within 1000 ms ($ms ms)"
		else
			show "$tmp/$name.out" 4
			fail "revoke round $r: connection $name ($gw, groups $groups) gets unauthorized and is closed within 1000 ms ($ms ms)"
		fi
	done
	# The other token's connections: open, and still getting changes.
	sql -c "INSERT INTO items VALUES ('a-rv$r', 'a', 'after revoke $r', $r)" >/dev/null
	sql -c "SELECT synclog.wait_sequenced('30s')" >/dev/null
	seq=$(sql -c "SELECT max(seq) FROM synclog.ops WHERE row_id = 'a-rv$r'")
	got_it() { local n; for n in "${knames[@]}"; do grep -qE "\"seq\": ?${seq}[,}]" "$tmp/$n.out" || return 1; done; }
	wait_until 30 got_it
	for name in "${knames[@]}"; do
		read -r gw groups <"$tmp/$name.spec"
		if grep -qE "\"seq\": ?${seq}[,}]" "$tmp/$name.out" && ! grep -qE ' CLOSED|"type":"error"' "$tmp/$name.out"; then
			pass "revoke round $r: another token's connection ($gw) stays open and gets the next change"
		else
			show "$tmp/$name.out" 4
			fail "revoke round $r: another token's connection ($gw) stays open and gets the next change (seq $seq)"
		fi
	done
	touch "$tmp/rv$r.stop"
	wait_bg 10
	# A new hello with the revoked token, on each gateway.
	for gw in g1 g2; do
		name="rn$r-$gw"
		{
			hello "$vt" "$name" '["a"]' 0
			echo "expectclose 10"
		} >"$tmp/$name.in"
		if [[ $gw == g1 ]]; then run_client "$name" "$P1"; else run_client "$name" "$P2"; fi
		if grep -q '"code":"unauthorized"' "$tmp/$name.out" && grep -q '^CLOSED [0-9]' "$tmp/$name.out" &&
			! grep -qE '"type":"(welcome|snapshot|changes)"' "$tmp/$name.out"; then
			pass "revoke round $r: a new hello with the revoked token on $gw gets unauthorized and is closed"
		else
			show "$tmp/$name.out" 4
			fail "revoke round $r: a new hello with the revoked token on $gw gets unauthorized and is closed"
		fi
	done
}
revoke_round 1
revoke_round 2
revoke_round 3 load

# A revocation that commits while a hello with the token is being
# authenticated.  The hello's query reads the token before the revocation
# commits (it waits on a lock of synclog.tokens that the revoking transaction
# R holds, with its snapshot already taken) and is answered only after the
# gateway heard the NOTIFY (its synclog.tables() then waits on a lock of
# synclog.tracked that a second transaction H holds until 300 ms after R
# committed).  The connection must still be refused or closed with
# unauthorized within 1000 ms of R's commit.
revoke_inflight() {
	local vt name=rif t0 us rpid hpid st
	vt=$(sql -c "SELECT synclog.create_token('victim-inflight', '{a}')") || { fail "revoke in flight: setup"; return; }
	sql -v t="$vt" >"$tmp/rlock.out" 2>&1 <<'SQL' &
BEGIN;
LOCK TABLE synclog.tokens IN ACCESS EXCLUSIVE MODE;
SELECT pg_sleep(2);
SELECT synclog.revoke_token(:'t');
COMMIT;
SQL
	rpid=$!
	bg_pids+=("$rpid")
	# locked REL: some session holds an ACCESS EXCLUSIVE lock on REL.
	locked() {
		[[ $(sql -c "SELECT count(*) FROM pg_locks WHERE relation = '$1'::regclass
		               AND mode = 'AccessExclusiveLock' AND granted") == 1 ]]
	}
	# waiting PATTERN: a session of this database waits on a lock, running
	# a query LIKE PATTERN.
	waiting() {
		[[ $(sql -c "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
		               AND wait_event_type = 'Lock' AND query LIKE '$1'") -ge 1 ]]
	}
	if ! wait_until 5 locked synclog.tokens; then
		fail "revoke in flight: setup (R locks synclog.tokens)"
		wait_bg 5
		return
	fi
	sql >"$tmp/hlock.out" 2>&1 <<'SQL' &
BEGIN;
LOCK TABLE synclog.tracked IN ACCESS EXCLUSIVE MODE;
SELECT count(*) FROM synclog.tokens; -- waits for R
SELECT pg_sleep(0.3);
COMMIT;
SQL
	hpid=$!
	bg_pids+=("$hpid")
	{
		hello "$vt" "$name" '["a"]' 0
		echo "readuntil $tmp/rif.stop 30"
	} >"$tmp/$name.in"
	if ! wait_until 5 waiting '%count(*) FROM synclog.tokens%'; then
		fail "revoke in flight: setup (H locks synclog.tracked and waits for R)"
		wait_bg 5
		return
	fi
	bg_client "$name" "$P1" --stamp
	if ! wait_until 5 waiting '%synclog.authenticate%'; then
		echo "the hello's authentication did not wait on R's lock; the case proves nothing"
		fail "revoke in flight: setup (the hello's authentication waits on R)"
		touch "$tmp/rif.stop"
		wait_bg 5
		return
	fi
	while kill -0 "$rpid" 2>/dev/null; do sleep 0.01; done
	t0=$(now_us)
	wait "$rpid"
	st=$?
	wait_until 3 grep -q ' CLOSED' "$tmp/$name.out"
	us=$(stamp_of "$tmp/$name.out" 'CLOSED [0-9]+')
	if ((st == 0)) && [[ -n $us ]] && grep -q '"code":"unauthorized"' "$tmp/$name.out" && ((us - t0 <= 1000000)); then
		local seen="no welcome"
		grep -q '"type":"welcome"' "$tmp/$name.out" && seen="after a welcome"
		pass "revoke in flight: a hello authenticated across the revocation is closed with unauthorized within 1000 ms ($(fmt_ms $((us - t0))) ms, $seen)"
	else
		cat "$tmp/rlock.out" "$tmp/hlock.out"
		show "$tmp/$name.out" 5
		fail "revoke in flight: a hello authenticated across the revocation is closed with unauthorized within 1000 ms"
	fi
	touch "$tmp/rif.stop"
	wait_bg 5
}
revoke_inflight

# --- Origin -------------------------------------------------------------------------
# origin_case PORT GATEWAY ORIGIN|- EXPECT(accepted|403)
origin_n=0
origin_case() {
	local port=$1 gw=$2 origin=$3 expect=$4 name st label
	origin_n=$((origin_n + 1))
	name="or-$origin_n"
	{
		hello "${TOK[all]}" "$name" '["a"]' "$(sql -c 'SELECT synclog.cursor()')"
		echo 'recv 5'
	} >"$tmp/$name.in"
	if [[ $origin == - ]]; then
		label="no Origin"
		run_client "$name" "$port"
	else
		label="Origin ${origin:0:60}$( ((${#origin} > 60)) && echo "... (${#origin} bytes)")"
		run_client "$name" "$port" --origin "$origin"
	fi
	st=$?
	if [[ $expect == accepted ]]; then
		if ((st == 0)) && grep -q '"type":"welcome"' "$tmp/$name.out"; then
			pass "origin: $gw: $label is accepted"
		else
			show "$tmp/$name.out" 3
			fail "origin: $gw: $label is accepted"
		fi
	else
		if ((st == 2)) && grep -q '^ERROR handshake refused: HTTP/1\.[01] 403' "$tmp/$name.out"; then
			pass "origin: $gw: $label is refused at the handshake with HTTP 403"
		else
			show "$tmp/$name.out" 3
			fail "origin: $gw: $label is refused at the handshake with HTTP 403"
		fi
	fi
}
long_origin="http://good.example/$(printf '%0300d' 0)"
origin_case "$P3" "g3 (--allow-origin)" http://good.example accepted
origin_case "$P3" "g3 (--allow-origin)" https://app.example:8443 accepted
origin_case "$P3" "g3 (--allow-origin)" - accepted
origin_case "$P3" "g3 (--allow-origin)" http://evil.example 403
origin_case "$P3" "g3 (--allow-origin)" http://good.example.evil.example 403
origin_case "$P3" "g3 (--allow-origin)" http://good.example:8080 403
origin_case "$P3" "g3 (--allow-origin)" https://good.example 403
origin_case "$P3" "g3 (--allow-origin)" https://app.example 403
origin_case "$P3" "g3 (--allow-origin)" null 403
origin_case "$P3" "g3 (--allow-origin)" "$long_origin" 403
origin_case "$P1" "g1 (no allow-list)" http://evil.example accepted
origin_case "$P1" "g1 (no allow-list)" null accepted
origin_case "$P1" "g1 (no allow-list)" - accepted

# --- the client library: synclog-cli --------------------------------------------------
unset SYNCLOG_SERVER SYNCLOG_TOKEN
# Group c: a small snapshot (the load of revoke round 3 went to a and b), so
# that the CLI is reading when the revocation comes, not still applying rows
# (a client busy with what it already received notices the close late, by
# as long as it takes).
ct=$(sql -c "SELECT synclog.create_token('authz-cli', '{c}')") || suite_abort "cli token"
cli_args=(--db "$tmp/cli.db" --server "ws://127.0.0.1:$P1/" --token "$ct" --group c)
"$cli" "${cli_args[@]}" watch --for 60 >"$tmp/cli-watch.out" 2>"$tmp/cli-watch.err" &
cli_pid=$!
if wait_until 20 grep -q "welcome subject=authz-cli" "$tmp/gw-g1.err"; then
	sql -c "SELECT synclog.revoke_token('$ct')" >/dev/null
	t0=$(now_us)
	wait_until 20 eval '! kill -0 $cli_pid 2>/dev/null'
	t1=$(now_us)
	if kill -0 "$cli_pid" 2>/dev/null; then
		st=running
		suite_kill "$cli_pid"
	else
		wait "$cli_pid"
		st=$?
	fi
	cli_pid=""
	if [[ $st == 2 ]] && grep -q "refused the token" "$tmp/cli-watch.err"; then
		pass "cli: watch with a token revoked meanwhile exits 2, \"refused the token\" ($(((t1 - t0) / 1000)) ms after the revocation)"
	else
		show "$tmp/cli-watch.err" 5
		fail "cli: watch with a token revoked meanwhile exits 2, \"refused the token\" (status $st)"
	fi
else
	show "$tmp/cli-watch.err" 5
	fail "cli: watch with a token revoked meanwhile exits 2 (it never got welcome)"
	suite_kill "$cli_pid"
	cli_pid=""
fi
"$cli" --db "$tmp/cli.db" put items c-cli grp=c title=offline >/dev/null 2>>"$tmp/cli-sync.err"
"$cli" "${cli_args[@]}" sync --timeout 20 >"$tmp/cli-sync.out" 2>>"$tmp/cli-sync.err"
st=$?
if ((st == 2)) && grep -q "refused the token" "$tmp/cli-sync.err" &&
	"$cli" --db "$tmp/cli.db" pending 2>/dev/null | grep -q c-cli &&
	[[ $(sql -c "SELECT count(*) FROM items WHERE id = 'c-cli'") == 0 ]]; then
	pass "cli: sync with the revoked token exits 2, \"refused the token\", the op stays pending and is not applied"
else
	show "$tmp/cli-sync.err" 5
	fail "cli: sync with the revoked token exits 2, \"refused the token\", the op stays pending and is not applied (status $st)"
fi
if sanitizer_clean "$tmp"/cli-*.err; then pass "cli: no sanitizer report"; else
	grep -hE "$SANITIZER_RE" "$tmp"/cli-*.err | head -n 5
	fail "cli: no sanitizer report"
fi

stop_gw g1
stop_gw g2
stop_gw g3
exit "$failed"
