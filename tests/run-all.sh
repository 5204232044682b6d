#!/usr/bin/env bash
# tests/run-all.sh: the `make check` runner.
#
# Starts one throwaway cluster (tests/lib/cluster.sh, with
# shared_preload_libraries = 'synclog'), runs against it first the extension's
# pg_regress tests (sql/, expected/) and isolation tests (specs/) through
# `make -C pg_ext installcheck`, then every executable tests/suites/*.sh in
# sorted order (contract in tests/suites/README.md), tallies the results and
# removes the cluster, also on failure and on Ctrl-C.  The last line of output
# is the tally alone, "N passed, N failed"; the exit status is 1 if anything
# failed or nothing ran, else 0.
#
# Counting: each pg_regress / isolation line "test NAME ... ok" is a pass and
# "... FAILED" (or "failed") a fail; each suite line "PASS: NAME" / "FAIL: NAME"
# likewise.  A step that exits non-zero without naming a failure counts as one
# failure named after it; a suite that runs out of time counts one more.
#
# The regression and isolation tests run as two installcheck invocations
# (ISOLATION= then REGRESS=), so a failing regression test does not hide the
# isolation results.
#
# Environment: SUITES_DIR (default tests/suites), EXT_DIR (default pg_ext),
# SUITE_TIMEOUT (seconds, default 600), REGRESS_TIMEOUT (default 1800),
# CHECK_LOG_DIR (default build/check: one log per step), CLUSTER_PRELOAD (see
# cluster.sh).

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export REPO
SUITES_DIR=${SUITES_DIR:-$REPO/tests/suites}
EXT_DIR=${EXT_DIR:-$REPO/pg_ext}
SUITE_TIMEOUT=${SUITE_TIMEOUT:-600}
REGRESS_TIMEOUT=${REGRESS_TIMEOUT:-1800}
LOG_DIR=${CHECK_LOG_DIR:-$REPO/build/check}

# shellcheck source=tests/lib/cluster.sh
source "$REPO/tests/lib/cluster.sh"
export PG_BINDIR

passed=0
failed=0
failures=()
child_pid=""
tee_pid=""

pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); failures+=("$1"); }

# finish STATUS: stops the cluster, prints the failures and the tally line (the
# last line of output) and exits: STATUS if non-zero, else 1 if anything failed
# or nothing ran, else 0.
finish() {
	local status=$1 f
	cluster_stop
	if ((failed > 0)); then
		echo
		echo "failures:"
		for f in "${failures[@]}"; do echo "  $f"; done
	fi
	echo
	echo "$passed passed, $failed failed"
	((status != 0)) || { ((failed == 0 && passed > 0)) || status=1; }
	exit "$status"
}

# stop_child: ends the running step (its whole process group: timeout forwards
# the signal) and waits for it and its output.
stop_child() {
	if [[ -n $child_pid ]]; then
		kill -TERM "$child_pid" 2>/dev/null || true
		wait "$child_pid" 2>/dev/null || true
		child_pid=""
	fi
	wait_tee
}

# wait_tee: waits up to 5 s for tee to see the end of the step's output (a
# process that left the step's group may still hold it open), then ends it.
wait_tee() {
	local i
	[[ -n $tee_pid ]] || return 0
	for ((i = 0; i < 50; i++)); do
		kill -0 "$tee_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -TERM "$tee_pid" 2>/dev/null || true
	wait "$tee_pid" 2>/dev/null || true
	tee_pid=""
}

on_signal() {
	trap '' INT TERM
	echo >&2
	echo "run-all: interrupted, cleaning up" >&2
	stop_child
	fail "interrupted"
	finish "$1"
}

# run_logged LOG SECONDS CMD...: runs CMD with a time limit, its output shown
# as it comes and saved in LOG.  Returns CMD's status (124 on timeout).
run_logged() {
	local log=$1 limit=$2 fifo=$LOG_DIR/.fifo rc=0
	shift 2
	rm -f "$fifo"
	mkfifo "$fifo"
	tee "$log" <"$fifo" &
	tee_pid=$!
	(cd "$REPO" && exec timeout --kill-after=15 "$limit" "$@") >"$fifo" 2>&1 </dev/null &
	child_pid=$!
	wait "$child_pid" || rc=$?
	# timeout made the step a process group; whatever it left running there
	# (a forgotten server, say) would hold the log open: end it.
	if kill -0 -- "-$child_pid" 2>/dev/null; then
		echo "run-all: ending processes left running by: $*"
		kill -TERM -- "-$child_pid" 2>/dev/null || true
		sleep 1
		kill -KILL -- "-$child_pid" 2>/dev/null || true
	fi
	child_pid=""
	wait_tee
	rm -f "$fifo"
	return "$rc"
}

