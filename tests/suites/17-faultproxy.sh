#!/usr/bin/env bash
# tests/suites/17-faultproxy.sh: the soak test's fault proxy
# (tests/soak/faultproxy.c, issue 6) on its own, no database.
#
# Builds build/soak/faultproxy, faultproxy-asan and proxytest (`make -C
# tests/soak faultproxy faultproxy-asan proxytest`; not the soak's own
# clients) and runs the sanitized proxy in front of proxytest's servers, on
# free loopback ports.  proxytest's clients send pseudo-random streams and
# check every byte of the echo.  One PASS/FAIL line per check:
#   - bad arguments (no arguments, a bad port, no upstream, an upstream
#     without a port, a range MIN > MAX, a per-mille over 1000, a bad seed,
#     an unknown option, a stray argument) exit 2 with the usage text; a
#     port already taken exits 1 with "cannot listen";
#   - a plain proxy (no fault options): 4 MB pass intact both ways, and its
#     stats line says 1 connection, bytes_up = bytes_down = 4000000 and no
#     fault at all;
#   - calm from the start (--calm, with latency 1000 ms and every per-mille
#     at 1000 given): 4 MB intact, promptly (well under the 1 s a single
#     delayed chunk would cost), no fault counted;
#   - faults (--latency-ms 0-10, slice 50, stall 20 per mille, stalls of
#     20-200 ms): 4 connections at once, 1 MB each, all intact; SIGHUP
#     prints the stats line (connections=4) and the proxy keeps serving (a
#     5th connection echoes 1000 bytes); at the end connections=5, bytes
#     both ways 4001000, slices, stalls and delayed chunks counted, no
#     reset;
#   - --slice-per-mille 1000 alone: 32 kB come back intact in 100 reads or
#     more (the pieces are 1-64 bytes, 0-2 ms apart; unsliced, a few reads);
#   - --stall-per-mille 1000 --stall-ms 300 alone: a 100-byte round trip
#     takes at least 550 ms (a stall each way), stalls=2;
#   - --reset-per-mille 1000: each of 3 connections ends in a reset or an
#     early close, having received fewer bytes than it sent; resets=3 and
#     bytes_up < what was sent;
#   - failover: the first upstream dead, 4 connections all reach the
#     second (its echo server accepted 4) intact, failovers=2 (round robin:
#     2 of the 4 tried the dead one first); every upstream dead: the client
#     is closed without a byte, failovers=2 for 1 connection;
#   - an upstream killed (SIGKILL) between connections: before, round robin
#     gives one connection to each; after, 4 new connections all reach the
#     survivor intact;
#   - an upstream that never answers (proxytest blackhole: a listener whose
#     accept queue is full, so SYNs are dropped) then a live one: the
#     connection reaches the second after the 2 s connect timeout
#     (at least 1.5 s), failovers=1;
#   - an upstream that sends 4 MB and closes cleanly (FIN) while the client
#     has sent megabytes that wait unread and still sends a little as it
#     reads (proxytest source and sink): the client gets all 4 MB intact,
#     then a clean end of file (no reset);
#   - SIGUSR1/SIGUSR2 with --latency-ms 1000: a round trip takes at least
#     1.9 s; SIGUSR1 sent 100 ms after a send releases that held data (the
#     round trip ends before the 1 s its chunk was held for), and later round
#     trips on that connection and on a new one take under 500 ms (the best
#     of 3, so a scheduling hiccup cannot fail it); after SIGUSR2 a round
#     trip takes at least 1.9 s again;
#   - bounded memory: a client that sends up to 64 MB for 3 s without ever
#     reading grows the proxy's VmRSS by less than 16 MB (each direction
#     holds at most 256 KiB plus one read; without that bound the proxy
#     reads all 64 MB and grows by about 80 MB).  That proxy runs with
#     ASan's quarantine off, which would otherwise keep freed chunks resident;
#   - every proxy stopped with SIGTERM exits 0 having printed exactly one
#     stats line (two for the one that got SIGHUP); nothing from ASan, UBSan
#     or LeakSanitizer in any proxy's or proxytest's stderr.
# Timing: the latency checks only compare against bounds 2x apart or more;
# every wait is bounded (proxytest's own limits, timeout(1) around it, 10 s
# for a process to start or stop).  Every process is killed and the
# temporary directory removed on every exit.  Takes about 20 s.

