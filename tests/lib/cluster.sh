# shellcheck shell=bash
# tests/lib/cluster.sh: throwaway PostgreSQL clusters for tests and the demo.
#
# Source it from bash; it defines functions and sets no shell options.  A cluster
# lives in a fresh directory from mktemp (data/ holds PGDATA, log is the server
# log, the Unix socket sits in the directory itself), listens on 127.0.0.1 on a
# random free port, trusts every local connection, and has one superuser,
# synclog_test.  Nothing outside that directory is touched; the system cluster
# of the postgresql-15 package is never used.
#
# PostgreSQL refuses to run as root, so under root the cluster belongs to the
# unprivileged system user synclog_test (created on first use) and its server
# commands run through `runuser`; otherwise it belongs to the invoking user.
# Binaries come from `$PG_CONFIG --bindir` (PG_CONFIG defaults to pg_config on
# PATH, then /usr/lib/postgresql/15/bin); PG_BINDIR overrides both.
#
#   cluster_start [LINE...]   start one; LINEs are appended to postgresql.conf.
#                             Exports PGHOST=127.0.0.1 PGPORT PGUSER=synclog_test
#                             PGDATABASE=postgres PGDATA CLUSTER_DIR CLUSTER_LOG.
#   cluster_stop              stop the exported one and delete its directory
#   cluster_restart [MODE]    stop (pg_ctl mode, default fast) and start again,
#                             same port and data
#   cluster_psql ARGS...      psql -X -v ON_ERROR_STOP=1 -q -P pager=off against it
#   cluster_as_owner CMD...   run CMD as the cluster's owner (from directory /)
#   cluster_cleanup_on_exit   trap EXIT/INT/TERM: stop every cluster this shell
#                             (and its subshells) starts after this call; call
#                             it before cluster_start
#   cluster_at_exit 'CMD'     also eval CMD on exit, before clusters stop (say,
#                             to kill a gateway); hooks run newest first
#
# CLUSTER_PRELOAD (default synclog) is the shared_preload_libraries value; set
# it empty to start a cluster without the extension.  CLUSTER_TMPDIR (default
# /tmp) is where cluster directories are made.
#
# Every function works on the exported variables of the current shell, so a
# suite that needs a second cluster starts it in a subshell; the variables of
# the first are untouched outside it:
#
#     cluster_cleanup_on_exit
#     cluster_start                       # the suite's own cluster
#     (
#         cluster_start "wal_level = logical" || exit 1
#         cluster_psql -c 'SELECT 1'      # talks to the second cluster
#         cluster_stop
#     ) || fail ...
#     cluster_psql -c 'SELECT 1'          # the first one again
#
# If the subshell dies before cluster_stop, the EXIT trap of the shell that
# called cluster_cleanup_on_exit stops the second cluster too: started clusters
# are recorded in a registry file shared with subshells.  A subshell may call
# cluster_cleanup_on_exit itself; its trap then stops only what it started.

CLUSTER_PRELOAD=${CLUSTER_PRELOAD-synclog}
CLUSTER_SUPERUSER=synclog_test

if [[ -z ${PG_BINDIR:-} ]]; then
	PG_BINDIR=$("${PG_CONFIG:-pg_config}" --bindir 2>/dev/null) || PG_BINDIR=
	[[ -x $PG_BINDIR/initdb ]] || PG_BINDIR=/usr/lib/postgresql/15/bin
fi

if [[ $(id -u) -eq 0 ]]; then
	CLUSTER_OWNER=synclog_test
else
	CLUSTER_OWNER=$(id -un)
fi

# cluster_as_owner CMD...: runs CMD as the owner, from directory / (the owner
# may not be able to enter the caller's directory).  Returns CMD's status.
cluster_as_owner() {
	if [[ $(id -u) -eq 0 ]]; then
		(cd / && runuser -u "$CLUSTER_OWNER" -- "$@")
	else
		(cd / && "$@")
	fi
}

# cluster_psql ARGS...: psql against the exported cluster, stopping at the first
# error, never paging (a script run from a terminal must not stop in less).
# Returns psql's status.
cluster_psql() {
	"$PG_BINDIR/psql" -X -v ON_ERROR_STOP=1 -q -P pager=off "$@"
}

# _cluster_ensure_owner: creates the system user when root and it is missing.
_cluster_ensure_owner() {
	[[ $(id -u) -eq 0 ]] || return 0
	id -u "$CLUSTER_OWNER" >/dev/null 2>&1 && return 0
	useradd --system --no-create-home --shell /usr/sbin/nologin "$CLUSTER_OWNER" || {
		echo "cluster: cannot create user $CLUSTER_OWNER" >&2
		return 1
	}
}

