# DistributedLog for Swift. `make run` and `make test` are all a newcomer needs on Debian 12.
SWIFT ?= swift
SHELL := /bin/bash
DEBS := liburing-dev libaio-dev libsystemd-dev libsqlite3-dev pkg-config etcd-server jq liblz4-dev
DATA ?= ./data

.PHONY: all deps build release run test test-fast bench clean

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

release: deps
	$(SWIFT) build -c release

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

# Every test CI checks: unit, crash (SIGKILL cycles), multi-process and robustness.
test: build
	$(SWIFT) build --build-tests
	@set -o pipefail; $(SWIFT) test --skip-build 2>&1 | tee .build/test-output.txt
	@n=$$(sed -n 's/.*Test run with \([0-9]*\) tests\{0,1\} in .* passed.*/\1/p' .build/test-output.txt | tail -1); \
	echo "$${n:-0} passed, 0 failed"

# The quick inner loop: unit tests only.
test-fast: build
	$(SWIFT) test --skip DLogDaemonTests

clean:
	rm -rf .build
