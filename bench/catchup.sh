#!/usr/bin/env bash
# bench/catchup.sh: the catch-up figure of `make bench` (issue 5): a client
# CHANGES (100,000) changes behind catches up end to end through the gateway.
# Run by bench/client.sh (its catchup_figures hook), or alone.
#
# Starts a throwaway PostgreSQL 15 cluster of its own with tests/lib/cluster.sh
# (shared_preload_libraries = 'synclog'; the gateway and psql use its Unix
# socket), builds the gateway (make -C gateway gateway) and the CLI (make -C
# client: build/client/synclog-cli, no sanitizers) and copies both to
# build/bench/catchup/, so a rebuild during the run cannot change what is
# measured.  Then:
#
#   - database catchup: CREATE EXTENSION synclog; issues(id text primary key,
#     team text not null, title text, prio int), synclog.track('issues',
#     'team'); a token for group t1; a role bench_catchup_gw granted
#     synclog_gateway, which the gateway connects as;
#   - one gateway, --listen 127.0.0.1:PORT (a free port), other settings at
#     their defaults (its log in build/bench/catchup/gateway.log);
#   - the client file: synclog-cli put of one row, then sync, so the client
#     has the table and a cursor > 0; the file is copied aside (base.db);
#   - CHANGES new rows in one INSERT ... SELECT FROM generate_series (the
#     extension's trigger captures each as an op), then synclog.wait_sequenced
#     until the sequencer has stamped them (bounded) and synclog.cursor() is
#     the expected value;
#   - TRIALS trials, each: base.db copied to a fresh file, then
#     `synclog-cli --db FILE --server ... --token ... --group t1 sync` timed by
#     wall clock (date +%s%N around the whole process: start, connect, hello,
#     pull and apply of every change, exit); a trial counts only if sync
#     exited 0, `list issues` prints CHANGES + 1 rows, the last row generated
#     reads back with its fields, and (when the sqlite3 tool is there) the
#     file's cursor is the server's.  Otherwise the script fails and reports
#     no figure.
#   - Baseline, interleaved with the trials (client, baseline, client, ...):
#     the database side alone: one psql session reading the same changes
#     with synclog.changes(ARRAY['t1'], cursor, 1000) page after page (1000:
#     the gateway's page size) from the client's cursor to the end, each page
#     as text into psql (\gset), timed the same way.
#
# Figures (bench/report.sh rows): the median seconds of catch-up [min-max],
# beside the psql read's median seconds; and changes/s (CHANGES / seconds,
# the median of the trials' rates [min-max]) beside psql's changes/s.  No
# target (met null).
#
# Output: progress lines; the rows in $CATCHUP_ROWS_OUT when set
# (bench/client.sh sets it), else a table on stdout and
# build/bench/catchup/results.json.  Raw trial lines in
# build/bench/catchup/trials.txt.  Exit status 0 when every measurement ran, 1
# when something failed (with the end of the gateway's and the server's logs).
#
# Environment:
#   BENCH_QUICK=1   1 trial of 20,000 changes (the figures are labelled so);
#                   full: 3 trials of 100,000 changes
#   BENCH_CATCHUP_CHANGES, BENCH_CATCHUP_TRIALS   override those
#   BENCH_CATCHUP_TIMEOUT   sync --timeout of a trial, seconds (default 600)
#   PG_CONFIG / PG_BINDIR, TMPDIR (or CLUSTER_TMPDIR): as bench/run.sh
#
# The gateway is recorded and stopped by the EXIT trap (also on failure,
# Ctrl-C and TERM), as is a synclog-cli still running, before the cluster is
# stopped and its directory removed (tests/lib/cluster.sh).

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$REPO/bench
OUT=$REPO/build/bench/catchup
GROUP=t1
PAGE=1000

if [[ ${BENCH_QUICK:-0} == 1 ]]; then
	QUICK=1 CHANGES=${BENCH_CATCHUP_CHANGES:-20000} TRIALS=${BENCH_CATCHUP_TRIALS:-1}
else
	QUICK=0 CHANGES=${BENCH_CATCHUP_CHANGES:-100000} TRIALS=${BENCH_CATCHUP_TRIALS:-3}
fi
SYNC_TIMEOUT=${BENCH_CATCHUP_TIMEOUT:-600}
[[ $CHANGES =~ ^[1-9][0-9]*$ && $TRIALS =~ ^[1-9][0-9]*$ && $SYNC_TIMEOUT =~ ^[1-9][0-9]*$ ]] ||
	{ echo "bench/catchup: BENCH_CATCHUP_CHANGES, _TRIALS and _TIMEOUT must be positive integers" >&2; exit 1; }

