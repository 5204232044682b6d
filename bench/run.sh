#!/usr/bin/env bash
# bench/run.sh: the `make bench` runner (the Makefile builds and installs the
# extension first).
#
# Starts a throwaway PostgreSQL 15 cluster of its own with tests/lib/cluster.sh
# (mktemp -d directory, random free port, shared_preload_libraries = 'synclog', max_connections = 100,
# max_worker_processes = 8, fsync and synchronous_commit left at their
# defaults; clients connect over its Unix socket), and measures:
#
#   1. Baseline: pgbench, 8 connections (-c 8 -j 2), a single-row INSERT into
#      an untracked table shaped like the tracked one: rows/s.
#   2. Push throughput: the same 8 connections calling synclog.push with
#      batches of 1, 10 and 100 upsert ops on the tracked table
#      items(id uuid PRIMARY KEY, grp text NOT NULL, title text, n int).
#      The batch is built in SQL inside the same statement; half of the ops
#      update existing rows (each connection its own slice of pre-loaded rows,
#      so connections never wait on each other's row locks) and half create
#      new rows (for batch 1, each transaction picks one at random).  ops/s =
#      tps x batch size; ratio = ops/s over the baseline's median rows/s.
#      Targets: batch 1 >= 0.5x, batch 100 >= 10x.
#      Each figure is measured TRIALS times (interleaved: baseline, 1, 10,
#      100, baseline, ...).  Every trial runs in a fresh database (seeded,
#      sequenced, analyzed, checkpointed; dropped afterwards, which also stops
#      its sequencer), so no trial inherits another's sequencer backlog or
#      op-log growth.  The median and the min-max spread are reported, and
#      for push the number of ops still unstamped when the trial ended (the
#      sequencer keeping up or not).
#   3. Sequencer lag: pgbench pushes batch-1 ops at half the saturating rate
#      (half of the median batch-1 tps above) in the background while
#      build/bench/seqlag (bench/seqlag.c) pushes one op every 10 ms and
#      times commit-returned -> NOTIFY synclog covering the op's seq.
#      p50/p99/max in ms; target p99 <= 5 ms.
#   4. CPU accounting: the share of the machine's CPU that other processes
#      (or the hypervisor, as steal) took during the measurements; above 5%
#      the figures are flagged as noisy.
#   5. The gateway (issue 4): bench/gateway.sh, run once the figures above
#      are taken and this cluster is stopped (it starts its own, with
#      pg_stat_statements): fan-out latency against a bare libwebsockets
#      broadcast, queries per notification, memory per idle connection, push
#      throughput against pgbench.  Its rows join the table and results.json.
#   6. The client store (issue 5): bench/client.sh: local write latency
#      against a bare SQLite INSERT transaction, and incoming changes applied
#      per second against batched INSERTs (no server needed); then the
#      catch-up of a client 100,000 changes behind through the gateway,
#      synclog-cli sync timed end to end, against psql reading the same
#      changes in pages (bench/catchup.sh: a cluster and a gateway of its
#      own).  Its rows join the table and results.json too.
#   7. The browser client (issue 15): bench/web/web.sh, headless Chromium
#      through a gateway and a cluster of its own: local put against a bare
#      sqlite-wasm INSERT on the same VFS, 1,000-change frames against
#      batched INSERTs, first sync of 100,000 rows (its row beside the C
#      client's catch-up), put to visible in a second browser.
#
# Output: a table on stdout, bench/results.json (a JSON list of objects
# with keys name, value, unit, baseline, ratio, target, met, plus min, max and
# trials, or samples, where they apply; target is text such as
# ">= 0.5x baseline", met is true/false, or null where there is no target)
# and, drawn from it by bench/plot.sh with gnuplot, bench/out/fanout.png and
# bench/out/push.png; and the same table as Markdown with the machine and
# the settings in bench/out/results.md (what the README's Performance
# section shows).
# Raw per-trial figures and the lag samples are kept in build/bench/.  The
# fingerprint of the installed synclog.so is printed (and a warning if it
# changes during the run: the cluster keeps the library it loaded at start).
# Exit status: 0 when every measurement ran (whether or not targets were met),
# 1 when something failed (with the end of the server log).
#
# Environment:
#   BENCH_QUICK=1     the 2-minute version of the whole of `make bench`: here 2
#                     trials of 2 s, 3 s of lag probing, 500 pre-loaded rows per
#                     connection (default 5 x 10 s, 20 s, 2000 rows); the
#                     gateway and client parts shorten theirs likewise
#   BENCH_TRIALS, BENCH_SECONDS, BENCH_LAG_SECONDS   override those
#   BENCH_CLIENTS (8), BENCH_THREADS (2)
#   BENCH_GATEWAY=0   skip the gateway's figures (bench/gateway.sh lists its own
#                     durations, quick and full)
#   BENCH_CLIENT=0    skip the client store's figures (bench/client.sh)
#   BENCH_CATCHUP=0   skip the catch-up figure of the client part (bench/catchup.sh)
#   BENCH_WEB=0       skip the browser client's figures (bench/web/web.sh)
#   PG_CONFIG / PG_BINDIR   where PostgreSQL's binaries are
#   TMPDIR (or CLUSTER_TMPDIR)   where the cluster's directory is made (/tmp)
#
# Under root the cluster belongs to the unprivileged user synclog_test and its
# server commands run with runuser; otherwise it belongs to the current user
# (see tests/lib/cluster.sh).  The library's EXIT trap (also on failure,
# Ctrl-C and TERM) first stops every process this script started that is still
# running (kill_children), then stops the cluster and removes its directory.
#
# Only bash, psql, pgbench, a C compiler with libpq, and coreutils/awk (and,
# for the gateway's part, libwebsockets and the tools of bench/Makefile).

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$REPO/bench
BUILD_DIR=$REPO/build/bench
RESULTS=$BENCH_DIR/results.json

