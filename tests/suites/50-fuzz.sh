#!/usr/bin/env bash
# tests/suites/50-fuzz.sh: the libFuzzer targets of fuzz/ (issue 6), briefly.
#
# Builds every target (clang, -fsanitize=fuzzer,address,undefined), replays
# every committed corpus file fuzz/corpus/T/* once (a regression run: an
# input that once found a bug must keep passing), then runs each target for
# FUZZ_CHECK_SECONDS (default 15) on a copy of its corpus, through
# scripts/fuzz.sh with its output, corpus and crash inputs in a temporary
# directory.  One check per target: PASS when the replay and the run found
# no crash (sanitizer report, broken invariant, timeout, leak) and the run
# executed inputs.  The targets and what they check are listed at the top of
# fuzz/Makefile and of each fuzz/fuzz_T.c.  No database: the shared cluster
# is not used.  Crash inputs are copied to build/fuzz/crashes/ before the
# temporary directory goes.

set -uo pipefail

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
FUZZ_CHECK_SECONDS=${FUZZ_CHECK_SECONDS:-15}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/synclog-fuzz.XXXXXX")
fuzz_pid=""
failed=0

cleanup() {
	if [[ -n $fuzz_pid ]]; then
		kill -TERM "$fuzz_pid" 2>/dev/null
		wait "$fuzz_pid" 2>/dev/null
	fi
	if compgen -G "$tmp/out/crashes/*" >/dev/null; then
		mkdir -p "$REPO/build/fuzz/crashes"
		cp "$tmp"/out/crashes/* "$REPO/build/fuzz/crashes/" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

read -r -a targets < <(sed -n 's/^TARGETS := //p' "$REPO/fuzz/Makefile")
if ((${#targets[@]} == 0)); then
	echo "FAIL: fuzz: no targets listed in fuzz/Makefile"
	exit 1
fi

if ! make --no-print-directory -s -C "$REPO/fuzz" all >"$tmp/build.log" 2>&1; then
	cat "$tmp/build.log"
	echo "FAIL: fuzz: build the targets (clang, libFuzzer)"
	exit 1
fi

echo "running ${#targets[@]} targets for ${FUZZ_CHECK_SECONDS} s each"
FUZZ_SECONDS=$FUZZ_CHECK_SECONDS FUZZ_OUT=$tmp/out FUZZ_PARALLEL=1 \
	"$REPO/scripts/fuzz.sh" "${targets[@]}" >"$tmp/fuzz.out" 2>&1 </dev/null &
fuzz_pid=$!
wait "$fuzz_pid"
fuzz_pid=""
cat "$tmp/fuzz.out"

for t in "${targets[@]}"; do
	line=$(grep -E "^fuzz: $t execs=" "$tmp/fuzz.out" | tail -n 1)
	execs=$(sed -n 's/.* execs=\([0-9]*\).*/\1/p' <<<"$line")
	crashes=$(sed -n 's/.* crashes=\([0-9]*\).*/\1/p' <<<"$line")
	if [[ -n $line && ${crashes:-1} == 0 && ${execs:-0} -gt 0 ]]; then
		echo "PASS: fuzz: $t (replay of fuzz/corpus/$t and ${FUZZ_CHECK_SECONDS} s: $execs inputs, no crash)"
	else
		echo "--- fuzz_$t: ${line:-no result}; the end of its log:"
		tail -n 40 "$tmp/out/logs/$t.log" 2>/dev/null
		echo "FAIL: fuzz: $t (crash inputs kept in build/fuzz/crashes/)"
		failed=1
	fi
done
exit "$failed"
