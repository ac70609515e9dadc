package sip

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"
)

// defaultStoreTimeout is store.timeout's default (SPEC §3).
const defaultStoreTimeout = 2 * time.Second

// storeTimeout bounds one store read or write (store.timeout, SPEC §3).
func (s *Server) storeTimeout() time.Duration {
	if s.opts.StoreTimeout > 0 {
		return s.opts.StoreTimeout
	}
	return defaultStoreTimeout
}

// storeCtx is the context of one store call made for a request or a call:
// a store that stalls must not hold a handler while SIP timers run, so
// every call is bounded by store.timeout (SPEC §8: a store slower than
// that gets the new INVITE a 503 at once).
func (s *Server) storeCtx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, s.storeTimeout())
}

// refuseStoreError answers a request whose store lookup failed: 503 with
// Retry-After, counted as store_slow (SPEC §8). A store that did not
// answer within store.timeout and one that cannot be reached at all (a
// restarting PostgreSQL, a locked SQLite file) are the same passing
// shortage to a caller, who should try again later, not a fault of the
// request.
func (s *Server) refuseStoreError(req *sip.Request, tx sip.ServerTransaction, what string, err error) {
	if errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn(what+": store too slow", "error", err, "store_timeout_ms", s.storeTimeout().Milliseconds())
	} else {
		s.log.Error(what+": store unavailable", "error", err)
	}
	s.refuse(req, tx, fmt.Errorf("%w: %w", ErrStoreSlow, err))
}