if [[ ${BENCH_QUICK:-0} == 1 ]]; then
	TRIALS=${BENCH_TRIALS:-2} SECONDS_PER_TRIAL=${BENCH_SECONDS:-2} LAG_SECONDS=${BENCH_LAG_SECONDS:-3}
	ROWS_PER_CLIENT=500		# pre-loaded rows each connection updates
else
	TRIALS=${BENCH_TRIALS:-5} SECONDS_PER_TRIAL=${BENCH_SECONDS:-10} LAG_SECONDS=${BENCH_LAG_SECONDS:-20}
	ROWS_PER_CLIENT=2000
fi
CLIENTS=${BENCH_CLIENTS:-8}
THREADS=${BENCH_THREADS:-2}
GROUP=g1
LAG_INTERVAL_MS=10

if [[ -z ${PG_BINDIR:-} ]]; then
	PG_BINDIR=$("${PG_CONFIG:-pg_config}" --bindir 2>/dev/null) || PG_BINDIR=
	[[ -x $PG_BINDIR/pgbench ]] || PG_BINDIR=/usr/lib/postgresql/15/bin
fi
for tool in initdb pg_ctl postgres psql pgbench; do
	[[ -x $PG_BINDIR/$tool ]] || { echo "bench: $PG_BINDIR/$tool not found (set PG_CONFIG or PG_BINDIR)" >&2; exit 1; }
done

# The cluster: tests/lib/cluster.sh (PG_BINDIR, chosen above, is kept).
CLUSTER_TMPDIR=${CLUSTER_TMPDIR:-${TMPDIR:-/tmp}}
# shellcheck disable=SC2034  # read by tests/lib/cluster.sh
CLUSTER_PRELOAD=synclog
# shellcheck source=tests/lib/cluster.sh
source "$REPO/tests/lib/cluster.sh"
# shellcheck source=bench/report.sh
source "$BENCH_DIR/report.sh"

# What is measured: the installed library (the cluster loads it at start).
PKGLIBDIR=$("$PG_BINDIR/pg_config" --pkglibdir 2>/dev/null || echo /usr/lib/postgresql/15/lib)
SO_PATH=$PKGLIBDIR/synclog.so
[[ -f $SO_PATH ]] || { echo "bench: $SO_PATH is not installed (make install)" >&2; exit 1; }
so_fingerprint() { md5sum "$SO_PATH" 2>/dev/null | cut -c1-12; }
SO_MD5=$(so_fingerprint)
SO_TIME=$(date -r "$SO_PATH" '+%Y-%m-%d %H:%M:%S' 2>/dev/null || echo '?')
GIT_REV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')
if [[ -n $(git -C "$REPO" status --porcelain -- pg_ext 2>/dev/null) ]]; then GIT_REV+=" + uncommitted changes in pg_ext/"; fi

