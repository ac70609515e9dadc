package sip

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/sip/sipua"
)

// rawPeer speaks hand-written SIP to vnum over one socket, for input no
// well-behaved user agent would send.
type rawPeer struct {
	t       testing.TB
	network string
	udp     *net.UDPConn
	tcp     net.Conn
	to      *net.UDPAddr
	local   netip.AddrPort

	mu   sync.Mutex
	got  strings.Builder
	more chan struct{}
}

// newRawPeer opens a socket from local (an address on loopback, port 0 for
// any) to vnum's listener of network ("udp" or "tcp").
func newRawPeer(t testing.TB, srv *Server, network, local string) *rawPeer {
	t.Helper()
	p := &rawPeer{t: t, network: network, more: make(chan struct{}, 1)}
	switch network {
	case "udp":
		la, err := net.ResolveUDPAddr("udp", local)
		require.NoError(t, err)
		p.udp, err = net.ListenUDP("udp", la)
		require.NoError(t, err)
		p.to, err = net.ResolveUDPAddr("udp", srv.Addr("udp"))
		require.NoError(t, err)
		p.local = p.udp.LocalAddr().(*net.UDPAddr).AddrPort()
		t.Cleanup(func() { _ = p.udp.Close() })
		go p.read(p.udp)
	case "tcp":
		la, err := net.ResolveTCPAddr("tcp", local)
		require.NoError(t, err)
		d := net.Dialer{LocalAddr: la, Timeout: 5 * time.Second}
		p.tcp, err = d.Dial("tcp", srv.Addr("tcp"))
		require.NoError(t, err)
		p.local = p.tcp.LocalAddr().(*net.TCPAddr).AddrPort()
		t.Cleanup(func() { _ = p.tcp.Close() })
		go p.read(p.tcp)
	default:
		t.Fatalf("network %q", network)
	}
	return p
}

func (p *rawPeer) read(c net.Conn) {
	buf := make([]byte, 65536)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			p.mu.Lock()
			p.got.Write(buf[:n])
			p.mu.Unlock()
			select {
			case p.more <- struct{}{}:
			default:
			}
		}
		if err != nil {
			return
		}
	}
}

// send writes msg, in which {via} becomes a Via for this socket (with
// rport) and {branch} a fresh branch; lines end with CRLF and the
// Content-Length is left to the caller.
func (p *rawPeer) send(msg string) {
	p.t.Helper()
	via := "SIP/2.0/" + strings.ToUpper(p.network) + " " + p.local.String() + ";branch=z9hG4bK" + randHex() + ";rport"
	msg = strings.ReplaceAll(msg, "{via}", via)
	msg = strings.ReplaceAll(msg, "{local}", p.local.String())
	p.write([]byte(msg))
}

func (p *rawPeer) write(b []byte) {
	p.t.Helper()
	var err error
	if p.udp != nil {
		_, err = p.udp.WriteToUDP(b, p.to)
	} else {
		_, err = p.tcp.Write(b)
	}
	require.NoError(p.t, err)
}

var statusLine = regexp.MustCompile(`(?m)^SIP/2\.0 (\d{3}) `)

// statuses are the status codes of every response received so far.
func (p *rawPeer) statuses() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []int
	for _, m := range statusLine.FindAllStringSubmatch(p.got.String(), -1) {
		code, _ := strconv.Atoi(m[1])
		out = append(out, code)
	}
	return out
}

// received is everything received so far.
func (p *rawPeer) received() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.got.String()
}

// reset forgets what was received.
func (p *rawPeer) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got.Reset()
}

// final waits for a final response and returns its status, 0 if none came
// within d.
func (p *rawPeer) final(d time.Duration) int {
	p.t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		for _, code := range p.statuses() {
			if code >= 200 {
				return code
			}
		}
		select {
		case <-p.more:
		case <-deadline.C:
			return 0
		}
	}
}

func randHex() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// framed is a message as a phone sends it over TCP.
func framed(startLine string, headers []string, body string) string {
	return startLine + "\r\n" + strings.Join(headers, "\r\n") + "\r\n\r\n" + body
}

var (
	optionsMsg = framed("OPTIONS sip:vnum@127.0.0.1 SIP/2.0",
		[]string{"Via: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bK-1", "Max-Forwards: 70", "From: <sip:a@x>;tag=1",
			"To: <sip:vnum@127.0.0.1>", "Call-ID: c1", "CSeq: 1 OPTIONS", "Content-Length: 0"}, "")
	inviteBody = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n\r\n\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	inviteMsg  = framed("INVITE sip:17000000001@127.0.0.1 SIP/2.0",
		[]string{"Via: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bK-2", "From: <sip:a@x>;tag=2", "To: <sip:17000000001@127.0.0.1>",
			"Call-ID: c2", "CSeq: 1 INVITE", "Content-Type: application/sdp", "Content-Length: " + itoa(len(inviteBody))}, inviteBody)
)

