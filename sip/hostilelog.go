package sip

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Input vnum drops or refuses before any handler sees it (a message that
// does not parse, one over vnum's limits) costs no authentication to send:
// a line per message would let anyone fill the disk (random datagrams once
// wrote four times their own size in log). hostileInput counts every such
// message and logs at most one line per source per hostileLogEvery, and at
// most hostileLogBudget lines in all per hostileLogEvery; each line says
// how many messages the source sent since its last one. Lines name sizes,
// kinds and limits, never what the peer wrote: a payload may carry a
// consignee's number.
const (
	// hostileLogEvery is how often one source may get a line.
	hostileLogEvery = 10 * time.Second
	// hostileLogBudget bounds the lines of all sources per hostileLogEvery:
	// a flood from many (spoofed) addresses writes at most this many.
	hostileLogBudget = 32
	// hostileLogSources bounds the sources remembered; the messages of
	// others (a flood from spoofed addresses) are counted together, under
	// source "other".
	hostileLogSources = 1024
)

// Transports as the malformed-message counts label them
// (vnum_sip_malformed_total{transport}).
var malformedTransports = []string{"udp", "tcp", "tls", "ws", "wss", "unknown"}

// Limits a message may be refused for, as vnum_sip_over_limit_total{limit}
// labels them (limits.go).
const (
	limitHeaderFields = "header_fields"
	limitSameHeader   = "same_header"
	limitBody         = "body"
	limitMediaLines   = "media_lines"
)

var overLimitLabels = []string{limitHeaderFields, limitSameHeader, limitBody, limitMediaLines}

// hostileInput counts and reports malformed messages and messages over
// vnum's limits for one server.
type hostileInput struct {
	log *slog.Logger
	now func() time.Time
	// parser parses what refuseAtRead answers statelessly.
	parser *sip.Parser

	malformed map[string]*atomic.Int64 // fixed keys: malformedTransports
	overLimit map[string]*atomic.Int64 // fixed keys: overLimitLabels

	// marks attributes sipgo's parse failures, which it logs without a
	// source, to the read they came from.
	marks readMarks

	mu      sync.Mutex
	sources map[netip.Addr]*sourceLines
	window  time.Time // start of the current hostileLogEvery of the budget
	lines   int       // lines written in window
	swept   time.Time // the last sweep of sources
}

// sourceLines is what hostileInput remembers of one source.
type sourceLines struct {
	last    time.Time // its last line; zero before the first
	pending int       // messages since then
}

// otherSources is the key of the sources not remembered one by one, and of
// messages whose source is unknown.
var otherSources netip.Addr

func newHostileInput(log *slog.Logger, now func() time.Time, parser *sip.Parser) *hostileInput {
	if now == nil {
		now = time.Now
	}
	h := &hostileInput{log: log, now: now, parser: parser,
		malformed: make(map[string]*atomic.Int64, len(malformedTransports)),
		overLimit: make(map[string]*atomic.Int64, len(overLimitLabels)),
		sources:   make(map[netip.Addr]*sourceLines)}
	for _, t := range malformedTransports {
		h.malformed[t] = new(atomic.Int64)
	}
	for _, l := range overLimitLabels {
		h.overLimit[l] = new(atomic.Int64)
	}
	return h
}

// countMalformed counts one malformed message received over transport.
func (h *hostileInput) countMalformed(transport string) {
	n, ok := h.malformed[transport]
	if !ok {
		n = h.malformed["unknown"]
	}
	n.Add(1)
}

// countOverLimit counts one message refused for limit.
func (h *hostileInput) countOverLimit(limit string) {
	if n, ok := h.overLimit[limit]; ok {
		n.Add(1)
	}
}

// report logs msg at WARN with attrs for a message from src, unless src
// (or every source together) had its line of this hostileLogEvery
// already; attrs get "source" and "count" (the source's messages since
// its last line, this one included).
func (h *hostileInput) report(src netip.Addr, msg string, attrs ...any) {
	key, count, ok := h.allow(src.Unmap())
	if !ok {
		return
	}
	source := "other"
	if key.IsValid() {
		source = key.String()
	}
	h.log.Warn(msg, append(attrs, "source", source, "count", count)...)
}

// allow decides whether a message from src gets a line now. It returns
// the key the message was counted under (otherSources when src is not
// remembered), and when allowed the messages counted under it since its
// last line.
func (h *hostileInput) allow(src netip.Addr) (netip.Addr, int, bool) {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if since := now.Sub(h.window); since >= hostileLogEvery || since < 0 {
		h.window, h.lines = now, 0
	}
	e := h.sources[src]
	if e == nil {
		if len(h.sources) >= hostileLogSources {
			h.sweep(now)
		}
		if len(h.sources) >= hostileLogSources {
			src = otherSources
			e = h.sources[src]
		}
		if e == nil {
			e = &sourceLines{}
			h.sources[src] = e
		}
	}
	e.pending++
	if since := now.Sub(e.last); !e.last.IsZero() && since < hostileLogEvery && since >= 0 {
		return src, 0, false
	}
	if h.lines >= hostileLogBudget {
		return src, 0, false
	}
	h.lines++
	e.last = now
	count := e.pending
	e.pending = 0
	return src, count, true
}

// sweep forgets the sources whose last line is a hostileLogEvery old or
// more (their next message would get a line anyway); their counts not yet
// reported move to otherSources. It runs at most once per
// hostileLogEvery, so that a flood from spoofed sources does not make
// every message walk the table.
func (h *hostileInput) sweep(now time.Time) {
	if since := now.Sub(h.swept); since < hostileLogEvery && since >= 0 {
		return
	}
	h.swept = now
	moved := 0
	for src, e := range h.sources {
		if src == otherSources {
			continue
		}
		if since := now.Sub(e.last); since >= hostileLogEvery || since < 0 {
			moved += e.pending
			delete(h.sources, src)
		}
	}
	if moved > 0 {
		o := h.sources[otherSources]
		if o == nil {
			o = &sourceLines{}
			h.sources[otherSources] = o
		}
		o.pending += moved
	}
}

// addrOf is the IP address of a socket address, invalid when there is none.
func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case nil:
		return netip.Addr{}
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// malformedCounts returns the SIP messages received that did not parse
// or lacked the headers a transaction is matched by (Via, CSeq), by
// transport. Every transport is present.
func (h *hostileInput) malformedCounts() map[string]int64 {
	out := make(map[string]int64, len(h.malformed))
	for t, n := range h.malformed {
		out[t] = n.Load()
	}
	return out
}

// overLimitCounts returns the SIP messages refused because they went over
// one of vnum's limits on what a message may cost, by limit. Every limit
// is present.
func (h *hostileInput) overLimitCounts() map[string]int64 {
	out := make(map[string]int64, len(h.overLimit))
	for l, n := range h.overLimit {
		out[l] = n.Load()
	}
	return out
}
