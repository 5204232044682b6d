#!/usr/bin/env bash
# bench/client.sh: the client store's benchmarks of `make bench` (issue 5),
# run by bench/run.sh after the extension's and the gateway's figures, or
# alone.  Needs no database server of its own (the catch-up figure,
# bench/catchup.sh, starts a cluster and a gateway itself).
#
# Builds build/bench/clientbench (bench/Makefile: bench/clientbench.c linked
# with the store's sources, -O2, no sanitizers), copies it to
# build/bench/client/ so a rebuild during the run cannot change what is
# measured, and runs it TRIALS times; each run is one trial of every figure
# beside its baseline, measured in the same process on the same file system
# (BENCH_CLIENT_DIR, default build/bench/client/data), SQLite set up alike
# (WAL, synchronous=NORMAL), fresh files each trial.  Medians over the
# trials, with the min-max spread:
#
#   1. Local write latency: sl_store_put of one new row (one transaction:
#      the op into the outbox and the visible row), p50 and p99 over WRITES
#      calls after 1000 unmeasured ones.  Baseline: BEGIN; INSERT OR REPLACE
#      of the same row; COMMIT (prepared statements) into a table of the same
#      shape.  Targets: p50 <= 1.5x and p99 <= 2x baseline.
#   2. Applying incoming changes: FRAMES `changes` frames of 1000 changes
#      each (new rows of another client, texts built in advance) through
#      sl_store_apply_changes: changes/s.  Baseline: the same rows by one
#      prepared INSERT OR REPLACE each, 1000 per transaction.  Target:
#      >= 100,000 changes/s and >= 0.3x baseline.
#   3. Catch-up through the gateway: bench/catchup.sh (its own cluster,
#      gateway and synclog-cli; see its header): a client 100,000 changes
#      behind (20,000 under BENCH_QUICK=1) syncs once, wall clock, seconds and
#      changes/s, median of 3 trials.  Baseline: one psql session reading the
#      same changes with synclog.changes() in pages of 1000 (the database
#      side alone).  No target.
#
# Output: progress lines, and the figures as rows (bench/report.sh) in
# $CLIENT_ROWS_OUT when set (bench/run.sh sets it and prints them with its
# own, into bench/results.json), else a table on stdout and
# build/bench/client/results.json.  Raw trial lines are kept in
# build/bench/client/trials.txt.  Exit status 0 when every measurement ran
# (whether or not targets were met), 1 when something failed.
#
# Environment:
#   BENCH_QUICK=1      3 trials of 5,000 writes and 5 frames (a few seconds);
#                      full: 5 trials of 20,000 writes and 20 frames (about
#                      half a minute)
#   BENCH_CLIENT_TRIALS, BENCH_CLIENT_WRITES, BENCH_CLIENT_FRAMES   override those
#   BENCH_CLIENT_DIR   where the SQLite files are written (a directory on the
#                      file system to measure; its bench files are replaced)
#   BENCH_CATCHUP=0    skip the catch-up figure (it is the only part that needs
#                      PostgreSQL and the gateway); BENCH_CATCHUP_CHANGES,
#                      BENCH_CATCHUP_TRIALS: see bench/catchup.sh

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$REPO/bench
OUT=$REPO/build/bench/client
BIN=$OUT/clientbench

if [[ ${BENCH_QUICK:-0} == 1 ]]; then
	TRIALS=${BENCH_CLIENT_TRIALS:-3} WRITES=${BENCH_CLIENT_WRITES:-5000} FRAMES=${BENCH_CLIENT_FRAMES:-5}
else
	TRIALS=${BENCH_CLIENT_TRIALS:-5} WRITES=${BENCH_CLIENT_WRITES:-20000} FRAMES=${BENCH_CLIENT_FRAMES:-20}
fi
BATCH=1000
DATA_DIR=${BENCH_CLIENT_DIR:-$OUT/data}
T_START=$(date +%s)

# shellcheck source=bench/report.sh
source "$BENCH_DIR/report.sh"

die() {
	echo "bench/client.sh: $*" >&2
	exit 1
}

mkdir -p "$OUT" "$DATA_DIR"
make --no-print-directory -C "$BENCH_DIR" clientbench >"$OUT/build.log" 2>&1 ||
	{ cat "$OUT/build.log" >&2; die "cannot build build/bench/clientbench"; }
cp "$REPO/build/bench/clientbench" "$BIN"

FS=$(df -PT "$DATA_DIR" 2>/dev/null | awk 'NR == 2 {print $2 " on " $1}')
echo "client store bench ($([[ ${BENCH_QUICK:-0} == 1 ]] && echo quick || echo full)): $TRIALS trials; $WRITES puts; $FRAMES frames of $BATCH changes"
echo "  files in $DATA_DIR (${FS:-unknown file system}); SQLite $(pkg-config --modversion sqlite3 2>/dev/null || echo '?'); WAL, synchronous=NORMAL"

TRIALS_FILE=$OUT/trials.txt
: >"$TRIALS_FILE"
declare -A V=()
KEYS=(put_p50_us put_p99_us bare_put_p50_us bare_put_p99_us apply_changes_per_s bare_apply_rows_per_s)
for ((t = 1; t <= TRIALS; t++)); do
	line=$("$BIN" "$DATA_DIR" "$WRITES" "$FRAMES" "$BATCH") || die "trial $t failed"
	echo "$line" >>"$TRIALS_FILE"
	for kv in $line; do V[${kv%%=*}]+="${kv#*=} "; done
	echo "  trial $t/$TRIALS: $line"