# --- cleanup -----------------------------------------------------------------

BG_PIDS=()

# kill_children: stops the background processes this script started (run by
# the library's EXIT trap, before it stops the cluster).
kill_children() {
	local pid
	for pid in "${BG_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	done
}
cluster_cleanup_on_exit		# EXIT, and INT/TERM exiting 130/143 through it
cluster_at_exit kill_children

die() {
	echo "bench: $*" >&2
	if [[ -n ${CLUSTER_LOG:-} && -f $CLUSTER_LOG ]]; then
		echo "bench: end of the server log:" >&2
		tail -n 30 "$CLUSTER_LOG" >&2
	fi
	if [[ $(so_fingerprint) != "$SO_MD5" ]]; then
		echo "bench: note: $SO_PATH changed during the run (someone ran make install?); the running cluster still has the old library loaded" >&2
	fi
	exit 1
}

psql_q() {
	cluster_psql -At "$@"
}

# --- the probe -----------------------------------------------------------------

mkdir -p "$BUILD_DIR"
command -v pkg-config >/dev/null 2>&1 || die "pkg-config is missing (make deps installs it)"
# shellcheck disable=SC2046  # pkg-config's flags are meant to split
cc -O2 -Wall -Wextra -Werror -o "$BUILD_DIR/seqlag" "$BENCH_DIR/seqlag.c" \
	$(pkg-config --cflags --libs libpq) || die "cannot build bench/seqlag.c"

# --- the cluster -----------------------------------------------------------------

# start_cluster: a cluster of tests/lib/cluster.sh with the bench's settings
# (appended after the library's own, so they win).
start_cluster() {
	cluster_start "# the bench's own settings (bench/run.sh)" \
		"max_connections = 100" "max_worker_processes = 8" || die "the server failed to start"
	# Clients use the Unix socket in the cluster's directory (less client
	# overhead than TCP on a small machine; same for the baseline and for push).
	export PGHOST=$CLUSTER_DIR
	unset PGPASSWORD PGSERVICE PGOPTIONS || true
}


# --- CPU accounting -------------------------------------------------------------------
#
# To tell a quiet run from one that shared the machine: the CPU ticks of the
# whole machine (/proc/stat) against those of this benchmark (the cluster's
# postmaster with every process it started, live or reaped, and this script
# with every process it started: pgbench, psql, the probe).

proc_ticks() { # PID...: utime+stime+cutime+cstime of each, summed
	local pid sum=0 t
	for pid in "$@"; do
		t=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13 + $14 + $15}') || t=0
		sum=$((sum + ${t:-0}))
	done
	echo "$sum"
}

# cpu_snapshot: "total busy steal ours" ticks.
cpu_snapshot() {
	local pm kids
	pm=$(head -n 1 "$PGDATA/postmaster.pid")
	# shellcheck disable=SC2046  # a list of pids
	kids=$(proc_ticks $(pgrep -P "$pm" 2>/dev/null))
	awk -v ours=$(($(proc_ticks "$pm" $$) + kids)) '/^cpu / {
		total = 0; for (i = 2; i <= NF; i++) total += $i
		printf "%d %d %d %d\n", total, $2 + $3 + $4 + $7 + $8, $9, ours}' /proc/stat
}
T_START=$(date +%s)
start_cluster

# --- databases ----------------------------------------------------------------
#
# Every trial runs in a fresh database (created, seeded, sequenced, analyzed,
# checkpointed; dropped afterwards, which also stops its sequencer worker).
# So no trial inherits another's sequencer backlog, table bloat or op-log
# growth, and the order of the trials matters less.

NROWS=$((CLIENTS * ROWS_PER_CLIENT))
SCRIPTS=$CLUSTER_DIR/scripts
mkdir -p "$SCRIPTS"

