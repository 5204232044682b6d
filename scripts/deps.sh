#!/usr/bin/env bash
# scripts/deps.sh: install the Debian packages synclog needs (`make deps`).
#
# Installs with apt-get only the packages that are missing, using sudo when not
# run as root, and runs `apt-get update` only when something is missing.  Prints
# one line: what it installs, or "deps: all present".  Debian 12 is the target.
#
# To add a dependency, add it to DEPS_PACKAGES below.  libssl-dev gives the
# gateway libcrypto (the SHA-256 of tokens).  clang, libfuzzer-14-dev
# and libclang-rt-14-dev are for `make fuzz` (fuzz/): clang's
# -fsanitize=fuzzer links libclang_rt.fuzzer from libclang-rt-14-dev.  A virtual package (such
# as postgresql-contrib-15, which postgresql-15 provides on Debian 12) counts as
# present when an installed package provides it.
#
# Installing postgresql-15 may create and start a system cluster "main" on port
# 5432.  synclog never uses it (tests and the demo start throwaway clusters on
# random ports, see tests/lib/cluster.sh), and this script leaves it alone.

set -euo pipefail

DEPS_PACKAGES="postgresql-15 postgresql-server-dev-15 postgresql-contrib-15
  libpq-dev libjansson-dev libwebsockets-dev libssl-dev libsqlite3-dev sqlite3
  pkg-config make gcc libc6-dev procps iproute2
  clang libfuzzer-14-dev libclang-rt-14-dev gnuplot-nox"

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
	# shellcheck disable=SC2086 # the list is meant to be split
	echo "deps: dpkg-query/apt-get not found; install these packages by hand:" $DEPS_PACKAGES >&2
	exit 1
fi

# "installed <Provides>" for every installed package, to recognise virtual ones.
provided=$(dpkg-query -W -f='${db:Status-Status} ${Provides}\n' 2>/dev/null | grep '^installed ' || true)

# is_installed PKG: true when PKG, or a package providing it, is installed.
is_installed() {
	local status line
	status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)
	[[ $status == *"install ok installed"* ]] && return 0
	while IFS= read -r line; do
		[[ ", ${line#installed }," == *", $1 "* || ", ${line#installed }," == *", $1,"* ]] && return 0
	done <<<"$provided"
	return 1
}

missing=()
for pkg in $DEPS_PACKAGES; do
	is_installed "$pkg" || missing+=("$pkg")
done

if [[ ${#missing[@]} -eq 0 ]]; then
	echo "deps: all present"
	exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
	sudo=()
elif command -v sudo >/dev/null 2>&1; then
	sudo=(sudo)
else
	echo "deps: missing ${missing[*]}, and not root and no sudo to install them" >&2
	exit 1
fi

echo "deps: installing ${missing[*]}"
log=$(mktemp "${TMPDIR:-/tmp}/synclog-deps.XXXXXX")
trap 'rm -f "$log"' EXIT
if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q update >"$log" 2>&1 ||
   ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y --no-install-recommends \
	install "${missing[@]}" >>"$log" 2>&1; then
	cat "$log" >&2
	echo "deps: apt-get failed installing ${missing[*]} (output above)" >&2
	exit 1
fi
