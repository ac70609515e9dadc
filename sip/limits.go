package sip

import (
	"bytes"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/vnum/vnum/media"
	"github.com/vnum/vnum/sip/frontdoor"
)

// What one SIP message may make vnum hold. RFC 3261 sets no limit, and
// sipgo only bounds a message's size (maxMessage): within 64 KiB a message
// of 12,000 one-letter header fields costs 1.3 MB of parsed headers, 500
// Via values 150 KB and as much again in the response that copies them,
// and sipgo's transaction keeps both for 32 s (Timer H and J). Real
// traffic is far below these limits; what is over them is refused with
// its status and a Warning naming the limit (RFC 3261 §21), before any
// handler work, and its transaction ended at once.
const (
	// maxMessage is the largest message vnum's parser takes
	// (sip.Parser.MaxMessageLength): what one datagram could carry. A
	// larger one does not parse; on a TCP or TLS stream the connection is
	// closed, as sipgo does when a message cannot be framed. Over UDP
	// sipgo reads at most sip.TransportBufferReadSize (32 KiB) of a
	// datagram, so a longer one is cut and does not parse either.
	maxMessage = 65535
	// maxSameHeader bounds the header fields of one name. A request's
	// Max-Forwards starts at 70 (RFC 3261 §8.1.1.6) and every proxy it
	// crosses takes one off and adds one Via (§16.6): a request reaching
	// vnum crossed at most 70 proxies and carries at most 71 Via values.
	// Route and Record-Route grow by hop alike; nothing else repeats that
	// often.
	maxSameHeader = 71
	// maxHeaderFields bounds the header fields of a message in all: a
	// carrier's INVITE has 10 to 30, and one that crossed 70 proxies that
	// each added a Via and a Record-Route about 170.
	maxHeaderFields = 256
	// maxBody bounds a message's body: the largest body vnum reads is an
	// SDP offer.
	maxBody = media.MaxSDPBytes
)

// overLimit is why a message is refused: the limit and its response.
type overLimit struct {
	limit   string // vnum_sip_over_limit_total's label
	status  int
	warning string // the Warning's text (RFC 3261 §20.43)
}

var (
	overHeaderFields = overLimit{limitHeaderFields, sip.StatusMessageTooLarge,
		"more than " + strconv.Itoa(maxHeaderFields) + " header fields"}
	overSameHeader = overLimit{limitSameHeader, sip.StatusMessageTooLarge,
		"more than " + strconv.Itoa(maxSameHeader) + " header fields of one name"}
	overBody = overLimit{limitBody, sip.StatusRequestEntityTooLarge,
		"body over " + strconv.Itoa(maxBody) + " bytes"}
	overMediaLines = overLimit{limitMediaLines, sip.StatusNotAcceptableHere,
		"more than " + strconv.Itoa(media.MaxMediaLines) + " media descriptions"}
)

// overLimitMsg is the line a message refused for a limit gets.
const overLimitMsg = "SIP message over a limit refused"

// withinLimits checks a request sipgo parsed against vnum's limits; the
// guard asks it before anything else. A request over one is answered
// with the limit's status and Warning (an ACK is dropped: it is never
// answered), reported, and its transaction ended at once, so that
// neither the request nor the response stays in memory for the
// transaction's timers; a retransmission is refused again.
func (h *hostileInput) withinLimits(req *sip.Request, tx sip.ServerTransaction) bool {
	over, ok := requestOverLimit(req)
	if !ok {
		return true
	}
	h.countOverLimit(over.limit)
	var src netip.Addr
	if ap, err := netip.ParseAddrPort(req.Source()); err == nil {
		src = ap.Addr()
	}
	h.report(src, overLimitMsg, "transport", strings.ToLower(req.Transport()),
		"method", knownMethod(string(req.Method)), "limit", over.limit, "status", over.status)
	if req.IsAck() || tx == nil || isNilTx(tx) {
		return false
	}
	respond(h.log, req, tx, over.status, warning(over.warning))
	tx.Terminate()
	return false
}

