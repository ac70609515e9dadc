package sip

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// sipgo logs every message it cannot parse at ERROR with the whole
// payload ("failed to parse", data=…), from the goroutine that read it and
// without saying where it came from; and a message without Via or CSeq
// ("make key failed") at ERROR once more with its start line (twice for
// a request without Via, whose stateless 400 has nowhere to go). All are
// anyone's to trigger. vnum takes those records out of sipgo's log
// (sipgoRecords), counts each message, and reports it through
// hostileInput with its source, its size and the kind of its first bytes:
// never the payload.

// Messages of sipgo v1.7.3's records that vnum takes over.
const (
	sipgoParseFailed    = "failed to parse"                    // transport_udp.go, transport_tcp.go, transport_ws.go
	sipgoRequestNoKey   = "Server tx failed to handle request" // transaction_layer.go
	sipgoResponseNoKey  = "Client tx failed to handle response"
	sipgoNoKey400Failed = "Failed to send stateless 400 for malformed request"
	sipgoNoKeyPrefix    = "make key failed"
	sipgoTransportAttr  = "caller" // sipgo's transports log with caller=Transport<UDP>, …
	sipgoTransportStart = "Transport<"
)

// malformedMsg is the line a malformed message gets.
const malformedMsg = "malformed SIP message dropped"

// sipgoRecords wraps the handler sipgo logs through: parse failures are
// counted and reported through hostileInput instead, and the ERROR lines
// about messages without Via or CSeq are dropped (checkMessage counts
// those). Every other record passes.
type sipgoRecords struct {
	slog.Handler
	h *hostileInput
	// transport is set on the loggers of sipgo's transports ("udp",
	// "tcp", …), from the attribute they are made with.
	transport string
}

// Enabled takes every ERROR record, whatever the handler below takes: a
// parse failure is counted even where its line would not be written.
func (r sipgoRecords) Enabled(ctx context.Context, level slog.Level) bool {
	return level >= slog.LevelError || r.Handler.Enabled(ctx, level)
}

// Handle takes over parse failures and drops the no-key ERRORs.
func (r sipgoRecords) Handle(ctx context.Context, rec slog.Record) error {
	switch rec.Message {
	case sipgoParseFailed:
		if r.transport != "" {
			r.h.parseFailed(r.transport, rec)
			return nil
		}
	case sipgoRequestNoKey, sipgoResponseNoKey:
		if strings.HasPrefix(recordError(rec), sipgoNoKeyPrefix) {
			return nil
		}
	case sipgoNoKey400Failed:
		return nil // a request without Via: its 400 has nowhere to go
	}
	if !r.Handler.Enabled(ctx, rec.Level) {
		return nil
	}
	return r.Handler.Handle(ctx, rec)
}

// WithAttrs notes the transport a logger of sipgo's is made for.
func (r sipgoRecords) WithAttrs(attrs []slog.Attr) slog.Handler {
	transport := r.transport
	for _, a := range attrs {
		if a.Key != sipgoTransportAttr {
			continue
		}
		if v := a.Value.String(); strings.HasPrefix(v, sipgoTransportStart) {
			transport = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(v, sipgoTransportStart), ">"))
		}
	}
	return sipgoRecords{Handler: r.Handler.WithAttrs(attrs), h: r.h, transport: transport}
}

// WithGroup keeps the wrapper around a group's handler.
func (r sipgoRecords) WithGroup(name string) slog.Handler {
	return sipgoRecords{Handler: r.Handler.WithGroup(name), h: r.h, transport: r.transport}
}

// recordError is the text of a record's "error" attribute, "" without one.
func recordError(rec slog.Record) string {
	var text string
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key != "error" {
			return true
		}
		if err, ok := a.Value.Any().(error); ok {
			text = err.Error()
		} else {
			text = a.Value.String()
		}
		return false
	})
	return text
}

// parseFailed counts and reports one of sipgo's parse failures: its
// "data" is what the failing read returned, its "error" why.
func (h *hostileInput) parseFailed(transport string, rec slog.Record) {
	var data string
	var perr error
	rec.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "data":
			data = a.Value.String()
		case "error":
			perr, _ = a.Value.Any().(error)
		}
		return true
	})
	h.countMalformed(transport)
	src := addrOf(h.marks.source(transport, data))
	h.report(src, malformedMsg, "transport", transport, "bytes", len(data),
		"kind", payloadKind(data), "reason", parseFailure(perr))
}

