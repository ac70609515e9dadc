package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/sip/frontdoor"
	"github.com/vnum/vnum/sip/sipua"
)

// TCP as an attacker meets it (README "SIP behaviour in short"): a flood
// of connections against a vnum whose descriptor limit is low, a
// slowloris, idle connections and the per-source cap, all against the
// built binary.

// floodNofile is the descriptor limit of the flooded vnum (prlimit).
const floodNofile = 512

// tcpPing is a CRLF keepalive (RFC 5626 §4.4.1), which sipgo answers with
// a CRLF.
const tcpPing = "\r\n\r\n"

// attacker holds raw TCP connections to vnum's SIP port from loopback
// addresses of its own (127.0.0.x), keeping them alive with pings.
type attacker struct {
	t    *testing.T
	addr string

	mu   sync.Mutex
	held []net.Conn
}

// connect opens a connection from ip and pings: it reports whether vnum
// kept the connection (it answered the ping) or refused it (reset or
// closed it at once). A connection that neither answers nor closes fails
// the test: vnum no longer accepts.
func (a *attacker) connect(ip string) bool {
	a.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", a.addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return false
	}
	require.NoError(a.t, err, "connecting from %s", ip)
	if _, err := c.Write([]byte(tcpPing)); err != nil {
		_ = c.Close()
		return false
	}
	require.NoError(a.t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		a.t.Fatalf("a connection from %s neither answered nor closed within 5 s", ip)
	}
	if err != nil || n == 0 {
		_ = c.Close()
		return false
	}
	require.NoError(a.t, c.SetReadDeadline(time.Time{}))
	a.mu.Lock()
	a.held = append(a.held, c)
	a.mu.Unlock()
	return true
}

// keepAlive pings every held connection every period until ctx ends.
func (a *attacker) keepAlive(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.mu.Lock()
		for _, c := range a.held {
			_, _ = c.Write([]byte(tcpPing)) // a closed one shows in the counts
		}
		a.mu.Unlock()
	}
}

// leave closes every held connection.
func (a *attacker) leave() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.held {
		_ = c.Close()
	}
	a.held = nil
}

// callWithMedia places a call from caller to dial at vnum, requires RTP
// both ways through the relay and hangs up.
func callWithMedia(ctx context.Context, t *testing.T, caller *sipua.Softphone, carrier *sipua.Carrier, vnum netip.AddrPort, dial string, ssrc uint32, when string) error {
	t.Helper()
	d, err := caller.Call(ctx, vnum, dial)
	if err != nil {
		return err
	}
	invite, err := carrier.NextInvite(20 * time.Second)
	require.NoError(t, err, when)
	_, err = carrier.NextSession(20 * time.Second)
	require.NoError(t, err, "vnum never bridged the call %s", when)
	aMedia, err := sipua.MediaAddr(d.InviteResponse.Body())
	require.NoError(t, err)
	bMedia, err := sipua.MediaAddr(invite.Body())
	require.NoError(t, err)
	requireTalking(ctx, t, caller, carrier, aMedia, bMedia, ssrc, when)
	require.NoError(t, d.Bye(ctx), when)
	return nil
}

// requireReady requires /readyz to answer 200.
func requireReady(t *testing.T, e *env, when string) {
	t.Helper()
	e.waitAdmin("/readyz", 5*time.Second, func(status int, _ string) bool { return status == http.StatusOK }, "ready "+when)
}

