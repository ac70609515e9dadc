package media

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// Tap is handed the RTP packets a stream relays to its bridged peer, each
// as it was read (payload type, SSRC, timestamp, when it arrived, the
// payload), before the relay rewrites it: a call's recording. Packet runs
// on the relay's path, so it must copy what it keeps and return at once,
// never waiting for a disk; what it returns is not looked at by the relay.
type Tap interface {
	Packet(pt uint8, ssrc, ts uint32, arrival time.Time, payload []byte) bool
}

// tapRef holds a Tap for Stream's atomic pointer.
type tapRef struct{ Tap }

// SetTap hands the RTP packets s relays from now on to t as well (nil
// stops). A tapped stream is kept in user space (KeepInUserSpace), where
// every packet passes through vnum, and stays there when the tap is
// removed. A stream with no tap pays one atomic load a packet.
func (s *Stream) SetTap(t Tap) {
	if t == nil {
		s.tap.Store(nil)
		return
	}
	s.KeepInUserSpace(true)
	s.tap.Store(&tapRef{t})
}

// route is how packets read on one stream reach the other while bridged.
type route struct {
	to *Stream
	// pt maps each received payload type to the one the other leg
	// negotiated; unlisted types map to themselves.
	pt [128]uint8
	// xcode converts G.711 between µ-law and A-law when the legs settled on
	// different laws; xcodePT is the received audio payload type.
	xcode   *[256]byte
	xcodePT uint8
}

func newRoute(from, to *Stream) *route {
	r := &route{to: to}
	for i := range r.pt {
		r.pt[i] = uint8(i)
	}
	ff, tf := from.formats.Load(), to.formats.Load()
	fa, ta := ff.audio, tf.audio
	switch {
	case sameFormat(fa, ta):
		r.pt[fa.PT&0x7F] = ta.PT
	case fa.IsG711() && ta.IsG711():
		r.pt[fa.PT&0x7F] = ta.PT
		r.xcodePT = fa.PT
		r.xcode = &alawToULaw
		if strings.EqualFold(fa.Name, pcmu) {
			r.xcode = &ulawToALaw
		}
	}
	// RFC 4733 §2.1: each leg chose its own telephone-event payload type.
	if ff.dtmf != nil && tf.dtmf != nil {
		r.pt[ff.dtmf.PT&0x7F] = tf.dtmf.PT
	}
	return r
}

// relayRTP sends one RTP packet, read into buf and parsed as pkt, from the
// other stream's socket to its remote, rewriting the payload type in place,
// and says whether it went.
func (r *route) relayRTP(buf []byte, pkt *rtp.Packet) outcome {
	r.rewrite(buf, pkt)
	dst := r.to.Remote()
	if !sendable(dst) {
		return dropped(DropNoRemote)
	}
	if r.to.sock.closed.Load() {
		// The other leg's pair is back in the pool.
		return dropped(DropSendError)
	}
	if _, err := r.to.sock.RTP.WriteToUDPAddrPort(buf, dst); err != nil {
		if !errors.Is(err, net.ErrClosed) {
			r.to.logAt(slog.LevelDebug, "rtp relay", "error", err, "to", dst)
		}
		return dropped(DropSendError)
	}
	return relayed
}

// rewrite converts the packet in buf, parsed as pkt, for the other leg: its
// payload type and, between PCMU and PCMA, its payload.
func (r *route) rewrite(buf []byte, pkt *rtp.Packet) {
	pt := pkt.PayloadType & 0x7F
	if r.xcode != nil && pt == r.xcodePT {
		transcode(pkt.Payload, r.xcode) // Payload aliases buf
	}
	if to := r.pt[pt]; to != pt {
		buf[1] = buf[1]&0x80 | to // keep the marker bit
	}
}

// relayRTCP sends one RTCP packet from the other stream's RTCP socket to its
// RTCP remote. Reports pass as they are; source descriptions do not: a
// phone's CNAME is often user@host, so each SDES chunk leaves with the CNAME
// "vnum" and no other item, and APP packets are dropped, so nothing of one
// leg's identity reaches the other (RFC 3550 §6.5 still holds: a compound
// packet keeps its SDES CNAME). Packets that do not parse are dropped.
func (r *route) relayRTCP(buf []byte) {
	dst := r.to.RTCPRemote()
	if !sendable(dst) {
		return
	}
	out, err := scrubRTCP(buf)
	if err != nil {
		r.to.logAt(slog.LevelDebug, "rtcp relay: dropped", "error", err)
		return
	}
	if r.to.sock.closed.Load() {
		return
	}
	if _, err := r.to.sock.RTCP.WriteToUDPAddrPort(out, dst); err != nil {
		r.to.logAt(slog.LevelDebug, "rtcp relay", "error", err, "to", dst)
	}
}

// rtcpCNAME is the CNAME every relayed source description carries.
const rtcpCNAME = "vnum"

