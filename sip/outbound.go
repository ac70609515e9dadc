package sip

import (
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// netipZero is the remote of a stream whose peer address is not known yet.
var netipZero netip.AddrPort

// formatNumber renders B (stored as E.164) for leg B's Request-URI per
// trunk.number_format: national (13800138000) or e164 (+8613800138000).
// A mainland fixed line is dialled nationally with its trunk prefix 0
// before the area code (+861062345678 → 01062345678); mobile numbers,
// which all start with 1, have none.
func formatNumber(e164, format string) string {
	if format == "e164" {
		return e164
	}
	if national, ok := strings.CutPrefix(e164, "+86"); ok {
		if strings.HasPrefix(national, "1") && len(national) == 11 {
			return national
		}
		return "0" + national
	}
	return strings.TrimPrefix(e164, "+")
}

// legBTarget is where one INVITE of leg B goes: the trunk (B, or a PSTN
// caller on a callback) or a registered softphone (a callback).
type legBTarget struct {
	uri   sip.Uri // Request-URI
	to    sip.Uri // To
	dest  string  // where to send it, when not to the Request-URI (NAT)
	trunk bool    // a number on the carrier trunk
	// username and password answer the trunk's digest challenges.
	username, password string
}

// dialable reports whether user is a phone number as leg B's Request-URI
// carries it: digits, optionally after a "+". Numbers are validated where
// they enter vnum; this is the last check before one goes on the wire.
func dialable(user string) bool {
	digits := strings.TrimPrefix(user, "+")
	return digits != "" && len(digits) <= 15 && strings.Trim(digits, "0123456789") == ""
}

// trunkTarget sends number to the carrier trunk.
func (s *Server) trunkTarget(tc *trunkConf, number string) legBTarget {
	user := sanitizeHeaderValue(number)
	uri := sip.Uri{Scheme: "sip", User: user, Host: tc.uri.Host, Port: tc.uri.Port}
	if tr, ok := tc.uri.UriParams.Get("transport"); ok && tr != "" {
		uri.UriParams = sip.NewParams()
		uri.UriParams.Add("transport", tr)
	}
	return legBTarget{uri: uri, to: sip.Uri{Scheme: "sip", User: user, Host: tc.uri.Host}, dest: s.trunkDest(), trunk: true,
		username: tc.username, password: tc.password}
}

// contactTarget sends to a softphone's registered contact, at the address
// its REGISTER came from. The Request-URI is rebuilt from the parts of the
// registered Contact that routing needs, each checked: a Contact is the
// phone's own text, and URI headers ("?X-Foo=…") or parameters in it would
// otherwise become part of the INVITE (RFC 3261 §19.1.5 does not allow
// headers in a Request-URI at all).
func contactTarget(user string, reg registration) legBTarget {
	c := reg.contact
	uri := sip.Uri{Scheme: "sip", User: user, Host: c.Host, Port: c.Port}
	if strings.EqualFold(c.Scheme, "sips") {
		uri.Scheme = "sips"
	}
	if uriToken(c.User) {
		uri.User = c.User
	}
	if !validHost(c.Host) {
		// Only the REGISTER's source address can route this one.
		uri.Host, uri.Port = "invalid", 0
	}
	if c.UriParams != nil {
		if tr, ok := c.UriParams.Get("transport"); ok {
			switch strings.ToLower(tr) {
			case "udp", "tcp", "tls":
				uri.UriParams = sip.NewParams()
				uri.UriParams.Add("transport", strings.ToLower(tr))
			}
		}
	}
	return legBTarget{uri: uri, to: sip.Uri{Scheme: "sip", User: user, Host: uri.Host}, dest: reg.source}
}

// uriToken reports whether s may stand as the user part of a URI vnum
// sends: letters, digits and the marks of RFC 3261 §25.1 "unreserved"
// and "+", nothing that starts parameters, headers or escapes.
func uriToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("-_.!~*'()+", r):
		default:
			return false
		}
	}
	return true
}

// validHost reports whether h is an IP address or a host name (RFC 3261
// §25.1 hostname: labels of letters, digits and "-").
func validHost(h string) bool {
	if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || strings.Trim(label, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" {
			return false
		}
	}
	return true
}

// legBRequest builds a fresh INVITE showing X as the caller: nothing of
// leg A is in it (README "SIP behaviour in short").
func (c *call) legBRequest(x string, t legBTarget, callID string) *sip.Request {
	s := c.s
	x = sanitizeHeaderValue(x)
	req := sip.NewRequest(sip.INVITE, *t.uri.Clone())
	if t.dest != "" {
		req.SetDestination(t.dest)
	}
	if t.uri.UriParams != nil {
		if tr, ok := t.uri.UriParams.Get("transport"); ok && tr != "" {
			req.SetTransport(strings.ToUpper(tr))
		}
	}
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: x, Host: s.host}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: t.to, Params: sip.NewParams()})
	cid := sip.CallIDHeader(callID)
	req.AppendHeader(&cid)
	req.AppendHeader(sip.NewHeader("P-Asserted-Identity", "<sip:"+x+"@"+s.host+">"))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.AppendHeader(sip.NewHeader("Allow", allowed))
	req.SetBody(c.b.sdp.body)
	return req
}

// dialB places leg B to the consignee: a fresh INVITE to the trunk with
// Request-URI = B and From/P-Asserted-Identity = X, so that the consignee
// never sees the caller (README "SIP behaviour in short").
func (c *call) dialB(t Target) (endReason, int) {
	tc := c.s.trunk.Load()
	if tc.host == "" {
		c.log.Error("no outbound trunk configured")
		if r := c.play("unavailable"); r != reasonNone {
			return r, sip.StatusServiceUnavailable
		}
		return reasonTrunkFailed, sip.StatusServiceUnavailable
	}
	return c.dial(t.Host, []legBTarget{c.s.trunkTarget(tc, formatNumber(t.Consignee, tc.numberFormat))})
}
