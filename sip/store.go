package sip

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"
)

// defaultStoreTimeout is store.timeout's default (vnum.example.yaml).
const defaultStoreTimeout = 2 * time.Second

// storeTimeout bounds one store read or write (store.timeout, vnum.example.yaml).
func (s *Server) storeTimeout() time.Duration {
	if s.opts.StoreTimeout > 0 {
		return s.opts.StoreTimeout
	}
	return defaultStoreTimeout
}

// storeCtx is the context of one store call made for a request or a call:
// a store that stalls must not hold a handler while SIP timers run, so
// every call is bounded by store.timeout (README "SIP behaviour in short": a store slower than
// that gets the new INVITE a 503 at once).
func (s *Server) storeCtx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, s.storeTimeout())
}

// storeShortage reports whether a store error means the store could not
// answer now: store.timeout passed, or the router marked it ErrStoreSlow
// (a restarting or unreachable PostgreSQL, a locked SQLite file). Such a
// store is a passing shortage to a caller, who should try again later;
// any other store error is a fault.
func storeShortage(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrStoreSlow)
}

// refuseStoreError answers a request whose store lookup failed: 503 with
// Retry-After, counted as store_slow (README "SIP behaviour in short"), when the store is short
// (storeShortage); 500 for a fault of the store (a missing table, a
// broken query), logged as an error.
func (s *Server) refuseStoreError(req *sip.Request, tx sip.ServerTransaction, what string, err error) {
	if !storeShortage(err) {
		s.log.Error(what, "error", err)
		s.refuse(req, tx, err)
		return
	}
	s.log.Warn(what+": store too slow or unavailable", "error", err, "store_timeout_ms", s.storeTimeout().Milliseconds())
	if !errors.Is(err, ErrStoreSlow) {
		err = fmt.Errorf("%w: %w", ErrStoreSlow, err)
	}
	s.refuse(req, tx, err)
}
