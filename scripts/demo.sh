#!/usr/bin/env bash
# scripts/demo.sh: `make demo`, the product in five minutes of terminal.
#
# Starts a throwaway PostgreSQL cluster (tests/lib/cluster.sh) with the
# extension preloaded, tracks an `issues` table (a CHECK constraint on
# estimate), starts synclog-gateway on a free loopback port and plays a short
# story with three synclog-cli clients, each its own SQLite file:
#
#   alice (laptop) and bob (phone) work on the same issue; carol's terminal
#   runs `synclog-cli watch` and prints every change live.  Bob goes offline:
#   his edits are visible on his phone at once, his sync fails and keeps them
#   pending.  Meanwhile alice edits the same issue, one field the same as bob.
#   Bob comes back: his edits and alice's converge field by field (the later
#   edit of the shared field wins, whatever order they arrive in), and bob's
#   typo (a negative estimate, refused by the table's CHECK) is reported and
#   rolled back on his phone.  Then the final rows of alice, bob, carol and
#   PostgreSQL are printed side by side and checked equal.
#
# On a terminal it then leaves the server running and prints the commands to
# keep playing, until Ctrl-C; otherwise (or with DEMO_KEEP=0) it stops at
# once.  Everything it started (cluster, gateway, watcher, client files) is
# removed on every exit; a failed step says what failed and exits non-zero.
#
# Expects `make all install` done (`make demo` does both first).

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLI=$REPO/build/client/synclog-cli
GATEWAY=$REPO/gateway/synclog-gateway
# shellcheck source=tests/lib/cluster.sh
source "$REPO/tests/lib/cluster.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/synclog-demo.XXXXXX")
chmod 755 "$work"
gw_pid=""
watch_pid=""
cluster_cleanup_on_exit
cluster_at_exit 'stop_bg; rm -rf "$work"'

stop_bg() {
	local p
	for p in $watch_pid $gw_pid; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in $watch_pid $gw_pid; do
		wait "$p" 2>/dev/null || true
	done
	watch_pid="" gw_pid=""
}

die() {
	echo "demo: $*" >&2
	exit 1
}

# Colours only on a terminal.
if [[ -t 1 ]]; then
	B=$'\e[1m' D=$'\e[2m' G=$'\e[32m' R=$'\e[31m' Y=$'\e[33m' N=$'\e[0m'
else
	B="" D="" G="" R="" Y="" N=""
fi

say() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }
note() { printf '%s%s%s\n' "$D" "$*" "$N"; }

# as WHO ARGS...: runs synclog-cli as WHO (alice, bob, carol), echoing the
# command first on stderr (so a caller may silence the output alone);
# output passes through.  Returns the CLI's status.
as() {
	local who=$1 a shown=""
	shift
	for a in "$@"; do
		[[ $a == *[[:space:]]* ]] && a="${a%%=*}=\"${a#*=}\""
		shown+=" $a"
	done
	printf '%s%-6s$ synclog-cli%s%s\n' "$Y" "$who" "$shown" "$N" >&2
	"$CLI" --db "$work/$who.db" "$@"
}

# server_row ID: the row as PostgreSQL has it, as one JSON object.
server_row() {
	cluster_psql -At -v id="$1" <<<"SELECT row_to_json(i) FROM issues i WHERE id = :'id'"
}

# same JSON JSON: true when the two JSON texts are equal as jsonb.
same() {
	[[ $(cluster_psql -At -v a="$1" -v b="$2" <<<"SELECT :'a'::jsonb = :'b'::jsonb") == t ]]
}

# field JSON KEY: one field of a JSON object, as text.
field() {
	cluster_psql -At -v j="$1" -v k="$2" <<<"SELECT :'j'::jsonb ->> :'k'"
}