# _cluster_port_free PORT: true when nothing listens on PORT at 127.0.0.1.
_cluster_port_free() {
	if command -v ss >/dev/null 2>&1; then
		[[ -z $(ss -ltnH "sport = :$1" 2>/dev/null) ]]
	else
		! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
	fi
}

# _ephemeral_low: the first port of the kernel's ephemeral range (32768 if
# unknown).  Ports are picked below it: one inside it may be the local end of
# an outgoing connection, which a listener cannot bind.
_ephemeral_low() {
	local lo=32768
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null
	((lo > 21000)) || lo=60000
	echo "$lo"
}

# _cluster_pick_port: prints a random port from 20000 up to the ephemeral range that looks unused.
# Another process may still take it before the server binds: cluster_start
# retries with another port when that happens.
_cluster_pick_port() {
	local port i
	for ((i = 0; i < 100; i++)); do
		port=$((20000 + (RANDOM * 32768 + RANDOM) % ($(_ephemeral_low) - 20000)))
		_cluster_port_free "$port" && { echo "$port"; return 0; }
	done
	echo "cluster: found no free port" >&2
	return 1
}

# _cluster_pg_ctl ARGS...: pg_ctl as the owner, quiet unless it fails.
_cluster_pg_ctl() {
	cluster_as_owner "$PG_BINDIR/pg_ctl" "$@"
}

# --- the registry of started clusters: lines "<BASHPID> <dir>" --------------

_cluster_registry_add() {
	[[ -n ${_CLUSTER_REGISTRY:-} ]] || return 0
	printf '%s %s\n' "$BASHPID" "$1" >>"$_CLUSTER_REGISTRY"
}

_cluster_registry_del() {
	[[ -n ${_CLUSTER_REGISTRY:-} && -f $_CLUSTER_REGISTRY ]] || return 0
	local pid dir kept=""
	while read -r pid dir; do
		[[ $dir == "$1" ]] || kept+="$pid $dir"$'\n'
	done <"$_CLUSTER_REGISTRY"
	printf '%s' "$kept" >"$_CLUSTER_REGISTRY"
}

# _cluster_destroy DIR: stops the server of cluster directory DIR (fast, then
# immediate, then SIGKILL to the postmaster) and removes DIR.  Never fails.
_cluster_destroy() {
	local dir=$1 data=$1/data pid
	# Only ever delete what cluster_start made.
	[[ $(basename -- "$dir") == synclog-cluster.* && -d $dir ]] || {
		_cluster_registry_del "$dir"
		return 0
	}
	if [[ -f $data/postmaster.pid ]]; then
		_cluster_pg_ctl -D "$data" -s -w -t 30 -m fast stop >/dev/null 2>&1 ||
			_cluster_pg_ctl -D "$data" -s -w -t 30 -m immediate stop >/dev/null 2>&1 || {
			pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null)
			[[ $pid =~ ^[0-9]+$ ]] && cluster_as_owner kill -KILL "$pid" 2>/dev/null
			sleep 1
		}
	fi
	rm -rf -- "$dir"
	_cluster_registry_del "$dir"
	return 0
}

# cluster_start [LINE...]: makes, configures and starts a new cluster and exports
# its variables.  Retries on another port (5 attempts in all) when the chosen
# one is taken.  On failure prints why (with the server log's tail), removes
# the directory, leaves the exported variables as they were and returns 1.
cluster_start() {
	local dir data log conf port attempt line
	_cluster_ensure_owner || return 1
	dir=$(mktemp -d "${CLUSTER_TMPDIR:-/tmp}/synclog-cluster.XXXXXX") || return 1
	_cluster_registry_add "$dir"
	chmod 755 "$dir"
	[[ $(id -u) -ne 0 ]] || chown "$CLUSTER_OWNER" "$dir"
	data=$dir/data log=$dir/log conf=$dir/data/postgresql.conf

	if ! cluster_as_owner "$PG_BINDIR/initdb" -D "$data" -A trust -U "$CLUSTER_SUPERUSER" \
		--no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1; then
		echo "cluster: initdb failed:" >&2
		tail -n 20 "$dir/initdb.log" >&2
		_cluster_destroy "$dir"
		return 1
	fi

	port=$(_cluster_pick_port) || { _cluster_destroy "$dir"; return 1; }
	{
		echo
		echo "# added by tests/lib/cluster.sh"
		[[ -z $CLUSTER_PRELOAD ]] || echo "shared_preload_libraries = '$CLUSTER_PRELOAD'"
		echo "listen_addresses = '127.0.0.1'"
		echo "port = $port"
		echo "unix_socket_directories = '$dir'"
		echo "max_connections = 200"
		echo "max_worker_processes = 16"
		echo "log_min_messages = warning"
		for line in "$@"; do echo "$line"; done
	} | cluster_as_owner tee -a "$conf" >/dev/null || {
		echo "cluster: cannot write $conf" >&2
		_cluster_destroy "$dir"
		return 1
	}

	for ((attempt = 1; ; attempt++)); do
		if _cluster_pg_ctl -D "$data" -l "$log" -w -t 60 -s start >/dev/null 2>&1; then
			break
		fi
		# A server that lost the race for its port says so in its log.
		if ((attempt < 5)) && grep -qE 'Address already in use|could not bind|could not create any TCP/IP sockets' "$log" 2>/dev/null; then
			_cluster_pg_ctl -D "$data" -s -m immediate stop >/dev/null 2>&1
			port=$(_cluster_pick_port) || { _cluster_destroy "$dir"; return 1; }
			cluster_as_owner sed -i "s/^port = .*/port = $port/" "$conf"
			cluster_as_owner truncate -s 0 "$log"
			continue
		fi
		echo "cluster: server failed to start (attempt $attempt, port $port); end of $log:" >&2
		tail -n 20 "$log" >&2
		_cluster_destroy "$dir"
		return 1
	done

	export PGHOST=127.0.0.1 PGPORT=$port PGUSER=$CLUSTER_SUPERUSER PGDATABASE=postgres
	export PGDATA=$data CLUSTER_DIR=$dir CLUSTER_LOG=$log
	return 0
}

