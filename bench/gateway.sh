#!/usr/bin/env bash
# bench/gateway.sh: the gateway benchmarks of `make bench` (issue 4), run by
# bench/run.sh after its own figures, or alone.
#
# Starts a throwaway PostgreSQL 15 cluster of its own with tests/lib/cluster.sh
# (shared_preload_libraries = 'synclog,pg_stat_statements'), builds
# build/bench/gwload and build/bench/lwsbcast (bench/Makefile), copies the
# gateway binary (gateway/synclog-gateway, built with `make -C gateway
# gateway`) to build/bench/gateway/ so a rebuild during the run cannot change
# what is measured, and measures, every figure beside a baseline measured in
# the same run, trials interleaved (gateway, baseline, gateway, ...), medians
# with the min-max spread:
#
#   1. Fan-out latency: N subscribers (100, 1000, 5000) and one publisher,
#      one push of one op every 10 ms (100 pushes/s) for FAN_SECONDS after a
#      1 s warm-up; the latency of a push is its write() at the publisher to
#      the read() that brought its change to the LAST subscriber
#      (build/bench/gwload, mode fanout); a push that has not reached every
#      subscriber FAN_DRAIN (3) s after the last was sent counts with the
#      time waited (the figure is then marked *).  p50 and p99 per trial;
#      the figure is the median over trials.  Baseline: the same generator against
#      build/bench/lwsbcast, a bare libwebsockets broadcast server, the
#      publisher sending the bytes of a changes frame the gateway sent
#      earlier in the run.  Targets: 1000 subscribers p99 <= 15 ms, 5000
#      subscribers p99 <= 100 ms.
#   2. Database queries per notification: 10 and then 1000 subscribers,
#      25 pushes/s (slow enough that notifications do not coalesce) for
#      Q_SECONDS; pg_stat_statements is reset after the subscribers are live,
#      and the calls of the gateway's role (bench_gateway, granted
#      synclog_gateway, used by the gateway alone) other than synclog.push
#      itself are divided by the NOTIFY synclog a listener of gwload's own
#      received meanwhile.  The 1000-subscriber figure is set beside the
#      10-subscriber one; target: equal (to 2 decimals).
#   3. Memory per idle subscribed connection: a fresh gateway, warmed up with
#      20 connections that come and go, its VmRSS read; then connections that
#      have had their welcome and stay idle (gwload answers the gateway's
#      pings) are added up to 1000, then up to 10000 (2000 under
#      BENCH_QUICK=1), the VmRSS read at each once steady (two readings 0.5 s
#      apart within 1%); (VmRSS - first reading) / connections.  Baseline: the
#      same against lwsbcast (connections that completed the WebSocket
#      handshake).  Target <= 8 KiB.
#   4. Push throughput: 100 WebSocket clients, each sending a push of 10 ops
#      (PUSH_BATCH), waiting for its ack, and repeating, for PUSH_SECONDS;
#      half the ops create rows, half update rows of the client's own slice;
#      the clients are subscribed, so the gateway also fans every change out
#      to all 100.  Baseline: pgbench with PG_CLIENTS (8) connections calling
#      synclog.push with the same batches (same mix, built in SQL).  The
#      gateway gets PG_CLIENTS + 1 database connections (--db-connections:
#      one reads the change stream, the others carry queries), so both sides
#      have the same number of connections pushing.  Every trial runs in a
#      fresh database seeded alike.  Target >= 0.7x baseline.  Beside it,
#      without a target, the same with each client following and writing a
#      group of its own (gwload --own-groups), so each change goes back to
#      its writer only: the push path apart from the fan-out of every change
#      to all 100.
#   5. CPU accounting: the share of the machine's CPU that other processes
#      took during the measurements (above 5%: flagged as noisy).
#
# Every gateway runs as `synclog-gateway --listen 127.0.0.1:PORT --db ...
# user=bench_gateway --db-connections PG_CLIENTS+1 --max-connections 12000`,
# other settings at their defaults; its log goes to build/bench/gateway/.
#
# Output: progress lines and a table on stdout (the table only when run
# alone), and the figures as rows (bench/report.sh) in $GW_ROWS_OUT when set
# (bench/run.sh sets it and prints them with its own), else in
# build/bench/gateway/results.json.  Raw outputs of every trial are in
# build/bench/gateway/.  Exit status 0 when every measurement ran (whether or
# not targets were met), 1 when something failed.
#
# Environment:
#   BENCH_QUICK=1   1 trial of 2 s (fan-out), 1 trial (memory, queries),
#                   2 x 2 s (push), 2000 instead of 10000 connections; about
#                   70 s.  Full: 3 x 4 s, 3 trials of 4 s, 3 trials, 3 x 6 s
#                   (twice through the gateway); about 6 minutes.
#   BENCH_CLIENTS (8, as bench/run.sh)   pgbench connections of the push baseline
#   PG_CONFIG / PG_BINDIR, TMPDIR (or CLUSTER_TMPDIR): as bench/run.sh
#
# Every process it starts (gateways, lwsbcast, gwload, pgbench) is recorded
# and stopped by the EXIT trap (also on failure, Ctrl-C and TERM), before the
# cluster is stopped and its directory removed (tests/lib/cluster.sh).

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$REPO/bench
BUILD_DIR=$REPO/build/bench
OUT=$BUILD_DIR/gateway
GWLOAD=$BUILD_DIR/gwload
LWSBCAST=$BUILD_DIR/lwsbcast
GROUP=g1

