package frontdoor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Why the door refuses a new call: each is answered 503 with Retry-After
// (signalling's refusals table holds the status) and counted under its
// reason.
var (
	// ErrDraining refuses new calls while the server shuts down.
	ErrDraining = errors.New("server draining")
	// ErrStoreSlow refuses a call whose store could not answer now: slower
	// than store.timeout, or unreachable, locked or full (StoreShort).
	ErrStoreSlow = errors.New("store too slow")
	// ErrMaxActive refuses a new call while calls.max_active calls are
	// admitted.
	ErrMaxActive = errors.New("too many calls in progress")
	// ErrInviteRate refuses a new INVITE from a source over
	// security.invite_rate.
	ErrInviteRate = errors.New("too many INVITEs from this source")
	// ErrSaturated refuses a new call while SIP datagrams wait too long
	// to be read or too many INVITEs are still being set up: the process
	// or its store no longer keeps up.
	ErrSaturated = errors.New("server saturated")
	// ErrNoPorts refuses a new call while no two RTP port pairs are free.
	ErrNoPorts = errors.New("no free RTP port pair")
)

// The reasons overload refusals are counted under
// (vnum_calls_refused_total{reason}): each names what was short.
const (
	ReasonDraining   = "draining"    // SIGTERM: the server drains
	ReasonMaxActive  = "max_active"  // calls.max_active calls admitted
	ReasonRTPPorts   = "rtp_ports"   // no free RTP port pair for a call
	ReasonInviteRate = "invite_rate" // a source over security.invite_rate
	ReasonSaturated  = "saturated"   // SIP datagrams wait to be read, or too many INVITEs in setup
	ReasonStoreSlow  = "store_slow"  // a store that could not answer in store.timeout
)

// reasons are every reason, so that each series exists from the start.
var reasons = []string{ReasonDraining, ReasonMaxActive, ReasonRTPPorts,
	ReasonInviteRate, ReasonSaturated, ReasonStoreSlow}

// overloads maps each refusal of the door to the reason it is counted
// under.
var overloads = []struct {
	err    error
	reason string
}{
	{ErrNoPorts, ReasonRTPPorts},
	{ErrDraining, ReasonDraining},
	{ErrStoreSlow, ReasonStoreSlow},
	{ErrMaxActive, ReasonMaxActive},
	{ErrInviteRate, ReasonInviteRate},
	{ErrSaturated, ReasonSaturated},
}

// Overload returns the reason a refusal for err is counted under, or ""
// when err is no overload of vnum's (a bad request, a wrong password).
func Overload(err error) string {
	for _, o := range overloads {
		if errors.Is(err, o.err) {
			return o.reason
		}
	}
	return ""
}

// Count counts one new call refused for err, when err is an overload
// (Overload); any other refusal is not counted here.
func (d *Door) Count(err error) {
	if n, ok := d.refused[Overload(err)]; ok {
		n.Add(1)
	}
}

// Refused returns the new calls refused because vnum could not take one
// more call well, by reason (max_active, rtp_ports, invite_rate,
// saturated, store_slow, draining), for vnum_calls_refused_total. Every
// reason is present, zero or not.
func (d *Door) Refused() map[string]int64 {
	out := make(map[string]int64, len(d.refused))
	for r, n := range d.refused {
		out[r] = n.Load()
	}
	return out
}

// StoreShort reports whether a store error means the store could not
// answer now: store.timeout passed, or the store said ErrStoreSlow (a
// restarting or unreachable PostgreSQL, a locked or full SQLite file).
// Such a store is a passing shortage to a caller, who should try again
// later; any other store error is a fault. This is the one place vnum
// decides it.
func StoreShort(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrStoreSlow)
}

// StoreError is a store error as the refusal of a new call: wrapped in
// ErrStoreSlow (503 with Retry-After, counted as store_slow) when the
// store is short, err itself (500) when the store is at fault.
func StoreError(err error) error {
	if StoreShort(err) && !errors.Is(err, ErrStoreSlow) {
		return fmt.Errorf("%w: %w", ErrStoreSlow, err)
	}
	return err
}

// RetryAfterBusy is the Retry-After of a 503 for a passing shortage (the
// store slow, no free RTP port, the process saturated): soon, not at once.
const RetryAfterBusy = "5"

// RetryAfter is the Retry-After a final response of code carries (RFC
// 3261 §21.5.4): only a 503 of vnum's own has one, the drain timeout's
// while the server drains and a short one otherwise. trunkFailed says
// the 503 is the carrier's failure to reach B: that is not vnum out of
// service, and a Retry-After would make a proxy in front keep every call
// away from this node.
func (d *Door) RetryAfter(code int, trunkFailed bool) []sip.Header {
	switch {
	case code != sip.StatusServiceUnavailable, trunkFailed:
		return nil
	case d.draining.Load():
		return []sip.Header{d.drainRetryAfter()}
	}
	return []sip.Header{sip.NewHeader("Retry-After", RetryAfterBusy)}
}

// drainRetryAfter is the Retry-After of a 503 while draining: the drain
// timeout in whole seconds, rounded up and at least 1 (RFC 3261 §20.33),
// because vnum takes calls again at the earliest after a restart.
func (d *Door) drainRetryAfter() sip.Header {
	secs := max(int64((d.drainFor+time.Second-1)/time.Second), 1)
	return sip.NewHeader("Retry-After", strconv.FormatInt(secs, 10))
}
