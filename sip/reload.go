package sip

import (
	"net/netip"
	"time"

	"github.com/vnum/vnum/config"
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
	NumberFormat   config.NumberFormat
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
