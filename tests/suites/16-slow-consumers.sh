#!/usr/bin/env bash
# tests/suites/16-slow-consumers.sh: slow consumers (issue 6).  1,000
# subscribers of one group on one gateway, 50 of which stop reading (SIGSTOP)
# under a steady push load for SLOW_SECONDS (default 60): the gateway's memory
# stays under the bound its configuration sets, the 950 others are served as
# fast as without the stopped ones, and the stopped ones, resumed, catch up
# with nothing lost.
#
# Setup: database slowc_<pid> on the shared cluster (table items, group
# column grp, one seed row so that cursors start above 0), a read-only token
# for the subscribers and a writing one for the publisher.  The gateway is
# the optimised build (gateway/synclog-gateway, `make -C gateway gateway`;
# SLOW_GATEWAY overrides it): this suite measures latency and memory, and
# the sanitized build, at about twice the CPU, saturates at this load on a
# 2-core machine (13-gateway-faults.sh runs the slow-client path under ASan).
# Its options:
#   --send-queue-bytes 262144 (SQB)  the per-client queue bound
#   --socket-send-buffer 65536       SO_SNDBUF of client sockets: without it
#                                    Linux grows a stalled socket's send
#                                    buffer to tcp_wmem's max (1.7 MB per
#                                    stopped client in 30 s here), and the
#                                    queue bound is never reached in a minute
#   --max-connections 1100 --idle-timeout 600 (the stopped clients answer no
#                                    ping: the idle timeout must not close
#                                    them during the run; 13 tests it)
# The load is tests/gateway/slowload.c (build/gateway/slowload):
#   - "main": one process, 950 subscriber connections (they never stop);
#   - "stop": 10 processes x 5 subscriber connections, each process a unit the
#     suite can SIGSTOP: a stopped process reads nothing, so its sockets fill
#     and the gateway's sends to them stall.  Each of the 50 also follows a
#     group of its own (s<process>-<k>, never written), so that no two of them
#     share changes frames in the gateway (frames are shared between sessions
#     of the same groups): each stopped client costs its own queue, the worst
#     case for memory;
#   - the publisher: one connection, one op per push at SLOW_RATE (default
#     25) ops/s for 2 s of warm-up (not counted) + SLOW_SECONDS, each op a new
#     row carrying its number, the time its push was written (CLOCK_MONOTONIC,
#     shared by the processes) and SLOW_PAD (default 1000) bytes of padding:
#     about 1.25 kB per change, 31 kB/s to each subscriber, 31 MB/s in all.
# All 1,000 subscribers say hello with the cursor of the moment, so each
# must get exactly the changes after it.  Two runs on the same gateway:
#   baseline  all 1,000 read;
#   stopped   the 10 "stop" processes get SIGSTOP once connected (before the
#             first push), and SIGCONT after the last push is sequenced.
# A delivery's latency is the time of the subscriber's read() that brought
# the change minus the publisher's write() of its push.  What is compared:
# over the deliveries to the 950 "main" connections (the same connections
# in both runs), cut by op number into windows of SLOW_WINDOW (default 5) s of
# pushes, the p99 of each window, and the median of those p99s (12 windows
# at 60 s).  The median shrugs off a burst of load from elsewhere on a shared
# machine that hits one or two windows, while a stall that recurs at least
# every 5 s shows in every window.
#
# Checks (one PASS/FAIL line each):
#   1. each run: the publisher's ops are all acked, none refused;
#   2. each run: each of the reading subscribers (1,000 in the baseline, the
#      950 in the stopped run) got every change after its cursor once, in seq
#      order (count, strictly increasing seqs, last = the final seq);
#   3. stopped run: every one of the 50 stopped connections fell "behind" in
#      the gateway's log (its send queue reached --send-queue-bytes; it is
#      caught up from the database later), none of the 950: the bound was
#      reached for real, and only by the stopped ones (it takes about 16 s of
#      pushes: 128 kB of socket buffer each side, then the 256 kB queue; with
#      SLOW_SECONDS under 30 this check has no time to pass);
#   4. stopped run: the gateway's peak VmRSS, sampled every 200 ms from just
#      before the first push until the stopped clients have caught up, stays
#      under the bound its configuration sets:
#        peak of the baseline run + 50 x (SQB + SQB/4 + 64 kB) + 8 MB
#      (each stopped client holds at most SQB of queued frames, plus the one
#      frame lws keeps when the socket takes only part of it, at most SQB/4
#      (the gateway's longest frame), plus 64 kB for its lws and session
#      state; 8 MB of slack for the allocator and libpq buffers).  A gateway
#      that kept queueing for them would hold 50 x 1.9 MB at 60 s;
#   5. stopped run: the 950's median window p99 latency <= 2 x the baseline's,
#      with a floor of 20 ms under the baseline's figure: a p99 of a few ms
#      doubles from scheduling noise of a 2-core machine shared with other
#      work, which says nothing about the stopped clients;
#   6. resumed: each of the 50 gets every change after its cursor once, in
#      seq order, within 60 s of SIGCONT (they were behind: this is the
#      catch-up from the database by cursor);
#   7. the gateway: SIGTERM -> exit 0, nothing from ASan/UBSan (when
#      SLOW_GATEWAY is the sanitized build).
# The figures (p50/p99 per run, ratio, peak RSS and bound, catch-up time,
# gateway CPU, bytes left in the kernel for the stopped clients) are printed
# along the checks.  Every wait is bounded; every process is stopped
# (SIGKILL also reaches a stopped one) and the database dropped on every exit.
# Takes about 2 min 30 s at SLOW_SECONDS=60.