if [[ ${BENCH_QUICK:-0} == 1 ]]; then
	QUICK=1 FAN_TRIALS=1 FAN_SECONDS=2 Q_TRIALS=1 Q_SECONDS=2 MEM_TRIALS=1 PUSH_TRIALS=2 PUSH_SECONDS=2
	MEM_NS=(1000 2000)
else
	QUICK=0 FAN_TRIALS=3 FAN_SECONDS=4 Q_TRIALS=3 Q_SECONDS=4 MEM_TRIALS=3 PUSH_TRIALS=3 PUSH_SECONDS=6
	MEM_NS=(1000 10000)
fi
FAN_NS=(100 1000 5000)
FAN_RATE=100
FAN_DRAIN=3			# s to wait after the last push for stragglers
Q_NS=(10 1000)
Q_RATE=25
PUSH_CLIENTS=100
PUSH_BATCH=10
PUSH_ROWS=200			# pre-loaded rows per client slice
PG_CLIENTS=${BENCH_CLIENTS:-8}
GW_DB_CONNECTIONS=$((PG_CLIENTS + 1))
GW_MAX_CONNECTIONS=12000
GW_ROLE=bench_gateway

if [[ -z ${PG_BINDIR:-} ]]; then
	PG_BINDIR=$("${PG_CONFIG:-pg_config}" --bindir 2>/dev/null) || PG_BINDIR=
	[[ -x $PG_BINDIR/pgbench ]] || PG_BINDIR=/usr/lib/postgresql/15/bin
fi

CLUSTER_TMPDIR=${CLUSTER_TMPDIR:-${TMPDIR:-/tmp}}
# shellcheck disable=SC2034  # read by tests/lib/cluster.sh
CLUSTER_PRELOAD=synclog,pg_stat_statements
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

# forget_pid PID: drops PID from BG_PIDS once it has been stopped.
forget_pid() {
	local p kept=()
	for p in "${BG_PIDS[@]}"; do [[ $p == "$1" ]] || kept+=("$p"); done
	BG_PIDS=("${kept[@]+"${kept[@]}"}")
}

kill_children() {
	local pid
	for pid in "${BG_PIDS[@]+"${BG_PIDS[@]}"}"; do stop_pid "$pid"; done
	BG_PIDS=()
}
cluster_cleanup_on_exit
cluster_at_exit kill_children
# A command that fails outside die() (set -e) says where, before the trap.
set -o errtrace
trap 'echo "bench/gateway: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

die() {
	echo "bench/gateway: $*" >&2
	if [[ -n ${GW_LOG:-} && -f $GW_LOG ]]; then
		echo "bench/gateway: end of the gateway's log ($GW_LOG):" >&2
		tail -n 15 "$GW_LOG" >&2
	fi
	if [[ -n ${CLUSTER_LOG:-} && -f $CLUSTER_LOG ]]; then
		echo "bench/gateway: end of the server log:" >&2
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
	die "found no free port"
}

# wait_listening PORT PID WHAT: until PORT accepts connections (10 s at most).
wait_listening() {
	local i
	for ((i = 0; i < 100; i++)); do
		kill -0 "$2" 2>/dev/null || die "$3 exited at start"
		[[ -z $(ss -ltnH "sport = :$1" 2>/dev/null) ]] || return 0
		sleep 0.1
	done
	die "$3 does not listen on port $1 after 10 s"
}

# gw_start DB TAG: starts a gateway on database DB; sets GW_PID GW_PORT GW_LOG.
gw_start() {
	local db=$1 tag=$2 i
	GW_PORT=$(pick_port)
	GW_LOG=$OUT/gateway-$tag.log
	"$GW_BIN" --listen "127.0.0.1:$GW_PORT" \
		--db "host=$CLUSTER_DIR port=$PGPORT dbname=$db user=$GW_ROLE application_name=synclog-gateway" \
		"${GW_OPTS[@]}" >"$GW_LOG" 2>&1 &
	GW_PID=$!
	BG_PIDS+=("$GW_PID")
	wait_listening "$GW_PORT" "$GW_PID" "the gateway"
	for ((i = 0; i < 100; i++)); do
		grep -q 'database connected' "$GW_LOG" && return 0
		kill -0 "$GW_PID" 2>/dev/null || die "the gateway exited at start"
		sleep 0.1
	done
	die "the gateway did not connect to the database within 10 s"
}

gw_stop() {
	stop_pid "$GW_PID"
	forget_pid "$GW_PID"
	# (queries cut off by the shutdown itself fail too: not counted)
	local failed
	failed=$(sed '/: shutting down$/,$d' "$GW_LOG" | grep -E 'query failed|push failed' | sort | uniq -c | head -n 5) || true
	[[ -z $failed ]] || printf 'WARNING: the gateway logged failed queries (%s):\n%s\n' "$GW_LOG" "$failed"
}