// requestOverLimit returns the first of vnum's limits req is over.
func requestOverLimit(req *sip.Request) (overLimit, bool) {
	hdrs := req.Headers()
	if len(hdrs) > maxSameHeader {
		// Only a message with this many fields can have too many of one
		// name: the common case counts nothing. Vias first, as
		// rawOverLimit finds them.
		if len(req.GetHeaders("Via")) > maxSameHeader {
			return overSameHeader, true
		}
		if len(hdrs) > maxHeaderFields {
			return overHeaderFields, true
		}
		seen := make(map[string]int)
		for _, h := range hdrs {
			name := strings.ToLower(h.Name())
			if long, ok := compactNames[name]; ok {
				name = long
			}
			seen[name]++
			if seen[name] > maxSameHeader {
				return overSameHeader, true
			}
		}
	}
	body := req.Body()
	if len(body) > maxBody {
		return overBody, true
	}
	if media.MediaLines(body) > media.MaxMediaLines {
		return overMediaLines, true
	}
	return overLimit{}, false
}

// compactNames are the compact forms (RFC 3261 §7.3.3) of the header
// names sipgo keeps as written.
var compactNames = map[string]string{
	"v": "via", "f": "from", "t": "to", "m": "contact", "i": "call-id", "l": "content-length",
	"c": "content-type", "e": "content-encoding", "k": "supported", "s": "subject",
}

// warning is a Warning header of vnum's (code 399, miscellaneous) with a
// text vnum wrote.
func warning(text string) sip.Header {
	return sip.NewHeader("Warning", `399 vnum "`+text+`"`)
}

// knownMethod is a request's method for a log line: a method vnum knows,
// or "other" (a method token is the peer's to choose).
func knownMethod(m string) string {
	switch sip.RequestMethod(m) {
	case sip.INVITE, sip.ACK, sip.CANCEL, sip.BYE, sip.OPTIONS, sip.INFO, sip.UPDATE, sip.REGISTER,
		sip.MESSAGE, sip.PRACK, sip.SUBSCRIBE, sip.NOTIFY, sip.REFER, sip.PUBLISH:
		return m
	}
	return "other"
}

// splitName reports whether sipgo parses a header of this name into one
// header per comma-separated value, so that each value costs a header
// (Via, Contact, Route, Record-Route), and whether it is Via.
func splitName(name []byte) (split, via bool) {
	switch len(name) {
	case 1:
		c := name[0] | 0x20
		return c == 'v' || c == 'm', c == 'v'
	case 3:
		via = bytes.EqualFold(name, []byte("via"))
		return via, via
	}
	return bytes.EqualFold(name, []byte("contact")) || bytes.EqualFold(name, []byte("route")) ||
		bytes.EqualFold(name, []byte("record-route")), false
}

var (
	crlfcrlf = []byte("\r\n\r\n")
	newline  = []byte("\n")
	comma    = []byte(",")
	colon    = []byte(":")
)

// rawOverLimit checks the header fields of a whole message, as a UDP
// datagram holds one, before sipgo parses it: the header fields sipgo
// would make of it (a comma-separated Via, Contact, Route or Record-Route
// value each) and its Via values. Lines and commas are counted first,
// fast; only a message with more of them than a limit is read line by
// line.
func rawOverLimit(msg []byte) (overLimit, bool) {
	head := msg
	if i := bytes.Index(msg, crlfcrlf); i >= 0 {
		head = msg[:i+2]
	}
	if bytes.Count(head, newline)+bytes.Count(head, comma) <= maxSameHeader {
		return overLimit{}, false
	}
	fields, vias := 0, 0
	split, via := false, false
	rest := head
	for first := true; len(rest) > 0; first = false {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		switch {
		case first:
			continue // the start line
		case len(line) == 0:
			rest = nil // the end of the header section
			continue
		case line[0] == ' ' || line[0] == '\t':
			// A folded line goes on with the field above (§7.3.1).
			if split {
				n := bytes.Count(line, comma)
				fields += n
				if via {
					vias += n
				}
			}
		default:
			name, value, _ := bytes.Cut(line, colon)
			split, via = splitName(bytes.TrimSpace(name))
			n := 1
			if split {
				n += bytes.Count(value, comma)
			}
			fields += n
			if via {
				vias += n
			}
		}
		if vias > maxSameHeader {
			return overSameHeader, true
		}
		if fields > maxHeaderFields {
			return overHeaderFields, true
		}
	}
	return overLimit{}, false
}