// TestTCPFlood: a vnum under `prlimit --nofile=512` gets connections from
// one loopback address after another until it refuses them, and fresh
// ones keep coming. vnum holds exactly its budget of connections (the
// descriptor limit less media.rtp_ports' sockets and the reserve, as its
// start line says), refuses the rest by source and in total, and keeps
// taking UDP calls with media all the while, /readyz saying ready. Once
// the attacker leaves, a call over TCP goes through at once.
func TestTCPFlood(t *testing.T) {
	t.Parallel()
	prlimit := requireTool(t, "prlimit")
	e := newEnv(t, "")
	e.launcher = []string{prlimit, fmt.Sprintf("--nofile=%d:%d", floodNofile, floodNofile)}
	carrier, err := sipua.NewCarrier(sipua.CarrierOptions{Mode: "answer"}, nil)
	require.NoError(t, err)
	t.Cleanup(carrier.Close)
	e.setYAML(fmt.Sprintf("sip:127.0.0.1:%d;", e.carrierPort), fmt.Sprintf("sip:127.0.0.1:%d;", carrier.Addr.Port()))
	// The callers are PSTN callers on the carrier's trunk (127.0.0.1); the
	// attacker is elsewhere.
	e.setYAML("inbound_cidrs: []", "inbound_cidrs: [127.0.0.1/32]")
	b := e.seed()
	e.startServe()
	vnum := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(e.sipPort))
	dial := hostNumber + "-" + b.Extension
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The budget, logged once at start: 512 less two sockets per RTP pair
	// of the env's 100 ports, less the reserve.
	budget := regexp.MustCompile(`"msg":"descriptor budget".*"nofile":512,"media":100,"reserve":256,"tcp_max":(\d+)`).
		FindStringSubmatch(e.serve.logTail(200))
	require.NotNil(t, budget, "no budget line for nofile=512:\n%s", e.serve.logTail(40))
	limit, err := strconv.Atoi(budget[1])
	require.NoError(t, err)
	require.Equal(t, floodNofile-100-256, limit)
	require.Equal(t, float64(limit), metrics(t, e)["vnum_sip_tcp_connections_limit"])

	// The flood: each address until vnum refuses it, then the next.
	a := &attacker{t: t, addr: vnum.String()}
	t.Cleanup(a.leave)
	kept := 0
	for src := 10; kept < limit; src++ {
		ip := fmt.Sprintf("127.0.0.%d", src)
		n := 0
		for a.connect(ip) {
			n++
		}
		require.LessOrEqual(t, n, frontdoor.DefaultTCPPerSource, "connections kept from %s", ip)
		kept += n
	}
	require.Equal(t, limit, kept, "vnum keeps its budget of connections")
	require.False(t, a.connect("127.0.0.100"), "a connection past the budget from a fresh source")
	keepCtx, stopKeeping := context.WithCancel(ctx)
	defer stopKeeping()
	go a.keepAlive(keepCtx, 5*time.Second)
	// Fresh connections keep coming while the calls are made.
	churned := make(chan int, 1)
	go func() {
		n := 0
		defer func() { churned <- n }()
		for keepCtx.Err() == nil {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.101")}, Timeout: time.Second}
			if c, err := d.DialContext(keepCtx, "tcp", vnum.String()); err == nil {
				_ = c.Close()
			}
			n++
			time.Sleep(5 * time.Millisecond)
		}
	}()

	m := metrics(t, e)
	t.Logf("during the flood: %v connections open, refused %v per source, %v in total",
		m["vnum_sip_tcp_connections"], m[`vnum_sip_tcp_refused_total{reason="per_source"}`], m[`vnum_sip_tcp_refused_total{reason="total"}`])
	require.Equal(t, float64(limit), m["vnum_sip_tcp_connections"])
	require.GreaterOrEqual(t, m[`vnum_sip_tcp_refused_total{reason="per_source"}`], float64(limit/frontdoor.DefaultTCPPerSource))
	require.GreaterOrEqual(t, m[`vnum_sip_tcp_refused_total{reason="total"}`], 1.0)
	requireReady(t, e, "during the flood")
	for i := range 3 {
		caller, err := sipua.NewSoftphone(pstnCaller, "not-used-on-the-trunk", nil)
		require.NoError(t, err)
		t.Cleanup(caller.Close)
		require.NoError(t, callWithMedia(ctx, t, caller, carrier, vnum, dial, uint32(0xF100+16*i), fmt.Sprintf("UDP call %d during the flood", i+1)))
	}
	requireReady(t, e, "during the flood, after the calls")
	stopKeeping()
	t.Logf("fresh connections tried during the calls: %d", <-churned)

	// The attacker leaves; TCP serves again at once.
	a.leave()
	waitMetric(t, e, "vnum_sip_tcp_connections", 10*time.Second, func(v float64) bool { return v == 0 },
		"the attacker's connections are gone")
	left := time.Now()
	retryTCPPhone(t, func(phone *sipua.Softphone) error {
		phone.Transport = "tcp"
		return callWithMedia(ctx, t, phone, carrier, vnum, dial, 0xF200, "TCP call after the flood")
	})
	t.Logf("a TCP call went through %s after the flood", time.Since(left).Round(time.Millisecond))
	requireReady(t, e, "after the flood")
	e.waitCDRs(4, 20*time.Second)
	require.NotContains(t, e.serve.logTail(100000), "too many open files")
}

