#!/usr/bin/env bash
# tests/suites/43-client-cli.sh: synclog-cli (client/cli.c) as DESIGN.md's
# "Command-line surfaces" describes it, offline and against a real gateway.
#
# Builds the CLI with ASan and UBSan (`make -C client cli-asan`:
# build/client/synclog-cli-asan, the library compiled in from its sources)
# and the sanitized gateway (`make -C gateway gateway-asan`).  Checks, one
# PASS/FAIL line each:
#   offline (SQLite files in a temporary directory, no server):
#   - put prints an op id; get prints the row as one JSON object; values
#     parse as JSON when they do (3, 0.1 printed as 0.1, true, null, a
#     quoted JSON string), else are strings (hello, a value holding '=');
#     pending lists the op as a JSON line, the numbers' text as typed (0.1
#     and 2.50: synclog.h promises the library keeps it);
#   - list prints JSON lines ordered by primary key; --json; delete prints
#     an op id and the row is gone (get exits 1, "not found"), pending shows
#     the delete; text with quotes, backslashes, tabs and UTF-8 is escaped;
#   - usage errors exit 2 with the usage text; --help exits 0 on stdout;
#     get/list of an unknown table or of synclog's own tables exit 1
#     "unknown table"; reading a missing --db file exits 1 and creates none;
#   - hostile table and column names (x"; DROP TABLE y; --) are quoted:
#     table y survives, the row reads back (sqlite3_prepare_v2 compiles one
#     statement, so broken quoting shows as the row not reading back);
#   - a second --db file is independent of the first;
#   online (database cli43_<pid>: the extension, issues(id, team, title, prio
#   CHECK (prio >= 0)) tracked by team, tokens; the gateway on a free
#   loopback port):
#   - an offline put then sync exits 0 and the row is in PostgreSQL, nothing
#     pending; a second CLI file syncs and get shows the row;
#   - a put with prio=-1 then sync exits 3, prints one JSON line with code
#     constraint_violation, and get shows the row rolled back;
#   - sync with the server down exits 2 with a message on stderr and pending
#     still lists the op, which a later sync delivers; a refused token exits
#     2 (sync and watch);
#   - watch --count 1 in the background prints the change another CLI's
#     sync made and exits 0; watch prints a rejection as {"type":"rejected"};
#     watch exits 0 on SIGTERM;
#   - nothing from the sanitizers on any CLI's or the gateway's stderr.
# Every wait is bounded; the gateway and any watch are killed, the database
# dropped and the temporary directory removed on every exit.

set -uo pipefail

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=tests/lib/suite.sh
source "$REPO/tests/lib/suite.sh"
bin="$REPO/build/client/synclog-cli-asan"
db="cli43_$$"

suite_begin client-cli cli43
w_pid=""
suite_at_exit 'suite_kill $w_pid'
unset SYNCLOG_SERVER SYNCLOG_TOKEN

if ! make --no-print-directory -C "$REPO/client" cli-asan >"$tmp/build.log" 2>&1; then
	cat "$tmp/build.log"
	suite_abort "build (make -C client cli-asan, output above)"
fi

mkdir -p "$tmp/err"
n_run=0
# cli DB ARGS...: runs the CLI on $tmp/DB.db (60 s at most); sets st (exit
# status), out (stdout) and err (stderr); every stderr is kept for the
# sanitizer check.
cli() {
	local d=$1
	shift
	n_run=$((n_run + 1))
	timeout -k 5 60 "$bin" --db "$tmp/$d.db" "$@" >"$tmp/out" 2>"$tmp/err/$n_run"
	st=$?
	out=$(cat "$tmp/out")
	err=$(cat "$tmp/err/$n_run")
}
# ok NAME CONDITION...: PASS when the command CONDITION... succeeds, else
# FAIL after showing the last CLI run.
ok() {
	local name=$1
	shift
	if "$@"; then
		pass "$name"
	else
		echo "--- $name: last run: status $st; stdout:"
		printf '%s\n' "$out" | cut -c1-400
		echo "--- stderr:"
		printf '%s\n' "$err" | cut -c1-400 | head -n 20
		echo "---"
		fail "$name"
	fi
}
uuid_re='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
is_uuid() { [[ $1 =~ $uuid_re ]]; }
lines() { if [[ -z $1 ]]; then echo 0; else printf '%s\n' "$1" | wc -l; fi; }

# ==================================================================== offline

cli a put notes n1 title=hello prio=3 ratio=0.1 big=2.50 done=true gone=null \
	quoted='"42"' eq=a=b=c empty=
op1=$out
ok "put prints an op id" eval '((st == 0)) && is_uuid "$op1"'

