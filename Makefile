# cinderwarden — see README.md. Every target works on a fresh machine after
# scripts/substrate.sh (which .ci/run calls); root-only tests skip loudly
# without it, and fail when CINDERWARDEN_REQUIRE_SUBSTRATE=1.
GO       ?= go
BIN      := bin/cinderwarden
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
# Packages whose concurrency is exercised under the race detector.
RACE_PKGS := ./simcloud/... ./openstack/... ./internal/cloudconfig/...

.PHONY: all build test test-unit test-race demo lint bench clean substrate

all: build

build:
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/cinderwarden

# The whole suite: vet, unit + integration + e2e tests, race on concurrent packages.
test: build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 18m ./...
	$(GO) test -count=1 -race -timeout 10m $(RACE_PKGS)

demo: build
	bash scripts/demo.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

substrate:
	bash scripts/substrate.sh

clean:
	rm -rf bin .demo