free_port() {
	local lo=32768 p i
	# Below the kernel's ephemeral ports: one of those may be the local end
	# of an outgoing connection, which a listener cannot bind.
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null
	((lo > 21000)) || lo=60000
	for ((i = 0; i < 100; i++)); do
		p=$((20000 + RANDOM % (lo - 20000)))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

[[ -x $CLI && -x $GATEWAY ]] || die "build first: make all (missing $CLI or $GATEWAY)"

# --- the server ---------------------------------------------------------------
say "A throwaway PostgreSQL 15 cluster with the synclog extension"
cluster_start >/dev/null || die "could not start PostgreSQL (is the extension installed? 'make install'); log: ${CLUSTER_LOG:-}"
cluster_psql <<'SQL' >/dev/null || die "could not create the extension and the issues table"
CREATE EXTENSION synclog;
CREATE TABLE issues (
    id       text PRIMARY KEY,
    team     text NOT NULL,
    title    text,
    status   text,
    assignee text,
    estimate int CHECK (estimate >= 0)
);
SELECT synclog.track('issues', 'team');
SQL
note "cluster on 127.0.0.1:$PGPORT, table issues(id, team, title, status, assignee, estimate CHECK >= 0),"
note "tracked with synclog.track('issues', 'team'): each team is a sync group"

tok_alice=$(cluster_psql -At -c "SELECT synclog.create_token('alice', ARRAY['team-a'])") &&
	tok_bob=$(cluster_psql -At -c "SELECT synclog.create_token('bob', ARRAY['team-a'])") &&
	tok_carol=$(cluster_psql -At -c "SELECT synclog.create_token('carol', ARRAY['team-a'])") ||
	die "synclog.create_token failed"
note "tokens for alice, bob and carol, each granted group team-a"

port=$(free_port) || die "no free loopback port"
url="ws://127.0.0.1:$port/"
"$GATEWAY" --listen "127.0.0.1:$port" \
	--db "host=127.0.0.1 port=$PGPORT user=$PGUSER dbname=postgres" 2>"$work/gateway.log" &
gw_pid=$!
for ((i = 0; i < 100; i++)); do
	grep -q "database connected" "$work/gateway.log" 2>/dev/null &&
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
	kill -0 "$gw_pid" 2>/dev/null || break
	sleep 0.1
done
((i < 100)) && kill -0 "$gw_pid" 2>/dev/null || {
	cat "$work/gateway.log" >&2
	die "the gateway did not start (log above)"
}
note "synclog-gateway listening on $url"

# Each person's CLI talks to the gateway with their own token.
export SYNCLOG_SERVER=$url
alice() { SYNCLOG_TOKEN=$tok_alice as alice --group team-a "$@"; }
bob() { SYNCLOG_TOKEN=$tok_bob as bob --group team-a "$@"; }

# --- carol watches -------------------------------------------------------------
say "Carol's terminal follows team-a live (synclog-cli watch, in the background)"
SYNCLOG_TOKEN=$tok_carol "$CLI" --db "$work/carol.db" --group team-a watch \
	>"$work/carol.out" 2>"$work/carol.err" &
watch_pid=$!
note "carol$ synclog-cli watch   # prints one JSON line per change"

# --- the story -----------------------------------------------------------------
id=$(cat /proc/sys/kernel/random/uuid)
say "Alice files an issue on her laptop: written locally, visible at once, then synced"
alice put issues "$id" team=team-a title="Login fails on Safari" status=todo estimate=3 >/dev/null ||
	die "alice's put failed"
alice get issues "$id" || die "alice's get failed"
note "(her first write: the table exists locally from the fields written until the server's"
note " columns arrive with her first sync)"
alice pending || die "alice's pending failed"
alice sync || die "alice's sync failed"
note "(sync pushed the outbox and pulled until caught up; nothing pending now)"
alice pending

say "Bob opens the app on his phone and syncs: the issue arrives"
bob sync || die "bob's first sync failed"
bob get issues "$id" || die "bob's get failed"

say "Bob boards a plane (offline) and edits the issue: instant, no spinner"
bob put issues "$id" title="Login fails on Safari 17" assignee=bob >/dev/null || die "bob's put failed"
bob put issues "$id" status=blocked >/dev/null || die "bob's put failed"
bob put issues "$id" estimate=-2 >/dev/null || die "bob's put failed"
note "(the last one is a typo: the server's CHECK (estimate >= 0) will refuse it)"
bob get issues "$id"
note "bob's outbox:"
bob pending
printf '%sbob   $ synclog-cli sync   # no network on the plane%s\n' "$Y" "$N" >&2
set +e
SYNCLOG_TOKEN=$tok_bob "$CLI" --db "$work/bob.db" --group team-a --server "ws://127.0.0.1:1/" \
	--timeout 3 sync
st=$?
set -e
((st != 0)) || die "bob's sync to an unreachable server should have failed"
note "(exit status $st; his edits stay in the outbox:)"
echo "pending ops: $("$CLI" --db "$work/bob.db" pending | wc -l)"

say "Meanwhile alice, online, changes the status too (after bob did, offline)"
alice put issues "$id" status="in progress" >/dev/null || die "alice's put failed"
alice sync || die "alice's sync failed"
alice get issues "$id"

say "Bob lands and syncs: his ops go up, alice's come down"
set +e
bob sync >"$work/bob.sync" 2>"$work/bob.sync.err"
st=$?
set -e
cat "$work/bob.sync"
cat "$work/bob.sync.err" >&2
((st != 0)) && grep -q '"constraint_violation"' "$work/bob.sync" ||
	die "bob's sync should have reported his estimate=-2 as a constraint_violation (status $st)"
note "(exit status $st: an op was refused; it was reported above and rolled back on bob's phone)"
bob get issues "$id"

say "Alice syncs once more to pick up bob's edits"
alice sync >/dev/null || die "alice's sync failed"

# Carol's watcher has seen everything by now; stop it and read her copy.
sleep 0.5
kill -TERM "$watch_pid" 2>/dev/null || true
wait "$watch_pid" 2>/dev/null || true
watch_pid=""

say "What carol's terminal printed while this happened (one JSON line per change; abridged)"
while IFS= read -r line; do
	cluster_psql -At -v j="$line" <<<"SELECT format('seq %s  %s  %s…  %s', j->>'seq', j->>'kind',
	        left(j->>'row', 8), j->'fields') FROM (SELECT :'j'::jsonb AS j) x"