// checkMessage sees every message sipgo parsed, on the goroutine that read
// it (sipgo's TransportLayer.OnMessage), after sipgo's transaction layer
// has taken it: one without Via or CSeq matches no transaction and gets
// a stateless 400 from sipgo, and is counted here as malformed.
func (h *hostileInput) checkMessage(msg sip.Message) {
	if msg.Via() != nil && msg.CSeq() != nil {
		return
	}
	transport := strings.ToLower(msg.Transport())
	h.countMalformed(transport)
	var src netip.Addr
	if ap, err := netip.ParseAddrPort(msg.Source()); err == nil {
		src = ap.Addr()
	}
	h.report(src, malformedMsg, "transport", transport, "reason", "no_via_or_cseq")
}

// parseFailure names why sipgo could not parse a message, in words of
// vnum's: sipgo's own error texts quote the message.
func parseFailure(err error) string {
	switch {
	case err == nil:
		return "unknown"
	case errors.Is(err, sip.ErrMessageTooLarge):
		return "too_large"
	case errors.Is(err, sip.ErrParseLineNoCRLF):
		return "line_ending"
	case errors.Is(err, sip.ErrParseEOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated"
	case errors.Is(err, sip.ErrParseReadBodyIncomplete):
		return "body_length"
	case strings.HasPrefix(err.Error(), "transmission beginning"):
		return "start_line"
	}
	return "header"
}

// payloadKind names what the first bytes of a payload look like, so that
// an operator can tell a misdirected TLS or HTTP client or a STUN probe
// from SIP gone wrong and from noise, without reading the payload.
func payloadKind(b string) string {
	line := b
	if i := strings.IndexAny(line, "\r\n"); i >= 0 {
		line = line[:i]
	}
	if len(line) > 256 {
		line = line[:256]
	}
	switch {
	case len(b) >= 2 && b[0] == 0x16 && b[1] == 0x03:
		return "tls" // a TLS handshake record
	case len(b) >= 20 && b[0]&0xc0 == 0 && b[4:8] == "\x21\x12\xa4\x42":
		return "stun" // RFC 5389's magic cookie
	case strings.Contains(line, "HTTP/1.") || strings.HasPrefix(line, "PRI * HTTP/2"):
		return "http"
	case strings.Contains(line, "SIP/"):
		return "sip"
	}
	head := b
	if len(head) > 64 {
		head = head[:64]
	}
	for i := 0; i < len(head); i++ {
		if c := head[i]; (c < 0x20 && c != '\r' && c != '\n' && c != '\t') || c >= 0x7f {
			return "binary"
		}
	}
	return "text"
}

// readMarks remembers the last reads sipgo's transports made (sipgo's
// read filter hands vnum each one before parsing it): where it came
// from, its size and first bytes. sipgo logs a parse failure on the
// goroutine of the read, right after it and without its source;
// source finds the read again by transport, size and first bytes. A
// failure it cannot place counts under source "other": what bounds the
// log is hostileInput, not the attribution.
type readMarks struct {
	mu   sync.Mutex
	ring [markRing]readMark
	next int
}

// markRing is how many reads readMarks remembers: more than the reads of
// other connections that may come between one read and its parse failure
// on a busy server.
const markRing = 256

// markHead is how many first bytes of a read readMarks keeps.
const markHead = 32

type readMark struct {
	transport string
	from      net.Addr
	size      int
	head      [markHead]byte
}

// filter is sipgo's read filter (sip.WithTransportLayerReadFilter): it
// marks the read and passes the data on unchanged. It costs a lock and a
// copy of 32 bytes per read.
func (m *readMarks) filter(p sip.TransportReadProps, data []byte) ([]byte, error) {
	m.mu.Lock()
	mk := &m.ring[m.next]
	m.next = (m.next + 1) % markRing
	mk.transport, mk.from, mk.size = p.Transport, p.RemoteAddr, len(data)
	copy(mk.head[:], data)
	m.mu.Unlock()
	return data, nil
}

// source returns where the latest read over transport whose bytes data
// begins like came from, nil when none is remembered.
func (m *readMarks) source(transport, data string) net.Addr {
	n := min(len(data), markHead)
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := 1; i <= markRing; i++ {
		mk := &m.ring[(m.next-i+markRing)%markRing]
		if mk.from == nil || mk.size != len(data) || !strings.EqualFold(mk.transport, transport) {
			continue
		}
		if bytes.Equal(mk.head[:n], []byte(data[:n])) {
			return mk.from
		}
	}
	return nil
}
