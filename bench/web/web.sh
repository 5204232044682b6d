#!/usr/bin/env bash
# bench/web/web.sh: the browser client's figures of `make bench` (issue 15),
# run by bench/run.sh (BENCH_WEB=0 skips them), or alone.
#
# Starts a throwaway cluster (tests/lib/cluster.sh) with a database holding
# issues(id text PRIMARY KEY, team text NOT NULL, title text, prio int),
# tracked by team, seeded with FIRST_ROWS rows in team g1 (100,000; 20,000
# with BENCH_QUICK=1) and sequenced; a token for the groups g1, p and l; a
# gateway on 127.0.0.1 (a free port) serving, with --static, a temporary
# copy of web/dist/ plus bench/web/page.html and bench-worker.js (built by
# bench/web/bench.mjs prepare).  Then bench/web/bench.mjs run drives
# headless Chromium (/usr/bin/chromium, a fresh profile per browser) through
# the figures, TRIALS times each (5; 2 with BENCH_QUICK=1), interleaved:
#
#   1. local put p50/p99: db.put's promise (page -> owner worker -> commit ->
#      page) against a bare one-row INSERT transaction sent by the page to a
#      worker of the bench's own on the same VFS and settings (opfs-sahpool,
#      rollback journal, synchronous=FULL); 50 warm-up puts each, then 500
#      (200 quick) timed; group p, connected to the gateway.
#   2. 1,000-change frames through Store.applyChanges (web/src/store.ts in
#      the bench worker) against the same rows in 1,000-row INSERT
#      transactions; one warm-up frame each, then 20 (5 quick).
#   3. first sync: a fresh profile, openSynclog for group g1 until
#      status.cursor reaches the server's cursor and the rows are queryable.
#   4. put to visible: two Chromium processes (profiles of their own) on group
#      l; one puts, the other stamps when a query first sees the row (on its
#      'change' event); both stamps are performance.timeOrigin + now() on this
#      machine's clock.  20 warm-up puts, then 200 (60 quick) per trial.
#
# Rows go to $WEB_ROWS_OUT (bench/run.sh adds them to its table and
# results.json) or, run alone, to a table and build/bench/web/results.json.
# Per-trial figures in build/bench/web/trials.txt.  The EXIT trap stops the
# gateway, the cluster and (through bench.mjs, and its process group) every
# browser; the temporary static directory is removed.
#
# Environment: BENCH_QUICK=1, BENCH_WEB_TRIALS (5, quick 2), BENCH_WEB_ROWS
# (the first sync's rows), BENCH_WEB_FIRST_SYNC=0 (skip that figure: then
# this script stops for want of its row), CHROMIUM (/usr/bin/chromium),
# PG_CONFIG / PG_BINDIR, TMPDIR.  Note: it rebuilds web/dist/ (node build.mjs).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR=$REPO/bench
OUT=$REPO/build/bench/web
if [[ ${BENCH_QUICK:-0} == 1 ]]; then FIRST_ROWS=${BENCH_WEB_ROWS:-20000}; else FIRST_ROWS=${BENCH_WEB_ROWS:-100000}; fi

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

BG_PIDS=() STATIC=""
stop_pid() { # PID: TERM, KILL after 10 s, waited for; never fails
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
	for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	return 0
}
kill_children() {
	local pid
	for pid in "${BG_PIDS[@]+"${BG_PIDS[@]}"}"; do stop_pid "$pid"; done
	BG_PIDS=()
	[[ -z $STATIC ]] || rm -rf "$STATIC"
}
cluster_cleanup_on_exit
cluster_at_exit kill_children

GW_LOG=$OUT/gateway.log
die() {
	echo "bench/web: $*" >&2
	[[ ! -f $GW_LOG ]] || { echo "bench/web: end of the gateway's log:" >&2; tail -n 15 "$GW_LOG" >&2; }
	exit 1
}
psql_q() { cluster_psql -At "$@"; }
pick_port() {
	local port i lo=32768
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		port=$((20000 + (RANDOM * 32768 + RANDOM) % (lo - 20000)))
		[[ -n $(ss -ltnH "sport = :$port" 2>/dev/null) ]] || { echo "$port"; return 0; }
	done
	return 1
}

