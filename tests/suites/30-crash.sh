#!/usr/bin/env bash
# tests/suites/30-crash.sh: a crash loses no acked op and leaves no gap in seq.
#
# DESIGN.md: ops are written with their data in the push transaction, and the
# sequencer stamps seq, gap-free, in transactions of its own, so "a crash
# loses or doubles nothing".  This suite starts a private cluster (it kills
# it), has WRITERS concurrent psql sessions push batches of 1-8 ops (each
# batch writes the writer's own rows and one row shared by all writers, so
# pushes also wait on each other's row locks), records every op id that a
# push reply acknowledged, and stops the cluster with `pg_ctl stop -m
# immediate` in mid-stream.  After the restart it waits for the sequencer and
# checks:
#   - every acked op id is in synclog.ops exactly once, with its row written
#   - seq is exactly 1..high_water (no gap, no duplicate, none unstamped)
#   - high_water = number of ops
# Then the writers resend their last batches before the crash (the one in
# flight included) and push new ones, concurrently, and it checks that resent
# ops are applied at most once, that the ops numbered before the restart
# keep their seq, that every new op gets a seq above the old high-water, and
# that seq is still gap-free.
#
# Environment: REPO (default: this file's ../..), WRITERS (default 4),
# CRASH_AFTER (acked ops to wait for before the crash, default 2000).  Uses
# tests/lib/cluster.sh; everything it starts is stopped and removed on exit.

set -u -o pipefail

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WRITERS=${WRITERS:-4}
CRASH_AFTER=${CRASH_AFTER:-2000}
BATCHES=20000           # per writer: far more than it pushes before the crash
AFTER=20                # new batches per writer after the restart

# shellcheck source=../lib/cluster.sh
source "$REPO/tests/lib/cluster.sh"