set -uo pipefail

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
# shellcheck source=../lib/suite.sh
source "$REPO/tests/lib/suite.sh"
suite_begin slow-consumers slowc

SLOW_SECONDS=${SLOW_SECONDS:-60}
SLOW_RATE=${SLOW_RATE:-25}
SLOW_PAD=${SLOW_PAD:-1000}
SLOW_WINDOW=${SLOW_WINDOW:-5}
WARM_SECONDS=2
SQB=262144
NMAIN=950
NSTOP_PROCS=10
PER_STOP=5
NSTOP=$((NSTOP_PROCS * PER_STOP))
FLOOR_MS=20
SOCKBUF=65536
load="$REPO/build/gateway/slowload"
gateway=${SLOW_GATEWAY:-$REPO/gateway/synclog-gateway}
DB="slowc_$$"

pids=() # every slowload process started and not yet reaped
rss_pid=""
kill_load() {
	rss_stop
	suite_kill "${pids[@]}"
	pids=()
}
suite_at_exit kill_load

# 1,000 connections in the gateway and 950 in one process, plus files.
if (($(ulimit -n) < 4096)); then
	ulimit -n "$(($(ulimit -Hn) < 8192 ? $(ulimit -Hn) : 8192))" 2>/dev/null
fi
(($(ulimit -n) >= 2100)) || suite_abort "setup (ulimit -n is $(ulimit -n); 2100 file descriptors needed)"

if ! make --no-print-directory -C "$REPO/gateway" gateway slowload-bin >"$tmp/build.log" 2>&1; then
	cat "$tmp/build.log"
	suite_abort "build (make -C gateway gateway slowload-bin, output above)"
fi

suite_create_db "$DB" <<'SQL' || suite_abort "setup (output above)"
CREATE TABLE items (id text PRIMARY KEY, grp text NOT NULL, n bigint, t bigint, pad text);
SELECT synclog.track('items', 'grp');
INSERT INTO items VALUES ('seed', 'g', 0, 0, '');
SQL
sql() { psql -X -qAt -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
# the stopped connections each also follow a group of their own (s<process>-<k>)
tok_sub=$(sql -c "SELECT synclog.create_token('sub', ARRAY['g'] || ARRAY(SELECT format('s%s-%s', p, k)
	FROM generate_series(0, $((NSTOP_PROCS - 1))) p, generate_series(0, $((PER_STOP - 1))) k), false)") &&
	tok_pub=$(sql -c "SELECT synclog.create_token('pub', ARRAY['g'])") ||
	suite_abort "setup (tokens)"

now_ms() { date +%s%3N; }

