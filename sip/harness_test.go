package sip

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"

	"github.com/vnum/vnum/media"
)

// fakeRouter is an in-memory Router for signalling tests.
type fakeRouter struct {
	mu       sync.Mutex
	accounts map[string]Account
	hosts    map[string]bool
	bindings map[string]Target // "X/E" → target
	expired  map[string]bool
	cdrs     map[string]CDR
	ended    chan CDR
}

func newFakeRouter() *fakeRouter {
	return &fakeRouter{
		accounts: map[string]Account{},
		hosts:    map[string]bool{},
		bindings: map[string]Target{},
		expired:  map[string]bool{},
		cdrs:     map[string]CDR{},
		ended:    make(chan CDR, 16),
	}
}

func (r *fakeRouter) addAccount(merchant, user, password string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.accounts[user] = Account{User: user, Merchant: merchant, HA1MD5: HA1("MD5", user, password), HA1SHA256: HA1("SHA-256", user, password)}
}

func (r *fakeRouter) addBinding(t Target) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hosts[t.Host] = true
	r.bindings[t.Host+"/"+t.Extension] = t
}

func (r *fakeRouter) Account(_ context.Context, user string) (Account, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.accounts[user]
	if !ok {
		return Account{}, ErrUnknownAccount
	}
	return a, nil
}

func (r *fakeRouter) IsHostNumber(_ context.Context, x string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hosts[x], nil
}

func (r *fakeRouter) Resolve(_ context.Context, x, ext, merchant string) (Target, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.expired[x+"/"+ext] {
		return Target{}, ErrExpired
	}
	t, ok := r.bindings[x+"/"+ext]
	if !ok || (merchant != "" && t.Merchant != merchant) {
		return Target{}, ErrInvalidExtension
	}
	return t, nil
}

func (r *fakeRouter) StartCall(_ context.Context, c *CDR) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cdrs[c.ID] = *c
	return nil
}

func (r *fakeRouter) UpdateCall(_ context.Context, c *CDR) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cdrs[c.ID] = *c
	return nil
}

func (r *fakeRouter) EndCall(_ context.Context, c *CDR) error {
	r.mu.Lock()
	r.cdrs[c.ID] = *c
	r.mu.Unlock()
	r.ended <- *c
	return nil
}

func (r *fakeRouter) waitEnded(t *testing.T) CDR {
	t.Helper()
	select {
	case c := <-r.ended:
		return c
	case <-time.After(20 * time.Second):
		t.Fatal("no CDR finished")
	}
	return CDR{}
}

// recConn records every datagram a test UA receives, for the privacy scan.
type recConn struct {
	net.PacketConn
	mu   sync.Mutex
	msgs []string
}

func (r *recConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := r.PacketConn.ReadFrom(b)
	if n > 0 {
		r.mu.Lock()
		r.msgs = append(r.msgs, string(b[:n]))
		r.mu.Unlock()
	}
	return n, addr, err
}

func (r *recConn) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

// testUA is a sipgo user agent on 127.0.0.1 with a recorded UDP socket and
// an RTP socket: a softphone or a carrier.
type testUA struct {
	t       *testing.T
	ua      *sipgo.UserAgent
	srv     *sipgo.Server
	client  *sipgo.Client
	conn    *recConn
	addr    netip.AddrPort
	contact sip.ContactHeader
	rtp     *net.UDPConn
	rtpRecv *recConn
}

func newTestUA(t *testing.T, name string) *testUA {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	conn := &recConn{PacketConn: pc}
	addr := netip.MustParseAddrPort(pc.LocalAddr().String())
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(name))
	require.NoError(t, err)
	srv, err := sipgo.NewServer(ua)
	require.NoError(t, err)
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientConnectionAddr(addr.String()))
	require.NoError(t, err)
	rtpConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	u := &testUA{
		t: t, ua: ua, srv: srv, client: client, conn: conn, addr: addr, rtp: rtpConn,
		contact: sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: name, Host: "127.0.0.1", Port: int(addr.Port())}},
	}
	go func() { _ = srv.ServeUDP(conn) }()
	waitServing(ua, addr.String())
	t.Cleanup(func() {
		_ = rtpConn.Close()
		_ = ua.Close()
		_ = pc.Close()
	})
	return u
}

func (u *testUA) rtpPort() int { return u.rtp.LocalAddr().(*net.UDPAddr).Port }

func (u *testUA) offer() []byte {
	codecs, dtmf := media.DefaultCodecs()
	return media.Offer(netip.MustParseAddr("127.0.0.1"), u.rtpPort(), 4242, codecs, dtmf)
}

// softphone is a merchant's softphone dialling through vnum.
type softphone struct {
	*testUA
	user, password string
	dialogs        *sipgo.DialogClientCache
}

func newSoftphone(t *testing.T, user, password string) *softphone {
	u := newTestUA(t, user)
	p := &softphone{testUA: u, user: user, password: password, dialogs: sipgo.NewDialogClientCache(u.client, u.contact)}
	u.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := p.dialogs.ReadBye(req, tx); err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "No dialog", nil))
		}
	})
	return p
}

