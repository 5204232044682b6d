#!/usr/bin/env bash
# tests/suites/20-convergence.sh: the conflict rule converges whatever order
# ops arrive in.
#
# A property test of DESIGN.md's "the rule is commutative, associative and
# idempotent, so the server and every client converge whatever order ops
# arrive in".  From a seed it generates a few hundred ops (SQL setseed() and
# random() in a scratch database) over 6 rows and 4 fields of one table: every
# upsert carries the group column, so any op may create its row; rows r4 and
# r5 also get deletes; clocks collide on purpose (equal hlcs from different
# clients), but no client reuses a clock.  Then, for each of ORDERS orders, a
# fresh database (extension, tracked table, token) receives every op in that
# order, from 4 clients, in batches of random size, with some batches resent
# and some ops repeated inside a batch.  Order 1 is roughly clock order, order
# 2 pushes the deletes first and the rest newest first, the others are random.
#
# Checks (one PASS/FAIL line each, over all orders):
#   - every op of every push is answered, acked or rejected, and nothing else
#     is; no op is acked once and rejected another time
#   - every acked op is in synclog.ops exactly once, nothing else is
#   - the only refusals are row_deleted, on rows that have a delete
#   - seq is exactly 1..high_water
#   - the tables (SELECT json_agg(t ORDER BY id) FROM t) are byte-identical
#     across orders, and so are the field clocks and the tombstones
#   - the table equals a model computed in SQL from the op list: per field,
#     the value of the op with the greatest (hlc, client_id); rows with a
#     delete absent
#
# Environment: SEED (default random; printed, set it to repeat a run), OPS
# (default 300), ORDERS (default 4, at least 2), CONV_KEEP (set: keep the
# generated scripts and dumps), and the cluster of
# tests/suites/README.md (PGHOST, PGPORT, PGUSER; PG_BINDIR optional).
# Creates databases conv_<pid>_*, drops them on any exit.

set -u -o pipefail

SEED=${SEED:-$(((RANDOM << 15 | RANDOM) % 1000000))}
OPS=${OPS:-300}
ORDERS=${ORDERS:-4}
PSQL=${PG_BINDIR:+$PG_BINDIR/}psql
export PGDATABASE=${PGDATABASE:-postgres}