# gw_start: the gateway on a free port ($port), stderr in $tmp/gw.err; waits
# (10 s at most) until it is connected to the database and accepts.
gw_start() {
	local i try
	for ((try = 0; try < 5; try++)); do
		port=$(free_port) || return 1
		env ASAN_OPTIONS="$ASAN_OPTIONS:quarantine_size_mb=0" "$gateway" \
			--listen "127.0.0.1:$port" \
			--db "host=${PGHOST:-127.0.0.1} port=${PGPORT:-5432} user=${PGUSER:-postgres} dbname=$DB" \
			--send-queue-bytes "$SQB" --socket-send-buffer "$SOCKBUF" \
			--max-connections 1100 --idle-timeout 600 2>>"$tmp/gw.err" &
		gw_pid=$!
		for ((i = 0; i < 100; i++)); do
			if grep -q "database connected" "$tmp/gw.err" 2>/dev/null && port_open "$port"; then
				return 0
			fi
			if gateway_dead; then
				gateway_kill
				grep -q "cannot listen" "$tmp/gw.err" && continue 2
				return 1
			fi
			sleep 0.1
		done
		return 1
	done
	return 1
}

# field FILE KEY: the value of KEY= in the "result" line of FILE ("" if none).
field() {
	grep -m 1 '^result ' "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"
}

# wait_ready FILE SECS PID: true once FILE has a line starting "ready";
# false after SECS seconds without, or once PID (writing FILE) has exited.
wait_ready() {
	local end=$(($(now_ms) + $2 * 1000))
	while (($(now_ms) < end)); do
		grep -q '^ready' "$1" 2>/dev/null && return 0
		[[ $(ps -o stat= -p "$3" 2>/dev/null) =~ ^[^Z] ]] || break
		sleep 0.1
	done
	grep -q '^ready' "$1" 2>/dev/null
}

# wait_pids SECS PID...: waits until every PID has exited (SECS at most),
# then SIGKILLs what is left; reaps them all.
wait_pids() {
	local end=$(($(now_ms) + $1 * 1000)) p alive
	shift
	while (($(now_ms) < end)); do
		alive=0
		for p in "$@"; do
			[[ $(ps -o stat= -p "$p" 2>/dev/null) =~ ^[^Z] ]] && alive=1
		done
		((alive)) || break
		sleep 0.1
	done
	suite_kill "$@"
}

# rss_sample PID: prints the VmRSS (kB) of PID every 200 ms while it lives
# and $tmp/rss.stop does not exist.  rss_stop ends it: by the file, so that
# it is never killed with a child (a sleep) that would outlive it.
rss_sample() {
	while [[ ! -e $tmp/rss.stop ]] && awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null; do
		sleep 0.2
	done
}
rss_stop() {
	local i
	[[ -n $rss_pid ]] || return 0
	touch "$tmp/rss.stop"
	for ((i = 0; i < 20; i++)); do
		[[ $(ps -o stat= -p "$rss_pid" 2>/dev/null) =~ ^[^Z] ]] || break
		sleep 0.1
	done
	suite_kill "$rss_pid"
	rss_pid=""
	rm -f "$tmp/rss.stop"
}

