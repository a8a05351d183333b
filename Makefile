# DistributedLog for Swift. `make run` and `make test` are all a newcomer needs on Debian 12.
SWIFT ?= swift
SHELL := /bin/bash
DEBS := liburing-dev libaio-dev libsystemd-dev libsqlite3-dev libjemalloc-dev pkg-config etcd-server jq liblz4-dev \
	debhelper dpkg-dev lintian mmdebstrap systemd-container e2fsprogs iproute2 util-linux prometheus curl
DATA ?= ./data

.PHONY: all deps build release run test test-fast simulate fuzz deb e2e bench clean

all: build

# Installs the Debian packages the build needs, only when one is missing.
deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

build: deps
	$(SWIFT) build

# The Swift runtime is linked in statically (as in the package), so there is one release build, not two; the
# flags are in packaging/release-flags, which the package build reads too.
release: deps
	$(SWIFT) build $$(sed '/^#/d' packaging/release-flags)

# Standalone: metadata, 3 bookies and a proxy in one process, data under ./data, in the foreground; Ctrl-C
# stops it cleanly. BASE_PORT is the metadata port; the bookies take the next three, the proxy BASE_PORT + 10.
BASE_PORT ?= 3180
run: release
	@echo "starting dlogd standalone: metadata 127.0.0.1:$(BASE_PORT), proxy 127.0.0.1:$$(($(BASE_PORT) + 10)), data in $(DATA)"
	@echo "try, in another terminal:"
	@echo "  printf 'hello\\nworld\\n' | .build/release/dlogctl write greetings"
	@echo "  .build/release/dlogctl read greetings"
	@echo "  .build/release/dlogctl log show greetings"
	@echo "  .build/release/dlogctl read greetings --follow     # and write more from a third terminal"
	.build/release/dlogd standalone --data $(DATA) --base-port $(BASE_PORT)

# Swift Testing starts every test case at once unless bounded: with ~300 of them on this machine's two shared
# threads, a test waited over 30 s between two steps (its 30 s lease expired) while others ran blocking file work.
# Running at most 16 at a time keeps each one moving and the whole run no slower.
export SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH ?= 16

# Every test CI checks: unit, crash (SIGKILL cycles), multi-process and robustness, then the package under a
# real systemd (e2e).
# The healing tests (RecoveryTests: clusters of up to 6 bookies, SIGKILLs, a 3-member etcd), the hostile-client
# tests (thousands of connections against debug-build daemons), the TLS clusters of processes, and the standalones
# (each preallocates 200 MB of journals, then is put under load; `dlogctl top` against one) run after the rest, one
# test at a time: none of them shares the machine with another multi-process suite, whose leases would expire, and
# whose fsyncs would wait, under the load.
ALONE = DLogDaemonTests\.(RecoveryTests/|HostileConnectionTests/|TLSPortTests/|StandaloneTests/|TopTests/)
# The storage tests run first, in a process of their own. Most are synchronous, and a synchronous test holds one
# of its process's cooperative threads (two here) until it returns: a journal test that waits for its syncs holds
# it for seconds under the suite's load (24 s and more were seen). Two at once stalled every async test of the
# process for as long, whose leases then expired (a namespace's 10 s ownership lease, in LogTests,
# TruncationTests and LeaseSessionTests at the same moment). In their own process they stall only storage tests,
# none of which holds a lease.
STORAGE = DLogBookieTests\.|DLogIOTests\.
test: build
	$(SWIFT) build --build-tests
	@set -o pipefail; $(SWIFT) test --skip-build --filter '$(STORAGE)' 2>&1 | tee .build/test-output-storage.txt
	@set -o pipefail; $(SWIFT) test --skip-build --skip '$(ALONE)|$(STORAGE)' 2>&1 | tee .build/test-output.txt
	@set -o pipefail; SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH=1 $(SWIFT) test --skip-build \
		--filter '$(ALONE)' 2>&1 | tee .build/test-output-recovery.txt
	@passed() { sed -n 's/.*Test run with \([0-9]*\) tests\{0,1\} in .* passed.*/\1/p' "$$1" | tail -1; }; \
	s=$$(passed .build/test-output-storage.txt); n=$$(passed .build/test-output.txt); \
	r=$$(passed .build/test-output-recovery.txt); echo "$$(( $${s:-0} + $${n:-0} + $${r:-0} )) passed, 0 failed"
	@# Every fuzz corpus input (seeds and past findings) through its decoder, in the plain build: a decoder that
	@# traps on one fails here without the fuzzer.
	@for t in $$(.build/debug/dlog-fuzz list); do .build/debug/dlog-fuzz replay $$t Fuzz/corpus/$$t || exit 1; done
	$(MAKE) e2e

# The Debian package: packaging/out/dlogd_VERSION_amd64.deb (release build, static Swift runtime, lintian).
deb: deps
	packaging/build-deb.sh

# The package in five systemd-nspawn containers (metadata, 3 bookies, proxy): see packaging/e2e/run.sh.
# Bounded at 10 minutes; it removes everything it created, also on failure.
e2e: deb
	timeout --signal=TERM 600 packaging/e2e/run.sh packaging/out/dlogd_*_amd64.deb

# The quick inner loop: unit tests only.
test-fast: build
	$(SWIFT) test --skip DLogDaemonTests

# A long soak of the bookie simulation (docs/storage.md, The disk seam): SEEDS seeded runs of STEPS steps each;
# SEED replays one run (or starts from it). Every failure prints its seed.
SEEDS ?= 500
STEPS ?= 80
simulate: build
	$(SWIFT) build --build-tests
	DLOG_SIM_SEEDS=$(SEEDS) DLOG_SIM_STEPS=$(STEPS) $(if $(SEED),DLOG_SIM_SEED=$(SEED)) \
		$(SWIFT) test --skip-build --filter 'BookieSimulationTests'

# Fuzzes every decoder of socket and disk bytes for SECONDS each with libFuzzer and AddressSanitizer
# (Fuzz/README.md); findings land in .build/fuzz-artifacts and fail the run.
SECONDS ?= 30
fuzz: deps
	Fuzz/run.sh $(SECONDS)

clean:
	rm -rf .build
