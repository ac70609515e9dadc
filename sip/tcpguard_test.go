package sip

import (
	"context"
	"errors"
	"math"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/sip/sipua"
)

// tcpPeer is a raw TCP connection to vnum's SIP listener, as an attacker
// or a phone holds one; it notes when vnum closes it.
type tcpPeer struct {
	t      testing.TB
	conn   net.Conn
	local  netip.AddrPort
	closed chan struct{}

	mu  sync.Mutex
	got strings.Builder
}

// dialTCP connects to srv's TCP listener from the loopback address ip.
func dialTCP(t testing.TB, srv *Server, ip string) *tcpPeer {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", srv.Addr("tcp"))
	if errors.Is(err, syscall.ECONNRESET) {
		// vnum refused the connection before the dial returned.
		p := &tcpPeer{t: t, closed: make(chan struct{})}
		close(p.closed)
		return p
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	p := &tcpPeer{t: t, conn: conn, local: conn.LocalAddr().(*net.TCPAddr).AddrPort(), closed: make(chan struct{})}
	go func() {
		defer close(p.closed)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			p.mu.Lock()
			p.got.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return p
}

// closedWithin reports whether vnum closes the connection within d.
func (p *tcpPeer) closedWithin(d time.Duration) bool {
	select {
	case <-p.closed:
		return true
	case <-time.After(d):
		return false
	}
}

// isOpen reports whether the connection is still open (vnum has not
// closed it).
func (p *tcpPeer) isOpen() bool {
	select {
	case <-p.closed:
		return false
	default:
		return true
	}
}

// write sends raw bytes; an error means vnum has closed the connection.
func (p *tcpPeer) write(s string) error {
	_, err := p.conn.Write([]byte(s))
	return err
}

// options sends an OPTIONS and waits for vnum's 200 on the connection.
func (p *tcpPeer) options() {
	p.t.Helper()
	branch := "z9hG4bK" + randHex()
	msg := framed("OPTIONS sip:vnum@"+p.conn.RemoteAddr().String()+" SIP/2.0", []string{
		"Via: SIP/2.0/TCP " + p.local.String() + ";branch=" + branch,
		"Max-Forwards: 70", "From: <sip:probe@" + p.local.String() + ">;tag=" + randHex(),
		"To: <sip:vnum@" + p.conn.RemoteAddr().String() + ">", "Call-ID: " + randHex(), "CSeq: 1 OPTIONS",
		"Content-Length: 0"}, "")
	require.NoError(p.t, p.write(msg))
	require.Eventually(p.t, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return strings.Contains(p.got.String(), branch) && strings.Contains(p.got.String(), "SIP/2.0 200")
	}, 5*time.Second, 5*time.Millisecond, "no 200 for the OPTIONS")
}

// tcpEnv is a test vnum whose TCP windows and caps are tweak's.
func tcpEnv(t *testing.T, tweak func(*Options)) *testEnv {
	t.Helper()
	return newTestEnv(t, "answer", tweak)
}

// TestTCPSlowloris: a connection that dribbles a request a byte at a time
// and never finishes it is closed once the message window is over, and
// counted as slow; one that says nothing at all is closed as idle; a
// phone beside them is served throughout.
func TestTCPSlowloris(t *testing.T) {
	t.Parallel()
	e := tcpEnv(t, func(o *Options) { o.TCPMessageTimeout = 500 * time.Millisecond })
	slow := dialTCP(t, e.srv, "127.0.0.1")
	silent := dialTCP(t, e.srv, "127.0.0.1")
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		msg := optionsMsg
		for i := 0; ; i = (i + 1) % len(msg) {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if slow.write(msg[i:i+1]) != nil {
				return
			}
			if i == len(msg)-5 {
				i = 0 // never the end of the headers
			}
		}
	}()
	require.True(t, slow.closedWithin(20*time.Second), "the slowloris is still connected")
	require.True(t, silent.closedWithin(20*time.Second), "the silent connection is still open")
	refused := e.srv.TCPRefused()
	require.Equal(t, int64(1), refused["slow"], "%v", refused)
	require.Equal(t, int64(1), refused["idle"], "%v", refused)
	phone := dialTCP(t, e.srv, "127.0.0.1")
	phone.options()
	require.Contains(t, e.logs.String(), `msg="sip tcp connection closed" reason=slow source=127.0.0.1`)
}

