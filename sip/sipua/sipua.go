// Package sipua holds simulated SIP peers built on sipgo: a merchant's
// softphone and a carrier trunk whose phones answer. `vnum demo` and the
// end-to-end tests drive vnum through them over real sockets.
package sipua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/pion/rtp"

	"github.com/vnum/vnum/media"
)

// Peer is a SIP user agent on one loopback UDP socket, with an RTP socket.
// Every datagram its SIP socket receives is recorded, for privacy checks.
type Peer struct {
	Name    string
	UA      *sipgo.UserAgent
	Server  *sipgo.Server
	Client  *sipgo.Client
	Addr    netip.AddrPort
	RTP     *net.UDPConn
	Contact sip.ContactHeader
	// SDPAddr, when set, is the media address the peer's SDP names instead
	// of its RTP socket's: a phone behind NAT names its private address
	// and sends from another.
	SDPAddr netip.AddrPort

	conn *recordingConn
	pc   net.PacketConn
}

// recordingConn keeps a copy of every datagram read.
type recordingConn struct {
	net.PacketConn
	off  atomic.Bool // a load generator's peer keeps nothing
	mu   sync.Mutex
	msgs []string
}

func (r *recordingConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := r.PacketConn.ReadFrom(b)
	if n > 0 && !r.off.Load() {
		r.mu.Lock()
		r.msgs = append(r.msgs, string(b[:n]))
		r.mu.Unlock()
	}
	return n, addr, err
}

// NewPeer makes a user agent named name on 127.0.0.1 with fresh ports;
// set its handlers, then call Serve.
func NewPeer(name string, log *slog.Logger) (*Peer, error) {
	return NewPeerAt(netip.AddrFrom4([4]byte{127, 0, 0, 1}), name, log)
}

// NewPeerAt is NewPeer on another loopback address (127.0.0.2 and so on):
// a second source address, as vnum tells callers apart by address.
func NewPeerAt(ip netip.Addr, name string, log *slog.Logger) (*Peer, error) {
	return NewPeerOn(netip.AddrPortFrom(ip, 0), name, log)
}

// NewPeerOn is NewPeer with its SIP socket on at: a port of the caller's
// choosing (0: the kernel's), for a peer vnum's configuration names.
func NewPeerOn(at netip.AddrPort, name string, log *slog.Logger) (*Peer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ip := at.Addr()
	pc, err := net.ListenPacket("udp", at.String())
	if err != nil {
		return nil, err
	}
	addr := netip.MustParseAddrPort(pc.LocalAddr().String())
	p := &Peer{Name: name, pc: pc, Addr: addr, conn: &recordingConn{PacketConn: pc}}
	fail := func(err error) (*Peer, error) {
		p.Close()
		return nil, err
	}
	if p.UA, err = sipgo.NewUA(sipgo.WithUserAgent(name),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(log),
			// A 100 Trying handled after the 407 that followed it (sipgo
			// hands each message to a goroutine of its own) matches no
			// transaction: sipgo's default logs that at info on the
			// process's default logger.
			sip.WithTransactionLayerUnhandledResponseHandler(func(r *sip.Response) {
				log.Debug("unhandled response", "response", r.Short())
			}))); err != nil {
		return fail(err)
	}
	if p.Server, err = sipgo.NewServer(p.UA, sipgo.WithServerLogger(log)); err != nil {
		return fail(err)
	}
	if p.Client, err = sipgo.NewClient(p.UA, sipgo.WithClientHostname(ip.String()),
		sipgo.WithClientConnectionAddr(addr.String()), sipgo.WithClientLogger(log)); err != nil {
		return fail(err)
	}
	if p.RTP, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0))); err != nil {
		return fail(err)
	}
	p.Contact = sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: name, Host: ip.String(), Port: int(addr.Port())}}
	return p, nil
}

