#!/usr/bin/env bash
# scripts/soak.sh: `make soak`, a seeded convergence soak under faults.
#
# On loopback, against a throwaway cluster of its own (tests/lib/cluster.sh),
# it runs SOAK_CLIENTS libsynclog clients (build/soak/soak client: random
# upserts and deletes over SOAK_ROWS rows and five fields, each client going
# offline at random) for SOAK_SECONDS, their traffic routed through our fault
# proxy (build/soak/faultproxy: added latency, connections reset mid-frame,
# frames sliced into small writes, stalls) which spreads connections over two
# gateways and fails over between them.  Meanwhile it
#   - kills -9 a gateway every SOAK_SECONDS/8 or so (alternating, restarted
#     1-3 s later), so clients fail over,
#   - restarts PostgreSQL once with `pg_ctl stop -m immediate` (crash and
#     recovery) at about 40% of the run,
#   - kills the sequencer worker once (pg_terminate_backend) at about 65%:
#     pushes go on unsequenced until the next push starts a new worker.
# The schedule comes from SOAK_SEED (bash's RANDOM is seeded with it) and so
# do the clients' choices: a run replays from its seed as far as timing lets
# it.
#
# Then the quiet period: the proxy is calmed (SIGUSR1), both gateways run,
# and every client stops writing and syncs until its outbox is empty; once all
# are drained and the sequencer has stamped everything, the server's cursor
# is written for the clients to reach.  The judge (soak check) prints
#   soak: seed=S clients=N ops=… acked=… rejected=… lost=0 duplicated=0 seq_gaps=0 replicas_identical=N/N oracle=ok
# and the clients' convergence time after the last fault (p50/p99), and this
# script a line of the faults it made.  Exit 0 when everything held; on a
# failure, 1, with the seed and the first diverging row, and the run's
# directory (SOAK_DIR, default a fresh one under /tmp) is kept for a look;
# it is removed after a passing run unless SOAK_KEEP=1.
#
# Environment: SOAK_SECONDS (default 120), SOAK_CLIENTS (default 8, at most
# 64), SOAK_SEED (default random), SOAK_ROWS (default 300), SOAK_DIR,
# SOAK_KEEP, SOAK_PROXY_FAULTS (the proxy's fault options; see the default
# below).  The extension must be installed (`make soak` does it).

set -uo pipefail

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
SOAK_SECONDS=${SOAK_SECONDS:-120}
SOAK_CLIENTS=${SOAK_CLIENTS:-8}
SOAK_SEED=${SOAK_SEED:-$(((RANDOM << 15) | RANDOM))}
SOAK_ROWS=${SOAK_ROWS:-300}
SOAK_KEEP=${SOAK_KEEP:-0}
SOAK_PROXY_FAULTS=${SOAK_PROXY_FAULTS:---latency-ms 0-20 --slice-per-mille 150 --stall-per-mille 4 --stall-ms 100-1500 --reset-per-mille 3}

for v in SOAK_SECONDS SOAK_CLIENTS SOAK_SEED SOAK_ROWS; do
	if ! [[ ${!v} =~ ^[0-9]+$ ]]; then
		echo "soak: $v=${!v}: expected a whole number" >&2
		exit 2
	fi
done
if ((SOAK_CLIENTS < 1 || SOAK_CLIENTS > 64 || SOAK_SECONDS < 10 || SOAK_ROWS < 10 || SOAK_ROWS > 1000)); then
	echo "soak: SOAK_CLIENTS must be 1-64, SOAK_SECONDS at least 10, SOAK_ROWS 10-1000" >&2
	exit 2
fi

# shellcheck source=tests/lib/cluster.sh
source "$REPO/tests/lib/cluster.sh"