// rawRequest is a minimal request from the raw peer: method, Request-URI
// user and extra header lines.
func rawRequest(method, ruri string, extra ...string) string {
	callID := randHex()
	lines := []string{
		method + " " + ruri + " SIP/2.0",
		"Via: {via}",
		"Max-Forwards: 70",
		"From: <sip:17100000000@{local}>;tag=" + randHex(),
		"To: <" + ruri + ">",
		"Call-ID: " + callID,
		"CSeq: 1 " + method,
		"Contact: <sip:raw@{local}>",
	}
	lines = append(lines, extra...)
	return strings.Join(lines, "\r\n") + "\r\nContent-Length: 0\r\n\r\n"
}

// requireAlive asserts vnum still answers an OPTIONS from a raw peer.
func requireAlive(t testing.TB, p *rawPeer) {
	t.Helper()
	p.reset()
	to := p.to.String()
	if p.tcp != nil {
		to = p.tcp.RemoteAddr().String()
	}
	p.send(rawRequest("OPTIONS", "sip:"+to))
	require.Equal(t, 200, p.final(5*time.Second), "vnum stopped answering")
}

// requireCallBridges places a genuine call (X-E dialled directly) and
// asserts the carrier is dialled, hears the caller, and the call ends with
// an answered CDR.
func (e *testEnv) requireCallBridges() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, talk := e.dialAndKey(ctx, testHost+"-"+testExt, "")
	nextInvite(e.t, e.carrier)
	nextSession(e.t, e.carrier)
	go talk()
	require.Greater(e.t, sipua.CountRTP(e.carrier.RTP, time.Second, 0xA11CE), 10, "carrier hears the caller")
	require.NoError(e.t, d.Bye(ctx))
	var cdr CDR
	for cdr.Disposition != "answered" {
		cdr = e.router.waitEnded(e.t)
	}
	e.waitNoCalls()
}

// TestInvalidUTF8DialledOverSocket: a Request-URI user with a byte that is
// not UTF-8 before ";eXt=" once panicked ParseDialled and ended vnum
// (issue 6). It gets a clean 404 over UDP and TCP, and vnum stays up.
func TestInvalidUTF8DialledOverSocket(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", func(o *Options) {
		// The raw peer's address is the trunk's, so no digest is asked first.
		o.InboundCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	})
	for _, network := range []string{"udp", "tcp"} {
		p := newRawPeer(t, e.srv, network, "127.0.0.2:0")
		p.send(rawRequest("INVITE", "sip:\xd1;eXt=@"+e.srv.Addr(network)))
		require.Contains(t, []int{404, 484}, p.final(5*time.Second), network)
		requireAlive(t, p)
	}
	e.requireCallBridges()
}

// panicRouter is a Router whose host-number lookup panics for one number
// and whose binding lookup panics for one extension: a bug in the store
// as vnum meets it mid-request and mid-call.
type panicRouter struct {
	*fakeRouter
	host, ext string
}

func (r panicRouter) IsHostNumber(ctx context.Context, x string) (bool, error) {
	if x == r.host {
		panic("store bug: host " + x)
	}
	return r.fakeRouter.IsHostNumber(ctx, x)
}

func (r panicRouter) Resolve(ctx context.Context, x, ext, merchant string) (Target, error) {
	if ext == r.ext {
		panic("store bug: extension " + ext)
	}
	return r.fakeRouter.Resolve(ctx, x, ext, merchant)
}