set -uo pipefail

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=tests/lib/suite.sh
source "$REPO/tests/lib/suite.sh"
proxy="$REPO/build/soak/faultproxy-asan"
pt="$REPO/build/soak/proxytest"

suite_begin faultproxy fp17
declare -A fp_pid=() fp_port=() srv_pid=() srv_port=()
# shellcheck disable=SC2016 # expanded when the hook runs
suite_at_exit 'suite_kill "${fp_pid[@]}" "${srv_pid[@]}"'

if ! make --no-print-directory -C "$REPO/tests/soak" faultproxy faultproxy-asan proxytest \
	>"$tmp/build.log" 2>&1; then
	cat "$tmp/build.log"
	suite_abort "build (make -C tests/soak faultproxy faultproxy-asan proxytest, output above)"
fi

# wait_line FILE TEXT: true once FILE holds TEXT (10 s at most).
wait_line() {
	local i
	for ((i = 0; i < 100; i++)); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# start_srv NAME MODE [ARGS...]: proxytest MODE (echo, source, blackhole) on
# a free port; srv_port[NAME], srv_pid[NAME], stderr in $tmp/srv-NAME.err.
start_srv() {
	local name=$1 mode=$2 port
	shift 2
	port=$(free_port) || suite_abort "no free port"
	"$pt" "$mode" "$port" "$@" 2>"$tmp/srv-$name.err" &
	srv_pid[$name]=$!
	srv_port[$name]=$port
	wait_line "$tmp/srv-$name.err" "^$mode: listening" ||
		{ cat "$tmp/srv-$name.err"; suite_abort "$mode server $name started"; }
}

# start_proxy NAME ARGS...: the sanitized proxy on a free port with ARGS;
# fp_port[NAME], fp_pid[NAME], stderr in $tmp/fp-NAME.err.  FP_ASAN_EXTRA, when
# set, is appended to ASAN_OPTIONS.
start_proxy() {
	local name=$1 port
	shift
	port=$(free_port) || suite_abort "no free port"
	env ASAN_OPTIONS="$ASAN_OPTIONS${FP_ASAN_EXTRA:+:$FP_ASAN_EXTRA}" \
		"$proxy" --listen "$port" "$@" 2>"$tmp/fp-$name.err" &
	fp_pid[$name]=$!
	fp_port[$name]=$port
	wait_line "$tmp/fp-$name.err" "^faultproxy: listening on 127.0.0.1:$port\$" ||
		{ cat "$tmp/fp-$name.err"; suite_abort "proxy $name started"; }
}

# stop_pid PID: SIGTERM, wait 10 s at most (then SIGKILL) and reap; the exit
# status goes to stopped ("killed" when it had to be killed).  Not in $(...):
# only this shell can reap its children.
stop_pid() {
	local i
	kill -TERM "$1" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		[[ $(ps -o stat= -p "$1" 2>/dev/null) == "" || $(ps -o stat= -p "$1") == Z* ]] && break
		sleep 0.1
	done
	if ((i == 100)); then
		suite_kill "$1"
		stopped=killed
	else
		wait "$1"
		stopped=$?
	fi
}

# stop_proxy NAME: stop_pid; the status goes to fp_status[NAME].
declare -A fp_status=()
stop_proxy() {
	stop_pid "${fp_pid[$1]}"
	fp_status[$1]=$stopped
	unset "fp_pid[$1]"
}

# fp_stat NAME KEY: KEY's value in NAME's last stats line ("" if none).
fp_stat() {
	grep '^faultproxy: connections=' "$tmp/fp-$1.err" | tail -n 1 |
		sed -n "s/.* $2=\([0-9]*\).*/\1/p; s/^faultproxy: $2=\([0-9]*\).*/\1/p"
}

# stats_are NAME K=V...: true when NAME's last stats line has each K=V; says
# which differs otherwise.
stats_are() {
	local name=$1 kv ok=0
	shift
	for kv in "$@"; do
		if [[ $(fp_stat "$name" "${kv%%=*}") != "${kv#*=}" ]]; then
			echo "proxy $name: want $kv, stats: $(grep '^faultproxy: connections=' "$tmp/fp-$name.err" | tail -n 1)"
			ok=1
		fi
	done
	return $ok
}

# run OUT CMD...: CMD under timeout(1), stdout in $tmp/OUT.out, stderr in
# $tmp/OUT.err; returns CMD's status.
run() {
	local out=$1
	shift
	timeout -k 5 90 "$@" >"$tmp/$out.out" 2>"$tmp/$out.err"
}

# all_ok OUT N: the proxytest send output OUT has N connections, all ok with
# equal sums.
all_ok() {
	local bad
	bad=$(grep '^conn=' "$tmp/$1.out" | awk '$2 != "result=ok" { print; next }
		{ split($5, a, "="); split($6, b, "="); if (a[2] != b[2]) print }')
	if [[ -n $bad || $(grep -c '^conn=.* result=ok ' "$tmp/$1.out") != "$2" ]]; then
		cat "$tmp/$1.out" "$tmp/$1.err"
		return 1
	fi
}

# rtts OUT: the rtt_ms values of OUT, one per line.
rtts() { sed -n 's/^rtt_ms=//p' "$tmp/$1.out"; }

start_srv a echo
start_srv b echo

# --- bad arguments, busy port ---------------------------------------------
args_ok=1
P=$(free_port) || suite_abort "no free port"
U="--upstream 127.0.0.1:${srv_port[a]}"
while IFS= read -r line; do
	# shellcheck disable=SC2086 # the cases are word lists
	timeout -k 5 10 "$proxy" $line >/dev/null 2>"$tmp/args.err"
	st=$?
	if [[ $st != 2 ]] || ! grep -q '^usage: faultproxy' "$tmp/args.err"; then
		echo "faultproxy $line: status $st, want 2 and the usage"
		cat "$tmp/args.err"
		args_ok=0
	fi
	sanitizer_clean "$tmp/args.err" || { cat "$tmp/args.err"; args_ok=0; }
done <<EOF

--listen 80000 $U
--listen $P
--listen $P --upstream 127.0.0.1
--listen $P $U --latency-ms 5-1
--listen $P $U --stall-ms x
--listen $P $U --reset-per-mille 1001
--listen $P $U --seed -3
--listen $P $U --bogus
--listen $P $U --slice-per-mille
--listen $P $U stray
EOF
if ((args_ok)); then
	pass "bad arguments exit 2 with the usage"
else
	fail "bad arguments exit 2 with the usage"
fi

timeout -k 5 10 "$proxy" --listen "${srv_port[a]}" --upstream "127.0.0.1:${srv_port[b]}" >/dev/null 2>"$tmp/busy.err"
st=$?
if [[ $st == 1 ]] && grep -q "cannot listen on 127.0.0.1:${srv_port[a]}" "$tmp/busy.err"; then
	pass "a port already taken exits 1"
else
	echo "status $st:"
	cat "$tmp/busy.err"
	fail "a port already taken exits 1"
fi

# --- plain and calm ---------------------------------------------------------
start_proxy plain --upstream "127.0.0.1:${srv_port[a]}"
run plain "$pt" send "${fp_port[plain]}" 4000000 1 11
if all_ok plain 1; then
	pass "plain proxy: 4 MB intact both ways"
else
	fail "plain proxy: 4 MB intact both ways"
fi
stop_proxy plain
if stats_are plain connections=1 failovers=0 resets=0 slices=0 stalls=0 delayed=0 \
	bytes_up=4000000 bytes_down=4000000; then
	pass "plain proxy: stats count 1 connection, 4000000 bytes each way, no fault"
else
	fail "plain proxy: stats count 1 connection, 4000000 bytes each way, no fault"
fi

start_proxy calm --upstream "127.0.0.1:${srv_port[a]}" --calm --latency-ms 1000 \
	--reset-per-mille 1000 --slice-per-mille 1000 --stall-per-mille 1000 --stall-ms 1000
t0=$(date +%s%N)
run calm "$pt" send "${fp_port[calm]}" 4000000 1 12
ms=$((($(date +%s%N) - t0) / 1000000))
if all_ok calm 1 && ((ms < 10000)); then
	pass "--calm with every fault configured: 4 MB intact in ${ms} ms"
else
	echo "took $ms ms"
	fail "--calm with every fault configured: 4 MB intact"
fi
stop_proxy calm
if stats_are calm connections=1 resets=0 slices=0 stalls=0 delayed=0 \
	bytes_up=4000000 bytes_down=4000000; then
	pass "--calm: no fault counted"
else
	fail "--calm: no fault counted"
fi

# --- under faults -----------------------------------------------------------
start_proxy faulty --upstream "127.0.0.1:${srv_port[a]}" --seed 42 --latency-ms 0-10 \
	--slice-per-mille 50 --stall-per-mille 20 --stall-ms 20-200
run faulty "$pt" send "${fp_port[faulty]}" 1000000 4 13
if all_ok faulty 4; then
	pass "latency, slices and stalls: 4 connections x 1 MB intact both ways"
else
	fail "latency, slices and stalls: 4 connections x 1 MB intact both ways"
fi
kill -HUP "${fp_pid[faulty]}"
if wait_line "$tmp/fp-faulty.err" '^faultproxy: connections=4 ' && sleep 0.2 &&
	kill -0 "${fp_pid[faulty]}" 2>/dev/null && run faulty-after "$pt" send "${fp_port[faulty]}" 1000 1 14 &&
	all_ok faulty-after 1; then
	pass "SIGHUP prints the stats line, the proxy keeps serving"
else
	cat "$tmp/fp-faulty.err"
	fail "SIGHUP prints the stats line, the proxy keeps serving"
fi
stop_proxy faulty
if stats_are faulty connections=5 resets=0 failovers=0 bytes_up=4001000 bytes_down=4001000 &&
	(($(fp_stat faulty slices) > 0 && $(fp_stat faulty stalls) > 0 && $(fp_stat faulty delayed) > 0)); then
	pass "faulty proxy: stats count the bytes, slices, stalls and delayed chunks"
else
	grep '^faultproxy: connections=' "$tmp/fp-faulty.err"
	fail "faulty proxy: stats count the bytes, slices, stalls and delayed chunks"
fi

# Each fault on its own, at 1000 per mille: slices make many small writes
# (32 kB come back in 100 reads or more; a read takes up to 64 kB), a stall
# holds each direction for --stall-ms.
start_proxy slice --upstream "127.0.0.1:${srv_port[a]}" --slice-per-mille 1000 --seed 5
run slice "$pt" send "${fp_port[slice]}" 32000 1 22
stop_proxy slice
reads=$(sed -n 's/^conn=0 .* reads=\([0-9]*\)$/\1/p' "$tmp/slice.out")
if all_ok slice 1 && ((${reads:-0} >= 100)) && (($(fp_stat slice slices) >= 2)); then
	pass "slice-per-mille 1000: 32 kB intact, in $reads reads"
else
	echo "reads=${reads:-?}"
	fail "slice-per-mille 1000: 32 kB intact, in 100 reads or more"
fi

start_proxy stall --upstream "127.0.0.1:${srv_port[a]}" --stall-per-mille 1000 --stall-ms 300
run stall "$pt" rtt "${fp_port[stall]}" 1
stop_proxy stall
r=$(rtts stall)
if [[ -n $r ]] && ((r >= 550)) && stats_are stall stalls=2 delayed=0; then
	pass "stall-per-mille 1000, stall-ms 300: a round trip takes $r ms (two stalls)"
else
	cat "$tmp/stall.out"
	fail "stall-per-mille 1000, stall-ms 300: a round trip takes 600 ms (two stalls)"
fi

# --- resets -----------------------------------------------------------------
start_proxy reset --upstream "127.0.0.1:${srv_port[a]}" --reset-per-mille 1000 --seed 7
run reset "$pt" send "${fp_port[reset]}" 1000000 3 15
st=$?
stop_proxy reset
bad=$(awk '/^conn=/ { split($4, r, "="); if (($2 != "result=reset" && $2 != "result=eof") || r[2] >= 1000000) print }' \
	"$tmp/reset.out")
if [[ $st == 1 && -z $bad && $(grep -c '^conn=' "$tmp/reset.out") == 3 ]]; then
	pass "reset-per-mille 1000: every connection reset early ($(grep -o 'result=[a-z]*' "$tmp/reset.out" | sort | uniq -c | xargs))"
else
	cat "$tmp/reset.out" "$tmp/reset.err"
	fail "reset-per-mille 1000: every connection reset early"
fi
if stats_are reset connections=3 resets=3 bytes_down=0 && (($(fp_stat reset bytes_up) < 3000000)); then
	pass "reset-per-mille 1000: resets=3, bytes_up less than sent"
else
	grep '^faultproxy: connections=' "$tmp/fp-reset.err"
	fail "reset-per-mille 1000: resets=3, bytes_up less than sent"
fi

# --- failover ---------------------------------------------------------------
dead=$(free_port) || suite_abort "no free port"
dead2=$(free_port) || suite_abort "no free port"
accepted() { grep -c '^[a-z]*: accepted' "$tmp/srv-$1.err"; }
before_b=$(accepted b)
start_proxy fo --upstream "127.0.0.1:$dead" --upstream "127.0.0.1:${srv_port[b]}"
run fo "$pt" send "${fp_port[fo]}" 100000 4 16
fo_ok=$?
stop_proxy fo
if ((fo_ok == 0)) && all_ok fo 4 && (($(accepted b) - before_b == 4)) &&
	stats_are fo connections=4 failovers=2 resets=0; then
	pass "first upstream dead: 4 connections reach the second, failovers=2"
else
	echo "echo b accepted $(($(accepted b) - before_b))"
	fail "first upstream dead: 4 connections reach the second, failovers=2"
fi

start_proxy nodest --upstream "127.0.0.1:$dead" --upstream "127.0.0.1:$dead2"
run nodest "$pt" send "${fp_port[nodest]}" 1000 1 17
stop_proxy nodest
if grep -Eq '^conn=0 result=(eof|reset) sent=[0-9]+ received=0 ' "$tmp/nodest.out" &&
	stats_are nodest connections=1 failovers=2 bytes_up=0 bytes_down=0; then
	pass "every upstream dead: the client is closed, failovers=2"
else
	cat "$tmp/nodest.out" "$tmp/nodest.err"
	fail "every upstream dead: the client is closed, failovers=2"
fi

start_srv c echo
start_srv d echo
start_proxy kill --upstream "127.0.0.1:${srv_port[c]}" --upstream "127.0.0.1:${srv_port[d]}"
run kill1 "$pt" send "${fp_port[kill]}" 100000 1 18
run kill2 "$pt" send "${fp_port[kill]}" 100000 1 19
spread="c=$(accepted c) d=$(accepted d)"
suite_kill "${srv_pid[c]}"
unset "srv_pid[c]"
run kill3 "$pt" send "${fp_port[kill]}" 100000 4 20
stop_proxy kill
if [[ $spread == "c=1 d=1" ]] && all_ok kill1 1 && all_ok kill2 1 && all_ok kill3 4 &&
	(($(accepted d) == 5)) && stats_are kill connections=6 failovers=2; then
	pass "an upstream killed: new connections go to the survivor"
else
	echo "before the kill: $spread; d accepted $(accepted d) in all"
	fail "an upstream killed: new connections go to the survivor"
fi

# --- an upstream that hangs, one that closes cleanly -------------------------
start_srv hole blackhole
before_b=$(accepted b)
start_proxy hole --upstream "127.0.0.1:${srv_port[hole]}" --upstream "127.0.0.1:${srv_port[b]}"
t0=$(date +%s%N)
run hole "$pt" send "${fp_port[hole]}" 100000 1 21
ms=$((($(date +%s%N) - t0) / 1000000))
stop_proxy hole
if all_ok hole 1 && ((ms >= 1500)) && (($(accepted b) - before_b == 1)) &&
	stats_are hole connections=1 failovers=1; then
	pass "an upstream that never answers: failover after the connect timeout (${ms} ms)"
else
	echo "took $ms ms; echo b accepted $(($(accepted b) - before_b))"
	fail "an upstream that never answers: failover after the connect timeout"
fi

start_srv src source 4000000
start_proxy fin --upstream "127.0.0.1:${srv_port[src]}"
run fin "$pt" sink "${fp_port[fin]}" 4000000
stop_proxy fin
if grep -q '^sink: result=ok ' "$tmp/fin.out" && stats_are fin resets=0 bytes_down=4000000; then
	pass "an upstream's clean close: the client gets every byte, then end of file"
else
	cat "$tmp/fin.out" "$tmp/fin.err"
	fail "an upstream's clean close: the client gets every byte, then end of file"
fi

# --- calm and faults on by signal ------------------------------------------
start_proxy sig --upstream "127.0.0.1:${srv_port[a]}" --latency-ms 1000
run sig1 "$pt" rtt "${fp_port[sig]}" 1
r1=$(rtts sig1)
run sig2 "$pt" rtt "${fp_port[sig]}" 4 USR1 "${fp_pid[sig]}" 100
mapfile -t r2 < <(rtts sig2)
run sig3 "$pt" rtt "${fp_port[sig]}" 3
r3=$(rtts sig3 | sort -n | head -n 1)
kill -USR2 "${fp_pid[sig]}"
sleep 0.2
run sig4 "$pt" rtt "${fp_port[sig]}" 1
r4=$(rtts sig4)
stop_proxy sig
echo "round trips (ms): faulty $r1; SIGUSR1 after 100 ms ${r2[*]}; new connection, best $r3; after SIGUSR2 $r4"
if [[ -n $r1 ]] && ((r1 >= 1900)); then
	pass "--latency-ms 1000: a round trip takes 2 s"
else
	fail "--latency-ms 1000: a round trip takes 2 s"
fi
best=$(printf '%s\n' "${r2[@]:1}" | sort -n | head -n 1)
if ((${#r2[@]} == 4 && r2[0] < 900 && best < 500)); then
	pass "SIGUSR1: held data released at once, the connection then passes data promptly"
else
	cat "$tmp/sig2.out"
	fail "SIGUSR1: held data released at once, the connection then passes data promptly"
fi
if [[ -n $r3 ]] && ((r3 < 500)); then
	pass "SIGUSR1: a new connection is calm too"
else
	cat "$tmp/sig3.out"
	fail "SIGUSR1: a new connection is calm too"
fi
if [[ -n $r4 ]] && ((r4 >= 1900)); then
	pass "SIGUSR2: faults on again"
else
	cat "$tmp/sig4.out"
	fail "SIGUSR2: faults on again"
fi

# --- bounded memory ---------------------------------------------------------
FP_ASAN_EXTRA=quarantine_size_mb=0 start_proxy mem --upstream "127.0.0.1:${srv_port[a]}"
run mem "$pt" flood "${fp_port[mem]}" 64000000 3 "${fp_pid[mem]}"
stop_proxy mem
read -r sent rb ra < <(sed -n 's/^flood: sent=\([0-9]*\) rss_before_kb=\([0-9]*\) rss_after_kb=\([0-9]*\)$/\1 \2 \3/p' \
	"$tmp/mem.out")
echo "flood: a client sent ${sent:-?} bytes without reading; proxy VmRSS ${rb:-?} kB -> ${ra:-?} kB"
if [[ -n ${ra:-} ]] && ((rb > 0 && ra - rb < 16384)); then
	pass "a client that never reads: proxy memory bounded"
else
	cat "$tmp/mem.out" "$tmp/mem.err"
	fail "a client that never reads: proxy memory bounded"
fi

# --- exits and sanitizers ---------------------------------------------------
exits_ok=1
for name in "${!fp_status[@]}"; do
	want=1
	[[ $name == faulty ]] && want=2
	n=$(grep -c '^faultproxy: connections=[0-9]* failovers=[0-9]* resets=[0-9]* slices=[0-9]* stalls=[0-9]* delayed=[0-9]* bytes_up=[0-9]* bytes_down=[0-9]*$' \
		"$tmp/fp-$name.err")
	if [[ ${fp_status[$name]} != 0 || $n != "$want" ]]; then
		echo "proxy $name: exit status ${fp_status[$name]}, $n stats lines (want 0 and $want)"
		cat "$tmp/fp-$name.err"
		exits_ok=0
	fi
done
if ((exits_ok)); then
	pass "SIGTERM: every proxy exits 0 with its stats line"
else
	fail "SIGTERM: every proxy exits 0 with its stats line"
fi

for name in "${!srv_pid[@]}"; do
	stop_pid "${srv_pid[$name]}"
	unset "srv_pid[$name]"
done
if sanitizer_clean "$tmp"/*.err; then
	pass "sanitizers quiet (proxies and proxytest)"
else
	grep -lE "$SANITIZER_RE" "$tmp"/*.err
	grep -hE -A5 "$SANITIZER_RE" "$tmp"/*.err | head -n 60
	fail "sanitizers quiet (proxies and proxytest)"
fi

exit "$failed"