[[ $SEED =~ ^[0-9]+$ && $OPS =~ ^[0-9]+$ && $ORDERS =~ ^[0-9]+$ ]] && ((ORDERS >= 2 && OPS >= 10)) || {
	echo "FAIL: convergence: SEED, OPS and ORDERS must be integers (OPS >= 10, ORDERS >= 2)"
	exit 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/synclog-conv.XXXXXX") || { echo "FAIL: convergence: mktemp"; exit 1; }
prefix=conv_$$
dbs=()
failed=0

cleanup() {
	local db
	for db in "${dbs[@]}"; do
		"$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 ||
			echo "warning: could not drop database $db" >&2
	done
	if [[ -n ${CONV_KEEP:-} ]]; then echo "kept $work" >&2; else rm -rf -- "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pass() { echo "PASS: convergence: $1"; }
fail() {
	echo "FAIL: convergence: $1"
	failed=1
}

# q DB SQL...: one query, unaligned, tuples only, stop on error.
q() {
	local db=$1
	shift
	"$PSQL" -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"
}

createdb_() {
	dbs+=("$1")
	q postgres -c "CREATE DATABASE $1" >/dev/null
}

dropdb_() {
	q postgres -c "DROP DATABASE IF EXISTS $1" >/dev/null || echo "warning: could not drop database $1" >&2
}

echo "seed: $SEED (SEED=$SEED OPS=$OPS ORDERS=$ORDERS $0 repeats this run)"
start=$SECONDS

# --- 1. generate ops, orders and the model in a scratch database -----------

TABLE_DDL='CREATE TABLE t (id text PRIMARY KEY, grp text NOT NULL, f1 text, f2 integer, f3 boolean, f4 text);'

model=${prefix}_model
if ! createdb_ "$model"; then
	fail "setup (cannot create database $model)"
	exit 1
fi

if ! q "$model" -v seed="$SEED" -v nops="$OPS" -v norders="$ORDERS" -v workdir="$work" >"$work/gen.log" 2>&1 <<EOF
SELECT set_config('conv.seed', :'seed', false), set_config('conv.nops', :'nops', false),
       set_config('conv.norders', :'norders', false) \g /dev/null
SELECT setseed(((:seed % 2000001) - 1000000) / 1000001.0) \g /dev/null

-- The ops: client, clock (ms + counter), row, kind, fields.
CREATE TABLE gen (i int PRIMARY KEY, id uuid, client text, ms int, ctr int, row text,
                  kind text, fields jsonb, hlc text, op jsonb);
DO \$\$
DECLARE
    n   int := current_setting('conv.nops')::int;
    rw  int;
    f   jsonb;
    k   text;
    clients text[] := ARRAY['alice', 'bob', 'Carol', 'dave'];
BEGIN
    FOR i IN 1..n LOOP
        rw := floor(random() * 6)::int;
        -- r4 and r5 always get a delete (ops 1 and 2), and now and then another.
        IF i <= 2 THEN
            rw := 3 + i;
            k := 'delete';
        ELSIF rw >= 4 AND random() < 0.03 THEN
            k := 'delete';
        ELSE
            k := 'upsert';
        END IF;
        f := jsonb_build_object('grp', CASE WHEN rw < 3 THEN 'g1' ELSE 'g2' END);
        IF random() < 0.5 THEN f := f || jsonb_build_object('f1', 'v' || i); END IF;
        IF random() < 0.5 THEN f := f || jsonb_build_object('f2', floor(random() * 1000)::int); END IF;
        IF random() < 0.4 THEN f := f || jsonb_build_object('f3', random() < 0.5); END IF;
        IF random() < 0.4 THEN
            f := f || jsonb_build_object('f4', CASE WHEN random() < 0.3 THEN NULL ELSE 'w' || i END);
        END IF;
        INSERT INTO gen (i, id, client, ms, row, kind, fields)
        VALUES (i, md5(current_setting('conv.seed') || '/' || i)::uuid,
                clients[1 + floor(random() * 4)::int], floor(random() * 100)::int,
                'r' || rw, k, CASE WHEN k = 'upsert' THEN f END);
    END LOOP;
END
\$\$;
-- No client uses a clock twice: a counter in the low 16 bits within one ms.
UPDATE gen g SET ctr = x.c
  FROM (SELECT i, row_number() OVER (PARTITION BY client, ms ORDER BY i) - 1 AS c FROM gen) x
 WHERE g.i = x.i;
UPDATE gen SET hlc = lpad(to_hex(((1700000000000::bigint + ms) << 16) | ctr), 16, '0');
UPDATE gen SET op = CASE kind
    WHEN 'delete' THEN jsonb_build_object('id', id, 'table', 't', 'row', row, 'kind', kind, 'hlc', hlc)
    ELSE jsonb_build_object('id', id, 'table', 't', 'row', row, 'kind', kind, 'fields', fields, 'hlc', hlc)
    END;

-- The orders: per order a sort key per op; each client's ops, in key order,
-- cut into chunks of 1-15 ops; a chunk is one push; chunks run in the order
-- of their position.  Some chunks are sent twice, some repeat an op.
CREATE TABLE chunk (k int, c int, pos float8, client text, ids int[], resend bool);
DO \$\$
DECLARE
    norders int := current_setting('conv.norders')::int;
    n       int := current_setting('conv.nops')::int;
    r       record;
    cur     int[];
    cl      text;
    lim     int;
    nc      int := 0;
    firstkey float8;
BEGIN
    CREATE TEMP TABLE okey (i int, client text, key float8, alone bool);
    FOR ord IN 1..norders LOOP
        TRUNCATE okey;
        IF ord = 1 THEN     -- roughly clock order
            INSERT INTO okey SELECT i, client, rank() OVER (ORDER BY hlc, client COLLATE "C"), false FROM gen;
        ELSIF ord = 2 THEN  -- deletes first, each alone, then newest first
            INSERT INTO okey
            SELECT i, client, CASE WHEN kind = 'delete' THEN -n + i
                                   ELSE rank() OVER (ORDER BY hlc DESC, client COLLATE "C" DESC) END,
                   kind = 'delete'
              FROM gen;
        ELSE
            FOR r IN SELECT i, client FROM gen ORDER BY i LOOP
                INSERT INTO okey VALUES (r.i, r.client, random() * n, false);
            END LOOP;
        END IF;
        FOR cl IN SELECT DISTINCT client FROM gen ORDER BY 1 LOOP
            cur := '{}';
            lim := 1 + floor(random() * 15)::int;
            FOR r IN SELECT * FROM okey WHERE client = cl ORDER BY key, i LOOP
                IF cardinality(cur) > 0 AND (cardinality(cur) >= lim OR r.alone) THEN
                    nc := nc + 1;
                    INSERT INTO chunk VALUES (ord, nc, CASE WHEN ord <= 2 THEN firstkey ELSE random() * n END, cl, cur, false);
                    cur := '{}';
                    lim := 1 + floor(random() * 15)::int;
                END IF;
                IF cardinality(cur) = 0 THEN firstkey := r.key; END IF;
                cur := cur || r.i;
                IF r.alone THEN lim := 1; END IF;
            END LOOP;
            IF cardinality(cur) > 0 THEN
                nc := nc + 1;
                INSERT INTO chunk VALUES (ord, nc, CASE WHEN ord <= 2 THEN firstkey ELSE random() * n END, cl, cur, false);
            END IF;
        END LOOP;
        -- Resends: a chunk pushed again later (or earlier: then the first
        -- push is the resend), and an op repeated inside its own batch.
        FOR r IN SELECT * FROM chunk WHERE chunk.k = ord ORDER BY c LOOP
            IF random() < 0.15 THEN
                nc := nc + 1;
                INSERT INTO chunk VALUES (ord, nc, r.pos + random() * n / 4, r.client, r.ids, true);
            END IF;
            IF random() < 0.1 THEN
                UPDATE chunk SET ids = ids || ids[1] WHERE chunk.c = r.c;
            END IF;
        END LOOP;
    END LOOP;
END
\$\$;

-- One psql script per order.
SELECT set_config('conv.workdir', :'workdir', false) \g /dev/null
SELECT k, count(*) AS pushes,
       count(*) FILTER (WHERE resend) AS resent
  FROM chunk GROUP BY k ORDER BY k \g :workdir/orders.txt
\pset format unaligned
\pset tuples_only on
SELECT k, format('INSERT INTO conv_results VALUES (%s, %L, %L::jsonb, synclog.push(:''tok'', %L, %L::jsonb));',
                 row_number() OVER (PARTITION BY k ORDER BY pos, c), client, ops, client, ops)
  FROM (SELECT c.k, c.c, c.pos, c.client,
               (SELECT jsonb_agg(g.op ORDER BY o.n) FROM unnest(c.ids) WITH ORDINALITY o(i, n)
                  JOIN gen g ON g.i = o.i)::text AS ops
          FROM chunk c) x
 ORDER BY k, pos, c \g :workdir/pushes.txt

-- The model: per field, the value of the op with the greatest (hlc,
-- client_id) among the upserts that carry it; rows with a delete are gone.
$TABLE_DDL
INSERT INTO t (id, grp, f1, f2, f3, f4)
SELECT r.row,
       (SELECT g.fields->>'grp' FROM gen g WHERE g.row = r.row AND g.fields ? 'grp'
         ORDER BY g.hlc COLLATE "C" DESC, g.client COLLATE "C" DESC LIMIT 1),
       (SELECT g.fields->>'f1' FROM gen g WHERE g.row = r.row AND g.fields ? 'f1'
         ORDER BY g.hlc COLLATE "C" DESC, g.client COLLATE "C" DESC LIMIT 1),
       (SELECT g.fields->>'f2' FROM gen g WHERE g.row = r.row AND g.fields ? 'f2'
         ORDER BY g.hlc COLLATE "C" DESC, g.client COLLATE "C" DESC LIMIT 1)::integer,
       (SELECT g.fields->>'f3' FROM gen g WHERE g.row = r.row AND g.fields ? 'f3'
         ORDER BY g.hlc COLLATE "C" DESC, g.client COLLATE "C" DESC LIMIT 1)::boolean,
       (SELECT g.fields->>'f4' FROM gen g WHERE g.row = r.row AND g.fields ? 'f4'
         ORDER BY g.hlc COLLATE "C" DESC, g.client COLLATE "C" DESC LIMIT 1)
  FROM (SELECT DISTINCT row FROM gen) r
 WHERE NOT EXISTS (SELECT 1 FROM gen d WHERE d.row = r.row AND d.kind = 'delete');
SELECT coalesce(json_agg(t ORDER BY id), '[]') FROM t \g :workdir/model.json
SELECT coalesce(string_agg(DISTINCT row, ',' ORDER BY row), '') FROM gen WHERE kind = 'delete' \g :workdir/model.deleted
SELECT count(*) FILTER (WHERE kind = 'delete'), count(DISTINCT (hlc, client)), count(*),
       (SELECT count(*) FROM (SELECT hlc FROM gen GROUP BY hlc HAVING count(DISTINCT client) > 1) x)
  FROM gen \g :workdir/gen.stats
EOF
then
	cat "$work/gen.log"
	fail "setup (generating ops in $model)"
	exit 1
fi

IFS='|' read -r ndel nclocks nops nshared <"$work/gen.stats"
echo "ops: $nops ($ndel deletes), $nclocks distinct (hlc, client_id), $nshared hlcs shared by several clients"
if ((nclocks != nops)); then
	fail "setup (generated ops reuse a clock)"
	exit 1
fi

# --- 2. push every order into a fresh database ------------------------------

for ((k = 1; k <= ORDERS; k++)); do
	db=${prefix}_o$k
	IFS='|' read -r _ npush nresent < <(grep "^$k|" "$work/orders.txt")
	echo "order $k: $npush pushes ($nresent resent)"
	{
		echo '\set ON_ERROR_STOP 1'
		echo 'CREATE EXTENSION synclog;'
		echo "$TABLE_DDL"
		echo "SELECT FROM synclog.track('t', 'grp');"
		echo "SELECT synclog.create_token('convergence', ARRAY['g1', 'g2']) AS tok \\gset"
		echo 'CREATE TABLE conv_results (b int, client text, sent jsonb, reply jsonb);'
		sed -n "s/^$k|//p" "$work/pushes.txt"
	} >"$work/order$k.sql"
	if ! createdb_ "$db" || ! q "$db" -f "$work/order$k.sql" >"$work/order$k.log" 2>&1; then
		tail -n 5 "$work/order$k.log"
		fail "pushing order $k"
		dropdb_ "$db"
		continue
	fi
	if ! q "$db" -c "SELECT synclog.wait_sequenced('30s')" >/dev/null 2>"$work/wait$k.log"; then
		cat "$work/wait$k.log"
		fail "order $k: ops not sequenced"
	fi
	q "$db" -c 'SELECT coalesce(json_agg(t ORDER BY id), $$[]$$) FROM t' >"$work/order$k.json"
	q "$db" -c "SELECT coalesce(json_agg(m ORDER BY row_id), '[]') FROM (SELECT row_id, grp, clocks
	              FROM synclog.row_meta WHERE NOT deleted) m" >"$work/order$k.clocks"
	q "$db" -c "SELECT coalesce(string_agg(row_id, ',' ORDER BY row_id), '') FROM synclog.row_meta
	             WHERE deleted" >"$work/order$k.deleted"
	# Accounting, in one row: unanswered | answered-not-sent | acked-and-rejected
	# | acked-not-logged-once | logged-not-acked | bad rejections | seq ok
	q "$db" -F '|' >"$work/order$k.checks" <<'EOF'
WITH sent AS (
    SELECT c.b, c.reply, e->>'id' AS id, e->>'row' AS row
      FROM conv_results c, jsonb_array_elements(c.sent) e),
acked AS (
    SELECT DISTINCT a AS id FROM conv_results c, jsonb_array_elements_text(c.reply->'acked') a),
rejected AS (
    SELECT c.b, r->>'id' AS id, r->>'code' AS code FROM conv_results c, jsonb_array_elements(c.reply->'rejected') r)
SELECT
  (SELECT count(*) FROM sent s
    WHERE NOT (s.reply->'acked' ? s.id)
      AND NOT EXISTS (SELECT 1 FROM rejected r WHERE r.b = s.b AND r.id = s.id)),
  (SELECT count(*) FROM (SELECT c.b, a AS id FROM conv_results c, jsonb_array_elements_text(c.reply->'acked') a
                         UNION ALL SELECT b, id FROM rejected) x
    WHERE NOT EXISTS (SELECT 1 FROM sent s WHERE s.b = x.b AND s.id = x.id)),
  (SELECT count(*) FROM acked a WHERE EXISTS (SELECT 1 FROM rejected r WHERE r.id = a.id)),
  (SELECT count(*) FROM acked a
    WHERE (SELECT count(*) FROM synclog.ops o WHERE o.op_id::text = a.id) <> 1),
  (SELECT count(*) FROM synclog.ops o WHERE NOT EXISTS (SELECT 1 FROM acked a WHERE a.id = o.op_id::text)),
  (SELECT coalesce(string_agg(DISTINCT r.code || ' on ' || s.row, ', '), '')
     FROM rejected r JOIN sent s ON s.b = r.b AND s.id = r.id
    WHERE r.code <> 'row_deleted'
       OR s.row NOT IN (SELECT row_id FROM synclog.row_meta WHERE deleted)),
  (SELECT count(*) = count(seq) AND count(DISTINCT seq) = count(*)
          AND coalesce(min(seq), 1) = 1 AND coalesce(max(seq), 0) = count(*)
          AND coalesce(max(seq), 0) = (SELECT high_water FROM synclog.state)
     FROM synclog.ops)
EOF
	# One database at a time: each holds a background worker (the sequencer)
	# while it exists, and max_worker_processes is small by default.
	dropdb_ "$db"
done

# --- 3. the verdicts --------------------------------------------------------

acct_lost="" acct_oplog="" acct_rej="" acct_seq=""
for ((k = 1; k <= ORDERS; k++)); do
	if [[ ! -s $work/order$k.checks ]]; then
		acct_lost+=" order $k: no results;"
		continue
	fi
	IFS='|' read -r unanswered phantom both notlogged extra badrej seqok <"$work/order$k.checks"
	((unanswered == 0 && phantom == 0 && both == 0)) ||
		acct_lost+=" order $k: $unanswered unanswered, $phantom answered but not sent, $both both acked and rejected;"
	((notlogged == 0 && extra == 0)) ||
		acct_oplog+=" order $k: $notlogged acked ops not in synclog.ops exactly once, $extra ops logged but never acked;"
	[[ -z $badrej ]] || acct_rej+=" order $k: $badrej;"
	[[ $seqok == t ]] || acct_seq+=" order $k: seq is not 1..high_water;"
done
report() { # report NAME PROBLEMS
	if [[ -z $2 ]]; then pass "$1"; else
		echo "seed $SEED:$2"
		fail "$1"
	fi
}
report "every pushed op acked or rejected, none lost" "$acct_lost"
report "acked ops in synclog.ops exactly once" "$acct_oplog"
report "only row_deleted refusals, on deleted rows" "$acct_rej"
report "seq gap-free 1..high_water" "$acct_seq"

# first_diff A B: the first differing row of two json_agg dumps.
first_diff() {
	diff <(q postgres -v j="$(cat "$1")" <<<"SELECT json_array_elements(:'j'::json)") \
		<(q postgres -v j="$(cat "$2")" <<<"SELECT json_array_elements(:'j'::json)") |
		grep -m 2 '^[<>]'
}

same=true
for ((k = 2; k <= ORDERS; k++)); do
	if ! cmp -s "$work/order1.json" "$work/order$k.json"; then
		same=false
		echo "seed $SEED: order 1 and order $k differ; first differing row (< order 1, > order $k):"
		first_diff "$work/order1.json" "$work/order$k.json"
	fi
done
if $same && [[ -s $work/order1.json ]]; then pass "tables identical across $ORDERS orders"; else
	fail "tables identical across $ORDERS orders"
fi

same=true
for ((k = 2; k <= ORDERS; k++)); do
	if ! cmp -s "$work/order1.clocks" "$work/order$k.clocks" || ! cmp -s "$work/order1.deleted" "$work/order$k.deleted"; then
		same=false
		echo "seed $SEED: field clocks or tombstones of order 1 and order $k differ:"
		first_diff "$work/order1.clocks" "$work/order$k.clocks"
		echo "  tombstones: order 1 [$(cat "$work/order1.deleted")], order $k [$(cat "$work/order$k.deleted")]"
	fi
done
if $same && [[ -s $work/order1.clocks ]]; then pass "field clocks and tombstones identical across orders"; else
	fail "field clocks and tombstones identical across orders"
fi

if cmp -s "$work/model.json" "$work/order1.json" && cmp -s "$work/model.deleted" "$work/order1.deleted"; then
	pass "table equals the per-field LWW model"
else
	echo "seed $SEED: order 1 differs from the model; first differing row (< model, > order 1):"
	first_diff "$work/model.json" "$work/order1.json"
	echo "  tombstones: model [$(cat "$work/model.deleted")], order 1 [$(cat "$work/order1.deleted")]"
	fail "table equals the per-field LWW model"
fi

echo "convergence: $((SECONDS - start)) s (seed $SEED)"
exit "$failed"