# lws_start TAG: starts lwsbcast; sets LWS_PID LWS_PORT.
lws_start() {
	LWS_PORT=$(pick_port)
	"$LWSBCAST" --listen "127.0.0.1:$LWS_PORT" >"$OUT/lwsbcast-$1.log" 2>&1 &
	LWS_PID=$!
	BG_PIDS+=("$LWS_PID")
	wait_listening "$LWS_PORT" "$LWS_PID" "lwsbcast"
}

lws_stop() {
	stop_pid "$LWS_PID"
	forget_pid "$LWS_PID"
}

# gwload_run OUTFILE ARGS...: runs gwload (recorded, so the trap stops it)
# and waits for it; sets LINE to its key=value line; dies when it fails.
# (No command substitution around functions that start processes: a
# subshell's processes would escape the trap.)
gwload_run() {
	local out=$1 pid rc=0
	shift
	"$GWLOAD" "$@" >"$out" 2>"$out.err" </dev/null &
	pid=$!
	BG_PIDS+=("$pid")
	wait "$pid" || rc=$?
	forget_pid "$pid"
	if ((rc != 0)); then
		cat "$out.err" >&2
		die "gwload $* failed (status $rc)"
	fi
	[[ ! -s $out.err ]] || sed -n '1,5s/^/  (gwload) /p' "$out.err"
	LINE=$(tail -n 1 "$out")
}

# kv LINE KEY: the value of KEY=... in LINE.
kv() {
	local w
	for w in $1; do
		[[ $w == "$2="* ]] && { echo "${w#*=}"; return 0; }
	done
	echo ""
}

vmrss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# rss_steady PID: VmRSS (KiB) once two readings 0.5 s apart agree within 1%
# (10 s at most; then the last reading).
rss_steady() {
	local a b i
	a=$(vmrss_kib "$1")
	for ((i = 0; i < 20; i++)); do
		sleep 0.5
		b=$(vmrss_kib "$1")
		awk -v a="$a" -v b="$b" 'BEGIN {d = a - b; if (d < 0) d = -d; exit !(d <= 0.01 * b)}' && break
		a=$b
	done
	echo "$b"
}

# --- CPU accounting (as bench/run.sh) ----------------------------------------------

proc_ticks() {
	local pid sum=0 t
	for pid in "$@"; do
		t=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13 + $14 + $15}') || t=0
		sum=$((sum + ${t:-0}))
	done
	echo "$sum"
}

# cpu_snapshot: "total busy steal ours" ticks; ours is the cluster (postmaster
# and its processes) and this script with every process it started.
cpu_snapshot() {
	local pm kids mine
	pm=$(head -n 1 "$PGDATA/postmaster.pid")
	# shellcheck disable=SC2046  # lists of pids
	kids=$(proc_ticks $(pgrep -P "$pm" 2>/dev/null))
	# shellcheck disable=SC2046
	mine=$(proc_ticks $(pgrep -P $$ 2>/dev/null))
	awk -v ours=$(($(proc_ticks "$pm" $$) + kids + mine)) '/^cpu / {
		total = 0; for (i = 2; i <= NF; i++) total += $i
		printf "%d %d %d %d\n", total, $2 + $3 + $4 + $7 + $8, $9, ours}' /proc/stat
}

# other_cpu SNAPSHOT: the share (%) of the machine's CPU that other processes
# took since SNAPSHOT (a cpu_snapshot).
other_cpu() {
	local t0 b0 o0 t1 b1 o1
	read -r t0 b0 _ o0 <<<"$1"
	read -r t1 b1 _ o1 <<<"$(cpu_snapshot)"
	awk -v t=$((t1 - t0)) -v b=$((b1 - b0)) -v o=$((o1 - o0)) 'BEGIN {
		if (t <= 0) t = 1; x = b - o; if (x < 0) x = 0; printf "%.0f", 100 * x / t}'
}

# --- build and start ----------------------------------------------------------------

mkdir -p "$OUT"
T_START=$(date +%s)
make -s -C "$BENCH_DIR" >/dev/null || die "cannot build bench/gwload.c and bench/lwsbcast.c"
make -s -C "$REPO/gateway" gateway >/dev/null || die "cannot build the gateway (make -C gateway gateway)"
GW_BIN=$OUT/synclog-gateway
cp "$REPO/gateway/synclog-gateway" "$GW_BIN"
GW_MD5=$(md5sum "$GW_BIN" | cut -c1-12)
GW_OPTS=()
GW_HELP=$("$GW_BIN" --help 2>&1 || true)
[[ $GW_HELP != *--db-connections* ]] || GW_OPTS+=(--db-connections "$GW_DB_CONNECTIONS")
[[ $GW_HELP != *--max-connections* ]] || GW_OPTS+=(--max-connections "$GW_MAX_CONNECTIONS")
[[ $GW_HELP != *--max-pending-per-peer* ]] || GW_OPTS+=(--max-pending-per-peer 0)  # gwload opens 200 handshakes from one address
HARD_NOFILE=$(ulimit -Hn)
if [[ $HARD_NOFILE != unlimited ]] && ((HARD_NOFILE < ${MEM_NS[-1]} + 200)); then
	die "ulimit -n (hard) is $HARD_NOFILE: too low for ${MEM_NS[-1]} connections"
