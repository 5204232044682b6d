#!/usr/bin/env bash
# scripts/fuzz.sh: builds the libFuzzer targets (fuzz/Makefile) and runs
# each for a while (`make fuzz FUZZ_SECONDS=N`).  No database is needed.
#
#   scripts/fuzz.sh [TARGET...]     (default: every target of fuzz/Makefile)
#
# For each target: first every file of its committed corpus fuzz/corpus/T/
# is replayed once (a regression run: no mutation, nothing written), then
# the fuzzer runs for FUZZ_SECONDS on the working corpus $FUZZ_OUT/corpus/T/
# (seeded from, and reading, the committed one; new entries go only there,
# never into the repository) with the dictionary fuzz/dict/T.dict.  A crash
# input (crash-*, leak-*, timeout-*, oom-*) is saved under
# $FUZZ_OUT/crashes/ and the fuzzer's output under $FUZZ_OUT/logs/T.log.
# Prints one line per target:
#
#   fuzz: TARGET execs=N crashes=N corpus=N seconds=N
#
# (execs and seconds of the timed run; crashes counts the replay's and the
# run's; corpus is the working corpus's size after the run), and exits 1 if
# any target crashed or did not run, else 0.
#
# Environment: FUZZ_SECONDS (default 60), FUZZ_PARALLEL (targets at a time,
# 1 or 2, default 1: the machine has 2 cores), FUZZ_OUT (default build/fuzz),
# FUZZ_TIMEOUT (seconds one input may take before it counts as a crash,
# default 10), FUZZ_RSS_MB (default 2048).  The fuzzers' TMPDIR is a
# directory of this run's (under /dev/shm when there), removed at the end.

set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_PARALLEL=${FUZZ_PARALLEL:-1}
FUZZ_OUT=${FUZZ_OUT:-$REPO/build/fuzz}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-10}
FUZZ_RSS_MB=${FUZZ_RSS_MB:-2048}
BIN=$REPO/build/fuzz

if ! [[ $FUZZ_SECONDS =~ ^[0-9]+$ ]] || ((FUZZ_SECONDS < 1)); then
	echo "fuzz: FUZZ_SECONDS must be a positive number of seconds, not '$FUZZ_SECONDS'" >&2
	exit 2
fi
((FUZZ_PARALLEL >= 1 && FUZZ_PARALLEL <= 2)) 2>/dev/null || FUZZ_PARALLEL=1

