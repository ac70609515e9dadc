package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
)

// The values of a few keys are strings with a syntax of their own. They are
// read here only, by Validate to name a bad value and by whoever uses the
// value, so that what Validate accepts is what the rest of vnum gets.

// ErrPortRange reports a malformed port range.
var ErrPortRange = errors.New("want FIRST-LAST, an even first port, 1024 <= FIRST < LAST <= 65535")

// ParsePortRange parses "20000-29999" into its bounds. The first port must
// be even, because RTP takes the even port and RTCP the odd one above it
// (RFC 3550 §11).
func ParsePortRange(s string) (lo, hi int, err error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return 0, 0, ErrPortRange
	}
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || lo < 1024 || hi > 65535 || lo >= hi || lo%2 != 0 {
		return 0, 0, ErrPortRange
	}
	return lo, hi, nil
}

// Addr returns media.ip as an address.
func (m Media) Addr() (netip.Addr, error) {
	a, err := netip.ParseAddr(m.IP)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("media.ip: %q is not an IP address", m.IP)
	}
	return a, nil
}

// PortRange returns the first and last port of media.rtp_ports.
func (m Media) PortRange() (lo, hi int, err error) {
	return ParsePortRange(m.RTPPorts)
}

// ErrCIDR reports a source network that is neither a CIDR nor an address.
var ErrCIDR = errors.New("not a CIDR (e.g. 203.0.113.0/24)")

// ParsePrefix parses a source network of trunk.inbound_cidrs: a CIDR
// ("203.0.113.0/24"), or a single address ("198.51.100.7"), which stands
// for itself alone (/32, or /128 for IPv6).
func ParsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q: %w", s, ErrCIDR)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// InboundPrefixes returns trunk.inbound_cidrs parsed (see ParsePrefix).
func (t Trunk) InboundPrefixes() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(t.InboundCIDRs))
	for _, s := range t.InboundCIDRs {
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("trunk.inbound_cidrs: %w", err)
		}
		out = append(out, p)
	}
	return out, nil
}

// ErrLogLevel reports a log level that is not one of the four.
var ErrLogLevel = errors.New("want debug, info, warn or error")

// ParseLogLevel returns the slog level that log.level names: debug, info,
// warn or error, in lower case as the file writes them.
func ParseLogLevel(s string) (slog.Level, error) {
	switch s {
	case LogDebug:
		return slog.LevelDebug, nil
	case LogInfo:
		return slog.LevelInfo, nil
	case LogWarn:
		return slog.LevelWarn, nil
	case LogError:
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%w, got %q", ErrLogLevel, s)
}
