#!/usr/bin/env bash
# scripts/demo.sh: `make demo`, a guided tour of the synclog extension.
#
# Starts a throwaway cluster (tests/lib/cluster.sh) with the extension
# preloaded, tracks a small `issues` table, creates a token, pushes two ops as
# a client would, waits for the sequencer to stamp them, and shows the change
# stream, a snapshot, and how a direct SQL UPDATE reaches the stream too.
# Then, on a terminal, it prints how to connect with psql and keeps the cluster
# up until Ctrl-C; otherwise it stops at once.  The cluster is removed in every
# case; any failed step prints what failed and exits non-zero.
#
# Expects the extension to be installed (`make demo` does `make install`
# first).  The gateway and the client join this tour in later issues.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tests/lib/cluster.sh
source "$REPO/tests/lib/cluster.sh"
cluster_cleanup_on_exit

die() {
	echo "demo: $*" >&2
	exit 1
}

say() {
	printf '\n== %s\n' "$*"
}

# sql ARGS...: psql against the demo cluster, unaligned, tuples only; the SQL
# comes from -c or standard input.
sql() {
	cluster_psql -At "$@"
}

# wait_cursor_above N: waits up to 5 s for synclog.cursor() to exceed N and
# prints it; fails if it does not.
wait_cursor_above() {
	local c i
	for ((i = 0; i < 50; i++)); do
		c=$(sql -c 'SELECT synclog.cursor()') || return 1
		if [[ $c =~ ^[0-9]+$ ]] && ((c > $1)); then
			echo "$c"
			return 0
		fi
		sleep 0.1
	done
	echo "demo: synclog.cursor() is still ${c:-unknown} after 5 s (is the sequencer running? see $CLUSTER_LOG)" >&2
	return 1
}

# hlc [COUNTER]: an HLC for now: 48 bits of wall-clock ms, 16-bit counter, in
# 16 hex digits.
hlc() {
	printf '%012x%04x' $(($(date +%s%N) / 1000000)) "${1:-0}"
}

uuid() {
	cat /proc/sys/kernel/random/uuid
}

say "Starting a throwaway PostgreSQL cluster with shared_preload_libraries = '$CLUSTER_PRELOAD'"
cluster_start || die "could not start PostgreSQL (is the extension installed? 'make install')"
echo "cluster in $CLUSTER_DIR, listening on 127.0.0.1:$PGPORT"

say "CREATE EXTENSION synclog, and an application table to sync"
sql <<'SQL' || die "could not create the extension and the issues table"
CREATE EXTENSION synclog;
CREATE TABLE issues (
    id       uuid PRIMARY KEY,
    team     text NOT NULL,
    title    text,
    status   text,
    estimate int
);
SQL
echo "created table issues(id uuid primary key, team text not null, title text, status text, estimate int)"

say "Tracking issues, grouped by team: each team is a sync group"
sql -c "SELECT synclog.track('issues', 'team')" >/dev/null || die "synclog.track('issues', 'team') failed"
echo "SELECT synclog.track('issues', 'team');"

say "A bearer token for alice, who may read and write group team-a"
token=$(sql -c "SELECT synclog.create_token('alice', ARRAY['team-a'])") || die "synclog.create_token failed"
[[ -n $token ]] || die "synclog.create_token returned nothing"
echo "token: $token"

row1=$(uuid)
row2=$(uuid)
ops=$(
	cat <<JSON
[{"id": "$(uuid)", "table": "issues", "row": "$row1", "kind": "upsert",
  "fields": {"team": "team-a", "title": "Fix login", "status": "open"},
  "hlc": "$(hlc 0)"},
 {"id": "$(uuid)", "table": "issues", "row": "$row2", "kind": "upsert",
  "fields": {"team": "team-a", "title": "Add dark mode", "status": "todo", "estimate": 3},
  "hlc": "$(hlc 1)"}]
JSON
)
say "Client laptop-1 pushes two ops (creating two issues) in one batch"
echo "$ops"
echo "reply of synclog.push(token, 'laptop-1', ops):"
sql -v token="$token" -v ops="$ops" <<'SQL' || die "synclog.push failed"
SELECT jsonb_pretty(synclog.push(:'token', 'laptop-1', :'ops'::jsonb));
SQL

say "Waiting for the sequencer (a background worker) to stamp the changes with seq numbers"
cursor=$(wait_cursor_above 0) || die "the pushed changes were not sequenced"
echo "synclog.cursor() = $cursor"

say "The change stream for team-a after cursor 0: what a client following team-a receives"
sql -c "SELECT jsonb_pretty(synclog.changes(ARRAY['team-a'], 0, 100))" ||
	die "synclog.changes failed"

say "A snapshot of team-a: current rows with their field clocks, at a cursor"
sql -c "SELECT jsonb_pretty(synclog.snapshot(ARRAY['team-a']))" || die "synclog.snapshot failed"

say "A direct SQL UPDATE (a back-office script, say) is captured too, with client_id 'server'"
echo "UPDATE issues SET status = 'done', estimate = 1 WHERE id = '$row1';"
sql -v row="$row1" <<'SQL' || die "the direct UPDATE of issues failed"
UPDATE issues SET status = 'done', estimate = 1 WHERE id = :'row';
SQL
after=$(wait_cursor_above "$cursor") || die "the direct UPDATE was not sequenced"
echo "synclog.cursor() = $after; the changes after $cursor:"
sql -c "SELECT jsonb_pretty(synclog.changes(ARRAY['team-a'], $cursor, 100))" ||
	die "synclog.changes failed"

say "The table itself"
cluster_psql -c 'SELECT * FROM issues ORDER BY title' || die "could not read issues"

if [[ -t 0 ]]; then
	say "The cluster stays up; connect with"
	echo "    psql -h 127.0.0.1 -p $PGPORT -U synclog_test postgres"
	echo "and try, for instance:"
	echo "    SELECT synclog.changes(ARRAY['team-a'], 0, 100);"
	echo "Press Ctrl-C to stop and remove the cluster."
	trap 'echo; echo "demo: stopping"; exit 0' INT
	# Returns at Ctrl-D too.
	while read -r _; do :; done
	echo "demo: stopping"
fi
exit 0