fi
ulimit -n "$HARD_NOFILE"

cluster_start "# the gateway bench's own settings (bench/gateway.sh)" \
	"max_connections = 100" "pg_stat_statements.track = top" || die "the server failed to start"
export PGHOST=$CLUSTER_DIR
unset PGPASSWORD PGSERVICE PGOPTIONS || true
SUPER_CONNINFO="host=$CLUSTER_DIR port=$PGPORT user=$PGUSER"

# prepare_db DB SEED [OWN]: creates DB with the extension, items (tracked)
# and, when SEED is 1, PUSH_CLIENTS x PUSH_ROWS rows ("%08x-0000-4000-a000-%012x"
# of client and k, as gwload's updates and the pgbench script pick them), in
# GROUP, or with OWN=1 in GROUP-client (gwload --own-groups); sets TOKEN,
# which grants GROUP and every GROUP-client.  pg_stat_statements is created in
# it too.
prepare_db() {
	local db=$1 seed=$2 own=${3:-0}
	psql_q -d postgres -c "CREATE DATABASE $db" >/dev/null || die "cannot create database $db"
	psql_q -d "$db" >/dev/null <<SQL || die "cannot set up database $db"
CREATE EXTENSION synclog;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE TABLE items (id uuid PRIMARY KEY, grp text NOT NULL, title text, n int);
INSERT INTO items
  SELECT (lpad(to_hex(c), 8, '0') || '-0000-4000-a000-' || lpad(to_hex(k), 12, '0'))::uuid,
         CASE WHEN $own = 1 THEN '$GROUP-' || c ELSE '$GROUP' END, 'seed', k
  FROM generate_series(0, $PUSH_CLIENTS - 1) c, generate_series(1, $PUSH_ROWS) k WHERE $seed = 1;
SELECT synclog.track('items', 'grp');
SQL
	TOKEN=$(psql_q -d "$db" -c "SELECT synclog.create_token('bench',
		ARRAY['$GROUP'] || ARRAY(SELECT '$GROUP-' || c FROM generate_series(0, $PUSH_CLIENTS - 1) c))") ||
		die "cannot create a token"
	[[ $TOKEN =~ ^[A-Za-z0-9_-]+$ ]] || die "unexpected token text: $TOKEN"
	psql_q -d "$db" -c "SELECT synclog.wait_sequenced('60s')" >/dev/null || die "the sequencer did not catch up in $db"
	psql_q -d "$db" -c "VACUUM ANALYZE" >/dev/null || die "VACUUM ANALYZE failed"
	psql_q -d "$db" -c "CHECKPOINT" >/dev/null || die "CHECKPOINT failed"
}

drop_db() { psql_q -d postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null || die "cannot drop database $1"; }

server_cursor() { psql_q -d "$1" -c "SELECT synclog.cursor()"; }

prepare_db gw_fan 0
FAN_TOKEN=$TOKEN
# The gateway's own role: only what synclog_gateway grants (the extension's
# role for gateways); pg_stat_statements tells its statements by this role.
psql_q -d postgres >/dev/null <<SQL || die "cannot create role $GW_ROLE"
CREATE ROLE $GW_ROLE LOGIN;
GRANT synclog_gateway TO $GW_ROLE;
SQL

echo "gateway benchmarks ($([[ $QUICK == 1 ]] && echo quick || echo full)): gateway binary md5 $GW_MD5, options: ${GW_OPTS[*]:-(defaults)}, database role $GW_ROLE (granted synclog_gateway)"
echo "          cluster in $CLUSTER_DIR (shared_preload_libraries = '$CLUSTER_PRELOAD'); raw outputs in $OUT"

CPU_START=$(cpu_snapshot)
TRIALS_FILE=$OUT/trials.txt
echo "# figure trial key=value..." >"$TRIALS_FILE"

# --- 1. fan-out latency ---------------------------------------------------------------

