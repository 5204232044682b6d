#!/usr/bin/env bash
# bench/callgrind.sh FIGURE [STATEMENTS]: instructions per op of synclog.push
# (or of the baseline INSERT), counted by valgrind's callgrind in a
# single-user backend: repeatable where wall-clock figures on a shared
# machine are not.  The numbers in the README's Performance section
# ("Instruction counts") come from it.
#
#   FIGURE       base (a single-row INSERT into an untracked table), or a
#                batch size (1, 10, 100): pushes of that many upserts, half
#                new rows, half updates of 2,000 pre-loaded rows
#   STATEMENTS   how many statements to count (default 200 / batch size, at
#                least 20)
#
# Uses the installed extension and PostgreSQL's binaries (pg_config --bindir,
# or PG_BINDIR), in a throwaway data directory under TMPDIR (initdb; owned by
# the unprivileged user synclog_test when run as root, as tests/lib/cluster.sh
# does) that is removed on exit.  No server is started: `postgres --single`
# runs the statements, without the sequencer, so the counts are the
# backend's own (parse, plan, execution and commit).  Two runs are counted,
# the whole script and its first statement alone; their difference divided
# by the rest is the figure, so start-up and shutdown cancel out.  Prints one
# line: "FIGURE: N Ir per statement, M Ir per op".  Needs valgrind and python3.
set -euo pipefail

FIG=${1:?usage: bench/callgrind.sh base|BATCH [STATEMENTS]}
[[ $FIG == base || $FIG =~ ^[1-9][0-9]*$ ]] || { echo "callgrind: FIGURE is base or a batch size" >&2; exit 2; }
B=$([[ $FIG == base ]] && echo 1 || echo "$FIG")
N=${2:-$(( 200 / B > 20 ? 200 / B : 20 ))}
command -v valgrind >/dev/null || { echo "callgrind: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
if [[ -z ${PG_BINDIR:-} ]]; then
	PG_BINDIR=$(pg_config --bindir 2>/dev/null) || PG_BINDIR=
	[[ -x $PG_BINDIR/postgres ]] || PG_BINDIR=/usr/lib/postgresql/15/bin
fi

DIR=$(mktemp -d "${TMPDIR:-/tmp}/synclog-callgrind.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
as_owner() { "$@"; }
if [[ $(id -u) == 0 ]]; then
	id synclog_test >/dev/null 2>&1 || useradd --system --no-create-home synclog_test
	chown synclog_test "$DIR"
	as_owner() { (cd / && runuser -u synclog_test -- "$@"); }
fi
single() { # DATA DB: statements on stdin, one per line
	as_owner "$PG_BINDIR/postgres" --single -D "$1" "$2"
}

as_owner "$PG_BINDIR/initdb" -D "$DIR/data" -A trust >/dev/null
echo "shared_preload_libraries = 'synclog'" >>"$DIR/data/postgresql.conf"
echo "CREATE DATABASE b" | single "$DIR/data" postgres >/dev/null 2>&1
single "$DIR/data" b >"$DIR/setup.out" 2>/dev/null <<SQL
CREATE EXTENSION synclog
CREATE TABLE items (id uuid PRIMARY KEY, grp text NOT NULL, title text, n int)
CREATE TABLE items_plain (id uuid PRIMARY KEY, grp text NOT NULL, title text, n int)
INSERT INTO items SELECT md5(i::text)::uuid, 'g1', 'seed', i FROM generate_series(1, 2000) i
SELECT synclog.track('items', 'grp')
SELECT synclog.create_token('bench', ARRAY['g1'])
VACUUM ANALYZE
SQL
TOKEN=$(grep -o '"slt_[A-Za-z0-9_-]*"' "$DIR/setup.out" | tail -n 1 | tr -d '"') || TOKEN=
[[ -n $TOKEN ]] || { echo "callgrind: setting up the database failed:" >&2; tail -n 20 "$DIR/setup.out" >&2; exit 1; }

python3 - "$FIG" "$N" "$TOKEN" >"$DIR/in.sql" <<'PY'
import hashlib, random, sys, time, uuid
fig, n, tok = sys.argv[1], int(sys.argv[2]), sys.argv[3]
random.seed(1)
hlc = '%016x' % (int(time.time() * 1000) << 16)
def op(g):
    if g % 2 == 0:
        return ('{"id":"%s","table":"items","row":"%s","kind":"upsert",'
                '"fields":{"grp":"g1","title":"new","n":%d},"hlc":"%s"}' % (uuid.uuid4(), uuid.uuid4(), g, hlc))
    row = uuid.UUID(hashlib.md5(str(random.randint(1, 2000)).encode()).hexdigest())
    return ('{"id":"%s","table":"items","row":"%s","kind":"upsert",'
            '"fields":{"title":"updated","n":%d},"hlc":"%s"}' % (uuid.uuid4(), row, g, hlc))
for i in range(n):
    if fig == 'base':
        print("INSERT INTO items_plain (id, grp, title, n) VALUES ('%s', 'g1', 'new', 1)" % uuid.uuid4())
    else:
        print("SELECT synclog.push('%s', 'c1', '[%s]')" % (tok, ",".join(op(g + i) for g in range(int(fig)))))
PY
head -n 1 "$DIR/in.sql" >"$DIR/in1.sql"
as_owner cp -a "$DIR/data" "$DIR/data1"
count() { # DATA INPUT OUT: callgrind's total instructions
	as_owner valgrind --tool=callgrind --callgrind-out-file="$3" "$PG_BINDIR/postgres" --single -D "$1" b \
		<"$2" >"$3.stdout" 2>"$3.stderr"
	awk '/^(summary|totals):/ {print $2; exit}' "$3"
}
all=$(count "$DIR/data" "$DIR/in.sql" "$DIR/all.out")
one=$(count "$DIR/data1" "$DIR/in1.sql" "$DIR/one.out")
if [[ $FIG != base ]] && grep -q '"rejected": \[{' "$DIR/all.out.stdout"; then
	echo "callgrind: some ops were rejected (see the pushes' replies); the count would not be of the happy path" >&2
	exit 1
fi
per=$(((all - one) / (N - 1)))
echo "$FIG: $per Ir per statement, $((per / B)) Ir per op ($((N - 1)) statements)"
