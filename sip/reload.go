package sip

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Reloadable is the part of the options a running server takes anew when
// the operator reloads the configuration: the security limits and the
// carrier trunk. New calls use them at once; calls in progress keep what
// they started with.
type Reloadable struct {
	// AuthFailures within a minute block a source for BlockFor.
	AuthFailures int
	BlockFor     time.Duration
	// InviteRate is security.invite_rate (0: no limit).
	InviteRate int
	// InvalidExtensions is security.invalid_extensions (0: no limit).
	InvalidExtensions int

	TrunkOutbound  string
	TrunkKeepalive time.Duration
	TrunkUsername  string
	TrunkPassword  string
	InboundCIDRs   []netip.Prefix
	NumberFormat   string
}

// reloadable is the Reloadable part of o.
func (o Options) reloadable() Reloadable {
	return Reloadable{
		AuthFailures: o.AuthFailures, BlockFor: o.BlockFor,
		InviteRate: o.InviteRate, InvalidExtensions: o.InvalidExtensions,
		TrunkOutbound: o.TrunkOutbound, TrunkKeepalive: o.TrunkKeepalive,
		TrunkUsername: o.TrunkUsername, TrunkPassword: o.TrunkPassword,
		InboundCIDRs: o.InboundCIDRs, NumberFormat: o.NumberFormat,
	}
}

// trunkConf is the carrier trunk as a call reads it: one value, swapped
// whole by a reload, so that a call never sees half of an old trunk and
// half of a new one.
type trunkConf struct {
	outbound     string  // trunk.outbound as configured
	uri          sip.Uri // parsed
	host         string  // "": no outbound trunk
	keepalive    time.Duration
	username     string
	password     string
	inbound      []netip.Prefix
	numberFormat string
}

func newTrunkConf(r Reloadable) (*trunkConf, error) {
	tc := &trunkConf{outbound: r.TrunkOutbound, keepalive: r.TrunkKeepalive,
		username: r.TrunkUsername, password: r.TrunkPassword,
		inbound: r.InboundCIDRs, numberFormat: r.NumberFormat}
	if r.TrunkOutbound != "" {
		if err := sip.ParseUri(r.TrunkOutbound, &tc.uri); err != nil {
			return nil, fmt.Errorf("trunk.outbound %q: %w", r.TrunkOutbound, err)
		}
		tc.host = tc.uri.Host
	}
	return tc, nil
}

// Reload applies r to the running server; on an error nothing changes.
// Counts kept so far (failed logins, INVITE rates, wrong extensions) go
// on under the new limits. A new trunk starts its keepalives afresh.
func (s *Server) Reload(r Reloadable) error {
	tc, err := newTrunkConf(r)
	if err != nil {
		return err
	}
	s.auth.setLimits(r.AuthFailures, r.BlockFor)
	s.door.SetInviteRate(r.InviteRate)
	s.walks.setLimit(r.InvalidExtensions)
	old := s.trunk.Swap(tc)
	if old.outbound != tc.outbound || old.keepalive != tc.keepalive {
		if old.outbound != tc.outbound {
			s.keepMu.Lock()
			s.trunkHealth = newTrunkWatch()
			s.keepMu.Unlock()
		}
		s.restartKeepalive()
	}
	return nil
}