TEMPLATE=$OUT/changes-frame.json
rm -f "$TEMPLATE"
declare -A F50=() F99=() B50=() B99=() FINC=()
echo
echo "fan-out latency, push to the last of N subscribers, $FAN_RATE pushes/s, $FAN_TRIALS trials x ${FAN_SECONDS}s (+1 s warm-up)"
for n in "${FAN_NS[@]}"; do
	gw_start gw_fan "fanout-$n"
	lws_start "fanout-$n"
	for ((t = 1; t <= FAN_TRIALS; t++)); do
		snap=$(cpu_snapshot)
		cur=$(server_cursor gw_fan)
		extra=()
		[[ -f $TEMPLATE ]] || extra=(--sample-out "$TEMPLATE")
		gwload_run "$OUT/fanout-gw-$n-$t.out" --mode fanout --port "$GW_PORT" --conns "$n" \
			--rate "$FAN_RATE" --seconds "$FAN_SECONDS" --drain "$FAN_DRAIN" --token "$FAN_TOKEN" --group "$GROUP" \
			--cursor "$cur" --samples "$OUT/fanout-gw-$n-$t.samples" "${extra[@]+"${extra[@]}"}"
		line=$LINE
		echo "fanout-gw $n $t $line" >>"$TRIALS_FILE"
		[[ $(kv "$line" sent) -gt 0 ]] || die "fan-out at $n: nothing was sent"
		[[ $(kv "$line" rejected) == 0 ]] || echo "WARNING: the gateway rejected pushes of the publisher (see $OUT/fanout-gw-$n-$t.out.err)"
		[[ -f $TEMPLATE ]] || die "no changes frame was saved from the gateway"
		F50[$n]+="$(kv "$line" p50_ms) " F99[$n]+="$(kv "$line" p99_ms) " FINC[$n]+="$(kv "$line" incomplete) "
		gwload_run "$OUT/fanout-lws-$n-$t.out" --mode fanout --raw --template "$TEMPLATE" --port "$LWS_PORT" \
			--conns "$n" --rate "$FAN_RATE" --seconds "$FAN_SECONDS" --drain "$FAN_DRAIN" \
			--samples "$OUT/fanout-lws-$n-$t.samples"
		lline=$LINE
		echo "fanout-lws $n $t $lline" >>"$TRIALS_FILE"
		B50[$n]+="$(kv "$lline" p50_ms) " B99[$n]+="$(kv "$lline" p99_ms) "
		others=$(other_cpu "$snap")
		echo "fanout-others $n $t other_cpu_percent=$others" >>"$TRIALS_FILE"
		printf '  N=%-5s trial %d/%d: gateway p50 %s p99 %s ms (%s of %s pushes never reached all); lws p50 %s p99 %s ms (%s); other processes %s%% CPU\n' \
			"$n" "$t" "$FAN_TRIALS" "$(kv "$line" p50_ms)" "$(kv "$line" p99_ms)" "$(kv "$line" incomplete)" \
			"$(kv "$line" sent)" "$(kv "$lline" p50_ms)" "$(kv "$lline" p99_ms)" "$(kv "$lline" incomplete)" "$others"
	done
	gw_stop
	lws_stop
done

echo "  ($(($(date +%s) - T_START)) s so far)"

# --- 2. queries per notification ------------------------------------------------------

declare -A QPN=() QRAW=()
echo
echo "gateway queries per notification (pg_stat_statements, role $GW_ROLE, synclog.push excluded), $Q_RATE pushes/s, $Q_TRIALS trials x ${Q_SECONDS}s"
gw_start gw_fan queries
for ((t = 1; t <= Q_TRIALS; t++)); do
	for n in "${Q_NS[@]}"; do
		cur=$(server_cursor gw_fan)
		gwload_run "$OUT/queries-$n-$t.out" --mode fanout --port "$GW_PORT" --conns "$n" \
			--rate "$Q_RATE" --seconds "$Q_SECONDS" --warmup 0 --token "$FAN_TOKEN" --group "$GROUP" \
			--cursor "$cur" --pgss "$SUPER_CONNINFO dbname=gw_fan" --pgss-role "$GW_ROLE" \
			--pgss-out "$OUT/queries-$n-$t.statements"
		line=$LINE
		echo "queries $n $t $line" >>"$TRIALS_FILE"
		nq=$(kv "$line" queries) nn=$(kv "$line" notifications)
		((nn > 0)) || die "no notification arrived during the queries measurement at $n subscribers"
		qpn=$(awk -v q="$nq" -v n="$nn" 'BEGIN {printf "%.3f", q / n}')
		QPN[$n]+="$qpn " QRAW[$n]+="$nq/$nn "
		echo "  N=$n trial $t/$Q_TRIALS: $nq queries / $nn notifications = $qpn (push calls excluded: $(kv "$line" push_calls); statements in $OUT/queries-$n-$t.statements)"
	done
done
gw_stop

echo "  ($(($(date +%s) - T_START)) s so far)"

# --- 3. memory per idle connection ------------------------------------------------------

# idle_open SERVER PORT N TAG: opens N more idle connections (a gwload in the
# background, recorded in IDLE_PIDS and BG_PIDS) and waits until all have had
# their welcome (lws: their handshake).
IDLE_PIDS=()
idle_open() {
	local server=$1 port=$2 n=$3 out=$OUT/mem-$4.out raw=() lpid i
	[[ $server == gw ]] || raw=(--raw)
	"$GWLOAD" --mode idle --port "$port" --conns "$n" --token "$FAN_TOKEN" --group "$GROUP" --cursor "$cur" \
		"${raw[@]+"${raw[@]}"}" >"$out" 2>"$out.err" </dev/null &
	lpid=$!
	BG_PIDS+=("$lpid")
	IDLE_PIDS+=("$lpid")
	for ((i = 0; i < 1200; i++)); do
		grep -q '^ready' "$out" 2>/dev/null && return 0
		kill -0 "$lpid" 2>/dev/null || { cat "$out.err" >&2; die "gwload (idle, $n connections to $server) failed"; }
		sleep 0.1
	done
	die "gwload (idle, $n connections to $server) not ready after 120 s"
}