// refuseAtRead refuses, on a UDP socket's reading goroutine, a datagram
// whose header fields are over vnum's limits (rawOverLimit), before sipgo
// parses it: true means it was answered or dropped and sipgo never sees
// it. A request gets 513 and a Warning statelessly (RFC 3261 §8.2.7),
// built from its start line, Via (up to maxSameHeader values), From, To,
// Call-ID and CSeq alone, with a To tag whose ACK the socket drops
// (frontdoor.StatelessTag); anything else is dropped.
func (h *hostileInput) refuseAtRead(conn *net.UDPConn, data []byte, from *net.UDPAddr) bool {
	over, ok := rawOverLimit(data)
	if !ok {
		return false
	}
	h.countOverLimit(over.limit)
	method := "other"
	if bytes.HasPrefix(data, []byte("SIP/")) {
		method = "response"
	} else if sp := bytes.IndexByte(data, ' '); sp > 0 && sp <= len("SUBSCRIBE") {
		method = knownMethod(string(data[:sp]))
	}
	h.report(from.AddrPort().Addr(), overLimitMsg, "transport", "udp", "method", method,
		"limit", over.limit, "status", over.status)
	msg, err := h.parser.ParseSIP(statelessCore(data))
	if err != nil {
		return true
	}
	req, ok := msg.(*sip.Request)
	if !ok || req.IsAck() || req.Via() == nil || req.From() == nil || req.To() == nil || req.CallID() == nil || req.CSeq() == nil {
		return true
	}
	res := sip.NewResponseFromRequest(req, over.status, reasonPhrase(over.status), nil)
	if to := res.To(); to != nil && !req.To().Params.Has("tag") {
		// sipgo made a tag of its own: the one of a stateless UAS is the
		// same for every retransmission (RFC 3261 §8.2.7).
		if to.Params == nil {
			to.Params = sip.NewParams()
		}
		to.Params.Add("tag", frontdoor.StatelessTag(req))
	}
	res.AppendHeader(warning(over.warning))
	if _, err := conn.WriteToUDP([]byte(res.String()), from); err != nil {
		h.log.Debug("stateless refusal", "status", over.status, "error", err)
	}
	return true
}

// statelessCore is the part of a message a stateless response is built
// from: its start line and its Via (up to maxSameHeader values), From,
// To, Call-ID and CSeq lines, in full or compact form. Folded lines are
// left out with the rest.
func statelessCore(msg []byte) []byte {
	head := msg
	if i := bytes.Index(msg, crlfcrlf); i >= 0 {
		head = msg[:i+2]
	}
	out := make([]byte, 0, 1024)
	vias := 0
	for first := true; len(head) > 0; first = false {
		line := head
		if i := bytes.IndexByte(head, '\n'); i >= 0 {
			line, head = head[:i], head[i+1:]
		} else {
			head = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if first {
			out = append(append(out, line...), "\r\n"...)
			continue
		}
		name, value, ok := bytes.Cut(line, colon)
		if !ok || len(name) == 0 || name[0] == ' ' || name[0] == '\t' {
			continue
		}
		name = bytes.TrimSpace(name)
		switch strings.ToLower(string(name)) {
		case "via", "v":
			room := maxSameHeader - vias
			if room <= 0 {
				continue
			}
			values := bytes.SplitN(value, comma, room+1)
			if len(values) > room {
				values = values[:room]
			}
			vias += len(values)
			out = append(append(append(out, "Via:"...), bytes.Join(values, comma)...), "\r\n"...)
		case "from", "f", "to", "t", "call-id", "i", "cseq":
			out = append(append(out, line...), "\r\n"...)
		}
	}
	return append(out, "\r\n"...)
}
