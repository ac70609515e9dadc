package sip

import (
	"context"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/vnum/vnum/callrec"
	"github.com/vnum/vnum/sip/frontdoor"
)

// Registration is where an account's softphone registered.
type Registration = callrec.Registration

// registration is a stored Registration as signalling uses it: the
// Contact parsed back into a URI.
type registration struct {
	contact sip.Uri
	// source is where the REGISTER came from: requests go there, so that a
	// softphone behind NAT is reached (its Contact may be a private address).
	source string
}

// registrar is vnum's registrar for merchant accounts (RFC 3261 §10):
// where each account's softphone registered, kept in the store so that
// every node reaches a softphone registered with any of them, and how a
// call back reaches it.
type registrar struct {
	store   Registrations
	timeout storeTimeout
	now     func() time.Time
	// tcp keeps a registration's TCP or TLS connection open while it lasts.
	tcp *frontdoor.TCPGuard
	log *slog.Logger
}

// lookup returns the registration of an account, if still valid. A store
// that fails or does not answer within store.timeout counts as no
// registration, logged, so that a call back goes on to its other targets
// or its prompt.
func (r *registrar) lookup(ctx context.Context, user string) (registration, bool) {
	ctx, cancel := r.timeout.ctx(ctx)
	defer cancel()
	stored, ok, err := r.store.LookupRegistration(ctx, user, r.now())
	if err != nil {
		r.log.Error("looking up a registration", "error", err)
		return registration{}, false
	}
	if !ok {
		return registration{}, false
	}
	var reg registration
	if err := sip.ParseUri(stored.Contact, &reg.contact); err != nil {
		r.log.Warn("stored registration has a bad Contact", "error", err)
		return registration{}, false
	}
	reg.source = stored.Source
	return reg, true
}

// Registration intervals (RFC 3261 §10.3): vnum grants what the phone asks
// for up to maxExpires, and refuses intervals under minExpires with 423.
const (
	defaultExpires = 3600
	maxExpires     = 3600
	minExpires     = 60
)

// register answers the REGISTER of the account acct (authorized): the
// Contact's expires parameter, else the Expires header, else an hour; 0
// or "*" removes the registration. A store error is returned, with what
// was being done, for the caller to refuse the request with; anything
// else is answered here.
func (r *registrar) register(req *sip.Request, tx sip.ServerTransaction, acct Account) (string, error) {
	expires := defaultExpires
	if h := req.GetHeader("Expires"); h != nil {
		v, err := strconv.Atoi(strings.TrimSpace(h.Value()))
		if err != nil || v < 0 {
			respond(r.log, req, tx, sip.StatusBadRequest, warning("bad Expires"))
			return "", nil
		}
		expires = v
	}
	c := req.Contact()
	if c != nil && c.Params != nil {
		if raw, ok := c.Params.Get("expires"); ok {
			v, err := strconv.Atoi(strings.TrimSpace(raw))
			if err != nil || v < 0 {
				respond(r.log, req, tx, sip.StatusBadRequest, warning("bad expires parameter"))
				return "", nil
			}
			expires = v
		}
	}
	res := sip.NewResponseFromRequest(req, sip.StatusOK, reasonPhrase(sip.StatusOK), nil)
	ctx, cancel := r.timeout.ctx(context.Background())
	defer cancel()
	switch {
	case c == nil:
		// A query: answer with the current binding.
		if reg, ok := r.lookup(ctx, acct.User); ok {
			res.AppendHeader(&sip.ContactHeader{Address: reg.contact})
		}
	case strings.TrimSpace(c.Value()) == "*" || expires == 0:
		if err := r.store.DeleteRegistration(ctx, acct.User); err != nil {
			return "removing a registration", err
		}
		r.tcp.Pin(req, 0)
		res.AppendHeader(sip.NewHeader("Expires", "0"))
	case expires < minExpires:
		respond(r.log, req, tx, sip.StatusIntervalToBrief, sip.NewHeader("Min-Expires", strconv.Itoa(minExpires)))
		return "", nil
	default:
		expires = min(expires, maxExpires)
		reg := Registration{User: acct.User, Contact: c.Address.String(), Source: req.Source(),
			Transport: strings.ToLower(req.Transport()), Expires: r.now().Add(time.Duration(expires) * time.Second)}
		if err := r.store.SaveRegistration(ctx, reg); err != nil {
			return "saving a registration", err
		}
		// vnum reaches the phone over the connection it registered on: the
		// connection stays open while the registration lasts, however
		// rarely the phone sends a keepalive.
		r.tcp.Pin(req, time.Duration(expires)*time.Second)
		ch := c.Clone()
		ch.Params = sip.NewParams()
		ch.Params.Add("expires", strconv.Itoa(expires))
		res.AppendHeader(ch)
		res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	}
	if err := tx.Respond(res); err != nil {
		r.log.Debug("register respond", "error", err)
	}
	return "", nil
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
