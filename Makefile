# vnum — build, test, demo and load-test the virtual-number B2BUA.
#
#   make build   build bin/vnum (the default)
#   make install install bin/vnum to $(DESTDIR)$(PREFIX)/bin (PREFIX=/usr/local);
#                it builds only when bin/vnum is missing or older than its
#                sources, so `make && sudo make install` needs no go for root
#   make deb     the Debian package bin/vnum_VERSION_ARCH.deb: the binary, a
#                hardened systemd unit, /etc/vnum/vnum.yaml, the manual pages,
#                the dashboard and alert rules of deploy/ (scripts/deb.sh;
#                needs only go: nfpm is built from scripts/nfpm/go.mod)
#   make demo    build and run `vnum demo`: the whole call path on loopback
#   make demo-cluster  two vnum nodes on one store (PostgreSQL; DEMO_STORE=sqlite)
#                behind Kamailio's dispatcher, calls through it, a node
#                killed and restarted (scripts/demo-cluster.sh; needs
#                kamailio, sipp and postgresql)
#   make test    every test (unit, in-process end to end, SIPp and baresip)
#   make bench   Go benchmarks, then SIPp load through the built binary
#                (direct and IVR ramps, an overload burst, a concurrent-media
#                ramp and, where Kamailio and rtpengine are installed, the
#                trunk ramp against vnum and against them; scripts/bench.sh)
#   make bench-media  media at rising levels with the project's generator
#                (scripts/loadgen): kernel relay on, then off, each level
#                alternating with Kamailio + rtpengine where installed
#   make bench-smoke  one low rate of each and a tiny overload burst (and one
#                compare step where Kamailio and rtpengine are installed);
#                fails on any failed call (CI)
#   make fuzz    a short run of every fuzz target
#   make prompts regenerate the IVR prompts (espeak-ng + sox; the WAVs are committed)

GO       ?= go
BIN      := bin/vnum
FUZZTIME ?= 10s
FUZZMINIMIZETIME ?= 1x
PREFIX   ?= /usr/local
DESTDIR  ?=

# What `vnum version` prints. Outside a git checkout (a release tarball)
# they fall back to "dev" and the build information the go command embeds.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.DEFAULT_GOAL := build

# What bin/vnum is built from: the Go files of the module (tests aside), and
# the files they embed (migrations, the OpenAPI document, the prompts).
SOURCES := $(shell find . -path ./bin -prune -o -path ./.git -prune -o -type f \( \
	-name '*.go' ! -name '*_test.go' -o -name go.mod -o -name go.sum \
	-o -name '*.sql' -o -name openapi.json -o -name '*.wav' \) -print 2>/dev/null)

.PHONY: build install deb test race demo demo-cluster bench bench-go bench-sipp bench-media bench-smoke fuzz vet clean

# go build leaves an up-to-date binary as it is, old time stamp included;
# the touch tells make it is current.
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/vnum
	@touch $(BIN)

$(BIN): $(SOURCES)
	@command -v $(GO) >/dev/null 2>&1 || { \
		echo "make: $(BIN) is missing or older than its sources, and $(GO) is not on PATH:" \
			"run make as the user who builds, then make install" >&2; exit 1; }
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/vnum
	@touch $(BIN)

# Only copies when bin/vnum is current: root's PATH often has no go.
install: $(BIN)
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/vnum

# DEB_BUILD, DEB_OUT and SOURCE_DATE_EPOCH pass through.
deb:
	GO=$(GO) VERSION=$(VERSION) COMMIT=$(COMMIT) ./scripts/deb.sh

demo: build
	./$(BIN) demo

# DEMO_STORE, DEMO_CALLS and the other knobs of the script pass through.
demo-cluster: build
	VNUMTEST_BIN=$(CURDIR)/$(BIN) ./scripts/demo-cluster.sh

vet:
	$(GO) vet ./...

# Unit and end-to-end tests; the packages with concurrency run under the
# race detector. SIPp and baresip tests skip where the tools are missing,
# unless VNUMTEST_REQUIRE_SIPP=1 (CI) makes that a failure.
test: vet
	$(GO) test -race -timeout 15m ./...