// Serve starts serving SIP on the peer's socket. Handlers must be set
// before: sipgo's handler table is not safe to change while serving.
func (p *Peer) Serve() {
	go func() { _ = p.Server.ServeUDP(p.conn) }()
	// Requests must leave from the listening socket, which sipgo takes into
	// its pool once serving.
	for i := 0; i < 200; i++ {
		if c, err := p.UA.TransportLayer().GetConnection("udp", p.Addr.String()); err == nil && c != nil {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// Close stops the peer and closes its sockets.
func (p *Peer) Close() {
	if p.RTP != nil {
		_ = p.RTP.Close()
	}
	if p.UA != nil {
		_ = p.UA.Close()
	}
	_ = p.pc.Close()
}

// StopRecording makes the peer keep no more of the datagrams it receives
// (a load generator's thousands of calls).
func (p *Peer) StopRecording() { p.conn.off.Store(true) }

// Received returns every SIP datagram the peer has received.
func (p *Peer) Received() []string {
	p.conn.mu.Lock()
	defer p.conn.mu.Unlock()
	return append([]string(nil), p.conn.msgs...)
}

// RTPPort is the peer's RTP port.
func (p *Peer) RTPPort() int { return p.RTP.LocalAddr().(*net.UDPAddr).Port }

// SDP is the peer's offer or answer: PCMU, PCMA (or just codecs) and
// telephone-event 101 on its RTP port (or SDPAddr).
func (p *Peer) SDP(codecs ...media.Codec) []byte {
	all, dtmf := media.DefaultCodecs()
	if len(codecs) == 0 {
		codecs = all
	}
	if p.SDPAddr.IsValid() {
		return media.Offer(p.SDPAddr.Addr(), int(p.SDPAddr.Port()), 4242, codecs, dtmf)
	}
	return media.Offer(p.Addr.Addr(), p.RTPPort(), 4242, codecs, dtmf)
}

// PCMU is the codec the simulated phones answer with.
var PCMU = media.Codec{PT: 0, Name: "PCMU", Rate: 8000, Channels: 1}

// PCMA is G.711 A-law, for softphones that offer only it.
var PCMA = media.Codec{PT: 8, Name: "PCMA", Rate: 8000, Channels: 1}

// MediaAddr is the RTP address an SDP body names.
func MediaAddr(body []byte) (netip.AddrPort, error) {
	d, err := media.ParseSDP(body)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(d.Addr, uint16(d.Port)), nil
}

// SendDigits sends RFC 4733 telephone-events as real RTP (RFC 4733 §2.5):
// three updates, the first with the marker, then the end packet three
// times; one RTP timestamp per digit, starting at a random one. A key that is not a DTMF digit gets
// media.ErrBadEvent.
func SendDigits(conn *net.UDPConn, to netip.AddrPort, pt uint8, digits string) error {
	// A random start, as a phone's stream has (RFC 3550 §5.1): vnum tells
	// events apart by timestamp (RFC 4733 §2.5.1.2), so two calls that
	// began at one fixed timestamp would be taken for one event repeated.
	seq, ts := uint16(rand.Uint32()), rand.Uint32()
	for _, d := range digits {
		for i := 0; i < 6; i++ {
			end := i >= 3
			payload, err := media.EncodeEvent(media.Event{Digit: d, End: end, Volume: 10, Duration: uint16(160 * (min(i, 3) + 1))})
			if err != nil {
				return err
			}
			pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: ts, SSRC: 0x1234, Marker: i == 0}, Payload: payload}
			if !end || i == 3 {
				seq++
			}
			b, err := pkt.Marshal()
			if err != nil {
				return err
			}
			if _, err := conn.WriteToUDPAddrPort(b, to); err != nil {
				return err
			}
			time.Sleep(5 * time.Millisecond)
		}
		ts += 1600
	}
	return nil
}

// SendAudio sends n PCMU packets of a 400 Hz tone, 20 ms apart, or stops
// early when ctx ends.
func SendAudio(ctx context.Context, conn *net.UDPConn, to netip.AddrPort, ssrc uint32, n int) error {
	tone := media.EncodeULaw(media.DTMFTone('1', 20*time.Millisecond))
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for i := 0; i < n; i++ {
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(i), Timestamp: uint32(i * 160), SSRC: ssrc, Marker: i == 0}, Payload: tone}
		b, err := pkt.Marshal()
		if err != nil {
			return err
		}
		if _, err := conn.WriteToUDPAddrPort(b, to); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
	return nil
}