cli a get notes n1
ok "get: values parsed as JSON when they parse, else strings (0.1, true, null, \"42\", a=b=c)" \
	eval '((st == 0)) && [[ $out == '\''{"id":"n1","title":"hello","prio":3,"ratio":0.1,"big":2.5,"done":1,"gone":null,"quoted":"42","eq":"a=b=c","empty":""}'\'' ]]'

cli a pending
ok "pending: one JSON line with id, table, row, kind, fields, hlc" \
	eval '((st == 0)) && (($(lines "$out") == 1)) &&
	[[ $out =~ ^\{\"id\":\"$op1\",\"table\":\"notes\",\"row\":\"n1\",\"kind\":\"upsert\",\"fields\":\{\"title\":\"hello\",\"prio\":3,\"ratio\":[0-9.]+,\"big\":[0-9.]+,\"done\":true,\"gone\":null,\"quoted\":\"42\",\"eq\":\"a=b=c\",\"empty\":\"\"\},\"hlc\":\"[0-9a-f]{16}\"\}$ ]]'
# synclog.h: "numbers are kept exactly as written"; the CLI hands the library
# the text typed, and pending shows what the outbox will push.
ok "pending: the outbox keeps the number text typed (0.1, 2.50)" \
	eval '[[ $out == *"\"ratio\":0.1,\"big\":2.50,"* ]]'

cli a put notes n0 title=zero && cli a put notes n2 --json '{"title": "two", "prio": 7}' &&
	cli a list notes
ok "list: JSON lines ordered by primary key; put --json" \
	eval '((st == 0)) && (($(lines "$out") == 3)) &&
	[[ $(printf "%s\n" "$out" | cut -c1-11 | tr "\n" " ") == "{\"id\":\"n0\", {\"id\":\"n1\", {\"id\":\"n2\", " ]] &&
	[[ $out == *"{\"id\":\"n2\",\"title\":\"two\",\"prio\":7,"* ]]'

cli a put notes n1 prio=4 title=$'say "hi" \\ ok\ttab \u00fcn\u00ef'
cli a get notes n1
ok "a second put merges into the row; quotes, backslash, tab and UTF-8 escaped" \
	eval '((st == 0)) && [[ $out == *"\"title\":\"say \\\"hi\\\" \\\\ ok\\ttab ünï\",\"prio\":4,"* ]]'

cli a delete notes n1
opd=$out
ok "delete prints an op id" eval '((st == 0)) && is_uuid "$opd"'
cli a get notes n1
ok "get of a deleted row: exit 1, \"not found\" on stderr, nothing on stdout" \
	eval '((st == 1)) && [[ -z $out && $err == *"not found"* ]]'
cli a pending
ok "pending lists the delete last" \
	eval '((st == 0)) && [[ $(printf "%s\n" "$out" | tail -n 1) == "{\"id\":\"$opd\",\"table\":\"notes\",\"row\":\"n1\",\"kind\":\"delete\",\"fields\":{},"* ]]'
cli a list notes
ok "list after delete: the other rows" eval '((st == 0)) && (($(lines "$out") == 2))'

# --- usage errors and unknown tables -----------------------------------------
usage_ok=1
for args in "" "--db $tmp/a.db" "--db $tmp/a.db frobnicate" "--db $tmp/a.db put notes" \
	"--db $tmp/a.db put notes n1" "--db $tmp/a.db put notes n1 novalue" "--db $tmp/a.db put notes n1 =3" \
	"--db $tmp/a.db put notes n1 a=1 a=2" "--db $tmp/a.db get notes" "--db $tmp/a.db list" \
	"--db $tmp/a.db --bogus 1 list notes" "--db $tmp/a.db put notes n1 --json [1]" \
	"--db $tmp/a.db --count 2 list notes" "--db $tmp/a.db --timeout -1 sync" "--db $tmp/a.db sync" \
	"--db $tmp/a.db --server ws://127.0.0.1:1/ watch" "put notes n1 a=1" "--db"; do
	n_run=$((n_run + 1))
	# shellcheck disable=SC2086 # word splitting wanted
	timeout -k 5 30 "$bin" $args >"$tmp/out" 2>"$tmp/err/$n_run"
	st=$?
	if ((st != 2)) || ! grep -q "^synclog-cli: " "$tmp/err/$n_run" || ! grep -q "^usage: " "$tmp/err/$n_run" ||
		[[ -s $tmp/out ]]; then
		echo "--- synclog-cli $args: status $st, stderr:"
		head -n 2 "$tmp/err/$n_run"
		usage_ok=0
	fi
done
ok "usage errors: exit 2, one message line and the usage text on stderr" eval '((usage_ok))'
n_run=$((n_run + 1))
timeout -k 5 30 "$bin" --help >"$tmp/out" 2>"$tmp/err/$n_run"
st=$? out=$(cat "$tmp/out") err=""
ok "--help: usage on stdout, exit 0" eval '((st == 0)) && [[ $out == usage:* && $out == *"Exit status"* ]]'

cli a get nosuch n1
ok "get of an unknown table: exit 1, \"unknown table\"" eval '((st == 1)) && [[ $err == *"unknown table"* ]]'
cli a list nosuch
ok "list of an unknown table: exit 1, \"unknown table\"" eval '((st == 1)) && [[ $err == *"unknown table"* ]]'
cli a list _synclog_outbox
ok "synclog's own tables are not app tables" eval '((st == 1)) && [[ $err == *"unknown table"* ]]'
cli missing get notes n1
ok "get on a missing --db file: exit 1, no file created" eval '((st == 1)) && [[ ! -e $tmp/missing.db ]]'

# --- hostile names -------------------------------------------------------------
evil='x"; DROP TABLE y; --'
cli a put y r1 a=1
cli a put "$evil" "r'1\"" "c\"; DROP TABLE y; --=v" 'd"=w'
st_put=$st
cli a get "$evil" "r'1\""
ok "a hostile table and column name are quoted: the row reads back" \
	eval '((st_put == 0 && st == 0)) && [[ $out == "{\"id\":\"r'\''1\\\"\",\"c\\\"; DROP TABLE y; --\":\"v\",\"d\\\"\":\"w\"}" ]]'
cli a list "$evil"
st_list=$st
cli a get 'y"; DROP TABLE y; --' r1
st_get2=$st
cli a get y r1
ok "table y survives get/list of hostile names" \
	eval '((st_list == 0 && st_get2 == 1 && st == 0)) && [[ $out == "{\"id\":\"r1\",\"a\":1}" ]]'

# --- a second file ------------------------------------------------------------
cli b put notes n1 title=other
cli b pending
b_pending=$(lines "$out")
cli b get notes n1
b_get=$out
cli a get notes n1
ok "a second --db file is independent" \
	eval '((st == 1 && b_pending == 1)) && [[ $b_get == "{\"id\":\"n1\",\"title\":\"other\"}" ]]'

# sanitizers_quiet NAME FILE...: PASS when no FILE holds a sanitizer report.
sanitizers_quiet() {
	local name=$1 f
	shift
	if grep -lE "$SANITIZER_RE" "$@" >"$tmp/san" 2>/dev/null; then
		while read -r f; do
			echo "--- $f:"
			head -n 40 "$f"
		done <"$tmp/san"
		fail "$name"
	else
		pass "$name"
	fi
}
sanitizers_quiet "ASan/UBSan report nothing (offline CLI runs)" "$tmp"/err/*
rm -f "$tmp"/err/*

# ===================================================================== online

if ! make --no-print-directory -C "$REPO/gateway" gateway-asan >"$tmp/gwbuild.log" 2>&1; then
	cat "$tmp/gwbuild.log"
	suite_abort "build (make -C gateway gateway-asan, output above)"
fi
q() { psql -X -qAt -v ON_ERROR_STOP=1 -d "$db" "$@"; }
if ! suite_create_db "$db" <<'SQL'; then
CREATE TABLE issues (id text PRIMARY KEY, team text NOT NULL, title text,
                     prio int CHECK (prio >= 0));
SELECT synclog.track('issues', 'team');
SQL
	suite_abort "setup (database $db with the synclog extension, output above)"
fi
tok_a=$(q -c "SELECT synclog.create_token('alice', ARRAY['t1'])") &&
	tok_b=$(q -c "SELECT synclog.create_token('bob', ARRAY['t1'])") || suite_abort "setup (tokens)"

port=$(free_port) && dead_port=$(free_port) && [[ $port != "$dead_port" ]] || suite_abort "no free port"
url="ws://127.0.0.1:$port/"
if ! gateway_start "$port" "$db" "$tmp/gw.err"; then
	cat "$tmp/gw.err"
	suite_abort "gateway started (listening and connected within 10 s)"
fi

# A and B: two CLI files, alice's and bob's, both following group t1.
A() { cli A --server "$url" --token "$tok_a" --group t1 "$@"; }
B() { cli B --server "$url" --token "$tok_b" --group t1 "$@"; }

cli A put issues i1 team=t1 title=first prio=1
A sync --timeout 30
ok "offline put, then sync: exit 0" eval '((st == 0)) && [[ -z $out ]]'
ok "the row is in PostgreSQL" eval '[[ $(q -c "SELECT title || '\''/'\'' || prio FROM issues WHERE id = '\''i1'\''") == first/1 ]]'
A pending
ok "nothing pending after sync" eval '((st == 0)) && [[ -z $out ]]'

B sync
st_sync=$st
B get issues i1
ok "a second CLI syncs and get shows the row" \
	eval '((st_sync == 0 && st == 0)) && [[ $out == *"\"id\":\"i1\""* && $out == *"\"team\":\"t1\""* && $out == *"\"title\":\"first\""* && $out == *"\"prio\":1"* ]]'

cli A put issues i1 prio=-1
op_bad=$out
cli A get issues i1
ok "the refused value is visible locally before sync" eval '[[ $out == *"\"prio\":-1"* ]]'
A sync
ok "sync with a refused op: exit 3, one JSON line with code constraint_violation" \
	eval '((st == 3)) && (($(lines "$out") == 1)) &&
	[[ $out == "{\"op_id\":\"$op_bad\",\"table\":\"issues\",\"row\":\"i1\",\"code\":\"constraint_violation\",\"message\":"* ]]'
cli A get issues i1
ok "get shows the row rolled back" eval '((st == 0)) && [[ $out == *"\"prio\":1"* && $out != *"\"prio\":-1"* ]]'

cli A put issues i2 team=t1 title=offline
op_kept=$out
cli A --server "ws://127.0.0.1:$dead_port/" --token "$tok_a" --group t1 sync --timeout 10
ok "sync with the server down: exit 2, a message on stderr" \
	eval '((st == 2)) && [[ $err == "synclog-cli: sync: "* ]]'
cli A pending
ok "pending still lists the op after the failed sync" \
	eval '((st == 0)) && [[ $out == "{\"id\":\"$op_kept\","* ]]'
SYNCLOG_SERVER=$url SYNCLOG_TOKEN=$tok_a cli A --group t1 sync
ok "a later sync (server and token from the environment) delivers it" \
	eval '((st == 0)) && [[ $(q -c "SELECT title FROM issues WHERE id = '\''i2'\''") == offline ]]'

cli A --server "$url" --token not-a-token --group t1 sync
ok "sync with a refused token: exit 2" eval '((st == 2)) && [[ -n $err ]]'
cli A --server "$url" --token not-a-token --group t1 watch --for 20
ok "watch with a refused token: exit 2" eval '((st == 2)) && [[ -n $err ]]'

# wait_for FILE PATTERN SECONDS: true once FILE holds PATTERN (grep -E).
wait_for() {
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		grep -qE -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}
# start_watch NAME DB TOKEN ARGS...: a watch in the background (bounded by
# its own --for, and killed by stop_watch and cleanup: no `timeout`, which
# would put it in a process group of its own); output in $tmp/NAME.out and
# $tmp/NAME.err, pid in w_pid.
start_watch() {
	local name=$1 d=$2 t=$3
	shift 3
	"$bin" --db "$tmp/$d.db" --server "$url" --token "$t" --group t1 watch "$@" \
		>"$tmp/$name.out" 2>"$tmp/$name.err" &
	w_pid=$!
}
# stop_watch SECONDS: waits for the watch to exit (killing it after SECONDS); sets st.
stop_watch() {
	local i
	for ((i = 0; i < $1 * 10; i++)); do
		kill -0 "$w_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$w_pid" 2>/dev/null && kill -KILL "$w_pid" 2>/dev/null
	wait "$w_pid"
	st=$?
	w_pid=""
}

B sync
start_watch watch1 B "$tok_b" --count 1 --for 50
wait_for "$tmp/watch1.err" "connected" 20
cli A put issues i3 team=t1 title=live
op_live=$out
A sync
st_sync=$st
stop_watch 40
out=$(cat "$tmp/watch1.out") err=$(cat "$tmp/watch1.err")
ok "watch --count 1 prints the change another CLI's sync made, then exits 0" \
	eval '((st_sync == 0 && st == 0)) && (($(lines "$out") == 1)) &&
	[[ $out == "{\"type\":\"change\","* && $out == *"\"op_id\":\"$op_live\""* && $out == *"\"row\":\"i3\""* && $out == *"\"title\":\"live\""* ]]'
ok "watch reports connection events on stderr" eval '[[ $err == *"synclog-cli: connected"* ]]'

cli A put issues i3 prio=-5
op_rej=$out
start_watch watch2 A "$tok_a" --for 40
wait_for "$tmp/watch2.out" '"type":"rejected"' 30
kill -TERM "$w_pid" 2>/dev/null
stop_watch 20
out=$(cat "$tmp/watch2.out") err=$(cat "$tmp/watch2.err")
ok "watch prints a rejection as {\"type\":\"rejected\",...} and exits 0 on SIGTERM" \
	eval '((st == 0)) && [[ $out == *"{\"type\":\"rejected\",\"op_id\":\"$op_rej\",\"table\":\"issues\",\"row\":\"i3\",\"code\":\"constraint_violation\""* ]]'

# --- shutdown and sanitizers ----------------------------------------------------
gateway_stop
sanitizers_quiet "ASan/UBSan report nothing (online CLI runs and the gateway)" "$tmp"/err/* "$tmp"/*.err
exit "$failed"
