# DistributedLog for Swift. `make run` and `make test` are all a newcomer needs on Debian 12.
SWIFT ?= swift
SHELL := /bin/bash
DEBS := liburing-dev libaio-dev libsystemd-dev libsqlite3-dev pkg-config etcd-server jq liblz4-dev
DATA ?= ./data
PORT ?= 3181

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

# One bookie with data under ./data, in the foreground; Ctrl-C stops it cleanly.
run: release
	@echo "starting a bookie on 127.0.0.1:$(PORT), data in $(DATA)"
	@echo "try, in another terminal:"
	@echo "  .build/release/dlog-bench bookie --target 127.0.0.1:$(PORT) --clients 32 --pipeline 16 --size 1024 --duration 5 --acked-log /tmp/acked.log"
	@echo "  .build/release/dlog-bench verify --target 127.0.0.1:$(PORT) --acked-log /tmp/acked.log"
	@echo "  .build/release/dlog-bench disk --dir $(DATA) --duration 5"
	.build/release/dlogd bookie --config etc/bookie.conf --journal-dir $(DATA)/journal --ledger-dir $(DATA)/ledgers --port $(PORT)

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