gateway="$REPO/build/gateway/synclog-gateway-asan"
soak="$REPO/build/soak/soak"
proxy="$REPO/build/soak/faultproxy"
rundir=${SOAK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/synclog-soak.XXXXXX")}
mkdir -p "$rundir" || exit 1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

gw_pid=("" "") gw_port=("" "") gw_starts=(0 0)
proxy_pid="" client_pids=()
passed=0

say() { echo "soak: $*"; }
now_ms() { date +%s%3N; }

# stop_all: every process this script started, at exit (also on failure).
stop_all() {
	local p
	for p in "${client_pids[@]}" "${gw_pid[@]}"; do
		[[ -n $p ]] && kill -KILL "$p" 2>/dev/null
	done
	[[ -n $proxy_pid ]] && kill -TERM "$proxy_pid" 2>/dev/null
	wait 2>/dev/null
	if ((passed)) && [[ $SOAK_KEEP != 1 && -z ${SOAK_DIR:-} ]]; then
		rm -rf "$rundir"
	else
		say "run directory kept: $rundir"
	fi
}

cluster_cleanup_on_exit
cluster_at_exit stop_all

# free_port: a loopback port nothing answers on, below the ephemeral range.
free_port() {
	local i p
	for ((i = 0; i < 100; i++)); do
		p=$((20000 + (RANDOM % 12000)))
		(echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
	done
	return 1
}

# gw_start I: starts gateway I (0 or 1) on its port, waits (10 s at most)
# until it is connected to the database and accepts connections.
gw_start() {
	local i=$1 log k n
	gw_starts[i]=$((gw_starts[i] + 1))
	log="$rundir/gw$i.log"
	: >>"$log"
	n=$(grep -c "database connected" "$log")
	"$gateway" --listen "127.0.0.1:${gw_port[i]}" --db "$conninfo" 2>>"$log" &
	gw_pid[i]=$!
	for ((k = 0; k < 100; k++)); do
		if (($(grep -c "database connected" "$log") > ${n:-0})) &&
			(echo >"/dev/tcp/127.0.0.1/${gw_port[i]}") 2>/dev/null; then
			return 0
		fi
		kill -0 "${gw_pid[i]}" 2>/dev/null || break
		sleep 0.1
	done
	say "gateway $i did not start; end of its log:"
	tail -n 20 "$log"
	return 1
}

gw_kill() {
	local i=$1
	kill -KILL "${gw_pid[i]}" 2>/dev/null
	wait "${gw_pid[i]}" 2>/dev/null
	gw_pid[i]=""
}

q() { "$PG_BINDIR/psql" -X -qAt -v ON_ERROR_STOP=1 -d soak "$@"; }

die() {
	say "$*"
	say "FAILED (seed $SOAK_SEED); replay with SOAK_SEED=$SOAK_SEED SOAK_CLIENTS=$SOAK_CLIENTS SOAK_SECONDS=$SOAK_SECONDS"
	exit 1
}

say "seed=$SOAK_SEED clients=$SOAK_CLIENTS seconds=$SOAK_SECONDS rows=$SOAK_ROWS dir=$rundir"

if ! { make --no-print-directory -C "$REPO/gateway" gateway-asan &&
	make --no-print-directory -C "$REPO/tests/soak"; } >"$rundir/build.log" 2>&1; then
	cat "$rundir/build.log"
	die "build failed (output above)"
fi

cluster_start >/dev/null || die "cannot start a PostgreSQL cluster"
"$PG_BINDIR/createdb" soak || die "createdb failed"
q >/dev/null <<'SQL' || die "setup failed"
CREATE EXTENSION synclog;
CREATE TABLE items (id text PRIMARY KEY, team text NOT NULL, title text, status text,
                    prio int CHECK (prio >= 0), body text, n bigint);
SELECT synclog.track('items', 'team');
SQL
token=$(q -c "SELECT synclog.create_token('soak', ARRAY['soak'])") || die "create_token failed"
conninfo="host=$PGHOST port=$PGPORT user=$PGUSER dbname=soak"

gw_port[0]=$(free_port) && gw_port[1]=$(free_port) && pport=$(free_port) || die "no free port"
[[ ${gw_port[0]} != "${gw_port[1]}" && $pport != "${gw_port[0]}" && $pport != "${gw_port[1]}" ]] ||
	die "port collision; run again"
gw_start 0 && gw_start 1 || die "gateways did not start"

RANDOM=$SOAK_SEED
# shellcheck disable=SC2086 # the fault options are meant to be split
"$proxy" --listen "$pport" --upstream "127.0.0.1:${gw_port[0]}" --upstream "127.0.0.1:${gw_port[1]}" \
	--seed "$SOAK_SEED" $SOAK_PROXY_FAULTS 2>"$rundir/proxy.log" &
proxy_pid=$!
for ((k = 0; k < 50; k++)); do
	grep -q "listening" "$rundir/proxy.log" 2>/dev/null && break
	kill -0 "$proxy_pid" 2>/dev/null || break
	sleep 0.1
done
grep -q "listening" "$rundir/proxy.log" || { cat "$rundir/proxy.log"; die "the fault proxy did not start"; }

for ((i = 0; i < SOAK_CLIENTS; i++)); do
	"$soak" client --url "ws://127.0.0.1:$pport/" --token "$token" --group soak --dir "$rundir" \
		--index "$i" --rows "$SOAK_ROWS" --seed "$SOAK_SEED" 2>"$rundir/client-$i.err" &
	client_pids+=($!)
done

# The fault schedule, in seconds from now, drawn from the seed.
period=$((SOAK_SECONDS / 8))
((period < 4)) && period=4
kills=() t=$((period / 2 + RANDOM % period))
while ((t < SOAK_SECONDS - 3)); do
	kills+=("$t")
	t=$((t + period / 2 + RANDOM % period + 2))
done
pg_restart_at=$((SOAK_SECONDS * 2 / 5 + RANDOM % (SOAK_SECONDS / 10 + 1)))
seq_kill_at=$((SOAK_SECONDS * 13 / 20 + RANDOM % (SOAK_SECONDS / 10 + 1)))
say "faults planned: gateway kills at ${kills[*]} s, PostgreSQL restart at $pg_restart_at s, sequencer kill at $seq_kill_at s"

start=$(date +%s)
next_kill=0 victim=0 down="" up_at=0 pg_restarts=0 seq_kills=0 gw_kills=0 last_report=0
while :; do
	el=$(($(date +%s) - start))
	((el >= SOAK_SECONDS)) && break
	for ((i = 0; i < SOAK_CLIENTS; i++)); do
		kill -0 "${client_pids[i]}" 2>/dev/null && continue
		tail -n 5 "$rundir/client-$i.err"
		die "client $i died during the run (its stderr above)"
	done
	if [[ -n $down ]] && ((el >= up_at)); then
		gw_start "$down" || die "gateway $down did not restart"
		down=""
	fi
	if [[ -z $down ]] && ((next_kill < ${#kills[@]})) && ((el >= kills[next_kill])); then
		gw_kill "$victim"
		gw_kills=$((gw_kills + 1))
		down=$victim up_at=$((el + 1 + RANDOM % 3))
		victim=$((1 - victim)) next_kill=$((next_kill + 1))
		say "t=${el}s: killed gateway $down (-9)"
	fi
	if ((pg_restarts == 0 && el >= pg_restart_at)); then
		say "t=${el}s: restarting PostgreSQL with -m immediate"
		cluster_restart immediate || die "PostgreSQL did not come back"
		pg_restarts=1
	fi
	if ((seq_kills == 0 && el >= seq_kill_at)); then
		pid=$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'synclog sequencer' AND datname = 'soak'")
		if [[ -n $pid ]] && [[ $(q -c "SELECT pg_terminate_backend($pid)") == t ]]; then
			say "t=${el}s: terminated the sequencer (pid $pid)"
			seq_kills=1
			seq_killed_pid=$pid
		fi
	fi
	if ((el - last_report >= 30)); then
		last_report=$el
		say "t=${el}s: $(cat "$rundir"/ops-*.log 2>/dev/null | wc -l) ops made, server cursor $(q -c 'SELECT synclog.cursor()' 2>/dev/null || echo '?')"
	fi
	sleep 0.2
done
((seq_kills == 1)) || die "the sequencer was never found to terminate"

# Quiet: no more faults; every client drains its outbox.
kill -USR1 "$proxy_pid"
[[ -n $down ]] && { gw_start "$down" || die "gateway $down did not restart"; }
last_fault_ms=$(now_ms)
touch "$rundir/quiet"
say "quiet: faults off, waiting for every outbox to drain"
deadline=$(($(date +%s) + 300))
for ((i = 0; i < SOAK_CLIENTS; i++)); do
	while [[ ! -e $rundir/drained-$i ]]; do
		if ! kill -0 "${client_pids[i]}" 2>/dev/null; then
			tail -n 5 "$rundir/client-$i.err"
			die "client $i died while draining (its stderr above)"
		fi
		(($(date +%s) < deadline)) || die "client $i did not drain within 300 s"
		sleep 0.2
	done
done
# Every op pushed: wait for the sequencer to stamp them all (its restart
# after the kill is the next push's job, or the launcher's).
while :; do
	unstamped=$(q -c "SELECT count(*) FROM synclog.ops WHERE seq IS NULL")
	[[ $unstamped == 0 ]] && break
	(($(date +%s) < deadline)) || die "$unstamped ops still unsequenced after the quiet period"
	sleep 0.2
done
new_seq=$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'synclog sequencer' AND datname = 'soak'")
[[ -n $new_seq && $new_seq != "${seq_killed_pid:-}" ]] || say "note: no new sequencer process seen (pid '${new_seq}')"
final=$(q -c "SELECT synclog.cursor()")
echo "$final" >"$rundir/final.tmp" && mv "$rundir/final.tmp" "$rundir/final"
say "all drained; final cursor $final; waiting for every client to reach it"
for ((i = 0; i < SOAK_CLIENTS; i++)); do
	wait "${client_pids[i]}"
	st=$?
	if ((st != 0)); then
		tail -n 5 "$rundir/client-$i.err"
		die "client $i exited with status $st (its stderr above)"
	fi
done
client_pids=()

kill -HUP "$proxy_pid"
sleep 0.3
proxy_stats=$(grep '^faultproxy: connections=' "$rundir/proxy.log" | tail -n 1)
say "faults made: gateway_kills=$gw_kills pg_restarts=$pg_restarts sequencer_kills=$seq_kills; ${proxy_stats#faultproxy: }"

"$soak" check --dir "$rundir" --clients "$SOAK_CLIENTS" --conninfo "$conninfo" --seed "$SOAK_SEED" \
	--last-fault-ms "$last_fault_ms"
st=$?

# Sanitizers: the gateways and the clients must have reported nothing.
for i in 0 1; do
	if [[ -n ${gw_pid[i]} ]]; then
		kill -TERM "${gw_pid[i]}"
		wait "${gw_pid[i]}"
		gw_pid[i]=""
	fi
done
if grep -l -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$rundir"/gw*.log "$rundir"/client-*.err >/dev/null 2>&1; then
	grep -E -A5 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$rundir"/gw*.log "$rundir"/client-*.err | head -40
	die "a sanitizer report (above)"
fi
((st == 0)) || die "the judge found a failure (above)"

# SOAK_JUDGE_SELFTEST=1 (suite 60): the judge must see damage done behind its
# back.  A row changed with the capture trigger off (no op logged) must break
# the oracle and the replicas' equality; an acked op deleted from the op log
# must count as lost and leave a seq gap.
if [[ ${SOAK_JUDGE_SELFTEST:-0} == 1 ]]; then
	judge() {
		"$soak" check --dir "$rundir" --clients "$SOAK_CLIENTS" --conninfo "$conninfo" --seed "$SOAK_SEED" 2>"$rundir/judge.err"
	}
	q -c "SET session_replication_role = replica;
	      UPDATE items SET title = 'tampered' WHERE id = (SELECT min(id) FROM items)" >/dev/null ||
		die "judge self-test: cannot tamper with items"
	out=$(judge) && die "judge self-test: a tampered row passed: $out"
	[[ $out == *" oracle=FAILED"* && $out == *" replicas_identical=0/$SOAK_CLIENTS "* ]] ||
		die "judge self-test: a tampered row gave: $out"
	q -c "DELETE FROM synclog.ops WHERE op_id = (SELECT op_id FROM synclog.ops WHERE seq = 2)" >/dev/null ||
		die "judge self-test: cannot delete an op"
	out=$(judge) && die "judge self-test: a deleted op passed: $out"
	[[ $out == *" lost=1 "* && $out == *" seq_gaps=1 "* ]] || die "judge self-test: a deleted op gave: $out"
	say "judge self-test: a row changed behind synclog's back and an op deleted from the log were both caught"
fi
passed=1
say "PASSED"