// TestTCPKeepalives: a connection that sends CRLF keepalives (RFC 5626)
// outlives many idle windows; one that sends a message and then nothing
// is closed once the idle window is over.
func TestTCPKeepalives(t *testing.T) {
	t.Parallel()
	const idle = 1500 * time.Millisecond
	e := tcpEnv(t, func(o *Options) { o.TCPIdle, o.TCPMessageTimeout = idle, 500*time.Millisecond })
	alive := dialTCP(t, e.srv, "127.0.0.1")
	quiet := dialTCP(t, e.srv, "127.0.0.1")
	alive.options()
	quiet.options()
	deadline := time.Now().Add(4 * idle)
	for time.Now().Before(deadline) {
		require.NoError(t, alive.write("\r\n\r\n"), "the connection with keepalives was closed")
		time.Sleep(idle / 6)
	}
	require.True(t, quiet.closedWithin(10*time.Second), "the quiet connection is still open")
	require.True(t, alive.isOpen(), "the connection with keepalives was closed")
	alive.options()
	require.Equal(t, int64(1), e.srv.TCPRefused()["idle"])
	require.Equal(t, 1, e.srv.TCPConnections())
}

// TestTCPCallAndRegistrationKeepConnection: a call whose caller came over
// TCP keeps the connection open past the idle window though the phone
// sends nothing (vnum's BYE would go over it); so does a registration
// over TCP, until it is removed.
func TestTCPCallAndRegistrationKeepConnection(t *testing.T) {
	t.Parallel()
	const idle = time.Second
	e := tcpEnv(t, func(o *Options) { o.TCPIdle, o.TCPMessageTimeout = idle, 500*time.Millisecond })
	tcp := netip.MustParseAddrPort(e.srv.Addr("tcp"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var d *sipgo.DialogClientSession
	retryBind(t, func(phone *sipua.Softphone) error {
		phone.Transport = "tcp"
		var err error
		d, err = phone.Call(ctx, tcp, testHost+"-"+testExt)
		return err
	})
	nextSession(t, e.carrier)
	time.Sleep(3 * idle)
	require.Equal(t, 1, e.srv.TCPConnections(), "the call's connection was closed")
	require.NoError(t, d.Bye(ctx))
	e.router.waitEnded(t)
	require.Eventually(t, func() bool { return e.srv.TCPConnections() == 0 }, 10*time.Second, 10*time.Millisecond,
		"the connection outlived its call by more than the idle window")

	register := func(phone *sipua.Softphone, expires int) error {
		t.Helper()
		uri := sip.Uri{Scheme: "sip", Host: tcp.Addr().String(), Port: int(tcp.Port()), UriParams: sip.NewParams()}
		uri.UriParams.Add("transport", "tcp")
		req := sip.NewRequest(sip.REGISTER, uri)
		aor := sip.Uri{Scheme: "sip", User: "alice", Host: tcp.Addr().String()}
		req.AppendHeader(&sip.ToHeader{Address: aor, Params: sip.NewParams()})
		from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
		from.Params.Add("tag", sip.GenerateTagN(12))
		req.AppendHeader(from)
		req.AppendHeader(&phone.Contact)
		req.AppendHeader(sip.NewHeader("Expires", itoa(expires)))
		res, err := phone.Client.Do(ctx, req)
		if err != nil {
			return err
		}
		if res.StatusCode == 401 {
			res, err = phone.Client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: "alice", Password: "s3cret"})
			require.NoError(t, err)
		}
		require.Equal(t, 200, res.StatusCode)
		return nil
	}
	var phone *sipua.Softphone
	retryBind(t, func(p *sipua.Softphone) error {
		phone = p
		return register(p, 3600)
	})
	time.Sleep(3 * idle)
	require.Equal(t, 1, e.srv.TCPConnections(), "the registration's connection was closed")
	require.NoError(t, register(phone, 0))
	require.Eventually(t, func() bool { return e.srv.TCPConnections() == 0 }, 10*time.Second, 10*time.Millisecond,
		"the connection outlived its registration by more than the idle window")
}