// CountRTP reads RTP from conn for d and counts the packets of ssrc.
func CountRTP(conn *net.UDPConn, d time.Duration, ssrc uint32) int {
	n := 0
	buf := make([]byte, 1500)
	deadline := time.Now().Add(d)
	defer func() { _ = conn.SetReadDeadline(time.Time{}) }()
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
	return n
}

// Softphone is a merchant's softphone dialling through vnum with digest
// credentials.
type Softphone struct {
	*Peer
	User, Password string
	// Transport, when set ("tcp"), is put on the Request-URI of INVITEs.
	Transport string
	// Codecs, when set, are what INVITEs offer (with telephone-event 101)
	// instead of PCMU and PCMA.
	Codecs  []media.Codec
	dialogs *sipgo.DialogClientCache
	// tcpDialogs place the calls over TCP: with a client of its own that
	// lets the kernel pick the local port (the peer's client sends from
	// its UDP socket's address, and a TCP socket bound to the same port
	// number would collide with any connection that holds it).
	tcpDialogs *sipgo.DialogClientCache
	answering  *sipgo.DialogServerCache
	incoming   chan Incoming
}

// Incoming is a call the softphone answered (after its ACK).
type Incoming struct {
	Invite  *sip.Request
	Session *sipgo.DialogServerSession
}

// NewSoftphone starts a softphone for the account user.
func NewSoftphone(user, password string, log *slog.Logger) (*Softphone, error) {
	return NewSoftphoneAt(netip.AddrFrom4([4]byte{127, 0, 0, 1}), user, password, log)
}

// NewSoftphoneAt is NewSoftphone on another loopback address (NewPeerAt).
func NewSoftphoneAt(ip netip.Addr, user, password string, log *slog.Logger) (*Softphone, error) {
	p, err := NewPeerAt(ip, user, log)
	if err != nil {
		return nil, err
	}
	tcpClient, err := sipgo.NewClient(p.UA, sipgo.WithClientHostname(ip.String()))
	if err != nil {
		p.Close()
		return nil, err
	}
	s := &Softphone{Peer: p, User: user, Password: password,
		dialogs:    sipgo.NewDialogClientCache(p.Client, p.Contact),
		tcpDialogs: sipgo.NewDialogClientCache(tcpClient, p.Contact),
		answering:  sipgo.NewDialogServerCache(p.Client, p.Contact),
		incoming:   make(chan Incoming, 8)}
	p.Server.OnInvite(s.onInvite)
	p.Server.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { _ = s.answering.ReadAck(req, tx) })
	p.Server.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := s.dialogs.ReadBye(req, tx); err == nil {
			return
		}
		if err := s.tcpDialogs.ReadBye(req, tx); err == nil {
			return
		}
		if err := s.answering.ReadBye(req, tx); err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		}
	})
	p.Serve()
	return s, nil
}

// Invite sends an INVITE for the dialled user part to vnum and returns the
// dialog while the transaction is under way.
func (s *Softphone) Invite(ctx context.Context, vnum netip.AddrPort, dialled string) (*sipgo.DialogClientSession, error) {
	uri := sip.Uri{Scheme: "sip", User: dialled, Host: vnum.Addr().String(), Port: int(vnum.Port())}
	if s.Transport != "" {
		uri.UriParams = sip.NewParams()
		uri.UriParams.Add("transport", s.Transport)
	}
	from := &sip.FromHeader{DisplayName: "Merchant " + s.User, Address: sip.Uri{Scheme: "sip", User: s.User, Host: s.Addr.Addr().String()}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(12))
	dialogs := s.dialogs
	if strings.EqualFold(s.Transport, "tcp") {
		dialogs = s.tcpDialogs
	}
	return dialogs.Invite(ctx, uri, s.SDP(s.Codecs...), from,
		sip.NewHeader("Content-Type", "application/sdp"), sip.NewHeader("User-Agent", "vnum-softphone/"+s.User))
}

// onInvite rings briefly and answers calls to the softphone.
func (s *Softphone) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	ds, err := s.answering.ReadInvite(req, tx)
	if err != nil {
		return
	}
	defer ds.Close()
	if err := ds.Respond(180, "Ringing", nil); err != nil {
		return
	}
	select {
	case <-time.After(100 * time.Millisecond):
	case <-ds.Context().Done():
		return
	}
	if err := ds.RespondSDP(s.SDP(PCMU)); err != nil {
		return
	}
	select {
	case s.incoming <- Incoming{Invite: req, Session: ds}:
	default:
	}
	<-ds.Context().Done()
}