// retryTCPPhone runs try with a fresh PSTN softphone until it does not fail
// for a port in use: sipgo binds a phone's TCP connection to the phone's
// UDP port, which another test's connection may hold.
func retryTCPPhone(t *testing.T, try func(*sipua.Softphone) error) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		phone, err := sipua.NewSoftphone(pstnCaller, "not-used-on-the-trunk", nil)
		require.NoError(t, err)
		t.Cleanup(phone.Close)
		err = try(phone)
		if err == nil {
			return
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == 5 {
			require.NoError(t, err)
		}
	}
}

// TestTCPSlowAndIdle: a slowloris sending a byte a second is closed once
// vnum's message window (10 s) is over; a connection that never says
// anything is closed as well; one that sends CRLF keepalives stays; one
// source gets DefaultTCPPerSource connections and no more, while another
// address still connects. Each is counted by reason.
func TestTCPSlowAndIdle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	e.startServe()
	addr := fmt.Sprintf("127.0.0.1:%d", e.sipPort)
	dial := func(ip string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	// closed reports (on the channel) when vnum closes c.
	closed := func(c net.Conn) <-chan time.Time {
		ch := make(chan time.Time, 1)
		go func() {
			buf := make([]byte, 256)
			for {
				if _, err := c.Read(buf); err != nil {
					ch <- time.Now()
					return
				}
			}
		}()
		return ch
	}
	start := time.Now()
	slow, silent, alive := dial("127.0.0.10"), dial("127.0.0.11"), dial("127.0.0.12")
	slowClosed, silentClosed, aliveClosed := closed(slow), closed(silent), closed(alive)
	go func() {
		msg := "OPTIONS sip:vnum@" + addr + " SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.10:5999;branch=z9hG4bK-slow\r\n"
		for i := 0; i < len(msg); i++ {
			if _, err := slow.Write([]byte{msg[i]}); err != nil {
				return
			}
			time.Sleep(time.Second)
		}
	}()
	stopPing := make(chan struct{})
	defer close(stopPing)
	go func() {
		for {
			if _, err := alive.Write([]byte(tcpPing)); err != nil {
				return
			}
			select {
			case <-stopPing:
				return
			case <-time.After(2 * time.Second):
			}
		}
	}()
	for name, ch := range map[string]<-chan time.Time{"slowloris": slowClosed, "silent connection": silentClosed} {
		select {
		case at := <-ch:
			t.Logf("vnum closed the %s after %s", name, at.Sub(start).Round(100*time.Millisecond))
		case <-time.After(40 * time.Second):
			t.Fatalf("vnum did not close the %s", name)
		}
	}
	select {
	case <-aliveClosed:
		t.Fatal("vnum closed the connection that sends keepalives")
	default:
	}

	// The per-source cap, from a source of its own.
	a := &attacker{t: t, addr: addr}
	t.Cleanup(a.leave)
	for range frontdoor.DefaultTCPPerSource {
		require.True(t, a.connect("127.0.0.13"), "a connection within the per-source cap")
	}
	require.False(t, a.connect("127.0.0.13"), "the connection past the per-source cap")
	require.True(t, a.connect("127.0.0.14"), "another address while 127.0.0.13 is at its cap")

	m := metrics(t, e)
	require.Equal(t, 1.0, m[`vnum_sip_tcp_refused_total{reason="slow"}`])
	require.Equal(t, 1.0, m[`vnum_sip_tcp_refused_total{reason="idle"}`])
	require.Equal(t, 1.0, m[`vnum_sip_tcp_refused_total{reason="per_source"}`])
	require.Equal(t, float64(frontdoor.DefaultTCPPerSource+2), m["vnum_sip_tcp_connections"], "the capped source's, the other address's and the one with keepalives")
	select {
	case <-aliveClosed:
		t.Fatal("vnum closed the connection that sends keepalives")
	default:
	}
	requireReady(t, e, "after the slowloris")
	require.Regexp(t, `"msg":"sip tcp connection closed".*"reason":"slow","source":"127.0.0.10"`, e.serve.logTail(200))
	require.Regexp(t, `"msg":"sip tcp connection refused".*"reason":"per_source","source":"127.0.0.13","open":64,"limit":64`, e.serve.logTail(200))
}