targets=("$@")
if ((${#targets[@]} == 0)); then
	read -r -a targets < <(sed -n 's/^TARGETS := //p' "$REPO/fuzz/Makefile")
fi

if ! make --no-print-directory -s -C "$REPO/fuzz" "${targets[@]}" >"${TMPDIR:-/tmp}/synclog-fuzz-build.$$" 2>&1; then
	cat "${TMPDIR:-/tmp}/synclog-fuzz-build.$$" >&2
	rm -f "${TMPDIR:-/tmp}/synclog-fuzz-build.$$"
	echo "fuzz: building the targets failed (output above)" >&2
	exit 1
fi
rm -f "${TMPDIR:-/tmp}/synclog-fuzz-build.$$"
mkdir -p "$FUZZ_OUT/crashes" "$FUZZ_OUT/logs" "$FUZZ_OUT/corpus" "$FUZZ_OUT/results"

# Targets that keep files (the client's store) get a TMPDIR of their own,
# in memory when /dev/shm is there (SQLite's syncs would otherwise be most
# of the client target's time), removed at the end however the run ends.
fuzz_tmp=$(mktemp -d "$([[ -d /dev/shm && -w /dev/shm ]] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/synclog-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$fuzz_tmp"' EXIT
export TMPDIR=$fuzz_tmp

# The sanitizers report and stop at the first problem; libFuzzer saves the input.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

children=()
on_signal() {
	trap '' INT TERM
	local p
	for p in "${children[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	wait 2>/dev/null
	echo "fuzz: interrupted" >&2
	exit 130 # the EXIT trap removes $fuzz_tmp
}
trap on_signal INT TERM

# crash_files T: the crash inputs saved for T so far.
crash_files() {
	find "$FUZZ_OUT/crashes" -maxdepth 1 -type f -name "$1-*" 2>/dev/null | wc -l
}

# fuzzer LOG CMD...: runs CMD (a fuzzer) appending to LOG; its status.  The
# fuzzer is ended with this subshell's TERM (on_signal), not left running.
fpid=""
fuzzer() {
	local log=$1 rc=0
	shift
	"$@" >>"$log" 2>&1 </dev/null &
	fpid=$!
	wait "$fpid" || rc=$?
	fpid=""
	return "$rc"
}

# run_target T: replay, then the timed run; writes $FUZZ_OUT/results/T.
run_target() {
	trap '[[ -n $fpid ]] && kill -TERM "$fpid" 2>/dev/null; exit 130' TERM
	local t=$1 fuzzer=$BIN/fuzz_$t log=$FUZZ_OUT/logs/$1.log
	local seeds=$REPO/fuzz/corpus/$t work=$FUZZ_OUT/corpus/$t dict=$REPO/fuzz/dict/$t.dict
	local before crashes=0 execs=0 start secs rc files=()
	local opts=(-timeout="$FUZZ_TIMEOUT" -rss_limit_mb="$FUZZ_RSS_MB" -artifact_prefix="$FUZZ_OUT/crashes/$t-")

	before=$(crash_files "$t")
	: >"$log"
	if [[ -d $seeds ]]; then
		mapfile -t files < <(find "$seeds" -maxdepth 1 -type f | LC_ALL=C sort)
	fi
	if ((${#files[@]} > 0)); then
		echo "=== replay of ${#files[@]} committed inputs" >>"$log"
		fuzzer "$log" "$fuzzer" "${opts[@]}" -runs=1 "${files[@]}" || crashes=$((crashes + 1))
	fi
	mkdir -p "$work"
	[[ -f $dict ]] && opts+=(-dict="$dict")
	echo "=== run of $FUZZ_SECONDS s" >>"$log"
	start=$SECONDS
	rc=0
	if [[ -d $seeds ]]; then
		fuzzer "$log" "$fuzzer" "${opts[@]}" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 "$work" "$seeds" || rc=$?
	else
		fuzzer "$log" "$fuzzer" "${opts[@]}" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 "$work" || rc=$?
	fi
	secs=$((SECONDS - start))
	((rc != 0)) && crashes=$((crashes + 1))
	# On a crash the final stats are not printed: the last status line says.
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	[[ -n $execs ]] || execs=$(sed -n 's/^#\([0-9][0-9]*\)[[:space:]].*/\1/p' "$log" | tail -n 1)
	# A crash saves an input; count the saved ones if that says more.
	local saved=$(($(crash_files "$t") - before))
	((saved > crashes)) && crashes=$saved
	echo "fuzz: $t execs=${execs:-0} crashes=$crashes corpus=$(find "$work" -maxdepth 1 -type f | wc -l) seconds=$secs" \
		>"$FUZZ_OUT/results/$t"
}

status=0
running=0
for t in "${targets[@]}"; do
	if [[ ! -x $BIN/fuzz_$t ]]; then
		echo "fuzz: $t execs=0 crashes=0 corpus=0 seconds=0 (no such target)"
		status=1
		continue
	fi
	rm -f "$FUZZ_OUT/results/$t"
	run_target "$t" &
	children+=($!)
	running=$((running + 1))
	if ((running >= FUZZ_PARALLEL)); then
		wait -n 2>/dev/null
		running=$((running - 1))
	fi
done
wait
for t in "${targets[@]}"; do
	[[ -x $BIN/fuzz_$t ]] || continue
	if [[ -f $FUZZ_OUT/results/$t ]]; then
		line=$(cat "$FUZZ_OUT/results/$t")
		echo "$line"
		[[ $line == *" crashes=0 "* && $line != *" execs=0 "* ]] || {
			status=1
			echo "fuzz: $t: see $FUZZ_OUT/logs/$t.log and $FUZZ_OUT/crashes/$t-*" >&2
		}
	else
		echo "fuzz: $t execs=0 crashes=0 corpus=0 seconds=0 (did not finish)"
		status=1
	fi
done
exit "$status"