T_START=$(date +%s)
mkdir -p "$OUT"
[[ -x /usr/bin/chromium || -n ${CHROMIUM:-} ]] || die "no /usr/bin/chromium (set CHROMIUM)"
echo "browser bench: building web/ and the gateway"
(cd "$REPO/web" && node build.mjs) >"$OUT/build.log" 2>&1 || { cat "$OUT/build.log" >&2; die "cd web && node build.mjs failed"; }
make -s -C "$REPO/gateway" gateway >>"$OUT/build.log" 2>&1 || { cat "$OUT/build.log" >&2; die "cannot build the gateway"; }
GW_BIN=$OUT/synclog-gateway
cp "$REPO/gateway/synclog-gateway" "$GW_BIN"
STATIC=$(mktemp -d "${TMPDIR:-/tmp}/synclog-bench-web.XXXXXX")
node "$BENCH_DIR/web/bench.mjs" prepare "$STATIC" || die "bench.mjs prepare failed"

cluster_start "# the browser bench's own settings (bench/web/web.sh)" "max_connections = 100" || die "the server failed to start"
export PGHOST=$CLUSTER_DIR
unset PGPASSWORD PGSERVICE PGOPTIONS || true
DB=webbench GW_ROLE=bench_web_gw
psql_q -d postgres -c "CREATE DATABASE $DB" >/dev/null || die "cannot create database $DB"
psql_q -d "$DB" >/dev/null <<SQL || die "cannot set up database $DB"
CREATE EXTENSION synclog;
CREATE TABLE issues (id text PRIMARY KEY, team text NOT NULL, title text, prio int);
SELECT synclog.track('issues', 'team');
INSERT INTO issues SELECT 'seed-' || i, 'g1', 'title ' || i, i % 5 FROM generate_series(1, $FIRST_ROWS) i;
CREATE ROLE $GW_ROLE LOGIN;
GRANT synclog_gateway TO $GW_ROLE;
SQL
psql_q -d "$DB" -c "SELECT synclog.wait_sequenced('120s')" >/dev/null || die "the seed rows were not sequenced"
# As bench/catchup.sh does: the first sync reads a settled table, not one
# that the first trial's reads would set hint bits and statistics on.
psql_q -d "$DB" -c "VACUUM ANALYZE" >/dev/null || die "VACUUM ANALYZE failed"
psql_q -d "$DB" -c "CHECKPOINT" >/dev/null || die "CHECKPOINT failed"
CURSOR=$(psql_q -d "$DB" -c "SELECT max(seq) FROM synclog.ops") || die "cannot read the server's cursor"
TOKEN=$(psql_q -d "$DB" -c "SELECT synclog.create_token('bench-web', ARRAY['g1', 'p', 'l'])") || die "cannot create a token"
[[ $TOKEN =~ ^[A-Za-z0-9_-]+$ ]] || die "unexpected token text: $TOKEN"

GW_PORT=$(pick_port) || die "found no free port"
"$GW_BIN" --listen "127.0.0.1:$GW_PORT" --static "$STATIC" \
	--db "host=$CLUSTER_DIR port=$PGPORT dbname=$DB user=$GW_ROLE application_name=synclog-gateway" >"$GW_LOG" 2>&1 &
GW_PID=$!
BG_PIDS+=("$GW_PID")
for ((i = 0; ; i++)); do
	kill -0 "$GW_PID" 2>/dev/null || die "the gateway exited at start"
	[[ -z $(ss -ltnH "sport = :$GW_PORT" 2>/dev/null) ]] || ! grep -q 'database connected' "$GW_LOG" || break
	((i < 100)) || die "the gateway is not listening and connected after 10 s"
	sleep 0.1
done

echo "browser bench ($([[ ${BENCH_QUICK:-0} == 1 ]] && echo quick || echo full)): $($(command -v chromium || echo "${CHROMIUM:-/usr/bin/chromium}") --version 2>/dev/null || echo chromium), first sync of $FIRST_ROWS rows (server cursor $CURSOR)"
TRIALS_FILE=$OUT/trials.txt
node "$BENCH_DIR/web/bench.mjs" run "http://127.0.0.1:$GW_PORT" "$TOKEN" "$CURSOR" "$TRIALS_FILE" &
NODE_PID=$!
BG_PIDS+=("$NODE_PID")
wait "$NODE_PID" || die "bench/web/bench.mjs failed"

