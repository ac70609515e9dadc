package events

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
)

// ErrPrivate reports a webhook whose host is, or resolves to, a loopback,
// private, link-local or otherwise internal address while
// events.allow_private is off: vnum must not be made to post into its own
// network (the cloud's metadata service, the admin API, a database).
var ErrPrivate = errors.New("loopback or private address")

// Lookup resolves a host name to its addresses.
type Lookup func(ctx context.Context, host string) ([]netip.Addr, error)

// defaultLookup resolves with the system's resolver.
func defaultLookup(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// internal lists the ranges that are not the public Internet and that
// netip's own predicates do not name: shared address space (carrier NAT),
// "this network", IETF protocol assignments, benchmarking, the reserved
// class E and its broadcast, and IPv6's discard, documentation and
// NAT64-local prefixes.
var internal = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// Private reports whether ip is an address a webhook may not reach unless
// events.allow_private: loopback, private (RFC 1918, fc00::/7),
// link-local (169.254.0.0/16 with the cloud metadata services,
// fe80::/10), unspecified, multicast, or one of the internal ranges. An
// IPv4 address mapped into IPv6 is judged as the IPv4 one.
func Private(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return true
	}
	for _, p := range internal {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// CheckURL checks that a webhook URL's host may be reached: unless
// allowPrivate, a host that is a private address (Private), or a name
// any of whose addresses is one, is refused with ErrPrivate, and a name
// that does not resolve is refused too (a typo). Delivery checks again,
// on the address it dials: a name that later points inside is refused
// then.
func CheckURL(ctx context.Context, rawURL string, allowPrivate bool, lookup Lookup) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Hostname() == "" {
		return fmt.Errorf("webhook url %q: want http:// or https:// and a host", rawURL)
	}
	if allowPrivate {
		return nil
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		if Private(ip) {
			return fmt.Errorf("webhook url: host %s is a %w (events.allow_private is off)", host, ErrPrivate)
		}
		return nil
	}
	if lookup == nil {
		lookup = defaultLookup
	}
	ips, err := lookup(ctx, host)
	if err == nil && len(ips) == 0 {
		err = errors.New("no address")
	}
	if err != nil {
		return fmt.Errorf("webhook url: host %s does not resolve: %w", host, err)
	}
	for _, ip := range ips {
		if Private(ip) {
			return fmt.Errorf("webhook url: host %s resolves to %s, a %w (events.allow_private is off)", host, ip, ErrPrivate)
		}
	}
	return nil
}

// guardedDial returns a DialContext that resolves with lookup and dials
// the addresses one after the other, each checked where it matters: in
// the dialer's Control function, on the very address the socket is about
// to connect to, so that neither a name that changed since registration
// nor any trick of resolution reaches an internal address while
// allowPrivate() is false.
func guardedDial(d *net.Dialer, lookup Lookup, allowPrivate func() bool) func(ctx context.Context, network, addr string) (net.Conn, error) {
	guarded := *d
	guarded.Control = func(network, address string, _ syscall.RawConn) error {
		if allowPrivate() {
			return nil
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("dial %s: %w", address, err)
		}
		if Private(ap.Addr()) {
			return fmt.Errorf("dial %s: a %w (events.allow_private is off)", ap.Addr(), ErrPrivate)
		}
		return nil
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		var ips []netip.Addr
		if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
			ips = []netip.Addr{ip}
		} else if ips, err = lookup(ctx, host); err != nil {
			return nil, err
		}
		var errs []error
		for _, ip := range ips {
			c, err := guarded.DialContext(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
			if err == nil {
				return c, nil
			}
			errs = append(errs, err)
		}
		if len(errs) == 0 {
			return nil, fmt.Errorf("%s: no address", host)
		}
		return nil, errors.Join(errs...)
	}
}