done
for k in "${KEYS[@]}"; do
	[[ -n ${V[$k]:-} ]] || die "no $k in the trials' output"
done
rm -f "$DATA_DIR"/store-*.db* "$DATA_DIR"/bare-*.db*

ratio_of() { awk -v v="$1" -v b="$2" 'BEGIN {printf "%.3f", (b > 0) ? v / b : 0}'; }

declare -A MED=() MIN=() MAX=()
for k in "${KEYS[@]}"; do
	# shellcheck disable=SC2086  # a list of numbers
	read -r MED[$k] MIN[$k] MAX[$k] <<<"$(stats ${V[$k]})"
done

r50=$(ratio_of "${MED[put_p50_us]}" "${MED[bare_put_p50_us]}")
r99=$(ratio_of "${MED[put_p99_us]}" "${MED[bare_put_p99_us]}")
ra=$(ratio_of "${MED[apply_changes_per_s]}" "${MED[bare_apply_rows_per_s]}")
add_row client_put_p50_us "client put, p50" "${MED[put_p50_us]}" us "${MED[bare_put_p50_us]}" "$r50" \
	"<= 1.5x baseline" "$(awk -v r="$r50" 'BEGIN {print (r <= 1.5) ? "true" : "false"}')" \
	"${MIN[put_p50_us]}" "${MAX[put_p50_us]}" "$TRIALS" "us (INSERT)"
add_row client_put_p99_us "client put, p99" "${MED[put_p99_us]}" us "${MED[bare_put_p99_us]}" "$r99" \
	"<= 2x baseline" "$(awk -v r="$r99" 'BEGIN {print (r <= 2) ? "true" : "false"}')" \
	"${MIN[put_p99_us]}" "${MAX[put_p99_us]}" "$TRIALS" "us (INSERT)"
add_row client_apply_changes_per_s "client apply, frames of $BATCH" "${MED[apply_changes_per_s]}" changes/s \
	"${MED[bare_apply_rows_per_s]}" "$ra" ">= 100000/s, >= 0.3x" \
	"$(awk -v v="${MED[apply_changes_per_s]}" -v r="$ra" 'BEGIN {print (v >= 100000 && r >= 0.3) ? "true" : "false"}')" \
	"${MIN[apply_changes_per_s]}" "${MAX[apply_changes_per_s]}" "$TRIALS" "rows/s"

# catchup_figures: the catch-up through the gateway (bench/catchup.sh: a
# cluster, a gateway and synclog-cli of its own; a client CHANGES changes
# behind, timed end to end, beside psql reading the same changes in pages).
# Its rows (names client_catchup_...) join these; when it fails the figures
# above are still reported, its failure is noted and the exit status is 1.
# BENCH_CATCHUP=0 skips it (then no server is needed).
CATCHUP_STATUS=0 CATCHUP_NOTE=""
catchup_figures() {
	local rows_file=$OUT/catchup-rows.txt row
	[[ ${BENCH_CATCHUP:-1} != 0 ]] || return 0
	rm -f "$rows_file" "$rows_file.note"
	echo
	CATCHUP_ROWS_OUT=$rows_file "$BENCH_DIR/catchup.sh" || CATCHUP_STATUS=$?
	if ((CATCHUP_STATUS != 0)); then
		echo "bench/client.sh: the catch-up benchmark failed (status $CATCHUP_STATUS; see above); no catch-up figure" >&2
		CATCHUP_NOTE="the catch-up benchmark FAILED"
		return 0
	fi
	[[ -f $rows_file ]] || { CATCHUP_STATUS=1 CATCHUP_NOTE="the catch-up benchmark wrote no rows"; return 0; }
	while IFS= read -r row; do ROWS+=("$row"); done <"$rows_file"
	[[ ! -f $rows_file.note ]] || CATCHUP_NOTE=$(cat "$rows_file.note")
}
catchup_figures

NOTE="client rows: median of $TRIALS trials [min-max]; baselines (bare SQLite, same file system, WAL + synchronous=NORMAL):"
NOTE+=" one-row INSERT transaction p50 [$(fmt_num "${MIN[bare_put_p50_us]}")-$(fmt_num "${MAX[bare_put_p50_us]}")] us,"
NOTE+=" p99 [$(fmt_num "${MIN[bare_put_p99_us]}")-$(fmt_num "${MAX[bare_put_p99_us]}")] us;"
NOTE+=" $BATCH-row INSERT transactions [$(fmt_num "${MIN[bare_apply_rows_per_s]}")-$(fmt_num "${MAX[bare_apply_rows_per_s]}")] rows/s"
[[ -z $CATCHUP_NOTE ]] || NOTE+="; $CATCHUP_NOTE"
if [[ -n ${CLIENT_ROWS_OUT:-} ]]; then
	printf '%s\n' "${ROWS[@]}" >"$CLIENT_ROWS_OUT"
	echo "$NOTE" >"$CLIENT_ROWS_OUT.note"
else
	echo
	print_rows_table "($NOTE)"
	write_rows_json "$OUT/results.json"
	echo "wrote $OUT/results.json"
fi
echo "client benchmarks: $(($(date +%s) - T_START)) s"
((CATCHUP_STATUS == 0)) || exit 1
