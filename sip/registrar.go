package sip

import (
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// registrar keeps where each account's softphone registered (vnum is its
// registrar), so that calls can reach it.
type registrar struct {
	mu   sync.Mutex
	regs map[string]registration
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
	for u, reg := range r.regs {
		if now.After(reg.expires) {
			delete(r.regs, u)
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
