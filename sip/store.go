package sip

import (
	"context"

	"github.com/emiago/sipgo/sip"

	"github.com/vnum/vnum/sip/frontdoor"
)

// storeCtx is the context of one store call made for a request or a call:
// a store that stalls must not hold a handler while SIP timers run, so
// every call is bounded by store.timeout (README "SIP behaviour in short": a store slower than
// that gets the new INVITE a 503 at once).
func (s *Server) storeCtx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, s.opts.StoreTimeout)
}

// refuseStoreError answers a request whose store lookup failed: 503 with
// Retry-After, counted as store_slow, when the store is short
// (frontdoor.StoreShort); 500 for a fault of the store (a missing table,
// a broken query), logged as an error.
func (s *Server) refuseStoreError(req *sip.Request, tx sip.ServerTransaction, what string, err error) {
	if !frontdoor.StoreShort(err) {
		s.log.Error(what, "error", err)
		s.refuse(req, tx, err)
		return
	}
	s.log.Warn(what+": store too slow or unavailable", "error", err, "store_timeout_ms", s.opts.StoreTimeout.Milliseconds())
	s.refuse(req, tx, frontdoor.StoreError(err))
}