// retryBind runs try with a fresh softphone "alice" until it does not
// fail for a port in use: sipgo binds a phone's TCP connection to its UDP
// port, which another test's TCP connection may hold (in TIME_WAIT).
func retryBind(t *testing.T, try func(*sipua.Softphone) error) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		phone, err := sipua.NewSoftphone("alice", "s3cret", nil)
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

// TestTCPCaps: a source gets TCPPerSource connections and the next one is
// closed at once, while another address still connects; the trunk's
// sources are not capped per source; past TCPMaxConns every source is
// refused until a connection closes. Each refusal is counted.
func TestTCPCaps(t *testing.T) {
	t.Parallel()
	trunk := netip.MustParsePrefix("127.0.0.3/32")
	e := tcpEnv(t, func(o *Options) {
		o.TCPPerSource, o.TCPMaxConns = 3, 8
		o.InboundCIDRs = []netip.Prefix{trunk}
	})
	var held []*tcpPeer
	for range 3 {
		p := dialTCP(t, e.srv, "127.0.0.1")
		p.options()
		held = append(held, p)
	}
	over := dialTCP(t, e.srv, "127.0.0.1")
	require.True(t, over.closedWithin(5*time.Second), "the fourth connection from one source stays open")
	other := dialTCP(t, e.srv, "127.0.0.2")
	other.options()
	for range 4 {
		p := dialTCP(t, e.srv, "127.0.0.3")
		p.options()
	}
	require.Equal(t, 8, e.srv.TCPConnections())
	full := dialTCP(t, e.srv, "127.0.0.4")
	require.True(t, full.closedWithin(5*time.Second), "a connection past the total cap stays open")
	refused := e.srv.TCPRefused()
	require.Equal(t, int64(1), refused["per_source"], "%v", refused)
	require.Equal(t, int64(1), refused["total"], "%v", refused)

	// One leaves; a newcomer gets its place.
	require.NoError(t, held[0].conn.Close())
	require.Eventually(t, func() bool { return e.srv.TCPConnections() == 7 }, 5*time.Second, 5*time.Millisecond)
	dialTCP(t, e.srv, "127.0.0.4").options()
	require.Equal(t, 8, e.srv.TCPConnectionLimit())
	logs := e.logs.String()
	require.Contains(t, logs, `msg="sip tcp connection refused" reason=per_source source=127.0.0.1 open=3 limit=3`)
	require.Contains(t, logs, `msg="sip tcp connection refused" reason=total source=127.0.0.4 open=8 limit=8`)
}

// TestTCPListenerStopReported: a listener that ends while the server is
// not closing is logged at ERROR and makes Serving name it, so that
// /readyz stops saying ready.
func TestTCPListenerStopReported(t *testing.T) {
	t.Parallel()
	e := tcpEnv(t, nil)
	require.NoError(t, e.srv.Serving())
	// The listener the front door's guard wraps, behind the server's back.
	var inner net.Listener
	for _, l := range e.srv.listeners {
		if l.network == "tcp" {
			inner, _ = reflect.ValueOf(l.closer).Elem().FieldByName("Listener").Interface().(net.Listener)
		}
	}
	require.NotNil(t, inner)
	require.NoError(t, inner.Close())
	require.Eventually(t, func() bool { return e.srv.Serving() != nil }, 5*time.Second, 5*time.Millisecond)
	err := e.srv.Serving()
	require.ErrorContains(t, err, "tcp listener "+e.srv.Addr("tcp")+" stopped")
	require.False(t, e.srv.Listening())
	require.Contains(t, e.logs.String(), `level=ERROR msg="sip listener stopped; the node is not ready until it restarts" network=tcp`)
}

// TestBudgetLogged: the budget is logged once at Listen and sets the cap.
func TestBudgetLogged(t *testing.T) {
	t.Parallel()
	e := tcpEnv(t, nil)
	logs := e.logs.String()
	require.Equal(t, 1, strings.Count(logs, `msg="descriptor budget"`), logs)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("no descriptor limit here: %v", err)
	}
	limit := int(min(lim.Cur, math.MaxInt32))
	const reserve = 256 // the front door's
	require.Contains(t, logs, "nofile="+itoa(limit)+" media=0 reserve=256 tcp_max="+itoa(limit-reserve)+
		" tcp_per_source=64 tcp_idle=1m0s tcp_message_timeout=10s")
	require.Equal(t, limit-reserve, e.srv.TCPConnectionLimit())
}