# push_sql TOKEN B CLIENT R: the push of a batch of B ops, as SQL.  CLIENT and
# R are SQL expressions (pgbench variables in the scripts): the connection
# number, whose slice of rows the updates pick from, and 0/1, which of op g's
# two kinds it is ((g + R) % 2 = 0 creates a row, else updates one).
push_sql() {
	local token=$1 b=$2 c=$3 r=$4
	cat <<SQL
SELECT synclog.push('$token', 'bench-' || $c, (
  SELECT jsonb_agg(jsonb_build_object(
    'id', gen_random_uuid(),
    'table', 'items',
    'row', CASE WHEN (g + $r) % 2 = 0 THEN gen_random_uuid()
                ELSE md5(($c * $ROWS_PER_CLIENT + 1 + floor(random() * $ROWS_PER_CLIENT))::int::text)::uuid END,
    'kind', 'upsert',
    'fields', CASE WHEN (g + $r) % 2 = 0 THEN jsonb_build_object('grp', '$GROUP', 'title', 'new', 'n', g)
                   ELSE jsonb_build_object('title', 'updated', 'n', g) END,
    'hlc', lpad(to_hex((extract(epoch from clock_timestamp()) * 1000)::bigint << 16), 16, '0')))
  FROM generate_series(1, $b) g));
SQL
}

# prepare_db DB: creates and seeds database DB, sets TOKEN, and writes the
# pgbench scripts for it into $SCRIPTS/DB/.
prepare_db() {
	local db=$1 b
	psql_q -d postgres -c "CREATE DATABASE $db" >/dev/null || die "cannot create database $db"
	psql_q -d "$db" >/dev/null <<SQL || die "cannot set up database $db"
CREATE EXTENSION synclog;
CREATE TABLE items (id uuid PRIMARY KEY, grp text NOT NULL, title text, n int);
CREATE TABLE items_plain (id uuid PRIMARY KEY, grp text NOT NULL, title text, n int);
-- Connection c (pgbench :client_id) updates rows md5(c * $ROWS_PER_CLIENT + k), k in 1..$ROWS_PER_CLIENT.
INSERT INTO items SELECT md5(i::text)::uuid, '$GROUP', 'seed', i FROM generate_series(1, $NROWS) i;
SELECT synclog.track('items', 'grp');
SQL
	TOKEN=$(psql_q -d "$db" -c "SELECT synclog.create_token('bench', ARRAY['$GROUP'])") ||
		die "cannot create a token"
	[[ $TOKEN =~ ^[A-Za-z0-9_-]+$ ]] || die "unexpected token text: $TOKEN"
	psql_q -d "$db" -c "SELECT synclog.wait_sequenced('60s')" >/dev/null ||
		die "the sequencer did not sequence the $NROWS seed rows"
	psql_q -d "$db" -c "VACUUM ANALYZE" >/dev/null || die "VACUUM ANALYZE failed"

	mkdir -p "$SCRIPTS/$db"
	echo "INSERT INTO items_plain (id, grp, title, n) VALUES (gen_random_uuid(), '$GROUP', 'new', 1);" \
		>"$SCRIPTS/$db/baseline.sql"
	for b in 1 10 100; do
		{
			echo '\set r random(0, 1)'
			echo '\set c :client_id'
			push_sql "$TOKEN" "$b" ":c" ":r" | tr '\n' ' '
			echo
		} >"$SCRIPTS/$db/push$b.sql"
	done
	psql_q -d "$db" -c "CHECKPOINT" >/dev/null || die "CHECKPOINT failed"
}

drop_db() {
	psql_q -d postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null || die "cannot drop database $1"
}

# unsequenced DB: how many ops of DB the sequencer has not stamped yet.
unsequenced() {
	psql_q -d "$1" -c "SELECT count(*) FROM synclog.ops WHERE seq IS NULL"
}

# Sanity, once: every batch size is acked in full (no rejections), for both
# kinds of op at batch 1.
prepare_db bench_check
for b in 1 10 100; do
	for r in 0 1; do
		check=$(push_sql "$TOKEN" "$b" 0 "$r" | sed 's/;$//' |
			{ printf 'SELECT jsonb_array_length(p->%s) || %s || jsonb_array_length(p->%s) FROM (\n' "'acked'" "' '" "'rejected'"; cat; printf ') AS x(p);\n'; } |
			psql_q -d bench_check) || die "push of a batch of $b failed"
		[[ $check == "$b 0" ]] || die "push of a batch of $b: acked/rejected = $check (expected $b 0)"
	done
done
drop_db bench_check

# --- machine and settings ---------------------------------------------------------