if [[ -z ${PG_BINDIR:-} ]]; then
	PG_BINDIR=$("${PG_CONFIG:-pg_config}" --bindir 2>/dev/null) || PG_BINDIR=
	[[ -x $PG_BINDIR/psql ]] || PG_BINDIR=/usr/lib/postgresql/15/bin
fi

CLUSTER_TMPDIR=${CLUSTER_TMPDIR:-${TMPDIR:-/tmp}}
# shellcheck disable=SC2034  # read by tests/lib/cluster.sh
CLUSTER_PRELOAD=synclog
# shellcheck source=tests/lib/cluster.sh
source "$REPO/tests/lib/cluster.sh"
# shellcheck source=bench/report.sh
source "$BENCH_DIR/report.sh"

# --- processes and cleanup ----------------------------------------------------

BG_PIDS=()

# stop_pid PID: TERM, then KILL after 10 s; waits for it.  Never fails.
stop_pid() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	return 0
}

forget_pid() {
	local p kept=()
	for p in "${BG_PIDS[@]+"${BG_PIDS[@]}"}"; do [[ $p == "$1" ]] || kept+=("$p"); done
	BG_PIDS=("${kept[@]+"${kept[@]}"}")
}

kill_children() {
	local pid
	trap - ERR	# (waits on stopped processes fail)
	for pid in "${BG_PIDS[@]+"${BG_PIDS[@]}"}"; do stop_pid "$pid"; done
	BG_PIDS=()
}
cluster_cleanup_on_exit
cluster_at_exit kill_children
set -o errtrace
trap 'echo "bench/catchup: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

GW_LOG=$OUT/gateway.log
die() {
	trap - ERR	# (the message says where)
	echo "bench/catchup: $*" >&2
	if [[ -n ${GW_PID:-} && -f $GW_LOG ]]; then
		echo "bench/catchup: end of the gateway's log ($GW_LOG):" >&2
		tail -n 15 "$GW_LOG" >&2
	fi
	if [[ -n ${CLUSTER_LOG:-} && -f $CLUSTER_LOG ]]; then
		echo "bench/catchup: end of the server log:" >&2
		tail -n 15 "$CLUSTER_LOG" >&2
	fi
	exit 1
}

psql_q() { cluster_psql -At "$@"; }

# _ephemeral_low: the first port of the kernel's ephemeral range (32768 if
# unknown).  Ports are picked below it: one inside it may be the local end of
# an outgoing connection, which a listener cannot bind.
_ephemeral_low() {
	local lo=32768
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null
	((lo > 21000)) || lo=60000
	echo "$lo"
}

# pick_port: a random port from 20000 up to the ephemeral range that nothing listens on.
pick_port() {
	local port i
	for ((i = 0; i < 100; i++)); do
		port=$((20000 + (RANDOM * 32768 + RANDOM) % ($(_ephemeral_low) - 20000)))
		[[ -n $(ss -ltnH "sport = :$port" 2>/dev/null) ]] || { echo "$port"; return 0; }
	done
	echo "bench/catchup: found no free port" >&2
	return 1
}

now_ns() { date +%s%N; }
secs_since() { awk -v a="$1" -v b="$(now_ns)" 'BEGIN {printf "%.3f", (b - a) / 1e9}'; }

# cli_run OUTFILE ARGS...: runs the copied synclog-cli with --db $CLI_DB and
# the connection options (recorded, so the trap stops it), stdout to OUTFILE,
# stderr to OUTFILE.err; returns its status.  (Not inside a command
# substitution: a subshell's processes would escape the trap.)
cli_run() {
	local out=$1 pid rc=0
	shift
	"$CLI" --db "$CLI_DB" --server "ws://127.0.0.1:$GW_PORT/" --token "$TOKEN" --group "$GROUP" "$@" \
		>"$out" 2>"$out.err" </dev/null &
	pid=$!
	BG_PIDS+=("$pid")
	wait "$pid" || rc=$?
	forget_pid "$pid"
	return "$rc"
}

# file_cursor FILE: the cursor the client file holds (empty without sqlite3).
file_cursor() {
	command -v sqlite3 >/dev/null 2>&1 || return 0
	sqlite3 -readonly "$1" "SELECT value FROM _synclog_meta WHERE key = 'cursor'" 2>/dev/null || true
}

# --- build ------------------------------------------------------------------------

