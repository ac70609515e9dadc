package sip

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
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
	var gl *guardedListener
	for _, l := range e.srv.listeners {
		if l.network == "tcp" {
			gl = l.closer.(*guardedListener)
		}
	}
	require.NotNil(t, gl)
	require.NoError(t, gl.Listener.Close()) // behind the server's back
	require.Eventually(t, func() bool { return e.srv.Serving() != nil }, 5*time.Second, 5*time.Millisecond)
	err := e.srv.Serving()
	require.ErrorContains(t, err, "tcp listener "+e.srv.Addr("tcp")+" stopped")
	require.False(t, e.srv.Listening())
	require.Contains(t, e.logs.String(), `level=ERROR msg="sip listener stopped; the node is not ready until it restarts" network=tcp`)
}

// flakyListener fails its first accepts with err, then accepts for real.
type flakyListener struct {
	net.Listener
	err   error
	fails atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, l.err
	}
	return l.Listener.Accept()
}

// TestAcceptBackoff: accept errors that pass (out of descriptors, a
// connection aborted in the queue) are waited out, not handed to sipgo,
// whose accept loop would end; an error that does not pass is handed up,
// and Close ends a backoff at once.
func TestAcceptBackoff(t *testing.T) {
	t.Parallel()
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	for name, err := range map[string]error{
		"EMFILE":       emfile,
		"ENFILE":       &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ENFILE)},
		"ECONNABORTED": &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ECONNABORTED)},
		"EPROTO":       &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EPROTO)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			inner, lerr := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, lerr)
			flaky := &flakyListener{Listener: inner, err: err}
			flaky.fails.Store(5)
			logs := &lockedBuffer{}
			g := newTCPGuard(Options{}, nil, testLogger(logs))
			ln := g.listener(flaky, "tcp")
			t.Cleanup(func() { _ = ln.Close() })
			c, derr := net.Dial("tcp", inner.Addr().String())
			require.NoError(t, derr)
			t.Cleanup(func() { _ = c.Close() })
			got, aerr := ln.Accept()
			require.NoError(t, aerr)
			require.Equal(t, c.LocalAddr().String(), got.RemoteAddr().String())
			require.NoError(t, got.Close())
			require.Equal(t, 1, strings.Count(logs.String(), "sip tcp accept failed; retrying"), "one line for the burst:\n%s", logs)
		})
	}
	t.Run("an error that does not pass", func(t *testing.T) {
		t.Parallel()
		inner, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		broken := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EINVAL)}
		flaky := &flakyListener{Listener: inner, err: broken}
		flaky.fails.Store(1)
		ln := newTCPGuard(Options{}, nil, testLogger(&lockedBuffer{})).listener(flaky, "tcp")
		t.Cleanup(func() { _ = ln.Close() })
		_, err = ln.Accept()
		require.ErrorIs(t, err, syscall.EINVAL)
	})
	t.Run("Close during a backoff", func(t *testing.T) {
		t.Parallel()
		inner, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		flaky := &flakyListener{Listener: inner, err: emfile}
		flaky.fails.Store(1 << 30)
		ln := newTCPGuard(Options{}, nil, testLogger(&lockedBuffer{})).listener(flaky, "tcp")
		done := make(chan error, 1)
		go func() {
			_, err := ln.Accept()
			done <- err
		}()
		time.Sleep(50 * time.Millisecond)
		require.NoError(t, ln.Close())
		select {
		case err := <-done:
			require.ErrorIs(t, err, net.ErrClosed)
		case <-time.After(5 * time.Second):
			t.Fatal("Accept did not return after Close")
		}
	})
}

// TestPassingAcceptError pins which accept errors are waited out.
func TestPassingAcceptError(t *testing.T) {
	t.Parallel()
	for errno, want := range map[syscall.Errno]bool{
		syscall.EMFILE: true, syscall.ENFILE: true, syscall.ECONNABORTED: true, syscall.ECONNRESET: true,
		syscall.ENOBUFS: true, syscall.ENOMEM: true, syscall.EAGAIN: true, syscall.EINTR: true,
		syscall.EPROTO: true, syscall.ENETUNREACH: true, syscall.EPERM: true,
		syscall.EINVAL: false, syscall.EBADF: false, syscall.ENOTSOCK: false,
	} {
		err := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
		require.Equal(t, want, passingAcceptError(err), "%v", errno)
	}
	require.False(t, passingAcceptError(errors.New("something else")))
	require.False(t, passingAcceptError(net.ErrClosed))
}

// TestFDBudget pins how the descriptors are shared: media first (two
// sockets a pair, or four a call under calls.max_active), a reserve, the
// rest for TCP, never under tcpFloor.
func TestFDBudget(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		limit, pairs, maxActive int
		want                    fdBudget
	}{
		"default range, big limit":  {1 << 20, 5000, 0, fdBudget{limit: 1 << 20, media: 10000, tcp: 1<<20 - 10000 - fdReserve}},
		"max_active bounds media":   {65536, 5000, 100, fdBudget{limit: 65536, media: 400, tcp: 65536 - 400 - fdReserve}},
		"max_active above range":    {65536, 50, 1000, fdBudget{limit: 65536, media: 100, tcp: 65536 - 100 - fdReserve}},
		"ephemeral ports":           {4096, 0, 0, fdBudget{limit: 4096, media: 0, tcp: 4096 - fdReserve}},
		"ephemeral with max_active": {4096, 0, 10, fdBudget{limit: 4096, media: 40, tcp: 4096 - 40 - fdReserve}},
		"small limit":               {512, 50, 0, fdBudget{limit: 512, media: 100, tcp: 512 - 100 - fdReserve}},
		"too small":                 {1024, 5000, 0, fdBudget{limit: 1024, media: 10000, tcp: tcpFloor, short: true}},
		"unknown limit":             {0, 5000, 0, fdBudget{media: 10000, tcp: tcpUnknownLimit}},
	} {
		require.Equal(t, tc.want, newFDBudget(tc.limit, tc.pairs, tc.maxActive), name)
	}
}

// TestBudgetLogged: the budget is logged once at Listen and sets the cap.
func TestBudgetLogged(t *testing.T) {
	t.Parallel()
	e := tcpEnv(t, nil)
	logs := e.logs.String()
	require.Equal(t, 1, strings.Count(logs, `msg="descriptor budget"`), logs)
	limit, err := nofileLimit()
	if err != nil {
		t.Skipf("no descriptor limit here: %v", err)
	}
	require.Contains(t, logs, "nofile="+itoa(limit)+" media=0 reserve=256 tcp_max="+itoa(limit-fdReserve)+
		" tcp_per_source=64 tcp_idle=1m0s tcp_message_timeout=10s")
	require.Equal(t, limit-fdReserve, e.srv.TCPConnectionLimit())
}