# cluster_stop: stops the exported cluster and removes its directory; unsets
# PGPORT PGDATA CLUSTER_DIR CLUSTER_LOG.  Does nothing if there is none; never
# fails.
cluster_stop() {
	[[ -n ${CLUSTER_DIR:-} ]] || return 0
	_cluster_destroy "$CLUSTER_DIR"
	unset PGPORT PGDATA CLUSTER_DIR CLUSTER_LOG
	return 0
}

# cluster_restart [MODE]: stops the exported cluster with pg_ctl mode MODE
# (smart, fast or immediate; default fast) and starts it again on the same port
# and data, waiting until it accepts connections.  Returns 1 with the log's tail
# if either step fails.
cluster_restart() {
	local mode=${1:-fast}
	[[ -n ${CLUSTER_DIR:-} ]] || { echo "cluster: no cluster to restart" >&2; return 1; }
	if ! _cluster_pg_ctl -D "$PGDATA" -s -w -t 60 -m "$mode" stop >/dev/null; then
		echo "cluster: stop -m $mode failed" >&2
		return 1
	fi
	if ! _cluster_pg_ctl -D "$PGDATA" -l "$CLUSTER_LOG" -w -t 60 -s start >/dev/null 2>&1; then
		echo "cluster: server failed to restart on port $PGPORT; end of $CLUSTER_LOG:" >&2
		tail -n 20 "$CLUSTER_LOG" >&2
		return 1
	fi
}

# --- cleanup on exit ---------------------------------------------------------

# cluster_at_exit 'CMD': eval CMD when the shell exits, before clusters stop.
cluster_at_exit() {
	_CLUSTER_AT_EXIT+=("$1")
}

# _cluster_on_exit: the EXIT trap.  Runs the hooks, then stops the clusters this
# shell started (all recorded ones if this shell made the registry).
_cluster_on_exit() {
	local rc=$? i pid dir mine=()
	set +e
	for ((i = ${#_CLUSTER_AT_EXIT[@]} - 1; i >= 0; i--)); do
		eval "${_CLUSTER_AT_EXIT[i]}"
	done
	_CLUSTER_AT_EXIT=()
	if [[ -n ${_CLUSTER_REGISTRY:-} && -f $_CLUSTER_REGISTRY ]]; then
		while read -r pid dir; do
			[[ -n $dir ]] || continue
			if [[ $pid == "$BASHPID" || $_CLUSTER_REGISTRY_PID == "$BASHPID" ]]; then
				mine+=("$dir")
			fi
		done <"$_CLUSTER_REGISTRY"
		for dir in "${mine[@]}"; do
			_cluster_destroy "$dir"
		done
		[[ $_CLUSTER_REGISTRY_PID != "$BASHPID" ]] || rm -f -- "$_CLUSTER_REGISTRY"
	fi
	return $rc
}

# cluster_cleanup_on_exit: installs the EXIT trap above, and INT/TERM traps
# that exit (130/143) through it.  Replaces any EXIT/INT/TERM trap the caller
# set: register extra cleanup with cluster_at_exit instead.
cluster_cleanup_on_exit() {
	if [[ -z ${_CLUSTER_REGISTRY:-} || ! -f $_CLUSTER_REGISTRY ]]; then
		_CLUSTER_REGISTRY=$(mktemp "${CLUSTER_TMPDIR:-/tmp}/synclog-clusters.XXXXXX") || return 1
		_CLUSTER_REGISTRY_PID=$BASHPID
	fi
	trap _cluster_on_exit EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

_CLUSTER_AT_EXIT=()