CPU_MODEL=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
MEM_MB=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024}' /proc/meminfo 2>/dev/null || true)
SETTINGS=$(psql_q -d postgres -F '|' -c "SELECT current_setting('server_version'), current_setting('fsync'),
	current_setting('synchronous_commit'), current_setting('shared_buffers'),
	current_setting('max_connections'), current_setting('wal_level'), current_setting('max_wal_size')")
IFS='|' read -r PG_VERSION S_FSYNC S_SYNC S_SHBUF S_MAXCONN S_WAL S_MAXWAL <<<"$SETTINGS"

echo "synclog bench ($([[ ${BENCH_QUICK:-0} == 1 ]] && echo quick || echo full): $TRIALS trials x ${SECONDS_PER_TRIAL}s per figure, $CLIENTS connections, $THREADS pgbench threads)"
echo "machine:  nproc=$(nproc)  cpu=${CPU_MODEL:-unknown}  memory=${MEM_MB:-?} MB  load average=$(cut -d' ' -f1-3 /proc/loadavg)"
echo "extension: synclog.so md5 $SO_MD5 (installed $SO_TIME), repository at $GIT_REV"
echo "server:   PostgreSQL $PG_VERSION  fsync=$S_FSYNC  synchronous_commit=$S_SYNC  shared_buffers=$S_SHBUF  max_connections=$S_MAXCONN  wal_level=$S_WAL  max_wal_size=$S_MAXWAL"
echo "          cluster in $CLUSTER_DIR, port $PGPORT (clients on the Unix socket); each trial in a fresh database with $NROWS rows in items"
echo

# --- throughput -------------------------------------------------------------------

TRIALS_FILE=$BUILD_DIR/trials.txt
echo "# figure trial tps rate(rows or ops/s) unsequenced_at_end" >"$TRIALS_FILE"

# run_pgbench NAME DB SCRIPT [ARGS...]: one pgbench run; prints its tps.
run_pgbench() {
	local name=$1 db=$2 script=$3 out tps
	shift 3
	out=$CLUSTER_DIR/pgbench-$name.log
	if ! "$PG_BINDIR/pgbench" -n -M prepared -c "$CLIENTS" -j "$THREADS" -f "$script" "$@" "$db" >"$out" 2>&1; then
		tail -n 20 "$out" >&2
		die "pgbench ($name) failed"
	fi
	if grep -qE 'aborted|^number of failed transactions: [1-9]' "$out"; then
		tail -n 20 "$out" >&2
		die "pgbench ($name): transactions failed"
	fi
	tps=$(awk '/^tps = / {print $3; exit}' "$out")
	[[ -n $tps ]] || { tail -n 20 "$out" >&2; die "pgbench ($name): no tps in its output"; }
	echo "$tps"
}

CPU_START=$(cpu_snapshot)
declare -A RATES=() BACKLOG=()
FIGS=(baseline 1 10 100)
for ((t = 1; t <= TRIALS; t++)); do
	line="trial $t/$TRIALS:"
	for f in "${FIGS[@]}"; do
		db=bench_${t}_$f
		prepare_db "$db"
		if [[ $f == baseline ]]; then
			tps=$(run_pgbench "baseline-$t" "$db" "$SCRIPTS/$db/baseline.sql" -T "$SECONDS_PER_TRIAL")
			rate=$tps
			line+=" baseline $(printf '%.0f' "$rate") rows/s;"
			left=0
		else
			tps=$(run_pgbench "push$f-$t" "$db" "$SCRIPTS/$db/push$f.sql" -T "$SECONDS_PER_TRIAL")
			rate=$(awk -v t="$tps" -v b="$f" 'BEGIN {printf "%.3f", t * b}')
			left=$(unsequenced "$db")
			line+=" batch $f $(printf '%.0f' "$rate") ops/s;"
			BACKLOG[$f]+="$left "
		fi
		drop_db "$db"
		RATES[$f]+="$rate "
		echo "$f $t $tps $rate $left" >>"$TRIALS_FILE"
	done
	echo "$line"
done

declare -A MED=() MIN=() MAX=()
for f in "${FIGS[@]}"; do
	# shellcheck disable=SC2086  # a list of numbers
	read -r MED[$f] MIN[$f] MAX[$f] <<<"$(stats ${RATES[$f]})"
done
# shellcheck disable=SC2086
echo "ops the sequencer had not stamped when each push trial ended: batch 1: ${BACKLOG[1]}; batch 10: ${BACKLOG[10]}; batch 100: ${BACKLOG[100]}"
for f in 1 10 100; do
	if [[ ${BACKLOG[$f]} =~ [1-9] ]]; then
		echo "WARNING: the sequencer fell behind at batch $f: ops were still unstamped when the trial ended"
	fi
done

# --- sequencer lag ---------------------------------------------------------------

B1_TPS=$(awk -v r="${MED[1]}" 'BEGIN {printf "%d", r}')
LAG_RATE=$((B1_TPS / 2))
((LAG_RATE >= 1)) || LAG_RATE=1
echo
echo "sequencer lag: background pgbench at $LAG_RATE pushes/s (half of the median batch-1 rate), probe pushing every ${LAG_INTERVAL_MS} ms for ${LAG_SECONDS}s"
prepare_db bench_lag
"$PG_BINDIR/pgbench" -n -M prepared -c "$CLIENTS" -j "$THREADS" -f "$SCRIPTS/bench_lag/push1.sql" \
	-R "$LAG_RATE" -T $((LAG_SECONDS + 4)) bench_lag >"$CLUSTER_DIR/pgbench-lagload.log" 2>&1 &
LOAD_PID=$!
BG_PIDS+=("$LOAD_PID")
sleep 2
LAG_OUT=$("$BUILD_DIR/seqlag" "dbname=bench_lag" "$TOKEN" "$GROUP" "$LAG_SECONDS" "$LAG_INTERVAL_MS" \
	"$BUILD_DIR/seqlag_samples.txt") || die "the seqlag probe failed"
if ! wait "$LOAD_PID"; then
	tail -n 20 "$CLUSTER_DIR/pgbench-lagload.log" >&2
	die "background pgbench for the lag measurement failed"
fi
BG_PIDS=()
LAG_LEFT=$(unsequenced bench_lag)
CPU_END=$(cpu_snapshot)
drop_db bench_lag
LOAD_TPS=$(awk '/^tps = / {printf "%.0f", $3; exit}' "$CLUSTER_DIR/pgbench-lagload.log")
LOAD_LAG=$(awk '/^rate limit schedule lag: avg/ {print $6; exit}' "$CLUSTER_DIR/pgbench-lagload.log")
declare -A LAG=()
for kv in $LAG_OUT; do LAG[${kv%%=*}]=${kv#*=}; done
echo "  background load achieved ${LOAD_TPS:-?} tps (schedule lag avg ${LOAD_LAG:-?} ms); $LAG_LEFT ops unstamped at the end"
echo "  probe: $LAG_OUT"
echo

read -r c_tot0 c_busy0 c_steal0 c_ours0 <<<"$CPU_START"
read -r c_tot1 c_busy1 c_steal1 c_ours1 <<<"$CPU_END"
read -r CPU_OURS CPU_OTHER CPU_STEAL < <(awk -v t=$((c_tot1 - c_tot0)) -v b=$((c_busy1 - c_busy0)) \
	-v s=$((c_steal1 - c_steal0)) -v o=$((c_ours1 - c_ours0)) 'BEGIN {
	if (t <= 0) t = 1; other = b - o; if (other < 0) other = 0
	printf "%.1f %.1f %.1f\n", 100 * o / t, 100 * other / t, 100 * s / t}')
echo "CPU during the measurements ($(nproc) CPUs = 100%): this benchmark ${CPU_OURS}%, other processes ${CPU_OTHER}%, steal ${CPU_STEAL}%; load average now $(cut -d' ' -f1-3 /proc/loadavg)"
if awk -v o="$CPU_OTHER" -v s="$CPU_STEAL" 'BEGIN {exit !(o + s >= 5)}'; then
	echo "WARNING: other processes (or the hypervisor) took ${CPU_OTHER}% + ${CPU_STEAL}% of the CPU during the run: figures are pessimistic and noisy"
fi
echo

# --- the gateway (bench/gateway.sh) ----------------------------------------------------
#
# It starts a cluster of its own (with pg_stat_statements preloaded), so this
# one is stopped first.  Its rows are added to the table below; when it fails
# the figures above are still reported and the exit status is 1.

GW_ROWS_FILE=$BUILD_DIR/gateway/rows.txt
GW_STATUS=0 GW_NOTE=""
if [[ ${BENCH_GATEWAY:-1} != 0 ]]; then
	cluster_stop
	rm -f "$GW_ROWS_FILE" "$GW_ROWS_FILE.note"
	GW_ROWS_OUT=$GW_ROWS_FILE "$BENCH_DIR/gateway.sh" || GW_STATUS=$?
	[[ ! -f $GW_ROWS_FILE.note ]] || GW_NOTE=$(cat "$GW_ROWS_FILE.note")
	if ((GW_STATUS != 0)); then
		echo "bench: the gateway benchmarks failed (status $GW_STATUS; see above); their figures are missing or partial" >&2
		GW_NOTE+="${GW_NOTE:+; }the gateway benchmarks FAILED"
	fi
	echo
fi

# --- the client store (bench/client.sh) ----------------------------------------------
#
# SQLite files on the repository's file system, and the catch-up figure with
# a cluster and a gateway of its own (bench/catchup.sh).  Its rows join the
# table below; when it fails the other figures are still reported and the
# exit status is 1.

CLIENT_ROWS_FILE=$BUILD_DIR/client/rows.txt
CLIENT_STATUS=0
if [[ ${BENCH_CLIENT:-1} != 0 ]]; then
	mkdir -p "$BUILD_DIR/client"
	rm -f "$CLIENT_ROWS_FILE" "$CLIENT_ROWS_FILE.note"
	CLIENT_ROWS_OUT=$CLIENT_ROWS_FILE "$BENCH_DIR/client.sh" || CLIENT_STATUS=$?
	if [[ -f $CLIENT_ROWS_FILE.note ]]; then
		GW_NOTE+="${GW_NOTE:+; }$(cat "$CLIENT_ROWS_FILE.note")"
	fi
	if ((CLIENT_STATUS != 0)); then
		echo "bench: the client store benchmarks failed (status $CLIENT_STATUS; see above)" >&2
		GW_NOTE+="${GW_NOTE:+; }the client store benchmarks FAILED"
	fi
	echo
fi

# --- the browser client (bench/web/web.sh) ------------------------------------------

WEB_ROWS_FILE=$BUILD_DIR/web/rows.txt
WEB_STATUS=0
if [[ ${BENCH_WEB:-1} != 0 ]]; then
	mkdir -p "$BUILD_DIR/web"
	rm -f "$WEB_ROWS_FILE" "$WEB_ROWS_FILE.note"
	WEB_ROWS_OUT=$WEB_ROWS_FILE "$BENCH_DIR/web/web.sh" || WEB_STATUS=$?
	[[ ! -f $WEB_ROWS_FILE.note ]] || GW_NOTE+="${GW_NOTE:+; }$(cat "$WEB_ROWS_FILE.note")"
	if ((WEB_STATUS != 0)); then
		echo "bench: the browser benchmarks failed (status $WEB_STATUS; see above)" >&2
		GW_NOTE+="${GW_NOTE:+; }the browser benchmarks FAILED"
	fi
	echo
fi

# --- report -------------------------------------------------------------------------

# Each row: see bench/report.sh (add_row, print_rows_table, write_rows_json).

BASE=${MED[baseline]}
add_row baseline_insert_rows_per_s "baseline INSERT, untracked" "$BASE" rows/s "" "" "" null \
	"${MIN[baseline]}" "${MAX[baseline]}" "$TRIALS"
for f in 1 10 100; do
	ratio=$(awk -v v="${MED[$f]}" -v b="$BASE" 'BEGIN {printf "%.3f", (b > 0) ? v / b : 0}')
	case $f in
	1) want=0.5 ;;
	100) want=10 ;;
	*) want="" ;;
	esac
	if [[ -n $want ]]; then
		met=$(awk -v r="$ratio" -v w="$want" 'BEGIN {print (r >= w) ? "true" : "false"}')
		target=">= ${want}x baseline"
	else
		met=null target=""
	fi
	add_row "push_batch${f}_ops_per_s" "push, batch $f" "${MED[$f]}" ops/s "$BASE" "$ratio" "$target" "$met" \
		"${MIN[$f]}" "${MAX[$f]}" "$TRIALS"
