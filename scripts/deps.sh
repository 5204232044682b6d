#!/usr/bin/env bash
# scripts/deps.sh: install the Debian packages synclog needs (`make deps`).
#
# Installs with apt-get only the packages that are missing, using sudo when not
# run as root, and runs `apt-get update` only when something is missing.  Prints
# one line: what it installs, or "deps: all present".  Debian 12 is the target.
#
# Then the browser client's tools (web/): Node.js >= 20 with npm (Debian's
# nodejs and npm when `node` or `npm` is missing; Debian 12's nodejs is 18, too
# old, which is said plainly), and `npm ci` in web/ when web/node_modules is
# missing or older than web/package-lock.json or web/package.json, so that a
# second run does nothing.  npm ci runs with PUPPETEER_SKIP_DOWNLOAD=1: the
# browser tests drive Debian's chromium (in DEPS_PACKAGES, with
# fonts-liberation for pages that show text), never a downloaded browser.
# Afterwards esbuild and tsc must run, or the script fails saying so.
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
  clang libfuzzer-14-dev libclang-rt-14-dev gnuplot-nox
  chromium fonts-liberation"

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
# Node.js may come from elsewhere than Debian (a newer build providing node
# and npm itself): only a missing command asks for Debian's package.
command -v node >/dev/null 2>&1 || is_installed nodejs || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || is_installed npm || missing+=(npm)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WEB=$REPO/web

# web_deps: checks Node.js's version and runs `npm ci` in web/ when
# node_modules is missing or older than the lock file (npm ci writes
# node_modules/.package-lock.json last, so its age is that of the last
# complete install).  Exits 1 with a message on failure.
web_deps() {
	local ver major stamp=$WEB/node_modules/.package-lock.json log
	[[ -f $WEB/package-lock.json ]] || return 0
	if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
		echo "deps: node and npm are needed for web/ and are not on PATH after installing nodejs and npm" >&2
		exit 1
	fi
	ver=$(node -p 'process.versions.node' 2>/dev/null) || ver=unknown
	major=${ver%%.*}
	if ! [[ $major =~ ^[0-9]+$ ]] || ((major < 20)); then
		echo "deps: web/ needs Node.js 20 or later; $(command -v node) is version $ver" \
			"(Debian 12's nodejs package is 18): install Node.js 20 or later so that node and npm on PATH are it" >&2
		exit 1
	fi
	if [[ -f $stamp && ! $WEB/package-lock.json -nt $stamp && ! $WEB/package.json -nt $stamp ]]; then
		return 0
	fi
	echo "deps: npm ci in web/ (Node.js $ver, npm $(npm --version 2>/dev/null))"
	log=$(mktemp "${TMPDIR:-/tmp}/synclog-npm.XXXXXX")
	if ! (cd "$WEB" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund) >"$log" 2>&1; then
		cat "$log" >&2
		rm -f "$log"
		echo "deps: npm ci in web/ failed (output above)" >&2
		exit 1
	fi
	rm -f "$log"
	local tool
	for tool in esbuild tsc; do
		if ! "$WEB/node_modules/.bin/$tool" --version >/dev/null 2>&1; then
			echo "deps: after npm ci, web/node_modules/.bin/$tool does not run:" >&2
			"$WEB/node_modules/.bin/$tool" --version >&2 || true
			exit 1
		fi
	done
}

if [[ ${#missing[@]} -eq 0 ]]; then
	echo "deps: all present"
	web_deps
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
web_deps