// invite sends an INVITE to target (a dialled user part) and returns the
// dialog once the INVITE transaction is under way.
func (p *softphone) invite(ctx context.Context, vnum netip.AddrPort, user string) (*sipgo.DialogClientSession, error) {
	uri := sip.Uri{Scheme: "sip", User: user, Host: vnum.Addr().String(), Port: int(vnum.Port())}
	from := &sip.FromHeader{DisplayName: "Merchant " + p.user, Address: sip.Uri{Scheme: "sip", User: p.user, Host: "127.0.0.1"}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(12))
	return p.dialogs.Invite(ctx, uri, p.offer(), from, sip.NewHeader("Content-Type", "application/sdp"), sip.NewHeader("User-Agent", "TestPhone/"+p.user))
}

// call dials and waits for the answer with digest auth, then ACKs.
func (p *softphone) call(ctx context.Context, vnum netip.AddrPort, user string) (*sipgo.DialogClientSession, error) {
	d, err := p.invite(ctx, vnum, user)
	if err != nil {
		return nil, err
	}
	if err := d.WaitAnswer(ctx, sipgo.AnswerOptions{Username: p.user, Password: p.password}); err != nil {
		return d, err
	}
	return d, d.Ack(ctx)
}

// remoteMedia is where the SDP of a response says to send RTP.
func remoteMedia(t *testing.T, res *sip.Response) netip.AddrPort {
	t.Helper()
	return sdpAddr(t, res.Body())
}

// sdpAddr is the RTP address an SDP body names.
func sdpAddr(t *testing.T, body []byte) netip.AddrPort {
	t.Helper()
	d, err := media.ParseSDP(body)
	require.NoError(t, err)
	return netip.AddrPortFrom(d.Addr, uint16(d.Port))
}

// sendDigits sends RFC 4733 events as real RTP: three updates (the first
// with the marker) and the end packet three times, one timestamp per digit.
func sendDigits(t *testing.T, conn *net.UDPConn, to netip.AddrPort, pt uint8, digits string) {
	t.Helper()
	seq := uint16(1000)
	ts := uint32(8000)
	for _, d := range digits {
		ev := strings.IndexRune("0123456789*#", d)
		require.GreaterOrEqual(t, ev, 0)
		for i := 0; i < 6; i++ {
			end := i >= 3
			dur := uint16(160 * (min(i, 3) + 1))
			payload := []byte{byte(ev), 10, byte(dur >> 8), byte(dur)}
			if end {
				payload[1] |= 0x80
			}
			pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: ts, SSRC: 0x1234, Marker: i == 0}, Payload: payload}
			if !end || i == 3 {
				seq++
			}
			b, err := pkt.Marshal()
			require.NoError(t, err)
			_, err = conn.WriteToUDPAddrPort(b, to)
			require.NoError(t, err)
			time.Sleep(5 * time.Millisecond)
		}
		ts += 1600
	}
}

// sendAudio sends n PCMU packets of silence, 20 ms apart.
func sendAudio(conn *net.UDPConn, to netip.AddrPort, ssrc uint32, n int) {
	payload := make([]byte, 160)
	for i := range payload {
		payload[i] = 0xff
	}
	for i := 0; i < n; i++ {
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(i), Timestamp: uint32(i * 160), SSRC: ssrc}, Payload: payload}
		b, err := pkt.Marshal()
		if err != nil {
			return
		}
		if _, err := conn.WriteToUDPAddrPort(b, to); err != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countRTP reads RTP packets from conn for d and counts those with ssrc.
func countRTP(conn *net.UDPConn, d time.Duration, ssrc uint32) int {
	n := 0
	buf := make([]byte, 1500)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		_ = conn.SetReadDeadline(deadline)
		k, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			break
		}
		var p rtp.Packet
		if p.Unmarshal(buf[:k]) == nil && p.SSRC == ssrc {
			n++
		}
	}
	_ = conn.SetReadDeadline(time.Time{})
	return n
}

// carrier is the simulated carrier trunk: it records every INVITE and
// answers, rings, or refuses as told.
type carrier struct {
	*testUA
	mode     string // answer | busy | ring | reject
	dialogs  *sipgo.DialogServerCache
	invites  chan *sip.Request
	sessions chan *sipgo.DialogServerSession
}