T_START=$(date +%s)
mkdir -p "$OUT"
command -v ss >/dev/null 2>&1 || die "ss (iproute2) is missing"
echo "catch-up bench: building the gateway and the CLI"
make -s -C "$REPO/gateway" gateway >"$OUT/build.log" 2>&1 ||
	{ cat "$OUT/build.log" >&2; die "cannot build the gateway (make -C gateway gateway)"; }
make -s -C "$REPO/client" >>"$OUT/build.log" 2>&1 ||
	{ cat "$OUT/build.log" >&2; die "cannot build the CLI (make -C client)"; }
GW_BIN=$OUT/synclog-gateway CLI=$OUT/synclog-cli
cp "$REPO/gateway/synclog-gateway" "$GW_BIN"
cp "$REPO/build/client/synclog-cli" "$CLI"
GW_MD5=$(md5sum "$GW_BIN" | cut -c1-12)
CLI_MD5=$(md5sum "$CLI" | cut -c1-12)
SRC_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')
DIRTY=$(git -C "$REPO" status --porcelain -- client gateway 2>/dev/null | wc -l)
((DIRTY == 0)) || SRC_REV+=" + uncommitted changes in client/ or gateway/ ($DIRTY files)"

# --- cluster, database, gateway ------------------------------------------------------

cluster_start "# the catch-up bench's own settings (bench/catchup.sh)" "max_connections = 100" ||
	die "the server failed to start"
export PGHOST=$CLUSTER_DIR
unset PGPASSWORD PGSERVICE PGOPTIONS || true
DB=catchup
GW_ROLE=bench_catchup_gw

psql_q -d postgres -c "CREATE DATABASE $DB" >/dev/null || die "cannot create database $DB"
psql_q -d "$DB" >/dev/null <<SQL || die "cannot set up database $DB"
CREATE EXTENSION synclog;
CREATE TABLE issues (id text PRIMARY KEY, team text NOT NULL, title text, prio int);
SELECT synclog.track('issues', 'team');
CREATE ROLE $GW_ROLE LOGIN;
GRANT synclog_gateway TO $GW_ROLE;
SQL
TOKEN=$(psql_q -d "$DB" -c "SELECT synclog.create_token('bench-catchup', ARRAY['$GROUP'])") ||
	die "cannot create a token"
[[ $TOKEN =~ ^[A-Za-z0-9_-]+$ ]] || die "unexpected token text: $TOKEN"

GW_PORT=$(pick_port) || die "found no free port"
"$GW_BIN" --listen "127.0.0.1:$GW_PORT" \
	--db "host=$CLUSTER_DIR port=$PGPORT dbname=$DB user=$GW_ROLE application_name=synclog-gateway" \
	>"$GW_LOG" 2>&1 &
GW_PID=$!
BG_PIDS+=("$GW_PID")
for ((i = 0; ; i++)); do
	kill -0 "$GW_PID" 2>/dev/null || die "the gateway exited at start"
	if [[ -n $(ss -ltnH "sport = :$GW_PORT" 2>/dev/null) ]] && grep -q 'database connected' "$GW_LOG"; then
		break
	fi
	((i < 100)) || die "the gateway is not listening and connected after 10 s"
	sleep 0.1
done

label_n=$(printf "%'d" "$CHANGES" 2>/dev/null || echo "$CHANGES")
echo "catch-up bench ($([[ $QUICK == 1 ]] && echo quick || echo full)): $TRIALS trials of a client $label_n changes behind"
echo "  cluster in $CLUSTER_DIR; gateway (md5 $GW_MD5) on 127.0.0.1:$GW_PORT as role $GW_ROLE, default options;"
echo "  built from $SRC_REV"
echo "  synclog-cli md5 $CLI_MD5; client files in $OUT; load average $(cut -d' ' -f1-3 /proc/loadavg)"

# --- the client, one change behind nothing ----------------------------------------------

