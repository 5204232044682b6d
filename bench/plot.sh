#!/usr/bin/env bash
# bench/plot.sh: the plots of `make bench`, drawn with gnuplot from
# bench/results.json (bench/run.sh calls it last; it can be run alone on the
# results of an earlier run).
#
#   bench/plot.sh [RESULTS [OUTDIR]]     defaults: bench/results.json, bench/out
#
# Writes, as 900x560 PNGs:
#   OUTDIR/fanout.png  fan-out latency (p50 and p99, ms, log scale) against
#                      the number of subscribers (100, 1,000, 5,000, log
#                      scale), the gateway beside the bare libwebsockets
#                      broadcast measured in the same run (each figure's
#                      baseline), with the gateway's min-max spread as error
#                      bars;
#   OUTDIR/push.png    push throughput (ops/s) against batch size (1, 10,
#                      100) through the extension alone, the gateway's push
#                      at batch 10, and pgbench's single-row INSERT (the
#                      baseline) as a line, with min-max error bars.
# A figure missing from RESULTS (a part of the bench skipped) leaves its
# points out; a plot with no point at all is not written.  Exit 1 with a
# message when gnuplot or RESULTS is missing.
#
# RESULTS is read as bench/report.sh writes it: one object per line.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
results=${1:-$REPO/bench/results.json}
out=${2:-$REPO/bench/out}

command -v gnuplot >/dev/null || { echo "plot: gnuplot not found (make deps installs it)" >&2; exit 1; }
[[ -r $results ]] || { echo "plot: $results: no such file (run make bench first)" >&2; exit 1; }
mkdir -p "$out"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/synclog-plot.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# field NAME KEY: the number KEY of the object named NAME, or nothing (a
# figure a partial run did not measure is simply left out of the plots).
field() {
	{ grep -F "\"name\": \"$1\"," "$results" || true; } | head -n 1 |
		sed -n "s/.*\"$2\": \([-0-9.eE+]*\)[,}].*/\1/p"
}

# Fan-out: subscribers, gateway p50 (min max), gateway p99 (min max), lws p50, lws p99.
n=0
for subs in 100 1000 5000; do
	g50=$(field "gw_fanout_${subs}_subs_p50_ms" value)
	g99=$(field "gw_fanout_${subs}_subs_p99_ms" value)
	[[ -n $g50 && -n $g99 ]] || continue
	echo "$subs $g50 $(field "gw_fanout_${subs}_subs_p50_ms" min) $(field "gw_fanout_${subs}_subs_p50_ms" max)" \
		"$g99 $(field "gw_fanout_${subs}_subs_p99_ms" min) $(field "gw_fanout_${subs}_subs_p99_ms" max)" \
		"$(field "gw_fanout_${subs}_subs_p50_ms" baseline) $(field "gw_fanout_${subs}_subs_p99_ms" baseline)" \
		>>"$tmp/fanout.dat"
	n=$((n + 1))
done
printf '1000 15\n5000 100\n' >"$tmp/fanout-target.dat"
if ((n > 0)); then
	gnuplot <<EOF
set terminal pngcairo size 900,560 font "sans,11" noenhanced
set output "$out/fanout.png"
set title "Fan-out latency: push committed -> change read by every subscriber"
set xlabel "subscribers"
set ylabel "latency (ms)"
set logscale xy
set xrange [70:7000]
set xtics ("100" 100, "1,000" 1000, "5,000" 5000)
set grid
set key top left
plot "$tmp/fanout.dat" using 1:5:6:7 with yerrorlines lw 2 pt 7 title "synclog-gateway p99", \
     "" using 1:2:3:4 with yerrorlines lw 2 pt 5 title "synclog-gateway p50", \
     "" using 1:9 with linespoints lw 2 dt 2 pt 6 title "bare libwebsockets broadcast p99", \
     "" using 1:8 with linespoints lw 2 dt 2 pt 4 title "bare libwebsockets broadcast p50", \
     "$tmp/fanout-target.dat" using 1:2 with points pt 3 ps 2.5 lc rgb "red" title "target p99 (issue 4)"
EOF
	echo "plot: $out/fanout.png"
fi

# Push: batch, ops/s, min, max.
: >"$tmp/push.dat"
for b in 1 10 100; do
	v=$(field "push_batch${b}_ops_per_s" value)
	[[ -n $v ]] && echo "$b $v $(field "push_batch${b}_ops_per_s" min) $(field "push_batch${b}_ops_per_s" max)" >>"$tmp/push.dat"
done
gw=$(field gw_push_batch10_ops_per_s value)
[[ -n $gw ]] && echo "10 $gw $(field gw_push_batch10_ops_per_s min) $(field gw_push_batch10_ops_per_s max)" >"$tmp/gwpush.dat"
base=$(field baseline_insert_rows_per_s value)
if [[ -s $tmp/push.dat ]]; then
	gwplot=""
	[[ -s $tmp/gwpush.dat ]] &&
		gwplot=", \"$tmp/gwpush.dat\" using 1:2:3:4 with yerrorbars lw 2 pt 9 ps 1.5 title \"through the gateway (batch 10)\""
	baseplot=""
	if [[ -n $base ]]; then
		baseplot=", $base with lines lw 2 dt 2 title \"pgbench single-row INSERT (baseline)\""
		awk -v b="$base" 'BEGIN {printf "1 %f\n100 %f\n", 0.5 * b, 10 * b}' >"$tmp/push-target.dat"
		baseplot+=", \"$tmp/push-target.dat\" using 1:2 with points pt 3 ps 2.5 lc rgb \"red\" title \"target (0.5x at batch 1, 10x at batch 100)\""
	fi
	gnuplot <<EOF
set terminal pngcairo size 900,560 font "sans,11" noenhanced
set output "$out/push.png"
set title "Push throughput against batch size (8 connections)"
set xlabel "ops per push"
set ylabel "ops/s"
set logscale x
set xrange [0.7:150]
set yrange [0:*]
set xtics ("1" 1, "10" 10, "100" 100)
set grid
set key top left
plot "$tmp/push.dat" using 1:2:3:4 with yerrorlines lw 2 pt 7 title "synclog.push (extension alone)"$gwplot$baseplot
EOF
	echo "plot: $out/push.png"
fi
