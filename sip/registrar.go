package sip

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// registrar keeps where each account's softphone registered (vnum is its
// registrar), so that calls can reach it.
type registrar struct {
	mu      sync.Mutex
	regs    map[string]registration
	sweptAt time.Time
}

type registration struct {
	contact sip.Uri
	// source is where the REGISTER came from: requests go there, so that a
	// softphone behind NAT is reached (its Contact may be a private address).
	source  string
	expires time.Time
}

func newRegistrar() *registrar {
	return &registrar{regs: make(map[string]registration)}
}

func (r *registrar) add(user string, contact sip.Uri, source string, ttl time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	// Expired registrations go at most once a minute, not on every REGISTER.
	if now.Sub(r.sweptAt) > time.Minute {
		r.sweptAt = now
		for u, reg := range r.regs {
			if now.After(reg.expires) {
				delete(r.regs, u)
			}
		}
	}
	r.regs[user] = registration{contact: *contact.Clone(), source: source, expires: now.Add(ttl)}
}

func (r *registrar) remove(user string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.regs, user)
}

// lookup returns the registration of an account, if still valid.
func (r *registrar) lookup(user string) (registration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	reg, ok := r.regs[user]
	if !ok || time.Now().After(reg.expires) {
		return registration{}, false
	}
	return reg, true
}

// Registered reports whether an account has a valid registration.
func (s *Server) Registered(user string) bool {
	_, ok := s.regs.lookup(user)
	return ok
}

// Registration intervals (RFC 3261 §10.3): vnum grants what the phone asks
// for up to maxExpires, and refuses intervals under minExpires with 423.
const (
	defaultExpires = 3600
	maxExpires     = 3600
	minExpires     = 60
)

// onRegister is vnum's registrar for merchant accounts (SPEC §4): the
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
	switch {
	case c == nil:
		// A query: answer with the current binding.
		if reg, ok := s.regs.lookup(acct.User); ok {
			res.AppendHeader(&sip.ContactHeader{Address: reg.contact})
		}
	case strings.TrimSpace(c.Value()) == "*" || expires == 0:
		s.regs.remove(acct.User)
		res.AppendHeader(sip.NewHeader("Expires", "0"))
	case expires < minExpires:
		s.respond(req, tx, 423, "Interval Too Brief", sip.NewHeader("Min-Expires", strconv.Itoa(minExpires)))
		return
	default:
		expires = min(expires, maxExpires)
		s.regs.add(acct.User, c.Address, req.Source(), time.Duration(expires)*time.Second)
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
