# vnum — build, test, demo and load-test the virtual-number B2BUA.
#
#   make build   build bin/vnum (the default)
#   make install install bin/vnum to $(DESTDIR)$(PREFIX)/bin (PREFIX=/usr/local)
#   make demo    build and run `vnum demo`: the whole call path on loopback
#   make test    every test (unit, in-process end to end, SIPp and baresip)
#   make bench   Go benchmarks, then SIPp load through the built binary
#   make fuzz    a short run of every fuzz target
#   make prompts regenerate the IVR prompts (espeak-ng + sox; the WAVs are committed)

GO       ?= go
BIN      := bin/vnum
FUZZTIME ?= 10s
PREFIX   ?= /usr/local
DESTDIR  ?=

# What `vnum version` prints. Outside a git checkout (a release tarball)
# they fall back to "dev" and the build information the go command embeds.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.DEFAULT_GOAL := build

.PHONY: build install test race demo bench bench-go bench-sipp fuzz vet clean

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/vnum

install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/vnum

demo: build
	./$(BIN) demo

vet:
	$(GO) vet ./...

# Unit and end-to-end tests; the packages with concurrency run under the
# race detector. SIPp and baresip tests skip where the tools are missing,
# unless VNUM_REQUIRE_SIPP=1 (CI) makes that a failure.
test: vet
	$(GO) test -race -timeout 15m ./...

bench: bench-go bench-sipp

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./media/ ./sip/... ./binding/...

bench-sipp: build
	VNUM_BIN=$(CURDIR)/$(BIN) ./scripts/bench.sh

# Each fuzz target for FUZZTIME (go test -fuzz takes one target at a time).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$t"; \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

clean:
	rm -rf bin

include media/Makefile.prompts
