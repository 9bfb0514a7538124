# cinderwarden — see README.md. Every target works on a fresh machine after
# scripts/substrate.sh (which .ci/run calls); root-only tests skip loudly
# without it, and fail when CINDERWARDEN_REQUIRE_SUBSTRATE=1.
GO       ?= go
# Build and test with the newest go1.26 patch release (from the Go module
# proxy): go1.26.8, the machine's own, has standard-library vulnerabilities
# that govulncheck finds called from our code (fixed in 1.26.9/1.26.10).
export GOTOOLCHAIN := go1.26.11
BIN      := bin/cinderwarden
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
# Packages whose concurrency is exercised under the race detector.
RACE_PKGS := ./simcloud/... ./openstack/... ./internal/cloudconfig/... ./volumedriver/... ./reconciler/... ./hostdisk/... ./libvirtscan/...

.PHONY: all build test demo lint fuzz bench plugin docs clean substrate

all: build

build:
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/cinderwarden

# The whole suite: unit + integration + e2e tests against the real substrate,
# the race detector on the concurrent packages, every fuzz target for a few
# seconds, then the static checks (gofmt, vet, staticcheck, govulncheck).
test: build
	$(GO) test -count=1 -timeout 18m ./...
	# Restarting the shared dockerd or libvirtd would break other packages'
	# tests running in parallel, so these two run alone, after the rest.
	CINDERWARDEN_E2E_DOCKERD_RESTART=1 $(GO) test -count=1 -timeout 5m -run '^TestDockerdRestart$$' ./e2e
	CINDERWARDEN_E2E_LIBVIRTD_RESTART=1 $(GO) test -count=1 -timeout 5m -run '^TestReconcileLibvirtdRestart$$' ./e2e
	$(GO) test -count=1 -race -short -timeout 10m $(RACE_PKGS)
	FUZZTIME=5s bash scripts/fuzz.sh
	bash scripts/lint.sh

demo: build
	bash scripts/demo.sh

lint:
	bash scripts/lint.sh

fuzz:
	bash scripts/fuzz.sh

# Runs the benchmarks and writes bench/report.{md,json} and docs/performance.md.
bench: build
	$(GO) run ./internal/benchreport -out bench -docs docs/performance.md

# The managed Docker plugin, assembled locally and registered with the local
# dockerd (no registry): docker plugin create cinderwarden/cinder:latest.
plugin: build
	deploy/docker-plugin/build.sh --binary $(BIN) --force

# Regenerate docs/configuration.md from the code's own flags (the drift test
# in deploy/deploytest fails until it matches).
docs:
	$(GO) test -count=1 -run TestConfigurationReference ./deploy/deploytest -update

substrate:
	bash scripts/substrate.sh

clean:
	rm -rf bin .demo