header() {
	echo
	echo "=== $1"
}

# run_installcheck LABEL MAKE-VAR...: one `make -C pg_ext installcheck` with
# the given variable overrides; counts its per-test lines.
run_installcheck() {
	local label=$1 log=$LOG_DIR/$1.log marker=$LOG_DIR/.$1.start
	local start=$SECONDS rc=0 lines=0 np=0 nf=0 line diffs
	shift
	header "$label: make -C ${EXT_DIR#"$REPO"/} installcheck $*"
	touch "$marker"
	run_logged "$log" "$REGRESS_TIMEOUT" make --no-print-directory -C "$EXT_DIR" installcheck "$@" || rc=$?
	local re='^[[:space:]]*(test[[:space:]]+)?([^[:space:]]+)[[:space:]]+\.\.\.[[:space:]]+(ok|FAILED|failed)'
	while IFS= read -r line; do
		[[ $line =~ $re ]] || continue
		lines=$((lines + 1))
		if [[ ${BASH_REMATCH[3]} == ok ]]; then
			pass; np=$((np + 1))
		else
			fail "$label/${BASH_REMATCH[2]}"; nf=$((nf + 1))
		fi
	done <"$log"
	if ((rc != 0 && lines == 0)); then
		fail "$([[ $label == isolation ]] && echo pg_isolation_regress || echo pg_regress) (exit $rc, no test ran)"
		nf=$((nf + 1))
		echo "--- end of $log:"
		tail -n 15 "$log"
	elif ((rc != 0 && nf == 0)); then
		fail "$label (make exit $rc)"
		nf=$((nf + 1))
	fi
	if ((nf > 0)); then
		# pg_regress writes regression.diffs into its --outputdir and names it
		# in its summary; look under build/ and pg_ext/ if it did not get there.
		diffs=$(sed -n 's/.*file "\(.*regression\.diffs\)".*/\1/p' "$log")
		[[ -n $diffs ]] || diffs=$(find "$REPO/build" "$EXT_DIR" -name regression.diffs -newer "$marker" 2>/dev/null | sort)
		while IFS= read -r line; do
			[[ -n $line && -s $line ]] || continue
			echo "--- $line:"
			cat "$line"
		done <<<"$diffs"
	fi
	rm -f "$marker"
	echo "--- $label: $np passed, $nf failed ($((SECONDS - start)) s)"
}

# run_suite FILE: one suite under the time limit; counts its PASS:/FAIL: lines.
run_suite() {
	local suite=$1 name log start=$SECONDS rc=0 np=0 nf=0 line
	name=$(basename "$suite")
	log=$LOG_DIR/suite-${name%.sh}.log
	header "suite $name"
	run_logged "$log" "$SUITE_TIMEOUT" "$suite" || rc=$?
	while IFS= read -r line; do
		case $line in
		"PASS: "*) pass; np=$((np + 1)) ;;
		"FAIL: "*) fail "$name: ${line#FAIL: }"; nf=$((nf + 1)) ;;
		esac
	done <"$log"
	if ((rc == 124 || rc == 137)); then
		fail "$name (timed out after $SUITE_TIMEOUT s)"
		nf=$((nf + 1))
	elif ((rc != 0 && nf == 0)); then
		fail "$name (exit $rc)"
		nf=$((nf + 1))
	fi
	echo "--- $name: $np passed, $nf failed ($((SECONDS - start)) s)"
}

# pg_regress makes its --outputdir (build/regress, build/isolation) but not
# the parent.
mkdir -p "$LOG_DIR" "$REPO/build"
cluster_cleanup_on_exit
cluster_at_exit 'stop_child; rm -f "$LOG_DIR/.fifo"'
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

header "starting a test cluster (shared_preload_libraries = '$CLUSTER_PRELOAD')"
if ! cluster_start; then
	fail "cluster_start"
	finish 1
fi
echo "cluster: $CLUSTER_DIR, port $PGPORT"

run_installcheck regress ISOLATION=
run_installcheck isolation REGRESS=

suites=()
if [[ -d $SUITES_DIR ]]; then
	mapfile -t suites < <(find "$SUITES_DIR" -maxdepth 1 -name '*.sh' -print | LC_ALL=C sort)
fi
for suite in "${suites[@]}"; do
	if [[ ! -x $suite ]]; then
		echo
		echo "=== skipping $(basename "$suite") (not executable)"
		continue
	fi
	run_suite "$suite"
done

finish 0
