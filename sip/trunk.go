package sip

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/vnum/vnum/config"
)

// trunk is the carrier trunk: as configured now (a reload swaps it whole),
// where its host resolves, the INVITEs of leg B it takes, and its health
// as its keepalives say (keepalive.go).
type trunk struct {
	conf     atomic.Pointer[trunkConf]
	resolver *net.Resolver // nil: the system's
	log      *slog.Logger

	dnsMu   sync.Mutex
	addr    string    // trunk.outbound's host resolved, IP:port
	addrFor string    // the host addr is for
	addrAt  time.Time // when addr was looked up

	// The keepalives: the client and host they are sent with, for as long
	// as the server serves (serveCtx), and the watch of the trunk they
	// report to.
	keepMu   sync.Mutex
	client   *sipgo.Client
	host     string
	serveCtx context.Context
	stopKeep context.CancelFunc
	health   *trunkWatch
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
	numberFormat config.NumberFormat
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

// newTrunk is the trunk of r.
func newTrunk(r Reloadable, resolver *net.Resolver, log *slog.Logger) (*trunk, error) {
	tc, err := newTrunkConf(r)
	if err != nil {
		return nil, err
	}
	t := &trunk{resolver: resolver, log: log, health: newTrunkWatch()}
	t.conf.Store(tc)
	return t, nil
}

// reload takes the trunk of r: new calls use it at once. A new outbound
// trunk starts its keepalives afresh.
func (t *trunk) reload(r Reloadable) error {
	tc, err := newTrunkConf(r)
	if err != nil {
		return err
	}
	old := t.conf.Swap(tc)
	if old.outbound != tc.outbound || old.keepalive != tc.keepalive {
		if old.outbound != tc.outbound {
			t.keepMu.Lock()
			t.health = newTrunkWatch()
			t.keepMu.Unlock()
		}
		t.restartKeepalive()
	}
	return nil
}

// source reports whether ip is in trunk.inbound_cidrs as configured now:
// the carrier's addresses, whose INVITEs are PSTN calls.
func (t *trunk) source(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range t.conf.Load().inbound {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// target sends number (E.164) to the carrier trunk, in
// trunk.number_format; false when no outbound trunk is configured.
func (t *trunk) target(number string) (legBTarget, bool) {
	tc := t.conf.Load()
	if tc.host == "" {
		return legBTarget{}, false
	}
	user := sanitizeHeaderValue(formatNumber(number, tc.numberFormat))
	uri := sip.Uri{Scheme: "sip", User: user, Host: tc.uri.Host, Port: tc.uri.Port}
	if tr, ok := tc.uri.UriParams.Get("transport"); ok && tr != "" {
		uri.UriParams = sip.NewParams()
		uri.UriParams.Add("transport", tr)
	}
	return legBTarget{uri: uri, to: sip.Uri{Scheme: "sip", User: user, Host: tc.uri.Host}, dest: t.dest(), trunk: true,
		username: tc.username, password: tc.password}, true
}

// formatNumber renders B (stored as E.164) for leg B's Request-URI per
// trunk.number_format: national (13800138000) or e164 (+8613800138000).
// A mainland fixed line is dialled nationally with its trunk prefix 0
// before the area code (+861062345678 → 01062345678); mobile numbers,
// which all start with 1, have none.
func formatNumber(e164 string, format config.NumberFormat) string {
	if format == config.NumberFormatE164 {
		return e164
	}
	if national, ok := strings.CutPrefix(e164, "+86"); ok {
		if strings.HasPrefix(national, "1") && len(national) == 11 {
			return national
		}
		return "0" + national
	}
	return strings.TrimPrefix(e164, "+")
}

// trunkDNSRefresh is how long a lookup of trunk.outbound's host is used.
const trunkDNSRefresh = time.Minute

// dest is where leg B INVITEs to the trunk are sent when trunk.outbound
// names a host rather than an IP: the address vnum itself resolved with
// Options.Resolver (SRV _sip._udp or _sip._tcp first when the URI has no
// port, RFC 3263 §4.2, then A/AAAA), refreshed each trunkDNSRefresh; the
// last good address is kept while DNS fails. It is "" for an IP, which
// sipgo takes as it is.
func (t *trunk) dest() string {
	tc := t.conf.Load()
	if tc.host == "" {
		return ""
	}
	if _, err := netip.ParseAddr(strings.Trim(tc.host, "[]")); err == nil {
		return ""
	}
	t.dnsMu.Lock()
	defer t.dnsMu.Unlock()
	if t.addr != "" && t.addrFor == tc.outbound && time.Since(t.addrAt) < trunkDNSRefresh {
		return t.addr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addr, err := t.resolve(ctx, tc)
	if err != nil {
		t.log.Error("resolving trunk.outbound", "host", tc.host, "error", err)
		if t.addrFor != tc.outbound {
			return "" // the last good address was the old trunk's
		}
		return t.addr
	}
	t.addr, t.addrFor, t.addrAt = addr, tc.outbound, time.Now()
	return addr
}

// resolve looks tc's host up (dest).
func (t *trunk) resolve(ctx context.Context, tc *trunkConf) (string, error) {
	r := t.resolver
	if r == nil {
		r = net.DefaultResolver
	}
	host, port := tc.host, tc.uri.Port
	transport, _ := tc.uri.UriParams.Get("transport")
	transport = strings.ToLower(transport)
	if port == 0 {
		proto := "udp"
		if transport == "tcp" || transport == "tls" {
			proto = "tcp"
		}
		if _, srvs, err := r.LookupSRV(ctx, "sip", proto, host); err == nil && len(srvs) > 0 {
			host, port = strings.TrimSuffix(srvs[0].Target, "."), int(srvs[0].Port)
		} else {
			port = sip.DefaultUdpPort
			if transport == "tls" || tc.uri.IsEncrypted() {
				port = sip.DefaultTlsPort
			}
		}
	}
	ips, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return "", err
	}
	if len(ips) == 0 {
		return "", fmt.Errorf("no address for %s", host)
	}
	ip := ips[0]
	for _, a := range ips {
		if a.Unmap().Is4() {
			ip = a.Unmap()
			break
		}
	}
	return netip.AddrPortFrom(ip, uint16(port)).String(), nil
}
