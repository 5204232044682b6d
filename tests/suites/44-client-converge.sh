#!/usr/bin/env bash
# tests/suites/44-client-converge.sh: libsynclog clients converge with the
# server and with each other through real gateways, with the gateway killed
# and restarted in the middle, and a client process killed at random moments
# loses nothing and applies nothing twice.
#
# Builds tests/client/converge.c (a harness over the public API, synclog.h)
# and the gateway, both with ASan and UBSan, creates database conv44_<pid>
# (the extension; issues(id, team, title, status, prio CHECK (prio >= 0))
# tracked by team; a token for groups conv and kill) and starts the gateway
# on a free loopback port.  Checks, one PASS/FAIL line each:
#   convergence (SEED, CONV_CLIENTS, CONV_ROUNDS settable):
#   - CONV_CLIENTS clients make random offline upserts and deletes over the
#     same 16 rows, each syncing in some rounds and staying offline in
#     others, while the gateway is SIGKILLed a third of the way through
#     (restarted a second later) and again two thirds through; then every
#     client syncs until a whole pass moves nothing: the harness settles;
#   - every client's rows equal the server's, byte for byte (canonical dump);
#   - the op log holds exactly the ops made minus those refused (each op
#     applied once, none lost), and seq has no gap;
#   - some ops were refused (negative prio, row_deleted) and settled anyway.
#   kill safety:
#   - a client writing and syncing in a loop is SIGKILLed KILLS times at
#     random moments and restarted on the same file; afterwards every write
#     it had acknowledged locally (its op id logged after synclog_put
#     returned) is in the server's op log, the log names no op twice, the
#     op log has at most one unlogged op per kill, and the client's rows
#     equal the server's.
# Every wait is bounded; the gateway and the harness are killed and the
# database dropped on every exit.

set -uo pipefail

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SEED=${SEED:-$((RANDOM * 32768 + RANDOM))}
CONV_CLIENTS=${CONV_CLIENTS:-4}
CONV_ROUNDS=${CONV_ROUNDS:-30}
KILLS=${KILLS:-8}
# shellcheck source=tests/lib/suite.sh
source "$REPO/tests/lib/suite.sh"
harness="$REPO/build/client/converge"
db="conv44_$$"

suite_begin client-converge conv44
SUITE_FAIL_NOTE="SEED=$SEED" # on every FAIL line from fail
h_pid=""
suite_at_exit 'suite_kill $h_pid'
q() { psql -X -qAt -v ON_ERROR_STOP=1 -d "$db" "$@"; }

echo "seed $SEED, $CONV_CLIENTS clients, $CONV_ROUNDS rounds, $KILLS kills"

if ! { make --no-print-directory -C "$REPO/gateway" gateway-asan &&
	make --no-print-directory -C "$REPO/client" converge-bin; } >"$tmp/build.log" 2>&1; then
	cat "$tmp/build.log"
	suite_abort "build (output above)"
fi

if ! suite_create_db "$db" <<'SQL'; then
CREATE TABLE issues (id text PRIMARY KEY, team text NOT NULL, title text, status text,
                     prio int CHECK (prio >= 0));
SELECT synclog.track('issues', 'team');
SQL
	suite_abort "setup (database $db, output above)"
fi
token=$(q -c "SELECT synclog.create_token('conv', ARRAY['conv', 'kill'])") || suite_abort "setup (token)"

port=$(free_port) || suite_abort "no free port"
url="ws://127.0.0.1:$port/"
gw_starts=0

# gw_start: starts the gateway on $port (stderr in gw.N.err, N counting the
# starts) and waits (10 s at most) until it accepts connections; prints the
# log if it does not.
gw_start() {
	gw_starts=$((gw_starts + 1))
	gateway_start "$port" "$db" "$tmp/gw.$gw_starts.err" && return 0
	cat "$tmp/gw.$gw_starts.err"
	return 1
}
# round: the harness's last finished round (0 before the first).
round() { cat "$tmp/conv/round" 2>/dev/null || echo 0; }

# server_dump GROUP: the server's rows of GROUP, canonically.
server_dump() {
	q -F'|' -P null='\N' -c "SELECT id, team, title, status, prio FROM issues
	                         WHERE team = '$1' ORDER BY id COLLATE \"C\""
}

gw_start || suite_abort "the gateway did not start"

# --- convergence with the gateway killed twice ---------------------------------
mkdir -p "$tmp/conv"
"$harness" edit --url "$url" --token "$token" --group conv --dir "$tmp/conv" \
	--clients "$CONV_CLIENTS" --rounds "$CONV_ROUNDS" --rows 16 --seed "$SEED" \
	>"$tmp/conv.out" 2>"$tmp/conv.err" &
h_pid=$!
kills_done=0
for target in $((CONV_ROUNDS / 3)) $((2 * CONV_ROUNDS / 3)); do
	for _ in $(seq 1 1200); do # 120 s at most
		(($(round) >= target)) && break
		kill -0 "$h_pid" 2>/dev/null || break
		sleep 0.1
	done
	if (($(round) >= target)) && kill -0 "$h_pid" 2>/dev/null; then
		gateway_kill
		echo "gateway killed after round $(round)"
		sleep 1
		gw_start && kills_done=$((kills_done + 1))
	fi
done
for _ in $(seq 1 2400); do # 240 s at most
	kill -0 "$h_pid" 2>/dev/null || break
	sleep 0.1
done
if kill -0 "$h_pid" 2>/dev/null; then
	echo "harness still running after 240 s: killed"
	kill -KILL "$h_pid" 2>/dev/null
	wait "$h_pid" 2>/dev/null
	st=124