// TestPanicEndsOnlyItsRequest: a panic while a request is handled answers
// that request 500; a panic inside a call (answered, ports held, CDR open)
// ends that call through its end path; both are logged and counted, and a
// genuine call bridges afterwards.
func TestPanicEndsOnlyItsRequest(t *testing.T) {
	t.Parallel()
	e := newTestEnvRouter(t, sipua.CarrierOptions{Mode: "answer"}, nil, func(r *fakeRouter) Router {
		return panicRouter{fakeRouter: r, host: "17000000099", ext: "9999"}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Before the call: the INVITE's handler panics.
	_, err := e.phone.Call(ctx, e.vnum, "17000000099")
	var dr *sipgo.ErrDialogResponse
	require.ErrorAs(t, err, &dr)
	require.Equal(t, 500, dr.Res.StatusCode)
	require.EqualValues(t, 1, e.srv.Panics())

	// Inside the call: answered (the IVR), then the binding lookup panics.
	d, _ := e.dialAndKey(ctx, testHost, "9999")
	// vnum hangs up at once after its 2xx, so its BYE may reach the
	// softphone before the softphone's dialog is set up: look at the wire.
	callID := d.InviteRequest.CallID().Value()
	require.Eventually(t, func() bool {
		for _, m := range e.phone.Received() {
			if strings.HasPrefix(m, "BYE ") && strings.Contains(m, callID) {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond, "the caller gets a BYE")
	cdr := e.router.waitEnded(t)
	require.Equal(t, 500, cdr.SIPStatus)
	require.False(t, cdr.EndedAt.IsZero())
	e.waitNoCalls()
	require.EqualValues(t, 2, e.srv.Panics())
	require.Contains(t, e.logs.String(), "panic recovered")
	require.Contains(t, e.logs.String(), "panicRouter.IsHostNumber", "the log holds the panic's stack")
	require.Contains(t, e.logs.String(), "panicRouter.Resolve", "the log holds the panic's stack")

	e.requireCallBridges()
}

// TestVersionAndCSeqChecks: RFC 4475 (badvers) wants 505 for a
// SIP version vnum does not speak, (mismatch01) 400 for a CSeq
// method that is not the request's; sipgo's parser takes both.
func TestVersionAndCSeqChecks(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", nil)
	for _, network := range []string{"udp", "tcp"} {
		p := newRawPeer(t, e.srv, network, "127.0.0.1:0")
		target := "sip:" + e.srv.Addr(network)
		p.send(strings.Replace(rawRequest("OPTIONS", target), "OPTIONS "+target+" SIP/2.0", "OPTIONS "+target+" SIP/7.0", 1))
		require.Equal(t, 505, p.final(5*time.Second), network)
		require.Contains(t, p.received(), "SIP/2.0 505 Version Not Supported")
		require.NotContains(t, p.received(), "SIP/7.0")

		p.reset()
		p.send(strings.Replace(rawRequest("OPTIONS", target), "CSeq: 1 OPTIONS", "CSeq: 1 INVITE", 1))
		require.Equal(t, 400, p.final(5*time.Second), network)
		requireAlive(t, p)
	}
}

// TestLargeResponseOverUDP: an INVITE whose From has a 1,500-byte display
// name gets its 407 over UDP; sipgo used to refuse any message over 1,300
// bytes, so the caller heard nothing (RFC 3261 §18.2.2: a response follows
// the request's transport whatever its size).
func TestLargeResponseOverUDP(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "answer", nil)
	p := newRawPeer(t, e.srv, "udp", "127.0.0.1:0")
	name := strings.Repeat("Merchant ", 1500/9)
	req := rawRequest("INVITE", "sip:"+testHost+"@"+e.srv.Addr("udp"))
	req = strings.Replace(req, "From: <sip:17100000000@{local}>", `From: "`+name+`" <sip:alice@{local}>`, 1)
	require.Greater(t, len(req), 1500)
	p.send(req)
	require.Equal(t, 407, p.final(5*time.Second))
	require.Greater(t, len(p.received()), 1500)
	requireAlive(t, p)
}

// TestUnacknowledgedRefusalFreesPorts: a caller refused after its call
// started (early media, then B busy) that never ACKs the final response
// holds no RTP ports while vnum waits for the ACK (up to Timer H, 32 s
// over UDP): the ports go back before the response goes out.
func TestUnacknowledgedRefusalFreesPorts(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, "busy", func(o *Options) {
		o.AnswerMode = "early"
		o.InboundCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	p := newRawPeer(t, e.srv, "udp", "127.0.0.1:0")
	sdp := fuzzSDP("sendrecv")
	via := "SIP/2.0/UDP " + p.local.String() + ";branch=z9hG4bK" + randHex() + ";rport"
	callID, ruri := "noack-"+randHex(), "sip:"+testHost+"-"+testExt+"@"+e.vnum.String()
	p.write([]byte("INVITE " + ruri + " SIP/2.0\r\nVia: " + via + "\r\nMax-Forwards: 70\r\n" +
		"From: <sip:13700137000@" + p.local.String() + ">;tag=noack\r\nTo: <" + ruri + ">\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: 1 INVITE\r\nContact: <sip:courier@" + p.local.String() + ">\r\n" +
		"Content-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(sdp)) + "\r\n\r\n" + sdp))
	require.Equal(t, 486, p.final(10*time.Second), "B was busy; the caller hears it in early mode")
	require.Eventually(t, func() bool { return e.ports.InUse() == 0 }, 2*time.Second, 10*time.Millisecond,
		"the refused call's ports are free though its 486 is not acknowledged")
	require.Equal(t, "busy", string(e.router.waitEnded(t).Disposition), "and its CDR is finished")

	// The ACK at last (RFC 3261 §17.1.1.3: the INVITE's branch, the
	// response's To), so that the server need not wait for Timer H.
	to := regexp.MustCompile(`(?m)^To: (.*)\r$`).FindAllStringSubmatch(p.received(), -1)
	require.NotEmpty(t, to)
	p.write([]byte("ACK " + ruri + " SIP/2.0\r\nVia: " + via + "\r\nMax-Forwards: 70\r\n" +
		"From: <sip:13700137000@" + p.local.String() + ">;tag=noack\r\nTo: " + to[len(to)-1][1] + "\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"))
	e.waitNoCalls()
}