done <"$work/carol.out"

# --- side by side --------------------------------------------------------------
say "Final state, field by field"
a=$("$CLI" --db "$work/alice.db" get issues "$id") || die "alice's get failed"
b=$("$CLI" --db "$work/bob.db" get issues "$id") || die "bob's get failed"
c=$("$CLI" --db "$work/carol.db" get issues "$id") || die "carol's get failed"
s=$(server_row "$id") || die "could not read the row from PostgreSQL"
printf '%s%-9s %-26s %-26s %-26s %-26s%s\n' "$B" field alice bob carol postgresql "$N"
for f in title status assignee estimate team; do
	printf '%-9s %-26s %-26s %-26s %-26s\n' "$f" "$(field "$a" $f)" "$(field "$b" $f)" \
		"$(field "$c" $f)" "$(field "$s" $f)"
done
echo
ok=1
for who in alice bob carol; do
	case $who in alice) j=$a ;; bob) j=$b ;; carol) j=$c ;; esac
	if same "$j" "$s"; then
		printf '%s✓ %s = postgresql%s\n' "$G" "$who" "$N"
	else
		printf '%s✗ %s differs from postgresql%s\n' "$R" "$who" "$N"
		ok=0
	fi
done
((ok)) || die "the replicas did not converge"
[[ $(field "$s" title) == "Login fails on Safari 17" && $(field "$s" assignee) == bob ]] ||
	die "bob's offline title and assignee edits should have won (no one else touched them)"
[[ $(field "$s" status) == "in progress" ]] || die "alice's later status should have won"
[[ $(field "$s" estimate) == 3 ]] || die "bob's refused estimate should have left it at 3"
note "bob's title and assignee survive (nobody else changed them); the status is alice's, set after"
note "bob's offline edit, so it wins although it reached the server first; bob's estimate=-2 was"
note "refused by PostgreSQL's CHECK and rolled back on his phone to 3."

# --- keep playing -------------------------------------------------------------
if [[ ${DEMO_KEEP:-1} != 0 && -t 0 && -t 1 ]]; then
	say "Keep playing: the server stays up until Ctrl-C"
	cat <<EOF
In another terminal:
    export SYNCLOG_SERVER=$url
    export SYNCLOG_TOKEN=$tok_alice
    $CLI --db /tmp/me.db --group team-a sync
    $CLI --db /tmp/me.db --group team-a list issues
    $CLI --db /tmp/me.db put issues $id status=done
    $CLI --db /tmp/me.db --group team-a sync
    $CLI --db /tmp/you.db --group team-a watch     # and watch it arrive
PostgreSQL: psql -h 127.0.0.1 -p $PGPORT -U $PGUSER postgres   (try: TABLE issues;)
Press Ctrl-C to stop and remove everything the demo started.
EOF
	trap 'echo; echo "demo: stopping"; exit 0' INT
	while read -r _; do :; done
	echo "demo: stopping"
fi
say "Done: the cluster, the gateway and the client files are removed"
exit 0