// NextIncoming returns the next call the softphone answered.
func (s *Softphone) NextIncoming(d time.Duration) (Incoming, error) {
	return next(s.incoming, d, "softphone answered no call")
}

// Register registers the softphone's contact with vnum for an hour,
// answering the digest challenge.
func (s *Softphone) Register(ctx context.Context, vnum netip.AddrPort) error {
	res, err := s.RegisterFor(ctx, vnum, 3600)
	if err != nil {
		return err
	}
	if res.StatusCode != 200 {
		return fmt.Errorf("register: %s", res.StartLine())
	}
	return nil
}

// RegisterFor sends a REGISTER asking for expires seconds (0 removes the
// registration) and returns vnum's final response.
func (s *Softphone) RegisterFor(ctx context.Context, vnum netip.AddrPort, expires int) (*sip.Response, error) {
	uri := sip.Uri{Scheme: "sip", Host: vnum.Addr().String(), Port: int(vnum.Port())}
	req := sip.NewRequest(sip.REGISTER, uri)
	aor := sip.Uri{Scheme: "sip", User: s.User, Host: vnum.Addr().String()}
	req.AppendHeader(&sip.ToHeader{Address: aor, Params: sip.NewParams()})
	from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(12))
	req.AppendHeader(from)
	req.AppendHeader(&s.Contact)
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	res, err := s.Client.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode == 401 {
		return s.Client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: s.User, Password: s.Password})
	}
	return res, nil
}

// Call dials, answers the digest challenge, waits for the answer and ACKs.
func (s *Softphone) Call(ctx context.Context, vnum netip.AddrPort, dialled string) (*sipgo.DialogClientSession, error) {
	d, err := s.Invite(ctx, vnum, dialled)
	if err != nil {
		return nil, err
	}
	if err := d.WaitAnswer(ctx, sipgo.AnswerOptions{Username: s.User, Password: s.Password}); err != nil {
		return d, err
	}
	return d, d.Ack(ctx)
}

// CarrierOptions say how a simulated carrier behaves.
type CarrierOptions struct {
	// Mode is answer, busy, ring (never answers) or reject.
	Mode string
	// Busy lists numbers (the Request-URI's user) whose phones are busy
	// whatever Mode says.
	Busy []string
	// RingFor is how long phones ring before they answer (default 100 ms).
	RingFor time.Duration
	// Username and Password, when set, make the carrier challenge every
	// INVITE with digest (407) and take only these credentials.
	Username, Password string
	// EarlyMedia makes phones send 183 with SDP and play an announcement
	// (RTP with EarlyMediaSSRC) while they ring, instead of a plain 180.
	EarlyMedia bool
	// ContactHost, when set, is the host the carrier's answers name in
	// Contact instead of its address: a carrier whose gateways sit behind
	// a DNS name.
	ContactHost string
}

// EarlyMediaSSRC marks the carrier's early-media RTP.
const EarlyMediaSSRC = 0xEA51

// Carrier is a simulated carrier trunk: it records every INVITE and rings,
// answers, or refuses as its options say.
type Carrier struct {
	*Peer
	opts     CarrierOptions
	dialogs  *sipgo.DialogServerCache
	invites  chan *sip.Request
	ringing  chan *sip.Request
	sessions chan *sipgo.DialogServerSession
}

// NewCarrier starts a carrier.
func NewCarrier(opts CarrierOptions, log *slog.Logger) (*Carrier, error) {
	if opts.RingFor <= 0 {
		opts.RingFor = 100 * time.Millisecond
	}
	p, err := NewPeer("carrier", log)
	if err != nil {
		return nil, err
	}
	contact := p.Contact
	if opts.ContactHost != "" {
		contact.Address.Host = opts.ContactHost
	}
	c := &Carrier{Peer: p, opts: opts,
		dialogs: sipgo.NewDialogServerCache(p.Client, contact),
		invites: make(chan *sip.Request, 64), ringing: make(chan *sip.Request, 64),
		sessions: make(chan *sipgo.DialogServerSession, 64)}
	p.Server.OnInvite(c.onInvite)
	p.Server.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { _ = c.dialogs.ReadAck(req, tx) })
	p.Server.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := c.dialogs.ReadBye(req, tx); err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		}
	})
	p.Serve()
	return c, nil
}