# mem_trial SERVER TRIAL: one fresh server, warmed up by 20 connections that
# come and go; its VmRSS; then connections are added up to each of MEM_NS in
# turn, the VmRSS read at each.  Sets MEM_RESULT to the KiB per connection
# at each N (over the first reading), space-separated.
mem_trial() {
	local server=$1 t=$2 pid port raw=() rss0 rss have=0 n pidl out
	if [[ $server == gw ]]; then
		gw_start gw_fan "mem-$t"
		pid=$GW_PID port=$GW_PORT
	else
		lws_start "mem-$t"
		pid=$LWS_PID port=$LWS_PORT raw=(--raw)
	fi
	cur=$(server_cursor gw_fan)
	gwload_run "$OUT/mem-$server-$t-warm.out" --mode idle --port "$port" --conns 20 --seconds 0.5 \
		--token "$FAN_TOKEN" --group "$GROUP" --cursor "$cur" "${raw[@]+"${raw[@]}"}"
	sleep 0.5
	rss0=$(rss_steady "$pid")
	MEM_RESULT=""
	IDLE_PIDS=()
	for n in "${MEM_NS[@]}"; do
		idle_open "$server" "$port" $((n - have)) "$server-$t-$n"
		have=$n
		sleep 0.5
		rss=$(rss_steady "$pid")
		echo "mem-$server $n $t rss_before_kib=$rss0 rss_after_kib=$rss" >>"$TRIALS_FILE"
		MEM_RESULT+="$(awk -v a="$rss0" -v b="$rss" -v n="$n" 'BEGIN {printf "%.3f", (b - a) / n}') "
	done
	for pidl in "${IDLE_PIDS[@]}"; do
		stop_pid "$pidl"
		forget_pid "$pidl"
	done
	for n in "${MEM_NS[@]}"; do
		out=$OUT/mem-$server-$t-$n.out
		grep -q 'closed=0 ' "$out" || echo "WARNING: connections were closed during the memory measurement: $(tail -n 1 "$out")"
	done
	if [[ $server == gw ]]; then gw_stop; else lws_stop; fi
}

declare -A MEM=() MEMB=()
echo
echo "memory per idle subscribed connection (VmRSS delta / connections at ${MEM_NS[*]}), $MEM_TRIALS trial(s)"
for ((t = 1; t <= MEM_TRIALS; t++)); do
	mem_trial gw "$t"
	read -r -a g <<<"$MEM_RESULT"
	mem_trial lws "$t"
	read -r -a b <<<"$MEM_RESULT"
	for i in "${!MEM_NS[@]}"; do
		n=${MEM_NS[i]}
		MEM[$n]+="${g[i]} " MEMB[$n]+="${b[i]} "
		echo "  N=$n trial $t/$MEM_TRIALS: gateway ${g[i]} KiB/connection, lws ${b[i]} KiB/connection"
	done
done
echo "  ($(($(date +%s) - T_START)) s so far)"

# --- 4. push throughput -------------------------------------------------------------------

# The baseline's pgbench script: a batch of PUSH_BATCH ops, half creating rows,
# half updating rows of connection :client_id's slice, as gwload builds them.
push_script() {
	cat <<SQL | tr '\n' ' '
SELECT synclog.push('$1', 'bench-' || :c, (
  SELECT jsonb_agg(jsonb_build_object(
    'id', gen_random_uuid(),
    'table', 'items',
    'row', CASE WHEN (g + :r) % 2 = 0 THEN gen_random_uuid()::text
                ELSE lpad(to_hex(:c::int), 8, '0') || '-0000-4000-a000-' || lpad(to_hex(1 + floor(random() * $PUSH_ROWS)::int), 12, '0') END,
    'kind', 'upsert',
    'fields', CASE WHEN (g + :r) % 2 = 0 THEN jsonb_build_object('grp', '$GROUP', 'title', 'new', 'n', g)
                   ELSE jsonb_build_object('title', 'updated', 'n', g) END,
    'hlc', lpad(to_hex((extract(epoch from clock_timestamp()) * 1000)::bigint << 16), 16, '0')))
  FROM generate_series(1, $PUSH_BATCH) g));
SQL
}

# push_gw KIND OWN: one gateway run of trial $t in a fresh database, all
# clients in GROUP, or with OWN=1 each in a group of its own; sets LINE.
push_gw() {
	local db=gw_push_${t}_$1 own=()
	prepare_db "$db" 1 "$2"
	[[ $2 == 0 ]] || own=(--own-groups)
	gw_start "$db" "push-$1-$t"
	cur=$(server_cursor "$db")
	gwload_run "$OUT/push-$1-$t.out" --mode push --port "$GW_PORT" --conns "$PUSH_CLIENTS" \
		--batch "$PUSH_BATCH" --seconds "$PUSH_SECONDS" --rows-per-client "$PUSH_ROWS" --token "$TOKEN" \
		--group "$GROUP" "${own[@]+"${own[@]}"}" --cursor "$cur"
	gw_stop
	drop_db "$db"
	echo "push-$1 $t $LINE" >>"$TRIALS_FILE"
	[[ $(kv "$LINE" rejected) == 0 ]] || echo "WARNING: the gateway rejected $(kv "$LINE" rejected) ops"
}

