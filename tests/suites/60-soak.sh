#!/usr/bin/env bash
# tests/suites/60-soak.sh: a short run of `make soak` (scripts/soak.sh) in
# `make check`.
#
# SOAK_SECONDS (default 45) of SOAK_CLIENTS (default 6) libsynclog clients
# editing the same rows through the fault proxy and two gateways, with the
# gateways killed -9 in turn, PostgreSQL restarted once with -m immediate and
# the sequencer terminated once; seed SOAK_SEED (default random, printed).
# The soak has a cluster of its own (it restarts it), so the shared one is
# untouched.  Checks, one PASS/FAIL line each, read from the soak's output:
#   - the run completed (every client drained and converged, no sanitizer
#     report, exit 0);
#   - lost=0: every acked op is in the op log;
#   - duplicated=0: no op applied twice, no refused op applied, no change
#     received twice or out of order;
#   - seq_gaps=0: seq is 1..max with no hole and nothing left unstamped;
#   - replicas_identical=N/N: every client's rows equal the server's;
#   - oracle=ok: the op log replayed through an independent LWW model gives
#     the server's table;
#   - the faults happened: at least two gateway kills, the PostgreSQL
#     restart, the sequencer kill, and the proxy reset and sliced
#     connections;
#   - some ops were refused (negative prio, row_deleted) and some acked, so
#     both paths ran;
#   - the judge itself catches damage (SOAK_JUDGE_SELFTEST=1): a row changed
#     with the capture trigger off fails the oracle and the replicas, an acked
#     op deleted from the op log counts as lost and as a seq gap.

set -uo pipefail

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export SOAK_SECONDS=${SOAK_SECONDS:-45}
export SOAK_CLIENTS=${SOAK_CLIENTS:-6}
export SOAK_SEED=${SOAK_SEED:-$(((RANDOM << 15) | RANDOM))}
export SOAK_JUDGE_SELFTEST=1
failed=0
out=$(mktemp "${TMPDIR:-/tmp}/synclog-soak60.XXXXXX")
trap 'rm -f "$out"' EXIT

pass() { echo "PASS: soak: $1"; }
fail() {
	echo "FAIL: soak: $1 (SOAK_SEED=$SOAK_SEED)"
	failed=1
}

"$REPO/scripts/soak.sh" 2>&1 | tee "$out"
st=${PIPESTATUS[0]}

line=$(grep '^soak: seed=' "$out" | tail -n 1)
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
faults=$(grep '^soak: faults made:' "$out" | tail -n 1)
fault() { sed -n "s/.*[ ;]$1=\([0-9]*\).*/\1/p" <<<"$faults"; }

((st == 0)) && grep -q '^soak: PASSED' "$out" && pass "run completed" || fail "run completed (exit $st)"
[[ -n $line ]] || { fail "summary line"; exit 1; }
[[ $(field lost) == 0 ]] && pass "lost=0" || fail "lost=$(field lost)"
[[ $(field duplicated) == 0 ]] && pass "duplicated=0" || fail "duplicated=$(field duplicated)"
[[ $(field seq_gaps) == 0 ]] && pass "seq_gaps=0" || fail "seq_gaps=$(field seq_gaps)"
[[ $(field replicas_identical) == "$SOAK_CLIENTS/$SOAK_CLIENTS" ]] && pass "replicas identical" ||
	fail "replicas_identical=$(field replicas_identical)"
[[ $(field oracle) == ok ]] && pass "oracle agrees with the server" || fail "oracle=$(field oracle)"
if (($(fault gateway_kills) >= 2 && $(fault pg_restarts) == 1 && $(fault sequencer_kills) == 1 &&
	$(fault resets) > 0 && $(fault slices) > 0)); then
	pass "faults made ($faults)"
else
	fail "faults made: ${faults:-none reported}"
fi
if (($(field rejected) > 0 && $(field acked) > 0)); then
	pass "both acks and refusals"
else
	fail "both acks and refusals (acked=$(field acked) rejected=$(field rejected))"
fi
grep -q '^soak: judge self-test: .* caught' "$out" && pass "the judge catches a tampered row and a deleted op" ||
	fail "judge self-test"
exit $failed