bench: bench-go bench-sipp

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./media/ ./sip/... ./binding/...

# compare needs Kamailio and rtpengine (Debian: kamailio, rtpengine-daemon).
HAVE_KAMAILIO := $(shell command -v kamailio >/dev/null 2>&1 && command -v rtpengine >/dev/null 2>&1 && echo 1)
COMPARE_MODE  := $(if $(HAVE_KAMAILIO),compare)
# stores needs PostgreSQL's server programs (Debian: postgresql; they live
# outside PATH, in /usr/lib/postgresql/VERSION/bin).
HAVE_POSTGRES := $(shell { command -v initdb || ls /usr/lib/postgresql/*/bin/initdb; } >/dev/null 2>&1 && echo 1)
STORES_MODE   := $(if $(HAVE_POSTGRES),stores)
# BENCH_MODE and the other knobs of scripts/bench.sh pass through.
BENCH_MODE ?= $(STORES_MODE) direct ivr overload media $(COMPARE_MODE)
# results.csv and results.svg go to bin/bench.
bench-sipp: build
	VNUMTEST_BIN=$(CURDIR)/$(BIN) BENCH_MODE="$(BENCH_MODE)" BENCH_OUT=$(CURDIR)/bin/bench ./scripts/bench.sh

# Media at rising levels with the project's generator (scripts/loadgen),
# vnum with the kernel relay and without, each level alternating with
# Kamailio + rtpengine where installed. Needs root for the kernel relay.
BENCH_MEDIA_LEVELS ?= 250 500 1000 1500 2000 2500 3000
bench-media: build
	VNUMTEST_BIN=$(CURDIR)/$(BIN) BENCH_MODE=mediago BENCH_KERNEL=on BENCH_MEDIA_LEVELS="$(BENCH_MEDIA_LEVELS)" \
		BENCH_MEDIA_RATE=200 BENCH_RTP_PORTS=20000-39999 BENCH_RTPENGINE_PORTS=40000-59999 ./scripts/bench.sh
	VNUMTEST_BIN=$(CURDIR)/$(BIN) BENCH_MODE=mediago BENCH_KERNEL=off BENCH_MEDIA_LEVELS="$(BENCH_MEDIA_LEVELS)" \
		BENCH_MEDIA_RATE=200 BENCH_RTP_PORTS=20000-39999 BENCH_RTPENGINE_PORTS=40000-59999 ./scripts/bench.sh

# A smoke run of the load test for CI (well under a minute): 10 calls/s
# for 2 s with media, direct and IVR, then 200 calls/s for 2 s against
# calls.max_active 20, where every attempt must complete or be refused
# with 503 (and some must be refused); where Kamailio and rtpengine are
# installed, 10 trunk calls/s for 2 s against vnum and against them.
bench-smoke: build
	@[ -n "$(HAVE_KAMAILIO)" ] || echo "bench-smoke: kamailio or rtpengine not installed: the compare step is skipped"
	VNUMTEST_BIN=$(CURDIR)/$(BIN) BENCH_MODE="direct ivr overload $(COMPARE_MODE)" BENCH_STRICT=1 \
		BENCH_RATES=10 BENCH_CALLS_FACTOR=2 BENCH_CALL_MS=1000 \
		BENCH_OVERLOAD_RATE=200 BENCH_OVERLOAD_SECS=2 BENCH_MAX_ACTIVE=20 \
		./scripts/bench.sh

# Each fuzz target for FUZZTIME (scripts/fuzz.sh: go test -fuzz takes one
# target at a time, and Go 1.26's end-of-fuzztime race is told apart from a
# real failure). FUZZMINIMIZETIME is -fuzzminimizetime: 1x re-runs a new
# input once to keep only what widens coverage again, and does not shrink
# it (Go's 60s per input left FuzzHandlers no time to explore).
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) FUZZMINIMIZETIME=$(FUZZMINIMIZETIME) ./scripts/fuzz.sh

clean:
	rm -rf bin

include media/Makefile.prompts