declare -a PGW=() PPG=() PGN=()
echo
echo "push throughput, batch $PUSH_BATCH: $PUSH_CLIENTS WebSocket clients through the gateway vs pgbench with $PG_CLIENTS connections; $PUSH_TRIALS trials x ${PUSH_SECONDS}s, each in a fresh database"
for ((t = 1; t <= PUSH_TRIALS; t++)); do
	snap=$(cpu_snapshot)
	db=gw_push_${t}_pg
	prepare_db "$db" 1
	{ echo '\set r random(0, 1)'; echo '\set c :client_id'; push_script "$TOKEN"; echo; } >"$OUT/push-$t.sql"
	if ((t == 1)); then # the script's batches are acked in full
		check=$(sed -e 's/:c/0/g' -e 's/:r/1/g' -e '/^\\set/d' "$OUT/push-$t.sql" | sed 's/;[[:space:]]*$//' |
			{ printf 'SELECT jsonb_array_length(p->%s) || %s || jsonb_array_length(p->%s) FROM (' "'acked'" "' '" "'rejected'"; cat; printf ') AS x(p);\n'; } |
			psql_q -d "$db") || die "the baseline's push script fails"
		[[ $check == "$PUSH_BATCH 0" ]] || die "the baseline's push: acked/rejected = $check (expected $PUSH_BATCH 0)"
	fi
	log=$OUT/push-pgbench-$t.log
	"$PG_BINDIR/pgbench" -n -M prepared -c "$PG_CLIENTS" -j 2 -T "$PUSH_SECONDS" -f "$OUT/push-$t.sql" "$db" >"$log" 2>&1 &
	pid=$!
	BG_PIDS+=("$pid")
	wait "$pid" || { tail -n 20 "$log" >&2; die "pgbench (push baseline) failed"; }
	forget_pid "$pid"
	! grep -qE 'aborted|^number of failed transactions: [1-9]' "$log" || { tail -n 20 "$log" >&2; die "pgbench: transactions failed"; }
	tps=$(awk '/^tps = / {print $3; exit}' "$log")
	[[ -n $tps ]] || die "pgbench: no tps in its output ($log)"
	pg_rate=$(awk -v t="$tps" -v b="$PUSH_BATCH" 'BEGIN {printf "%.1f", t * b}')
	drop_db "$db"

	push_gw gw 0
	line=$LINE
	push_gw gwown 1
	nline=$LINE
	echo "push-pgbench $t tps=$tps ops_per_s=$pg_rate" >>"$TRIALS_FILE"
	gw_rate=$(kv "$line" ops_per_s)
	PGW+=("$gw_rate") PPG+=("$pg_rate") PGN+=("$(kv "$nline" ops_per_s)")
	others=$(other_cpu "$snap")
	echo "push-others $t other_cpu_percent=$others" >>"$TRIALS_FILE"
	echo "  trial $t/$PUSH_TRIALS: gateway $gw_rate ops/s (ack p50 $(kv "$line" ack_p50_ms) ms, p99 $(kv "$line" ack_p99_ms) ms), each client in its own group $(kv "$nline" ops_per_s) ops/s; pgbench $pg_rate ops/s; other processes $others% CPU"
done

echo "  ($(($(date +%s) - T_START)) s so far)"
CPU_END=$(cpu_snapshot)

# --- CPU ------------------------------------------------------------------------------------

read -r c_tot0 c_busy0 c_steal0 c_ours0 <<<"$CPU_START"
read -r c_tot1 c_busy1 c_steal1 c_ours1 <<<"$CPU_END"
read -r CPU_OURS CPU_OTHER CPU_STEAL < <(awk -v t=$((c_tot1 - c_tot0)) -v b=$((c_busy1 - c_busy0)) \
	-v s=$((c_steal1 - c_steal0)) -v o=$((c_ours1 - c_ours0)) 'BEGIN {
	if (t <= 0) t = 1; other = b - o; if (other < 0) other = 0
	printf "%.1f %.1f %.1f\n", 100 * o / t, 100 * other / t, 100 * s / t}')
echo
echo "CPU during the gateway measurements ($(nproc) CPUs = 100%): this benchmark ${CPU_OURS}%, other processes ${CPU_OTHER}%, steal ${CPU_STEAL}%"
if awk -v o="$CPU_OTHER" -v s="$CPU_STEAL" 'BEGIN {exit !(o + s >= 5)}'; then
	echo "WARNING: other processes (or the hypervisor) took ${CPU_OTHER}% + ${CPU_STEAL}% of the CPU during the gateway measurements: figures are pessimistic and noisy"
fi

# --- rows ------------------------------------------------------------------------------------

ratio_of() { awk -v v="$1" -v b="$2" 'BEGIN {printf "%.3f", (b > 0) ? v / b : 0}'; }
le() { awk -v v="$1" -v w="$2" 'BEGIN {print (v <= w) ? "true" : "false"}'; }