func newCarrier(t *testing.T, mode string) *carrier {
	u := newTestUA(t, "carrier")
	c := &carrier{testUA: u, mode: mode, dialogs: sipgo.NewDialogServerCache(u.client, u.contact),
		invites: make(chan *sip.Request, 8), sessions: make(chan *sipgo.DialogServerSession, 8)}
	u.srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		c.invites <- req
		switch c.mode {
		case "busy":
			_ = tx.Respond(sip.NewResponseFromRequest(req, 486, "Busy Here", nil))
			return
		case "reject":
			_ = tx.Respond(sip.NewResponseFromRequest(req, 603, "Decline", nil))
			return
		}
		ds, err := c.dialogs.ReadInvite(req, tx)
		if err != nil {
			return
		}
		defer ds.Close()
		if err := ds.Respond(180, "Ringing", nil); err != nil {
			t.Logf("carrier 180: %v", err)
		}
		if c.mode == "ring" {
			<-ds.Context().Done()
			return
		}
		time.Sleep(100 * time.Millisecond) // the phone rings a moment
		codecs, dtmf := media.DefaultCodecs()
		answer := media.Offer(netip.MustParseAddr("127.0.0.1"), u.rtpPort(), 777, codecs[:1], dtmf)
		if err := ds.RespondSDP(answer); err != nil {
			return
		}
		c.sessions <- ds
		<-ds.Context().Done()
	})
	u.srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { _ = c.dialogs.ReadAck(req, tx) })
	u.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := c.dialogs.ReadBye(req, tx); err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "No dialog", nil))
		}
	})
	return c
}

func (c *carrier) nextInvite(t *testing.T) *sip.Request {
	t.Helper()
	select {
	case r := <-c.invites:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("carrier got no INVITE")
	}
	return nil
}

func (c *carrier) nextSession(t *testing.T) *sipgo.DialogServerSession {
	t.Helper()
	select {
	case s := <-c.sessions:
		return s
	case <-time.After(15 * time.Second):
		t.Fatal("carrier did not answer")
	}
	return nil
}

// testEnv is a running vnum server with a fake router, a carrier and a
// merchant softphone.
type testEnv struct {
	t       *testing.T
	srv     *Server
	router  *fakeRouter
	carrier *carrier
	phone   *softphone
	ports   *media.Ports
	vnum    netip.AddrPort
}

const (
	testHost      = "17000000001"
	testExt       = "1234"
	testConsignee = "+8613800138000"
	testNational  = "13800138000"
)

func newTestEnv(t *testing.T, carrierMode string, tweak func(*Options)) *testEnv {
	t.Helper()
	router := newFakeRouter()
	router.addAccount("m1", "alice", "s3cret")
	router.addBinding(Target{BindingID: "b1", Merchant: "m1", Order: "o1", Host: testHost, Extension: testExt, Consignee: testConsignee})
	car := newCarrier(t, carrierMode)
	ports, err := media.NewPorts("127.0.0.1", 31000, 31999)
	require.NoError(t, err)
	opts := Options{
		Listen:            []string{"udp://127.0.0.1:0", "tcp://127.0.0.1:0"},
		DigestAlgorithms:  []string{"MD5"},
		AuthFailures:      10,
		BlockFor:          time.Minute,
		Ports:             ports,
		MediaTimeout:      30 * time.Second,
		ExtensionDigits:   4,
		FirstDigitTimeout: 2 * time.Second,
		InterDigitTimeout: time.Second,
		Attempts:          3,
		AnswerMode:        "answer",
		Language:          "en",
		TrunkOutbound:     "sip:" + car.addr.String() + ";transport=udp",
		NumberFormat:      "national",
		RingTimeout:       10 * time.Second,
		MaxDuration:       time.Hour,
		DrainTimeout:      2 * time.Second,
		Logger:            testLogger(),
	}
	if tweak != nil {
		tweak(&opts)
	}
	srv, err := NewServer(opts, router)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, srv.Start(ctx))
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		cancel()
	})
	return &testEnv{
		t: t, srv: srv, router: router, carrier: car, ports: ports,
		phone: newSoftphone(t, "alice", "s3cret"),
		vnum:  netip.MustParseAddrPort(srv.Addr("udp")),
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("VNUM_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// waitNoCalls waits until the server holds no call and every RTP port is
// back in the pool.
func (e *testEnv) waitNoCalls() {
	e.t.Helper()
	require.Eventually(e.t, func() bool {
		return e.srv.ActiveCalls() == 0 && e.ports.InUse() == 0
	}, 10*time.Second, 20*time.Millisecond, "calls=%d ports=%d", e.srv.ActiveCalls(), e.ports.InUse())
}

// assertPrivate is the privacy invariant: nothing leg A receives contains
// B; nothing leg B receives contains the caller's identity.
func assertPrivate(t *testing.T, phone *softphone, car *carrier, callerCallID, fromTag string) {
	t.Helper()
	forbiddenA := []string{testNational, strings.TrimPrefix(testConsignee, "+")}
	for _, m := range phone.conn.received() {
		for _, f := range forbiddenA {
			require.NotContains(t, m, f, "caller saw the consignee's number in:\n%s", m)
		}
	}
	forbiddenB := []string{phone.user, "TestPhone", callerCallID, fromTag,
		"127.0.0.1:" + strconv.Itoa(int(phone.addr.Port())), "m=audio " + strconv.Itoa(phone.rtpPort()) + " "}
	for _, m := range car.conn.received() {
		for _, f := range forbiddenB {
			if f == "" {
				continue
			}
			require.NotContains(t, m, f, "carrier saw the caller's identity %q in:\n%s", f, m)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