func (c *Carrier) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if c.opts.Password != "" && !c.authorized(req, tx) {
		return
	}
	select {
	case c.invites <- req:
	default:
	}
	mode := c.opts.Mode
	if slices.Contains(c.opts.Busy, req.Recipient.User) {
		mode = "busy"
	}
	switch mode {
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
	if c.opts.EarlyMedia {
		// 183 with SDP, and the carrier's announcement as early media.
		if err := ds.Respond(183, "Session Progress", c.SDP(PCMU), sip.NewHeader("Content-Type", "application/sdp")); err != nil {
			return
		}
		if to, err := MediaAddr(req.Body()); err == nil {
			go func() { _ = SendAudio(ds.Context(), c.RTP, to, EarlyMediaSSRC, 500) }()
		}
	} else if err := ds.Respond(180, "Ringing", nil); err != nil {
		return
	}
	select {
	case c.ringing <- req:
	default:
	}
	if c.opts.Mode == "ring" {
		<-ds.Context().Done()
		return
	}
	select {
	case <-time.After(c.opts.RingFor):
	case <-ds.Context().Done():
		return
	}
	if err := ds.RespondSDP(c.SDP(PCMU)); err != nil {
		return
	}
	select {
	case c.sessions <- ds:
	default:
	}
	<-ds.Context().Done()
}

// carrierNonce is the fixed nonce of the simulated carrier's challenges.
const carrierNonce = "carrier-nonce-5f1e"

// authorized checks the INVITE's digest credentials, challenging it when
// they are missing and refusing it when they are wrong.
func (c *Carrier) authorized(req *sip.Request, tx sip.ServerTransaction) bool {
	chal := &digest.Challenge{Realm: "carrier", Nonce: carrierNonce, Algorithm: "MD5", QOP: []string{"auth"}}
	h := req.GetHeader("Proxy-Authorization")
	if h == nil {
		res := sip.NewResponseFromRequest(req, 407, "Proxy Authentication Required", nil)
		res.AppendHeader(sip.NewHeader("Proxy-Authenticate", chal.String()))
		_ = tx.Respond(res)
		return false
	}
	cred, err := digest.ParseCredentials(h.Value())
	if err == nil {
		var want *digest.Credentials
		want, err = digest.Digest(chal, digest.Options{Method: "INVITE", URI: cred.URI, Username: c.opts.Username,
			Password: c.opts.Password, Cnonce: cred.Cnonce, Count: cred.Nc})
		if err == nil && (cred.Username != c.opts.Username || want.Response != cred.Response) {
			err = errors.New("wrong credentials")
		}
	}
	if err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 403, "Forbidden", nil))
		return false
	}
	return true
}

// ErrTimeout reports that an awaited INVITE or answer did not come.
var ErrTimeout = errors.New("timed out")

// NextInvite returns the next INVITE the carrier received.
func (c *Carrier) NextInvite(d time.Duration) (*sip.Request, error) {
	return next(c.invites, d, "carrier got no INVITE")
}

// NextRinging returns the next INVITE the carrier has sent its 180 (or
// 183 with early media) for.
func (c *Carrier) NextRinging(d time.Duration) (*sip.Request, error) {
	return next(c.ringing, d, "carrier rang for no INVITE")
}

// NextSession returns the next call the carrier answered (after its ACK).
func (c *Carrier) NextSession(d time.Duration) (*sipgo.DialogServerSession, error) {
	return next(c.sessions, d, "carrier answered no call")
}

// next waits up to d for a value from ch; what says in the error what did
// not come.
func next[T any](ch <-chan T, d time.Duration, what string) (T, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case v := <-ch:
		return v, nil
	case <-t.C:
		var zero T
		return zero, fmt.Errorf("%s: %w", what, ErrTimeout)
	}
}

// Pending returns how many INVITEs are waiting to be taken by NextInvite.
func (c *Carrier) Pending() int { return len(c.invites) }