BASE=$OUT/base.db
rm -f "$OUT"/*.db "$OUT"/*.db-wal "$OUT"/*.db-shm "$OUT"/*.db-journal
CLI_DB=$BASE
cli_run "$OUT/seed-put.out" put issues seed "team=$GROUP" title=seed prio=0 ||
	{ cat "$OUT/seed-put.out.err" >&2; die "synclog-cli put failed"; }
cli_run "$OUT/seed-sync.out" sync --timeout 30 ||
	{ cat "$OUT/seed-sync.out" "$OUT/seed-sync.out.err" >&2; die "the first synclog-cli sync failed"; }
cli_run "$OUT/seed-pending.out" pending || die "synclog-cli pending failed"
[[ ! -s $OUT/seed-pending.out ]] || die "the seed row is still pending after the first sync"
START_CURSOR=$(psql_q -d "$DB" -c "SELECT synclog.wait_sequenced('30s')") || die "the seed op was not sequenced"
{ [[ $START_CURSOR =~ ^[0-9]+$ ]] && ((START_CURSOR > 0)); } || die "server cursor after the first sync: '$START_CURSOR'"
# The CLI has exited: the file is closed; nothing may be left in a WAL file
# (only base.db is copied).
[[ ! -s $BASE-wal ]] || die "base.db still has a non-empty WAL file after synclog-cli exited"
fc=$(file_cursor "$BASE")
rm -f "$BASE-wal" "$BASE-shm"	# (what sqlite3 -readonly may leave)
[[ -z $fc || $fc == "$START_CURSOR" ]] || die "the client's cursor after the first sync is $fc, the server's $START_CURSOR"
echo "  client file after the first sync: cursor ${fc:-$START_CURSOR}, $(stat -c %s "$BASE") bytes"

# --- the changes ---------------------------------------------------------------------

t0=$(now_ns)
psql_q -d "$DB" -c "INSERT INTO issues (id, team, title, prio)
	SELECT 'issue-' || lpad(g::text, 7, '0'), '$GROUP', 'catch-up issue number ' || g, g % 5
	FROM generate_series(1, $CHANGES) g" >/dev/null || die "the INSERT of $CHANGES rows failed"
echo "  $label_n rows inserted in $(secs_since "$t0") s; waiting for the sequencer"
t0=$(now_ns)
END_CURSOR=$(psql_q -d "$DB" -c "SELECT synclog.wait_sequenced('300s')") ||
	die "the sequencer did not stamp the $CHANGES ops within 300 s"
((END_CURSOR == START_CURSOR + CHANGES)) ||
	die "server cursor is $END_CURSOR after the insert, expected $((START_CURSOR + CHANGES))"
echo "  sequenced in $(secs_since "$t0") s: server cursor $START_CURSOR -> $END_CURSOR"
psql_q -d "$DB" -c "VACUUM ANALYZE" >/dev/null || die "VACUUM ANALYZE failed"
psql_q -d "$DB" -c "CHECKPOINT" >/dev/null || die "CHECKPOINT failed"

# The baseline's script: one session, page after page from the client's
# cursor; each page's text goes into psql (\gset), its cursor feeds the next.
PAGES=$(((CHANGES + PAGE - 1) / PAGE))
BASE_SQL=$OUT/psql-pages.sql
{
	echo "\\set cur $START_CURSOR"
	for ((p = 0; p < PAGES; p++)); do
		echo "SELECT c.j->>'cursor' AS cur, c.j::text AS page FROM (SELECT synclog.changes(ARRAY['$GROUP'], :cur, $PAGE) AS j) c \\gset"
	done
	echo "SELECT :cur AS final_cursor;"
} >"$BASE_SQL"

# --- trials ----------------------------------------------------------------------------

TRIALS_FILE=$OUT/trials.txt
echo "# gateway md5 $GW_MD5, synclog-cli md5 $CLI_MD5, built from $SRC_REV; trial key=value..." >"$TRIALS_FILE"
SECS=() RATES=() BSECS=() BRATES=()
LAST_ID=issue-$(printf '%07d' "$CHANGES")
echo "  trials: synclog-cli sync of a fresh copy of the client file, then psql reading the same changes in pages of $PAGE"
for ((t = 1; t <= TRIALS; t++)); do
	CLI_DB=$OUT/trial-$t.db
	rm -f "$CLI_DB" "$CLI_DB-wal" "$CLI_DB-shm"
	cp "$BASE" "$CLI_DB"
	rc=0
	t0=$(now_ns)
	cli_run "$OUT/trial-$t-sync.out" sync --timeout "$SYNC_TIMEOUT" || rc=$?
	secs=$(secs_since "$t0")
	if ((rc != 0)); then
		sed -n '1,20p' "$OUT/trial-$t-sync.out" "$OUT/trial-$t-sync.out.err" >&2
		die "trial $t: synclog-cli sync exited $rc after $secs s (output above; full in $OUT/trial-$t-sync.out*)"
	fi
	cli_run "$OUT/trial-$t-list.out" list issues || die "trial $t: synclog-cli list issues failed"
	rows=$(wc -l <"$OUT/trial-$t-list.out")
	((rows == CHANGES + 1)) ||
		die "trial $t: after sync (exit 0, $secs s) the client lists $rows rows of issues, expected $((CHANGES + 1)) (list in $OUT/trial-$t-list.out)"
	cli_run "$OUT/trial-$t-get.out" get issues "$LAST_ID" || die "trial $t: synclog-cli get issues $LAST_ID failed"
	grep -q "\"catch-up issue number $CHANGES\"" "$OUT/trial-$t-get.out" ||
		die "trial $t: row $LAST_ID reads back as $(cat "$OUT/trial-$t-get.out")"
	fc=$(file_cursor "$CLI_DB")
	[[ -z $fc || $fc == "$END_CURSOR" ]] || die "trial $t: the client's cursor is $fc after sync, the server's $END_CURSOR"
	rate=$(awk -v n="$CHANGES" -v s="$secs" 'BEGIN {printf "%.1f", (s > 0) ? n / s : 0}')
	rm -f "$CLI_DB" "$CLI_DB-wal" "$CLI_DB-shm" "$OUT/trial-$t-list.out"

	t0=$(now_ns)
	cluster_psql -At -d "$DB" -f "$BASE_SQL" >"$OUT/trial-$t-psql.out" 2>&1 ||
		{ cat "$OUT/trial-$t-psql.out" >&2; die "trial $t: the psql read of the changes failed"; }
	bsecs=$(secs_since "$t0")
	[[ $(tail -n 1 "$OUT/trial-$t-psql.out") == "$END_CURSOR" ]] ||
		die "trial $t: the psql read ended at cursor $(tail -n 1 "$OUT/trial-$t-psql.out"), expected $END_CURSOR"
	brate=$(awk -v n="$CHANGES" -v s="$bsecs" 'BEGIN {printf "%.1f", (s > 0) ? n / s : 0}')

	SECS+=("$secs") RATES+=("$rate") BSECS+=("$bsecs") BRATES+=("$brate")
	echo "trial=$t changes=$CHANGES seconds=$secs changes_per_s=$rate rows=$rows cursor=${fc:-?} psql_seconds=$bsecs psql_changes_per_s=$brate" >>"$TRIALS_FILE"
	echo "  trial $t/$TRIALS: catch-up $secs s ($rate changes/s; $rows rows, cursor ${fc:-not checked}); psql pages $bsecs s ($brate changes/s)"
done
rm -f "$BASE" "$BASE-wal" "$BASE-shm"
if grep -qE 'query failed|push failed' "$GW_LOG"; then
	echo "WARNING: the gateway logged failed queries ($GW_LOG)"
fi

# --- rows ----------------------------------------------------------------------------------

ratio_of() { awk -v v="$1" -v b="$2" 'BEGIN {printf "%.3f", (b > 0) ? v / b : 0}'; }
read -r sm sn sx <<<"$(stats "${SECS[@]}")"
read -r rm_ rn rx <<<"$(stats "${RATES[@]}")"
read -r bsm _ _ <<<"$(stats "${BSECS[@]}")"
read -r brm _ _ <<<"$(stats "${BRATES[@]}")"
# Names: client_catchup_seconds and ..._changes_per_s at 100,000 changes;
# another count (BENCH_QUICK=1, BENCH_CATCHUP_CHANGES) is in the name.
suffix="" lsuffix=", $label_n"
if [[ $QUICK == 1 || $CHANGES != 100000 ]]; then
	suffix="_$CHANGES"
	[[ $QUICK == 0 ]] || { suffix+="_quick"; lsuffix+=" (quick)"; }
fi
add_row "client_catchup${suffix}_seconds" "client catch-up via gw${lsuffix}" "$sm" s "$bsm" "$(ratio_of "$sm" "$bsm")" \
	"" null "$sn" "$sx" "$TRIALS" "s (psql)"
add_row "client_catchup${suffix}_changes_per_s" "  same, changes/s" "$rm_" changes/s "$brm" "$(ratio_of "$rm_" "$brm")" \
	"" null "$rn" "$rx" "$TRIALS" "chg/s (psql)"

NOTE="catch-up: a client $label_n changes behind, synclog-cli sync through the gateway, wall clock, median of $TRIALS [min-max];"
NOTE+=" baseline psql pages = the database side alone, one psql session reading the same changes with synclog.changes(..., $PAGE) page by page"
if [[ -n ${CATCHUP_ROWS_OUT:-} ]]; then
	printf '%s\n' "${ROWS[@]}" >"$CATCHUP_ROWS_OUT"
	echo "$NOTE" >"$CATCHUP_ROWS_OUT.note"
else
	echo
	print_rows_table "($NOTE)"
	write_rows_json "$OUT/results.json"
	echo "wrote $OUT/results.json"
fi
echo "catch-up benchmark: $(($(date +%s) - T_START)) s"
