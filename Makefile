# synclog: top-level build.  The extension is built by PGXS in pg_ext/ (its
# own Makefile), the gateway and the client library by plain make in gateway/
# and client/.  The two
# commands the README promises are `make demo` and `make check`; both install
# what is missing first (`make deps`).

PG_CONFIG ?= $(shell command -v pg_config 2>/dev/null || echo /usr/lib/postgresql/15/bin/pg_config)
export PG_CONFIG

.PHONY: all deps ext gateway client web install installcheck check demo bench soak fuzz clean

all: ext gateway client web

deps:
	@scripts/deps.sh

ext:
	$(MAKE) -C pg_ext PG_CONFIG=$(PG_CONFIG)

# The gateway (issue 4, in progress): for now the synclog.v1 frame codec and
# protocol state machine; tests/suites/10-gateway-protocol.sh tests it under
# ASan and UBSan.
gateway:
	$(MAKE) -C gateway

# The client library (issue 5, in progress): for now its pure core, the HLC
# and the local model's merge (tests/suites/40-client-core.sh), and the
# durable local store on SQLite (tests/suites/41-client-store.sh), tested
# under ASan and UBSan.
client:
	$(MAKE) -C client

# The browser client (issue 15): web/build.mjs (esbuild, and tsc for the
# declarations) makes web/dist/, the ready-to-serve build, and web/build/lib/
# for the Node tests (tests/suites/70-web-unit.sh, 71-web-browser.sh).  Its
# tools are web/node_modules, which `make deps` installs (npm ci).
web:
	cd web && node build.mjs

# Installing into PostgreSQL's directories needs root; use sudo otherwise.
install: all
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) -C pg_ext install; \
	 else sudo $(MAKE) -C pg_ext install PG_CONFIG=$(PG_CONFIG); fi

# Against a running server (PGHOST/PGPORT): the pg_regress and isolation suites.
installcheck:
	$(MAKE) -C pg_ext installcheck

check: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory install
	@tests/run-all.sh

demo: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory install
	@scripts/demo.sh

# The extension's figures (bench/run.sh), then the gateway's (bench/gateway.sh,
# run by bench/run.sh; its tools are built by bench/Makefile).
bench: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory install
	@$(MAKE) --no-print-directory -C bench
	@bench/run.sh

# The convergence soak under faults (scripts/soak.sh): SOAK_SECONDS,
# SOAK_CLIENTS, SOAK_SEED and SOAK_ROWS may be given on the command line.
export SOAK_SECONDS SOAK_CLIENTS SOAK_SEED SOAK_ROWS SOAK_KEEP SOAK_DIR
soak: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory install
	@scripts/soak.sh

# The libFuzzer targets (fuzz/, issue 6): builds them with clang and runs
# each for FUZZ_SECONDS on a copy of its committed corpus; one line per
# target "fuzz: TARGET execs=N crashes=N corpus=N seconds=N", crash inputs
# under build/fuzz/crashes/.  No database.  FUZZ_PARALLEL=2 runs two at a time.
FUZZ_SECONDS ?= 60
FUZZ_PARALLEL ?= 1
fuzz: deps
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_PARALLEL=$(FUZZ_PARALLEL) scripts/fuzz.sh

clean:
	$(MAKE) -C pg_ext clean
	$(MAKE) -C gateway clean
	$(MAKE) -C client clean
	rm -rf build web/dist web/build
