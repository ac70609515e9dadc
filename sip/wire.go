package sip

// What vnum sets in sipgo's parser and transport so that nothing a peer
// sends surprises it: header parameters as RFC 3261 writes them, no DNS
// lookups of names from messages, responses of any size over UDP.

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// maxUDPDatagram is the largest UDP payload over IPv4 (65,535 less the IP
// and UDP headers).
const maxUDPDatagram = 65507

// sipgo refuses to write any message over UDPMTUSize-200 bytes on UDP,
// responses included, and has no fallback: a response to a request with a
// long header was never sent (docs/sipgo.md §11). A response goes
// back on the request's transport whatever its size (RFC 3261 §18.2.2),
// so the limit is lifted to what one datagram holds; IP fragments it. The
// knob is global in sipgo and also lets vnum's own large requests go over
// UDP rather than fail (RFC 3261 §18.1.1 would switch them to TCP, which
// sipgo does not do); vnum keeps its requests small.
func init() {
	sip.UDPMTUSize = maxUDPDatagram + 200
}

// lwsTolerantParser is sipgo's parser with one repair. RFC 3261 allows
// whitespace around the ";" and "=" of header parameters (§25.1: SEMI and
// EQUAL are SWS ";" SWS and SWS "=" SWS; RFC 4475 "wsinv"), but
// sipgo v1.7.3 keeps it in parameter names and values
// (parse_address.go addressStateHeaderParams, and the Via parser): a From
// ";  tag = x" then has no "tag", and sipgo's transaction layer refuses the
// request with 400 before vnum sees it (docs/sipgo.md §13). The
// headers whose parameters SIP matches on (From, To, Contact, Via) are
// parsed by sipgo as ever, then their parameters trimmed. Messages over
// maxMessage bytes do not parse (limits.go).
func lwsTolerantParser() *sip.Parser {
	parsers := make(map[string]sip.HeaderParser, len(sip.DefaultHeadersParser()))
	for name, p := range sip.DefaultHeadersParser() {
		parsers[name] = p
	}
	for _, name := range []string{"f", "from", "t", "to", "m", "contact", "v", "via"} {
		parse := parsers[name]
		parsers[name] = func(headerName []byte, data string) (sip.Header, error) {
			h, err := parse(headerName, data)
			if err == nil {
				trimHeaderParams(h)
			}
			return h, err
		}
	}
	p := sip.NewParser(sip.WithHeadersParsers(parsers))
	p.MaxMessageLength = maxMessage
	return p
}

// trimHeaderParams trims the whitespace sipgo leaves in a header's
// parameters (and in a Via's protocol fields), and drops the empty ones
// a ";  ;" leaves behind.
func trimHeaderParams(h sip.Header) {
	switch h := h.(type) {
	case *sip.FromHeader:
		h.Params = trimParams(h.Params)
	case *sip.ToHeader:
		h.Params = trimParams(h.Params)
	case *sip.ContactHeader:
		h.Params = trimParams(h.Params)
	case *sip.ViaHeader:
		h.ProtocolName = strings.TrimSpace(h.ProtocolName)
		h.ProtocolVersion = strings.TrimSpace(h.ProtocolVersion)
		h.Transport = strings.TrimSpace(h.Transport)
		h.Params = trimParams(h.Params)
	}
}

func trimParams(p sip.HeaderParams) sip.HeaderParams {
	out := p[:0]
	for _, kv := range p {
		kv.K, kv.V = strings.TrimSpace(kv.K), strings.TrimSpace(kv.V)
		if kv.K != "" {
			out = append(out, kv)
		}
	}
	return out
}

// errNoDNS is what sipgo's DNS lookups get: vnum resolves no name taken
// from a message.
var errNoDNS = errors.New("vnum resolves no names taken from SIP messages")

// noDNS is the resolver sipgo is given: every query fails before a packet
// is sent (only the hosts file is still read by Go's resolver).
var noDNS = &net.Resolver{
	PreferGo: true,
	Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errNoDNS
	},
}