# run NAME STOP SECS: one run of SECS seconds of pushes (after the warm-up);
# STOP=1 stops the 10 "stop" processes.  Leaves the outputs in
# $tmp/NAME-*.out, the RSS samples in $tmp/NAME.rss, and sets run_ok=0 when
# the load could not be set up (the reason printed).
run() {
	local name=$1 stop=$2 secs=$3 c0 final count i f p main_pid stop_pids=() t_cont
	run_ok=1
	c0=$(sql -c "SELECT synclog.wait_sequenced()") || { run_ok=0; return; }
	local common=(--port "$port" --token "$tok_sub" --group g --cursor "$c0"
		--expect "$tmp/$name.expect" --timeout 60
		--warm-ops $((SLOW_RATE * WARM_SECONDS)) --window-ops $((SLOW_RATE * SLOW_WINDOW)))
	"$load" sub "${common[@]}" --conns "$NMAIN" >"$tmp/$name-main.out" 2>"$tmp/$name-main.err" &
	main_pid=$!
	pids+=("$main_pid")
	for ((i = 0; i < NSTOP_PROCS; i++)); do
		"$load" sub "${common[@]}" --conns "$PER_STOP" --extra-group "s$i-" >"$tmp/$name-stop$i.out" 2>"$tmp/$name-stop$i.err" &
		stop_pids+=($!)
		pids+=($!)
	done
	for ((i = 0; i <= NSTOP_PROCS; i++)); do
		if ((i == 0)); then f=$tmp/$name-main.out p=$main_pid; else
			f=$tmp/$name-stop$((i - 1)).out p=${stop_pids[i - 1]}
		fi
		if ! wait_ready "$f" 120 "$p"; then
			echo "--- $name: $(basename "$f") not ready (120 s at most):"
			tail -n 5 "${f%.out}.err"
			run_ok=0
			return
		fi
	done
	echo "$name: $((NMAIN + NSTOP)) subscribers connected (cursor $c0)"
	if ((stop)); then
		kill -STOP "${stop_pids[@]}"
		for p in "${stop_pids[@]}"; do
			for ((i = 0; i < 50; i++)); do
				[[ $(ps -o stat= -p "$p" 2>/dev/null) == T* ]] && break
				sleep 0.1
			done
		done
		i=0
		for p in "${stop_pids[@]}"; do
			[[ $(ps -o stat= -p "$p" 2>/dev/null) == T* ]] && i=$((i + 1))
		done
		echo "$name: $i of $NSTOP_PROCS processes stopped (state T)"
		stopped_pids=("${stop_pids[@]}")
	fi
	cpu0=$(awk '{ print $14 + $15 }' "/proc/$gw_pid/stat")
	rss_sample "$gw_pid" >"$tmp/$name.rss" &
	rss_pid=$!
	"$load" pub --port "$port" --token "$tok_pub" --group g --rate "$SLOW_RATE" \
		--seconds $((secs + WARM_SECONDS)) --pad "$SLOW_PAD" --prefix "$name" \
		>"$tmp/$name-pub.out" 2>"$tmp/$name-pub.err" &
	pids+=($!)
	wait_pids $((secs + WARM_SECONDS + 60)) $!
	echo "$name: publisher: $(grep '^result' "$tmp/$name-pub.out");" \
		"gateway CPU $((($(awk '{ print $14 + $15 }' "/proc/$gw_pid/stat") - cpu0) / $(getconf CLK_TCK))) s meanwhile"
	if ((stop)); then
		# where the bytes for the stopped clients are: the kernel's send
		# buffers of the gateway's sockets (not the gateway's memory)
		ss -tnH state established "( sport = :$port )" 2>/dev/null | awk '$2 > 65536 { n++; s += $2; if ($2 > m) m = $2 }
			END { printf "%s: %d gateway sockets with more than 64 kB unsent in the kernel, %d kB on average, %d kB at most\n", "'"$name"'", n, n ? s / n / 1024 : 0, m / 1024 }'
	fi
	final=$(sql -c "SELECT synclog.wait_sequenced('30s')")
	count=$(sql -c "SELECT count(*) FROM synclog.ops WHERE grp = 'g' AND seq > $c0 AND seq <= $final")
	echo "$final $count" >"$tmp/$name.expect"
	echo "$name: final seq $final, $count changes after cursor $c0"
	t_cont=$(now_ms)
	((stop)) && kill -CONT "${stop_pids[@]}"
	wait_pids 90 "$main_pid" "${stop_pids[@]}"
	catchup_wall_ms=$(($(now_ms) - t_cont))
	rss_stop
	pids=()
}

# complete NAME FILE...: true when every FILE's result says all its
# connections completed, with no violation and no error; else prints why.
complete() {
	local f ok=0
	for f in "$@"; do
		if [[ $(field "$f" complete) != "$(field "$f" conns)" || -z $(field "$f" conns) ||
			$(field "$f" violations) != 0 || $(field "$f" errors) != 0 ]]; then
			echo "--- $(basename "$f"): $(grep '^result' "$f" || echo 'no result')"
			head -n 8 "${f%.out}.err"
			ok=1
		fi
	done
	return $ok
}