FOOT=""
for n in "${FAN_NS[@]}"; do
	# shellcheck disable=SC2086  # lists of numbers
	{
		read -r m50 n50 x50 <<<"$(stats ${F50[$n]})"
		read -r m99 n99 x99 <<<"$(stats ${F99[$n]})"
		read -r b50 _ _ <<<"$(stats ${B50[$n]})"
		read -r b99 _ _ <<<"$(stats ${B99[$n]})"
	}
	inc=$(echo "${FINC[$n]}" | awk '{for (i = 1; i <= NF; i++) s += $i} END {print s + 0}')
	note=""
	if ((inc > 0)); then
		note="*"
		FOOT+="; *: $inc of the pushes at $n subscribers never reached all of them within ${FAN_DRAIN}s (counted with the time waited)"
	fi
	case $n in
	1000) tgt="<= 15 ms" met=$(le "$m99" 15) ;;
	5000) tgt="<= 100 ms" met=$(le "$m99" 100) ;;
	*) tgt="" met=null ;;
	esac
	add_row "gw_fanout_${n}_subs_p50_ms" "gw fan-out, last of $n, p50$note" "$m50" ms "$b50" "$(ratio_of "$m50" "$b50")" "" null \
		"$n50" "$x50" "$FAN_TRIALS" "ms (lws)"
	add_row "gw_fanout_${n}_subs_p99_ms" "gw fan-out, last of $n, p99$note" "$m99" ms "$b99" "$(ratio_of "$m99" "$b99")" "$tgt" "$met" \
		"$n99" "$x99" "$FAN_TRIALS" "ms (lws)"
done

# shellcheck disable=SC2086
read -r q10 q10n q10x <<<"$(stats ${QPN[10]})"
# shellcheck disable=SC2086
read -r q1k q1kn q1kx <<<"$(stats ${QPN[1000]})"
qmet=$(awk -v a="$q10" -v b="$q1k" 'BEGIN {print (sprintf("%.2f", a) == sprintf("%.2f", b)) ? "true" : "false"}')
add_row gw_queries_per_notification_10_subs "gw queries/notification, 10 subs" "$q10" queries "" "" "" null \
	"$q10n" "$q10x" "$Q_TRIALS"
add_row gw_queries_per_notification_1000_subs "gw queries/notification, 1000 subs" "$q1k" queries "$q10" "$(ratio_of "$q1k" "$q10")" \
	"= 10-subscriber figure" "$qmet" "$q1kn" "$q1kx" "$Q_TRIALS" "(10 subs)"

for n in "${MEM_NS[@]}"; do
	# shellcheck disable=SC2086
	read -r mm mn mx <<<"$(stats ${MEM[$n]})"
	# shellcheck disable=SC2086
	read -r bm _ _ <<<"$(stats ${MEMB[$n]})"
	label="gw memory per idle conn, $n"
	name="gw_idle_connection_memory_${n}_conns_kib"
	if [[ $QUICK == 1 && $n != 1000 ]]; then
		label="gw memory per idle conn, $n (quick)"
		name="gw_idle_connection_memory_${n}_conns_quick_kib"
	fi
	add_row "$name" "$label" "$mm" KiB "$bm" "$(ratio_of "$mm" "$bm")" "<= 8 KiB" "$(le "$mm" 8)" \
		"$mn" "$mx" "$MEM_TRIALS" "KiB (lws)"
done

read -r pm pmn pmx <<<"$(stats "${PGW[@]}")"
read -r bm _ _ <<<"$(stats "${PPG[@]}")"
pratio=$(ratio_of "$pm" "$bm")
add_row "gw_push_batch${PUSH_BATCH}_ops_per_s" "gw push, $PUSH_CLIENTS clients, batch $PUSH_BATCH" "$pm" ops/s "$bm" "$pratio" \
	">= 0.7x baseline" "$(awk -v r="$pratio" 'BEGIN {print (r >= 0.7) ? "true" : "false"}')" \
	"$pmn" "$pmx" "$PUSH_TRIALS" "ops/s (pgbench)"
read -r nm nmn nmx <<<"$(stats "${PGN[@]}")"
add_row "gw_push_batch${PUSH_BATCH}_own_groups_ops_per_s" "  same, each client its own group" "$nm" ops/s "$bm" "$(ratio_of "$nm" "$bm")" \
	"" null "$nmn" "$nmx" "$PUSH_TRIALS" "ops/s (pgbench)"
add_row gw_other_cpu_percent "CPU used by other processes (gw)" "$CPU_OTHER" "%" "" "" "" null "" "" ""

NOTE="gw rows: median of trials [min-max]; baselines: lws = bare libwebsockets broadcast, pgbench = synclog.push over $PG_CLIENTS connections$FOOT"
if [[ -n ${GW_ROWS_OUT:-} ]]; then
	printf '%s\n' "${ROWS[@]}" >"$GW_ROWS_OUT"
	echo "$NOTE" >"$GW_ROWS_OUT.note"
else
	echo
	print_rows_table "($NOTE)"
	write_rows_json "$OUT/results.json"
	echo "wrote $OUT/results.json"
fi
echo "gateway benchmarks: $(($(date +%s) - T_START)) s"
