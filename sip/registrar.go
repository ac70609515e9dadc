package sip

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/vnum/vnum/callrec"
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

// lookupRegistration returns the registration of an account, if still
// valid. The store holds it (vnum.example.yaml: every node reaches a softphone
// registered with any of them); a store that fails or does not answer
// within store.timeout counts as no registration, logged, so that a call
// back goes on to its other targets or its prompt.
func (s *Server) lookupRegistration(ctx context.Context, user string) (registration, bool) {
	ctx, cancel := s.storeCtx(ctx)
	defer cancel()
	r, ok, err := s.router.LookupRegistration(ctx, user, s.opts.Now())
	if err != nil {
		s.log.Error("looking up a registration", "error", err)
		return registration{}, false
	}
	if !ok {
		return registration{}, false
	}
	var reg registration
	if err := sip.ParseUri(r.Contact, &reg.contact); err != nil {
		s.log.Warn("stored registration has a bad Contact", "error", err)
		return registration{}, false
	}
	reg.source = r.Source
	return reg, true
}

// Registered reports whether an account has a valid registration.
func (s *Server) Registered(user string) bool {
	_, ok := s.lookupRegistration(context.Background(), user)
	return ok
}

// Registration intervals (RFC 3261 §10.3): vnum grants what the phone asks
// for up to maxExpires, and refuses intervals under minExpires with 423.
const (
	defaultExpires = 3600
	maxExpires     = 3600
	minExpires     = 60
)

// onRegister is vnum's registrar for merchant accounts (README "SIP behaviour in short"): the
// Contact's expires parameter, else the Expires header, else an hour; 0 or
// "*" removes the registration.
func (s *Server) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	// Registration is for accounts: it always takes digest credentials.
	acct, _, ok := s.authorize(req, tx, false, false)
	if !ok {
		return
	}
	expires := defaultExpires
	if h := req.GetHeader("Expires"); h != nil {
		v, err := strconv.Atoi(strings.TrimSpace(h.Value()))
		if err != nil || v < 0 {
			s.respond(req, tx, 400, "Bad Request", sip.NewHeader("Warning", `399 vnum "bad Expires"`))
			return
		}
		expires = v
	}
	c := req.Contact()
	if c != nil && c.Params != nil {
		if raw, ok := c.Params.Get("expires"); ok {
			v, err := strconv.Atoi(strings.TrimSpace(raw))
			if err != nil || v < 0 {
				s.respond(req, tx, 400, "Bad Request", sip.NewHeader("Warning", `399 vnum "bad expires parameter"`))
				return
			}
			expires = v
		}
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	ctx, cancel := s.storeCtx(context.Background())
	defer cancel()
	switch {
	case c == nil:
		// A query: answer with the current binding.
		if reg, ok := s.lookupRegistration(ctx, acct.User); ok {
			res.AppendHeader(&sip.ContactHeader{Address: reg.contact})
		}
	case strings.TrimSpace(c.Value()) == "*" || expires == 0:
		if err := s.router.DeleteRegistration(ctx, acct.User); err != nil {
			s.refuseStoreError(req, tx, "removing a registration", err)
			return
		}
		s.tcp.Pin(req, 0)
		res.AppendHeader(sip.NewHeader("Expires", "0"))
	case expires < minExpires:
		s.respond(req, tx, 423, "Interval Too Brief", sip.NewHeader("Min-Expires", strconv.Itoa(minExpires)))
		return
	default:
		expires = min(expires, maxExpires)
		reg := Registration{User: acct.User, Contact: c.Address.String(), Source: req.Source(),
			Transport: strings.ToLower(req.Transport()), Expires: s.opts.Now().Add(time.Duration(expires) * time.Second)}
		if err := s.router.SaveRegistration(ctx, reg); err != nil {
			s.refuseStoreError(req, tx, "saving a registration", err)
			return
		}
		// vnum reaches the phone over the connection it registered on: the
		// connection stays open while the registration lasts, however
		// rarely the phone sends a keepalive.
		s.tcp.Pin(req, time.Duration(expires)*time.Second)
		ch := c.Clone()
		ch.Params = sip.NewParams()
		ch.Params.Add("expires", strconv.Itoa(expires))
		res.AppendHeader(ch)
		res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	}
	if err := tx.Respond(res); err != nil {
		s.log.Debug("register respond", "error", err)
	}
}