# pub_ok NAME SECS: the publisher of run NAME sent all its ops, all acked.
pub_ok() {
	local f=$tmp/$1-pub.out
	[[ -n $(field "$f" sent) && $(field "$f" sent) == "$(field "$f" acked)" &&
		$(field "$f" sent) -eq $((SLOW_RATE * ($2 + WARM_SECONDS))) &&
		$(field "$f" rejected) == 0 && $(field "$f" errors) == 0 ]]
}

peak() { sort -n "$1" | tail -n 1; }

gw_start || {
	tail -n 20 "$tmp/gw.err"
	suite_abort "gateway started"
}
echo "gateway on port $port: --send-queue-bytes $SQB --socket-send-buffer $SOCKBUF --max-connections 1100 --idle-timeout 600"

# baseline NAME SECS: a baseline run and its checks.
baseline() {
	local name=$1 secs=$2 c
	run "$name" 0 "$secs"
	c="baseline $name: the publisher's $((SLOW_RATE * (secs + WARM_SECONDS))) ops are acked, none refused"
	if ((!run_ok)); then
		fail "$c (load not set up)"
	elif pub_ok "$name" "$secs"; then
		pass "$c"
	else
		fail "$c ($(cat "$tmp/$name-pub.out" "$tmp/$name-pub.err" | head -n 5))"
	fi
	c="baseline $name: all $((NMAIN + NSTOP)) subscribers get every change once, in seq order"
	if ((!run_ok)); then
		fail "$c (load not set up)"
	elif complete "$tmp/$name-main.out" "$tmp/$name"-stop*.out; then
		pass "$c"
	else
		fail "$c"
	fi
	echo "baseline $name: the 950: $(grep '^result' "$tmp/$name-main.out" | cut -d' ' -f9-)"
	echo "baseline $name: gateway peak VmRSS $(peak "$tmp/$name.rss") kB"
	kill_load
}

# The baseline is run before and after the stopped run, half as long each
# time, so that a load from elsewhere that grows or fades over the minutes
# weighs on both sides alike.
stopped_pids=()
baseline base1 $((SLOW_SECONDS / 2))
base_peak=$(peak "$tmp/base1.rss")

# --- stopped ---------------------------------------------------------------------
behind_from=$(wc -l <"$tmp/gw.err")
run stop 1 "$SLOW_SECONDS"
c_pub="stopped run: the publisher's ops are acked, none refused"
c_main="stopped run: the $NMAIN reading subscribers get every change once, in seq order"
c_behind="stopped run: each of the $NSTOP stopped connections fell behind its send queue bound, none of the $NMAIN"
c_rss="stopped run: gateway peak VmRSS stays under the configured bound"
c_lat="stopped run: the $NMAIN's p99 latency stays within 2x the baseline's"
c_res="resumed: the $NSTOP stopped subscribers catch up with every change once, in seq order, within 60 s"
if ((run_ok)); then
	pub_ok stop "$SLOW_SECONDS" && pass "$c_pub" || fail "$c_pub ($(cat "$tmp/stop-pub.out" "$tmp/stop-pub.err" | head -n 5))"
	complete "$tmp/stop-main.out" && pass "$c_main" || fail "$c_main"

	# client ids are slowload-<pid>-sub-<connection>
	tail -n +"$((behind_from + 1))" "$tmp/gw.err" | grep -oE 'client_id=slowload-[0-9]+-sub-[0-9]+: behind' |
		sort -u | sed -E 's/client_id=slowload-([0-9]+)-sub-([0-9]+): behind/\1 \2/' >"$tmp/behind"
	n_behind_stop=0
	for p in "${stopped_pids[@]}"; do
		n_behind_stop=$((n_behind_stop + $(awk -v p="$p" '$1 == p' "$tmp/behind" | wc -l)))
	done
	n_behind_all=$(wc -l <"$tmp/behind")
	n_behind_main=$((n_behind_all - n_behind_stop))
	echo "stopped run: connections that fell behind: $n_behind_stop of the $NSTOP stopped, $n_behind_main of the $NMAIN"
	if ((n_behind_stop == NSTOP && n_behind_main == 0)); then pass "$c_behind"; else fail "$c_behind"; fi

	stop_peak=$(peak "$tmp/stop.rss")
	bound=$((base_peak + NSTOP * (SQB + SQB / 4 + 65536) / 1024 + 8192))
	echo "stopped run: gateway peak VmRSS ${stop_peak:-?} kB; bound ${bound} kB" \
		"= baseline peak ${base_peak} kB + $NSTOP x ($SQB + $((SQB / 4)) + 65536) B + 8192 kB"
	if [[ -n $stop_peak && -n $base_peak ]] && ((stop_peak <= bound)); then
		pass "$c_rss (${stop_peak} kB <= ${bound} kB)"
	else
		fail "$c_rss (${stop_peak:-?} kB; bound ${bound} kB)"
	fi

	echo "stopped run: the 950: $(grep '^result' "$tmp/stop-main.out" | cut -d' ' -f9-)"

	max_catchup=0
	for f in "$tmp/stop"-stop*.out; do
		c=$(field "$f" catchup_ms)
		[[ -n $c && ${c%.*} -gt $max_catchup ]] && max_catchup=${c%.*}
	done
	echo "resumed: the slowest stopped process caught up ${max_catchup} ms after reading the final seq" \
		"(${catchup_wall_ms} ms after SIGCONT for all)"
	if complete "$tmp/stop"-stop*.out && ((catchup_wall_ms <= 60000 + 5000)); then
		pass "$c_res (${catchup_wall_ms} ms)"
	else
		fail "$c_res"
	fi