declare -A V=() MED=() MIN=() MAX=()
while read -r fig _ val; do V[$fig]+="$val "; done <"$TRIALS_FILE"
for k in put50 put99 bare50 bare99 apply bare_apply first_sync visible_p50 visible_p99; do
	[[ -n ${V[$k]:-} ]] || die "no $k in $TRIALS_FILE"
	# shellcheck disable=SC2086  # a list of numbers
	read -r MED[$k] MIN[$k] MAX[$k] <<<"$(stats ${V[$k]})"
done
TRIALS=$(awk '$1 == "put50"' "$TRIALS_FILE" | wc -l)
ratio_of() { awk -v v="$1" -v b="$2" 'BEGIN {printf "%.3f", (b > 0) ? v / b : 0}'; }
r50=$(ratio_of "${MED[put50]}" "${MED[bare50]}")
r99=$(ratio_of "${MED[put99]}" "${MED[bare99]}")
ra=$(ratio_of "${MED[apply]}" "${MED[bare_apply]}")
add_row web_put_p50_us "browser put, p50" "${MED[put50]}" us "${MED[bare50]}" "$r50" "<= 1.5x baseline" \
	"$(awk -v r="$r50" 'BEGIN {print (r <= 1.5) ? "true" : "false"}')" "${MIN[put50]}" "${MAX[put50]}" "$TRIALS" "us (INSERT)"
add_row web_put_p99_us "browser put, p99" "${MED[put99]}" us "${MED[bare99]}" "$r99" "<= 2x baseline" \
	"$(awk -v r="$r99" 'BEGIN {print (r <= 2) ? "true" : "false"}')" "${MIN[put99]}" "${MAX[put99]}" "$TRIALS" "us (INSERT)"
add_row web_apply_changes_per_s "browser apply, frames of 1000" "${MED[apply]}" changes/s "${MED[bare_apply]}" "$ra" \
	">= 50000/s, >= 0.3x" "$(awk -v v="${MED[apply]}" -v r="$ra" 'BEGIN {print (v >= 50000 && r >= 0.3) ? "true" : "false"}')" \
	"${MIN[apply]}" "${MAX[apply]}" "$TRIALS" "rows/s"
add_row web_first_sync_s "browser first sync, $FIRST_ROWS rows" "${MED[first_sync]}" s "" "" "" null \
	"${MIN[first_sync]}" "${MAX[first_sync]}" "$TRIALS"
add_row web_visible_p50_ms "browser put to visible elsewhere, p50" "${MED[visible_p50]}" ms "" "" "" null \
	"${MIN[visible_p50]}" "${MAX[visible_p50]}" "$TRIALS"
add_row web_visible_p99_ms "browser put to visible elsewhere, p99" "${MED[visible_p99]}" ms "" "" "" null \
	"${MIN[visible_p99]}" "${MAX[visible_p99]}" "$TRIALS"

NOTE="browser rows: median of $TRIALS trials [min-max]; baselines (bare sqlite-wasm in a worker, opfs-sahpool, rollback journal, synchronous=FULL):"
NOTE+=" one-row INSERT transaction p50 [$(fmt_num "${MIN[bare50]}")-$(fmt_num "${MAX[bare50]}")] us, p99 [$(fmt_num "${MIN[bare99]}")-$(fmt_num "${MAX[bare99]}")] us;"
NOTE+=" 1000-row INSERT transactions [$(fmt_num "${MIN[bare_apply]}")-$(fmt_num "${MAX[bare_apply]}")] rows/s"
if [[ -n ${WEB_ROWS_OUT:-} ]]; then
	printf '%s\n' "${ROWS[@]}" >"$WEB_ROWS_OUT"
	echo "$NOTE" >"$WEB_ROWS_OUT.note"
else
	echo
	print_rows_table "($NOTE)"
	write_rows_json "$OUT/results.json"
	echo "wrote $OUT/results.json"
fi
echo "browser benchmarks: $(($(date +%s) - T_START)) s"