// scrubRTCP rewrites a compound RTCP packet for the other leg: sender and
// receiver reports pass unchanged, SDES chunks keep their SSRC and get the
// CNAME "vnum" only, BYE keeps its sources and loses its reason; APP,
// feedback and unknown packets are dropped (a G.711 call needs none of
// them, and they may carry anything).
func scrubRTCP(buf []byte) ([]byte, error) {
	pkts, err := rtcp.Unmarshal(buf)
	if err != nil {
		return nil, err
	}
	out := make([]rtcp.Packet, 0, len(pkts))
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.SenderReport, *rtcp.ReceiverReport:
			out = append(out, p)
		case *rtcp.SourceDescription:
			sd := &rtcp.SourceDescription{Chunks: make([]rtcp.SourceDescriptionChunk, 0, len(p.Chunks))}
			for _, c := range p.Chunks {
				sd.Chunks = append(sd.Chunks, rtcp.SourceDescriptionChunk{Source: c.Source,
					Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: rtcpCNAME}}})
			}
			out = append(out, sd)
		case *rtcp.Goodbye:
			out = append(out, &rtcp.Goodbye{Sources: p.Sources})
		}
	}
	if len(out) == 0 {
		return nil, errors.New("nothing left to relay")
	}
	b, err := rtcp.Marshal(out)
	if err != nil {
		return nil, err
	}
	if _, err := rtcp.Unmarshal(b); err != nil {
		return nil, err
	}
	return b, nil
}

// Bridge relays RTP and RTCP between two started streams until ctx ends or
// either stream closes: each packet read on a is sent from b's socket to
// b's remote, and the other way round. Payload types are rewritten where the
// legs negotiated different numbers for the same format (telephone-event
// above all), PCMU and PCMA are converted into each other, and packets of
// other payload types pass unchanged. The streams' reader goroutines do the
// relaying, so Bridge starts no goroutine; it returns nil once neither
// direction relays any more, and it does not close the streams. It returns
// ErrNotStarted, ErrClosed or ErrBridged when a stream is not ready. Play
// must not be called while bridged.
func Bridge(ctx context.Context, a, b *Stream) error {
	if a == nil || b == nil || a == b {
		return ErrBridgeStreams
	}
	if err := a.join(newRoute(a, b), false); err != nil {
		return err
	}
	if err := b.join(newRoute(b, a), false); err != nil {
		a.leave()
		return err
	}
	defer func() {
		a.leave()
		b.leave()
	}()
	a.logAt(slog.LevelDebug, "bridge up", "peer_port", b.sock.Port)
	select {
	case <-ctx.Done():
	case <-a.done:
	case <-b.done:
	}
	return nil
}

// Relay starts relaying, at once, the RTP and RTCP packets read on from to
// to's remote, sent from to's socket and converted as Bridge converts them;
// one direction only. Unlike Bridge it returns as soon as packets flow, so
// that a caller can set the relay up before anything tells the peers that
// media may flow (an answer, an ACK), and no packet that follows is lost.
// It stops when from closes or StopRelay is called. Called again for the
// same pair it rebuilds the conversion from the streams' current codecs
// (after SetCodecs). Play on to still sends (it is from that is bridged):
// whoever relays into a stream stops its own prompts first. It returns
// ErrBridged when from relays to another stream, and ErrNotStarted,
// ErrClosed or ErrBridgeStreams like Bridge.
func Relay(from, to *Stream) error {
	if from == nil || to == nil || from == to {
		return ErrBridgeStreams
	}
	return from.join(newRoute(from, to), true)
}

// StopRelay stops relaying the packets read on s (see Relay and Bridge);
// packets that arrive afterwards are its own again (digits). It waits for
// a packet being relayed.
func (s *Stream) StopRelay() {
	s.leave()
}

// join makes r the route of the packets read on s. With again, a route to
// the same stream is replaced, and with it the flows in the kernel that
// followed the old one.
func (s *Stream) join(r *route, again bool) error {
	if err := s.setRoute(r, again); err != nil {
		return err
	}
	if s.kp != nil {
		s.kp.forget(s, true)
	}
	return nil
}

func (s *Stream) setRoute(r *route, again bool) error {
	s.lc.Lock()
	defer s.lc.Unlock()
	switch {
	case s.closed:
		return ErrClosed
	case !s.started:
		return ErrNotStarted
	}
	s.bridgeMu.Lock()
	defer s.bridgeMu.Unlock()
	if s.peer != nil && (!again || s.peer.to != r.to) {
		return ErrBridged
	}
	s.peer = r
	return nil
}

// leave ends relaying from s. Holding bridgeMu exclusively waits for a
// packet the reader may be relaying. The flows in the kernel between s
// and its peer go too: the kernel relays only a call bridged both ways.
func (s *Stream) leave() {
	s.bridgeMu.Lock()
	s.peer = nil
	s.bridgeMu.Unlock()
	if s.kp != nil {
		s.kp.forget(s, true)
	}
}