done
for f in 1 10 100; do
	# shellcheck disable=SC2086  # a list of numbers
	read -r bmed bmin bmax <<<"$(stats ${BACKLOG[$f]})"
	add_row "push_batch${f}_unsequenced_at_end" "  unstamped at end, batch $f" "$bmed" ops "" "" "" null "$bmin" "$bmax" "$TRIALS"
done
lag_met=$(awk -v p="${LAG[p99_ms]:-999999}" -v n="${LAG[samples]:-0}" 'BEGIN {print (n > 0 && p <= 5) ? "true" : "false"}')
add_row seqlag_p50_ms "sequencer lag p50" "${LAG[p50_ms]:-0}" ms "" "" "" null "" "" "${LAG[samples]:-0}"
add_row seqlag_p99_ms "sequencer lag p99" "${LAG[p99_ms]:-0}" ms "" "" "<= 5 ms" "$lag_met" "" "" "${LAG[samples]:-0}"
add_row seqlag_max_ms "sequencer lag max" "${LAG[max_ms]:-0}" ms "" "" "" null "" "" "${LAG[samples]:-0}"
add_row other_cpu_percent "CPU used by other processes" "$CPU_OTHER" "%" "" "" "" null "" "" ""
if [[ -f $GW_ROWS_FILE ]]; then
	while IFS= read -r row; do ROWS+=("$row"); done <"$GW_ROWS_FILE"