failed=0
pids=()
pass() { echo "PASS: crash: $1"; }
fail() {
	echo "FAIL: crash: $1"
	failed=1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/synclog-crash.XXXXXX") || { echo "FAIL: crash: mktemp"; exit 1; }
cluster_cleanup_on_exit
cluster_at_exit 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf -- "$work"'

if ! cluster_start; then
	fail "cluster start"
	exit 1
fi
echo "cluster: $CLUSTER_DIR, port $PGPORT"
start=$SECONDS

# sql ARGS...: psql against database crash, unaligned, tuples only.
sql() { cluster_psql -At -d crash "$@"; }

# A batch is a function of (writer, batch number): resending it sends the
# same op ids.  Each output line is "A <writer> <batch> <op id>" for an acked
# op and "R <writer> <batch> <rejection>" for a refused one.
run=$RANDOM$RANDOM
if ! cluster_psql -c 'CREATE DATABASE crash' || ! sql -v run="$run" >/dev/null <<'EOF'
CREATE EXTENSION synclog;
CREATE TABLE t (id text PRIMARY KEY, grp text NOT NULL, w int, v int);
SELECT synclog.track('t', 'grp');
CREATE TABLE tok AS SELECT synclog.create_token('crash', ARRAY['g']) AS tok;
CREATE TABLE run AS SELECT :'run'::text AS run;
CREATE FUNCTION crash_batch(w int, b int) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_agg(jsonb_build_object(
               'id', md5((SELECT run FROM run) || '/' || w || '/' || b || '/' || i)::uuid,
               'table', 't',
               'row', CASE WHEN i = n THEN 'shared-' || (b % 4) ELSE 'w' || w || '-r' || ((b * 7 + i) % 25) END,
               'kind', 'upsert',
               'fields', jsonb_build_object('grp', 'g', 'w', w, 'v', b * 100 + i),
               'hlc', lpad(to_hex(((1700000000000::bigint + b) << 16) | (w * 256 + i)), 16, '0'))
           ORDER BY i)
      FROM (SELECT 1 + abs(hashint4(w * 1000003 + b)) % 8 AS n) s, generate_series(1, s.n) i
$$;
CREATE FUNCTION crash_push(w int, b int) RETURNS SETOF text LANGUAGE sql AS $$
    SELECT x
      FROM (SELECT synclog.push((SELECT tok FROM tok), 'writer-' || w, crash_batch(w, b)) AS r) p,
           LATERAL (SELECT 'A ' || w || ' ' || b || ' ' || a FROM jsonb_array_elements_text(p.r->'acked') a
                    UNION ALL
                    SELECT 'R ' || w || ' ' || b || ' ' || e::text FROM jsonb_array_elements(p.r->'rejected') e) l(x)
$$;
EOF
then
	fail "setup of database crash"
	exit 1
fi

# --- 1. push from WRITERS sessions, crash in mid-stream ---------------------

for ((w = 1; w <= WRITERS; w++)); do
	seq 1 "$BATCHES" | sed "s/.*/SELECT * FROM crash_push($w, &);/" >"$work/writer$w.sql"
done
for ((w = 1; w <= WRITERS; w++)); do
	"$PG_BINDIR/psql" -X -q -At -d crash -f "$work/writer$w.sql" >"$work/acks$w.txt" 2>"$work/err$w.txt" </dev/null &
	pids+=($!)
done

acked() { cat "$work"/acks*.txt 2>/dev/null | grep -c '^A '; }
for ((i = 0; i < 600; i++)); do
	(($(acked) >= CRASH_AFTER)) && break
	sleep 0.05
done
running=0
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && running=$((running + 1)); done
echo "crashing with $running of $WRITERS writers running, $(acked) acked ops seen so far"
if ! cluster_restart immediate; then
	fail "restart after pg_ctl stop -m immediate"
	exit 1
fi
for p in "${pids[@]}"; do
	for ((i = 0; i < 100; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	kill "$p" 2>/dev/null
	wait "$p" 2>/dev/null
done
pids=()
((running == WRITERS)) && pass "crashed in mid-stream" || fail "crashed in mid-stream (writers had already stopped)"

cat "$work"/acks*.txt | grep '^A ' | awk '{print $4}' | sort -u >"$work/acked.txt"
nacked=$(wc -l <"$work/acked.txt")
nrej=$(cat "$work"/acks*.txt | grep -c '^R ')
errors=$(grep -h 'ERROR:' "$work"/err*.txt | head -n 5)
echo "acked before the crash: $nacked ops; refused: $nrej"
if ((nrej == 0)) && [[ -z $errors ]]; then pass "no push refused or failed before the crash"; else
	cat "$work"/acks*.txt | grep -m 5 '^R '
	echo "$errors"
	fail "no push refused or failed before the crash"
fi
((nacked > 0)) || fail "some ops acked before the crash"

# --- 2. after recovery ------------------------------------------------------

unstamped=$(sql -c 'SELECT count(*) FILTER (WHERE seq IS NULL) FROM synclog.ops') &&
	echo "right after recovery: $unstamped ops not yet stamped"
if ! sql -c "SELECT synclog.wait_sequenced('60s')" >/dev/null; then
	fail "sequencer stamps the recovered ops (wait_sequenced timed out)"
	exit 1
fi

# load_ids FILE: SQL that loads the op ids of FILE (one per line) into a temp
# table acked, data inline (COPY FROM STDIN reads the script itself).
load_ids() {
	echo "CREATE TEMP TABLE acked (id uuid);"
	echo "COPY acked FROM STDIN;"
	cat "$1"
	echo "\\."
}

# check_log ACKED-FILE LABEL: every id in the file is in synclog.ops exactly
# once with its row in t; seq is exactly 1..high_water = count(ops).
check_log() {
	local res
	res=$({ load_ids "$1"; cat <<'EOF'
SELECT (SELECT count(*) FROM acked a
         WHERE (SELECT count(*) FROM synclog.ops o WHERE o.op_id = a.id) <> 1) || ' ' ||
       (SELECT count(*) FROM synclog.ops o WHERE NOT EXISTS (SELECT 1 FROM t WHERE t.id = o.row_id)) || ' ' ||
       (SELECT count(*) = count(seq) AND count(DISTINCT seq) = count(*) AND min(seq) = 1
               AND max(seq) = count(*) FROM synclog.ops) || ' ' ||
       ((SELECT high_water FROM synclog.state) = (SELECT count(*) FROM synclog.ops)) || ' ' ||
       (SELECT count(*) FROM synclog.ops) || ' ' || (SELECT high_water FROM synclog.state);
EOF
	} | sql) || { fail "$2: checking the op log"; return; }
	local missing norow gapfree hwok nops hw
	read -r missing norow gapfree hwok nops hw <<<"$res"
	echo "$2: $nops ops in the log, high_water $hw"
	if ((missing == 0)); then pass "$2: every acked op in synclog.ops exactly once"; else
		{ load_ids "$1"; cat <<'EOF'
SELECT 'lost or doubled: ' || a.id || ' (' || (SELECT count(*) FROM synclog.ops o WHERE o.op_id = a.id) || ' copies)'
  FROM acked a WHERE (SELECT count(*) FROM synclog.ops o WHERE o.op_id = a.id) <> 1 LIMIT 5;
EOF
		} | sql
		fail "$2: every acked op in synclog.ops exactly once ($missing lost or doubled)"
	fi
	((norow == 0)) && pass "$2: every logged op has its row" ||
		fail "$2: every logged op has its row ($norow without)"
	if [[ $gapfree == true ]]; then pass "$2: seq is exactly 1..high_water"; else
		sql -c "SELECT 'seq: ' || count(*) || ' ops, ' || count(seq) || ' stamped, ' || count(DISTINCT seq)
		               || ' distinct, min ' || min(seq) || ', max ' || max(seq) FROM synclog.ops"
		fail "$2: seq is exactly 1..high_water"
	fi
	[[ $hwok == true ]] && pass "$2: high_water = number of ops" || fail "$2: high_water = number of ops"
}
check_log "$work/acked.txt" "after restart"

# --- 3. resend and push more after the restart ------------------------------

sql -c 'CREATE TABLE before_restart AS SELECT op_id, seq FROM synclog.ops' >/dev/null
old_hw=$(sql -c 'SELECT high_water FROM synclog.state')
for ((w = 1; w <= WRITERS; w++)); do
	last=$(grep "^A $w " "$work/acks$w.txt" | awk '{print $3}' | sort -n | tail -n 1)
	last=${last:-0}
	{
		for ((b = last > 3 ? last - 3 : 1; b <= last + 1; b++)); do echo "SELECT * FROM crash_push($w, $b);"; done
		for ((b = BATCHES + 1; b <= BATCHES + AFTER; b++)); do echo "SELECT * FROM crash_push($w, $b);"; done
	} >"$work/again$w.sql"
	"$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -d crash -f "$work/again$w.sql" >"$work/again$w.txt" 2>"$work/againerr$w.txt" </dev/null &
	pids+=($!)
done
ok=true
for p in "${pids[@]}"; do wait "$p" || ok=false; done
pids=()
if $ok && ! grep -q '^R ' "$work"/again*.txt; then pass "resend and new pushes after the restart all acked"; else
	cat "$work"/againerr*.txt | head -n 5
	grep -h -m 5 '^R ' "$work"/again*.txt
	fail "resend and new pushes after the restart all acked"
fi
if ! sql -c "SELECT synclog.wait_sequenced('60s')" >/dev/null; then
	fail "sequencer stamps the new ops (wait_sequenced timed out)"
	exit 1
fi

cat "$work"/acks*.txt "$work"/again*.txt | grep '^A ' | awk '{print $4}' | sort -u >"$work/acked-all.txt"
check_log "$work/acked-all.txt" "after new pushes"

res=$(sql -v old_hw="$old_hw" <<'EOF'
SELECT (SELECT count(*) FROM before_restart b JOIN synclog.ops o USING (op_id) WHERE o.seq IS DISTINCT FROM b.seq)
       || ' ' || (SELECT count(*) FROM synclog.ops o
                   WHERE NOT EXISTS (SELECT 1 FROM before_restart b WHERE b.op_id = o.op_id) AND o.seq <= :old_hw)
       || ' ' || (SELECT count(*) FROM synclog.ops o
                   WHERE NOT EXISTS (SELECT 1 FROM before_restart b WHERE b.op_id = o.op_id));
EOF
)
read -r moved below newops <<<"$res"
echo "ops pushed after the restart: ${newops:-?} (old high_water $old_hw)"
if [[ $moved == 0 && $below == 0 && ${newops:-0} -gt 0 ]]; then
	pass "ops numbered before the restart keep their seq, new ones get seq above $old_hw"
else
	fail "ops numbered before the restart keep their seq, new ones get seq above $old_hw ($moved renumbered, $below new at or below)"
fi

echo "crash: $((SECONDS - start)) s"
exit "$failed"