else
	for c in "$c_pub" "$c_main" "$c_behind" "$c_rss" "$c_res"; do fail "$c (load not set up)"; done
fi
stop_ok=$run_ok
kill_load

baseline base2 $((SLOW_SECONDS / 2))

# --- latency -------------------------------------------------------------------
# win_p99 NAME: the p99 of each window of run NAME's 950, one per line.
win_p99() { field "$tmp/$1-main.out" win_p99_ms | tr '/' '\n' | grep -E '^[0-9.]+$'; }
# median: of the numbers on stdin.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
base_p99=$( { win_p99 base1; win_p99 base2; } | median)
stop_p99=$(win_p99 stop | median)
echo "latency: p99 of each ${SLOW_WINDOW} s window of the 950:" \
	"baseline $(field "$tmp/base1-main.out" win_p99_ms) | $(field "$tmp/base2-main.out" win_p99_ms) ms;" \
	"stopped $(field "$tmp/stop-main.out" win_p99_ms) ms"
if ((stop_ok)) && [[ -n $base_p99 && -n $stop_p99 ]]; then
	read -r ok ratio limit < <(awk -v b="$base_p99" -v s="$stop_p99" -v f="$FLOOR_MS" 'BEGIN {
		ref = b > f ? b : f
		printf "%s %.2f %.2f\n", (s <= 2 * ref ? "ok" : "over"), s / b, 2 * ref }')
	echo "latency: median window p99 ${base_p99} ms baseline, ${stop_p99} ms stopped: ratio ${ratio}; limit ${limit} ms"
	if [[ $ok == ok ]]; then pass "$c_lat (${stop_p99} ms vs ${base_p99} ms, ratio ${ratio})"; else
		fail "$c_lat (${stop_p99} ms vs ${base_p99} ms, ratio ${ratio}; limit ${limit} ms)"
	fi
else
	fail "$c_lat (no figures: baseline '${base_p99}', stopped '${stop_p99}')"
fi

# --- the gateway ---------------------------------------------------------------
gw_was=$gw_pid
kill -TERM "$gw_pid" 2>/dev/null
for ((i = 0; i < 100; i++)); do
	gateway_dead && break
	sleep 0.1
done
wait "$gw_was" 2>/dev/null
st=$?
gateway_dead || st=124
gateway_kill
if ((st == 0)) && sanitizer_clean "$tmp/gw.err"; then
	pass "gateway: SIGTERM -> exit 0, no sanitizer report"
else
	echo "--- gateway: exit status $st (124: still running after 10 s); end of its stderr:"
	grep -nE -m 3 "$SANITIZER_RE" "$tmp/gw.err"
	tail -n 20 "$tmp/gw.err"
	fail "gateway: SIGTERM -> exit 0, no sanitizer report"
fi
exit "$failed"