fi
if [[ -f $CLIENT_ROWS_FILE ]]; then
	while IFS= read -r row; do ROWS+=("$row"); done <"$CLIENT_ROWS_FILE"
fi
# The browser's rows last; its first-sync row right after the C client's
# catch-up rows when there are both.
if [[ -f $WEB_ROWS_FILE ]]; then
	WEB_FIRST=$(grep '^web_first_sync_s|' "$WEB_ROWS_FILE" || true)
	if [[ -n $WEB_FIRST ]] && printf '%s\n' "${ROWS[@]}" | grep -q '^client_catchup'; then
		KEPT=() placed=0
		for row in "${ROWS[@]}"; do
			KEPT+=("$row")
			if ((!placed)) && [[ $row == client_catchup*_changes_per_s\|* ]]; then KEPT+=("$WEB_FIRST"); placed=1; fi
		done
		ROWS=("${KEPT[@]}")
	else
		WEB_FIRST=""
	fi
	while IFS= read -r row; do [[ -n $WEB_FIRST && $row == "$WEB_FIRST" ]] || ROWS+=("$row"); done <"$WEB_ROWS_FILE"
fi

print_rows_table "(value: median of $TRIALS trials [min-max]; lag: ${LAG[samples]:-0} samples, ${LAG[missed]:-?} missed, ${LAG[rejected]:-?} refused, ${LAG[notifications]:-?} notifications${GW_NOTE:+; $GW_NOTE})"
write_rows_json "$RESULTS"
mkdir -p "$REPO/bench/out"
write_rows_markdown "$REPO/bench/out/results.md" \
	"$(date -u '+%Y-%m-%d %H:%M UTC'), $([[ ${BENCH_QUICK:-0} == 1 ]] && echo 'BENCH_QUICK=1' || echo 'full run') of \`make bench\` at $GIT_REV ($(($(date +%s) - T_START)) s): $(nproc) × ${CPU_MODEL:-unknown CPU}, ${MEM_MB:-?} MB, PostgreSQL $PG_VERSION (fsync=$S_FSYNC, synchronous_commit=$S_SYNC, shared_buffers=$S_SHBUF); other processes took ${CPU_OTHER}% of the CPU during the extension's figures${GW_NOTE:+; $GW_NOTE}."
echo "wrote $RESULTS ($(($(date +%s) - T_START)) s; raw trials in $TRIALS_FILE, lag samples in $BUILD_DIR/seqlag_samples.txt)"
# The plots (fan-out latency against subscribers, push throughput against
# batch size) under bench/out/; a failure here does not undo the figures.
"$REPO/bench/plot.sh" "$RESULTS" "$REPO/bench/out" || echo "bench: the plots failed (above)" >&2
if [[ $(so_fingerprint) != "$SO_MD5" ]]; then
	echo "bench: WARNING: $SO_PATH changed during the run (now md5 $(so_fingerprint)); the cluster used the library it loaded at start (md5 $SO_MD5)" >&2
fi
((GW_STATUS == 0 && CLIENT_STATUS == 0 && WEB_STATUS == 0)) || exit 1