else
	wait "$h_pid"
	st=$?
fi
h_pid=""
tail -n 3 "$tmp/conv.err"
summary=$(cat "$tmp/conv.out")
echo "harness: $summary"
if ((st == 0)) && [[ $summary =~ ^ops=([0-9]+)\ rejected=([0-9]+)$ ]] && ((kills_done == 2)) &&
	sanitizer_clean "$tmp/conv.err"; then
	ops=${BASH_REMATCH[1]} rejected=${BASH_REMATCH[2]}
	pass "$CONV_CLIENTS clients, $CONV_ROUNDS rounds of offline edits, gateway killed twice: settled"
else
	cat "$tmp/conv.err" | tail -n 40
	fail "clients settle after offline edits with the gateway killed twice (kills done: $kills_done)"
	ops="" rejected=""
fi

if [[ -n $ops ]]; then
	server_dump conv >"$tmp/server.conv"
	bad=0
	for ((i = 0; i < CONV_CLIENTS; i++)); do
		if ! cmp -s "$tmp/server.conv" "$tmp/conv/client-$i.dump"; then
			echo "client $i differs from the server:"
			diff "$tmp/server.conv" "$tmp/conv/client-$i.dump" | head -n 10
			bad=1
		fi
	done
	rows=$(wc -l <"$tmp/server.conv")
	if ((bad == 0 && rows > 0)); then
		pass "all $CONV_CLIENTS replicas equal the server byte for byte ($rows rows)"
	else
		fail "all replicas equal the server byte for byte ($rows rows on the server)"
	fi

	logged=$(q -c "SELECT count(*) FROM synclog.ops WHERE row_id LIKE 'r%'")
	if [[ $logged == $((ops - rejected)) ]]; then
		pass "op log: exactly the $((ops - rejected)) accepted ops of $ops, each once"
	else
		fail "op log holds $logged ops, expected $ops made - $rejected refused = $((ops - rejected))"
	fi
	if ((rejected > 0)); then
		pass "refused ops ($rejected) were reported and settled"
	else
		fail "the workload produced refusals (negative prio, row_deleted): none seen"
	fi
fi

# --- kill safety ---------------------------------------------------------------
mkdir -p "$tmp/kill"
log="$tmp/kill/log"
kdb="$tmp/kill/client-0.db"
for ((k = 1; k <= KILLS; k++)); do
	"$harness" killme --url "$url" --token "$token" --group kill --db "$kdb" --log "$log" \
		--seed "$((SEED + k))" >/dev/null 2>"$tmp/kill.$k.err" &
	h_pid=$!
	sleep "0.$((3 + RANDOM % 9))"
	kill -KILL "$h_pid" 2>/dev/null
	wait "$h_pid" 2>/dev/null
	h_pid=""
done
if timeout -k 5 150 "$harness" settle --url "$url" --token "$token" --group kill --dir "$tmp/kill" \
	--clients 1 >"$tmp/kill.settle" 2>&1 && sanitizer_clean "$tmp/kill.settle"; then
	pass "a client killed $KILLS times while writing and syncing settles afterwards"
else
	tail -n 20 "$tmp/kill.settle"
	fail "a client killed $KILLS times while writing and syncing settles afterwards"
fi
nlog=$(wc -l <"$log")
nuniq=$(sort -u "$log" | wc -l)
q -c "CREATE TABLE logged (op_id uuid)" &&
	q -c "\\copy logged FROM '$log'" || fail "load the kill log"
lost=$(q -c "SELECT count(*) FROM logged WHERE op_id NOT IN (SELECT op_id FROM synclog.ops)")
inlog=$(q -c "SELECT count(*) FROM synclog.ops WHERE row_id LIKE 'k%'")
echo "kill test: $nlog writes acknowledged locally, $inlog ops in the server's log, $lost lost"
if ((nlog > 0)) && [[ $lost == 0 ]]; then
	pass "no locally acknowledged write lost across $KILLS kills ($nlog writes)"
else
	fail "locally acknowledged writes lost: $lost of $nlog"
fi
if ((nuniq == nlog && inlog >= nlog && inlog <= nlog + KILLS)); then
	pass "no op applied twice or invented: $inlog ops in the log for $nlog logged writes"
else
	fail "op count: $inlog in the server's log, $nlog logged ($nuniq distinct), at most $KILLS unlogged"
fi
server_dump kill >"$tmp/server.kill"
if "$harness" dump --db "$kdb" >"$tmp/client.kill" 2>&1 && cmp -s "$tmp/server.kill" "$tmp/client.kill" &&
	[[ -s $tmp/server.kill ]]; then
	pass "the killed client's rows equal the server's"
else
	diff "$tmp/server.kill" "$tmp/client.kill" | head
	fail "the killed client's rows equal the server's"
fi

gaps=$(q -c "SELECT count(*) - count(DISTINCT seq) + (max(seq) - count(seq)) FROM synclog.ops")
if [[ $gaps == 0 ]]; then
	pass "seq has no gap and no repeat"
else
	fail "seq gaps or repeats: $gaps"
fi

gateway_kill
bad=0
for f in "$tmp"/gw.*.err "$tmp"/kill.*.err; do
	sanitizer_clean "$f" || {
		echo "--- $f"
		grep -A20 -E 'runtime error:|Sanitizer' "$f" | head -n 40
		bad=1
	}
done
if ((bad == 0)); then
	pass "no sanitizer report from gateways or clients"
else
	fail "no sanitizer report from gateways or clients"
fi
exit "$failed"
