package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

const (
	frameSamples = SampleRate * defaultPtime / 1000 // 160 samples per 20 ms packet
	frameTime    = defaultPtime * time.Millisecond
	maxPacket    = 1500
	digitBuffer  = 32
)

// Stream is the media endpoint of one call leg: a socket pair, the remote
// address, the negotiated codecs, a reader goroutine for its RTP socket
// while packets come up to it (see park) and, on Linux, a place in the
// Ports' shared RTCP reader. It plays prompts and collects digits before
// the bridge, and relays packets while bridged (see Bridge).
type Stream struct {
	sock    *Socket
	log     *slog.Logger
	formats atomic.Pointer[formats] // replaced whole by SetCodecs
	digits  chan rune
	done    chan struct{}
	wg      sync.WaitGroup

	lc      sync.Mutex // guards started and closed
	started bool
	closed  bool

	lastRTP atomic.Int64 // unix nanoseconds, of the last packet taken
	q       quality      // measures the leg for the media metrics (SetLeg)

	// counts are the relay counters of the Ports the socket came from,
	// shared by all its streams.
	counts *relayCounters
	// now is the clock of the Ports the socket came from (Ports.SetClock):
	// it times the learning windows and stamps LastRTP.
	now func() time.Time

	// mu guards where RTP and RTCP go and whom they are taken from (see
	// LearnWindow). The readers take it once per packet.
	mu      sync.Mutex
	rtp     sourceLatch
	rtcp    sourceLatch
	sigHost netip.Addr // SetSignalHost

	// bridgeMu guards peer. A reader holds it shared while it relays a
	// packet, so that leaving a bridge waits for packets in flight.
	bridgeMu sync.RWMutex
	peer     *route
	// tap, when set, is handed each RTP packet relayed to the peer
	// (SetTap): a recording.
	tap atomic.Pointer[tapRef]

	playMu   sync.Mutex // serialises Play and guards the sender state
	ssrc     uint32
	seq      rtp.Sequencer // pion's, from a random start (RFC 3550 §5.1)
	ts       uint32
	lastSent time.Time

	// Used only by the RTP reader goroutine.
	events DigitDetector

	// The kernel path (Ports.UseKernel), nil without one: the flow of the
	// packets read on s while the kernel relays them, whether s is kept
	// in user space, and when its reader may next ask for a flow (unix
	// nanoseconds).
	kp    *kernelPath
	kflow atomic.Pointer[kflow]
	kuser atomic.Bool
	knext atomic.Int64

	// recv reads the RTP socket (recvRTP), made by the reader on its
	// first read; used by the RTP reader alone.
	recv *rtpRecv

	// watch says keys are collected while bridged too (WatchKeys).
	watch atomic.Bool

	// rtcpShared says the RTCP socket is read by the Ports' shared reader
	// (rtcpReader), under rtcpTok, its descriptor being rtcpFD; set by
	// Start, guarded by lc.
	rtcpShared bool
	rtcpTok    uint64
	rtcpFD     int

	// rtpParked says no goroutine reads the RTP socket: the kernel relays
	// its packets, and the Ports' shared reader watches the socket, under
	// rtpTok, its descriptor being rtpFD, to start one again (see park).
	// Guarded by lc; rtpTok and rtpFD by the shared reader.
	rtpParked bool
	rtpTok    uint64
	rtpFD     int
}

// logAt logs msg at level with the stream's port. A stream keeps no
// logger of its own: a JSON handler's With formats its attributes at once,
// some 400 bytes a stream for the whole of a call, for lines that are
// rarely written.
func (s *Stream) logAt(level slog.Level, msg string, args ...any) {
	if !s.log.Enabled(context.Background(), level) {
		return
	}
	s.log.Log(context.Background(), level, msg, append([]any{"rtp_port", s.sock.Port}, args...)...)
}

// formats are a stream's negotiated payload formats: the audio codec, the
// telephone-event format (nil when none) and, without one, the in-band
// DTMF detector for the audio (used only by the RTP reader goroutine).
type formats struct {
	audio Codec
	dtmf  *Codec
	tones *ToneDetector
}

func newFormats(audio Codec, dtmf *Codec) *formats {
	f := &formats{audio: audio}
	if dtmf != nil {
		d := *dtmf
		f.dtmf = &d
	} else {
		f.tones = NewToneDetector(audio.Name)
	}
	return f
}

// NewStream returns a stream on sock that sends to remote, the address the
// peer's SDP names, with the negotiated audio codec and telephone-event
// format (nil when none was negotiated, in which case in-band DTMF is
// detected in G.711 audio). The RTCP remote defaults to the RTP port + 1.
// The stream learns where its peer's packets really come from in a short
// window at its start and drops those of anyone else (see LearnWindow).
// log may be nil.
func NewStream(sock *Socket, remote netip.AddrPort, audio Codec, dtmf *Codec, log *slog.Logger) *Stream {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Stream{
		sock:   sock,
		log:    log,
		digits: make(chan rune, digitBuffer),
		done:   make(chan struct{}),
		ssrc:   rand.Uint32(),
		seq:    rtp.NewRandomSequencer(),
		ts:     rand.Uint32(),
	}
	s.counts, s.now = &relayCounters{}, time.Now
	s.q.m = metricsOf(sock)
	if sock.pool != nil {
		s.counts, s.now = &sock.pool.relay, sock.pool.now
		s.kp = sock.pool.kernelPath()
	}
	s.lastRTP.Store(s.now().UnixNano())
	s.formats.Store(newFormats(audio, dtmf))
	s.setRemote(remote)
	return s
}

// Start starts the stream's readers: a goroutine for RTP and, for RTCP,
// the shared reader of the Ports the socket came from (one goroutine for
// all their streams, on Linux) or a goroutine of its own. It does nothing
// on a started or closed stream.
func (s *Stream) Start() {
	s.lc.Lock()
	defer s.lc.Unlock()
	if s.started || s.closed {
		return
	}
	s.started = true
	s.lastRTP.Store(s.now().UnixNano())
	s.wg.Add(1)
	go s.readRTP()
	if s.sock.pool != nil && s.sock.pool.rtcp.add(s) == nil {
		s.rtcpShared = true
		return
	}
	s.wg.Add(1)
	go s.readRTCP()
}

// Close closes the socket pair and waits for the reader goroutines to end.
// It is idempotent.
func (s *Stream) Close() error {
	s.lc.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	shared, parked := s.rtcpShared, s.rtpParked
	s.rtpParked = false
	s.lc.Unlock()
	if shared {
		// Before the socket closes: its descriptor leaves the set while
		// it is still the stream's.
		s.sock.pool.rtcp.remove(s)
	}
	if parked {
		s.sock.pool.rtcp.unpark(s)
	}
	// The readers' waits end, then the pair goes back to the pool: its
	// sockets may serve another call, never while a reader of this one
	// still reads them.
	s.sock.stop()
	s.wg.Wait()
	err := s.sock.Close()
	if parked {
		// No reader ran to its end to do it.
		s.q.closed()
	}
	return err
}

// Done returns a channel that is closed when the stream is closed.
func (s *Stream) Done() <-chan struct{} {
	return s.done
}

// Digits returns the DTMF keys received: RFC 4733 events when a
// telephone-event format was negotiated, in-band tones otherwise. Keys are
// not collected while the stream is bridged unless it watches them
// (WatchKeys). The channel is buffered, keys
// are dropped when it is full, and it is never closed: select on it
// together with Done or a context.
func (s *Stream) Digits() <-chan rune {
	return s.digits
}

// LastRTP returns when the last RTP packet from the stream's peer arrived
// (a foreign source's packets do not count, so they cannot keep a dead
// call up); before the first one, when the stream was started (or made,
// if not started). Packets the kernel relayed (Ports.UseKernel) count
// once their flow's counters are read, every KernelPoll.
func (s *Stream) LastRTP() time.Time {
	return time.Unix(0, s.lastRTP.Load())
}

// Quiet returns a channel that is closed once no RTP packet has arrived
// from the stream's peer for d, counted from the later of now and the last
// packet (by the stream's clock, see Ports.SetClock), and a stop
// function that releases it. It costs one timer and no goroutine while it
// waits: the timer wakes once per d at most and re-arms itself for the time
// left since the last packet. A closed stream never fires.
func (s *Stream) Quiet(d time.Duration) (<-chan struct{}, func()) {
	quiet := make(chan struct{})
	from := s.now().UnixNano()
	var mu sync.Mutex
	var t *time.Timer
	stopped := false
	var check func()
	check = func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped || s.isClosed() {
			return
		}
		last := max(s.lastRTP.Load(), from)
		if left := time.Duration(last+int64(d)) - time.Duration(s.now().UnixNano()); left > 0 {
			t.Reset(left)
			return
		}
		stopped = true
		close(quiet)
	}
	mu.Lock()
	t = time.AfterFunc(d, check)
	mu.Unlock()
	stop := func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
	return quiet, stop
}

// Socket returns the stream's socket pair.
func (s *Stream) Socket() *Socket {
	return s.sock
}

// Audio returns the stream's negotiated audio codec.
func (s *Stream) Audio() Codec {
	return s.formats.Load().audio
}

// DTMF returns the stream's negotiated telephone-event format, or nil.
func (s *Stream) DTMF() *Codec {
	f := s.formats.Load()
	if f.dtmf == nil {
		return nil
	}
	d := *f.dtmf
	return &d
}

// SetCodecs changes the stream's negotiated audio codec and telephone-event
// format (nil when none), when the answer to an offer settles them: a leg's
// stream is made when vnum offers several codecs, before the peer has
// chosen one (RFC 3264 §6.1). Packets relayed from now on and Play use the
// new formats; a relay into or out of the stream must be set up again
// (Relay) to follow them.
func (s *Stream) SetCodecs(audio Codec, dtmf *Codec) {
	s.formats.Store(newFormats(audio, dtmf))
}

// SetRemote sets the address the peer's SDP names for RTP, from an answer
// or a re-offer; RTCP is taken to be on the port above. A new address
// moves the stream: packets go there, and both directions learn their
// peer's source afresh in a new window (see LearnWindow). The address the
// SDP named already (an answer after early media, a session refresh)
// changes nothing, so the sources learnt stay.
func (s *Stream) SetRemote(remote netip.AddrPort) {
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	s.mu.Lock()
	if remote == s.rtp.signalled {
		s.mu.Unlock()
		return
	}
	s.setRemote(remote)
	s.mu.Unlock()
	// The flows in the kernel name the old peer, as source or as
	// destination.
	if s.kp != nil {
		s.kp.forget(s, true)
	}
}

func (s *Stream) setRemote(remote netip.AddrPort) {
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	s.rtp.reset(remote)
	s.rtcp.reset(rtcpFor(remote))
}

// SetSignalHost names the host the peer's signalling came from (the
// source of its INVITE). A phone behind NAT sends its media from the host
// its SIP comes from, whatever address its SDP names: while the stream
// learns, packets from that host are preferred to those of a host nobody
// named, so that an attacker who sends first does not win against such a
// phone. The zero Addr forgets it.
func (s *Stream) SetSignalHost(ip netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sigHost = ip.Unmap()
}

// Remote returns where RTP goes: the signalled address or, once packets
// arrived, the source learnt.
func (s *Stream) Remote() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rtp.remote
}

// RTCPRemote returns where RTCP goes: the port above the signalled RTP
// address or above RTP's source learnt, until RTCP learns a source of its
// own.
func (s *Stream) RTCPRemote() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rtcp.remote
}

func rtcpFor(rtpAddr netip.AddrPort) netip.AddrPort {
	if rtpAddr.Port() == 0 || rtpAddr.Port() == 65535 {
		return rtpAddr
	}
	return netip.AddrPortFrom(rtpAddr.Addr(), rtpAddr.Port()+1)
}

// sendable reports whether packets can go to a: it is set, has a port and
// is not the 0.0.0.0 of a call on hold (RFC 3264 §8.4).
func sendable(a netip.AddrPort) bool {
	return a.IsValid() && a.Port() != 0 && !a.Addr().IsUnspecified()
}

// takeRTP reports whether an RTP packet from src, read at now, comes from
// the stream's peer (see LearnWindow), and whether it moved the stream to
// src. When RTP learns a source, RTCP follows it to the port above,
// unless RTCP learnt a source of its own on that host or at the SDP's
// address.
func (s *Stream) takeRTP(src netip.AddrPort, now time.Time) (ok, moved bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok, moved = s.rtp.take(src, [2]netip.Addr{s.sigHost}, matchAny, now)
	if moved {
		s.logAt(slog.LevelDebug, "rtp latched", "to", src, "match", s.rtp.match)
		s.rtcp.follow(rtcpFor(src))
	}
	return ok, moved
}

// takeRTCP does for RTCP what takeRTP does for RTP, but RTCP is never
// taken from a host nobody named: before RTP knows its peer, only from
// the SDP's host or the signalling's; once it does, from that peer's host
// or the SDP's. The same phone sends both, and RTCP's own first comer may
// be someone else, whose reports would otherwise be relayed to the other
// party until the peer's RTP arrived.
func (s *Stream) takeRTCP(src netip.AddrPort, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	hosts, floor := [2]netip.Addr{s.sigHost}, matchHost
	if r, ok := s.rtp.learnt(); ok {
		hosts[1] = r.Addr()
	}
	ok, moved := s.rtcp.take(src, hosts, floor, now)
	if moved {
		s.logAt(slog.LevelDebug, "rtcp latched", "to", src, "match", s.rtcp.match)
	}
	return ok
}

func (s *Stream) readRTP() {
	defer s.wg.Done()
	var pkt rtp.Packet
	var idle bool
	for {
		// A reader started (or going on after a panic) while the kernel
		// relays the stream parks once nothing comes up for parkIdle.
		s.idleDeadline(&idle)
		switch s.readRTPUntilPanic(&pkt, &idle) {
		case readClosed:
			s.q.closed()
			return
		case readIdle:
			if s.park() {
				return
			}
		}
	}
}

// packetBufs are the RTP readers' buffers, each taken for one packet (see
// recvRTP).
var packetBufs = sync.Pool{New: func() any {
	b := make([]byte, maxPacket)
	return &b
}}

// parkIdle is how long an RTP reader waits for a packet, while the kernel
// relays its stream's packets, before it parks (see park).
const parkIdle = time.Second

// Why readRTPUntilPanic returned.
const (
	readPanicked = iota // handling a packet panicked: read on
	readClosed          // the socket closed
	readIdle            // nothing came up for parkIdle while the kernel relays
)

// readRTPUntilPanic reads RTP until the socket closes, until handling one
// packet panics (that packet is dropped and logged with its stack, and the
// reader goes on, so that a packet vnum mishandles costs one packet, never
// the process and every call in it), or until nothing came up to the
// socket for parkIdle while the kernel relays the stream's packets. idle
// says a read deadline is set for that. Each datagram read is counted
// once, by what became of it (see RelayCounts). Packets from a source
// other than the stream's peer are dropped before anything else sees them:
// they are neither relayed nor taken for digits, and do not count as the
// call's media.
func (s *Stream) readRTPUntilPanic(pkt *rtp.Packet, idle *bool) (why int) {
	var bp *[]byte
	defer func() {
		if bp != nil {
			packetBufs.Put(bp)
		}
	}()
	defer s.recoverPacket("rtp", s.counts)
	for {
		if bp != nil {
			packetBufs.Put(bp)
		}
		if s.sock.closed.Load() {
			// After any change of the read deadline above: a Close from
			// here on makes the read return at once (Socket.stop).
			return readClosed
		}
		var n int
		var src netip.AddrPort
		var err error
		bp, n, src, err = s.recvRTP()
		if err != nil {
			switch {
			case s.stopped(err):
				return readClosed
			case !errors.Is(err, os.ErrDeadlineExceeded):
				s.idleDeadline(idle)
			case s.InKernel():
				*idle = false
				_ = s.sock.RTP.SetReadDeadline(time.Time{})
				return readIdle
			default:
				s.idleDeadline(idle)
			}
			continue
		}
		if pkt.Unmarshal((*bp)[:n]) != nil || pkt.Version != 2 {
			// What the kernel passes up besides RTP (a NAT keepalive, a
			// STUN check) must not keep the reader from parking.
			s.counts.add(dropped(DropNotRTP))
			s.idleDeadline(idle)
			continue
		}
		now := s.now()
		ok, moved := s.takeRTP(netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), now)
		if moved && s.kp != nil {
			s.kp.forget(s, true)
		}
		if !ok {
			s.counts.add(dropped(DropForeignSource))
			s.idleDeadline(idle)
			continue
		}
		s.lastRTP.Store(now.UnixNano())
		s.q.sawPacket(s, pkt, now)
		o := s.handleRTP((*bp)[:n], pkt, now)
		s.counts.add(o)
		if s.kp != nil {
			s.kp.afterRTP(s, (*bp)[:n], o, now)
			s.idleDeadline(idle)
		}
	}
}

// idleDeadline has the reader's next read give up after parkIdle while
// the stream's packets have a flow in the kernel (in handover, or relayed
// there, the reader seeing only what the kernel passes up), and wait as
// long as it takes otherwise. idle says a deadline is set.
func (s *Stream) idleDeadline(idle *bool) {
	switch {
	case s.kflow.Load() != nil:
		*idle = true
		_ = s.sock.RTP.SetReadDeadline(time.Now().Add(parkIdle))
	case *idle:
		*idle = false
		_ = s.sock.RTP.SetReadDeadline(time.Time{})
	}
}

// park ends the RTP reader (true) while the kernel relays the stream's
// packets, its socket then watched by the Ports' shared reader, which
// starts a reader again when a datagram comes up (wakeRTP): a call whose
// audio the kernel relays keeps no goroutine, stack or buffer of its own
// for it. False keeps the reader (closed, no longer in the kernel, or no
// shared reader on this system).
func (s *Stream) park() bool {
	s.lc.Lock()
	defer s.lc.Unlock()
	if s.closed || s.sock.pool == nil || !s.InKernel() {
		return false
	}
	if err := s.sock.pool.rtcp.park(s); err != nil {
		s.logAt(slog.LevelDebug, "rtp reader stays", "error", err)
		return false
	}
	s.rtpParked = true
	return true
}

// wakeRTP starts the RTP reader of a parked stream: a datagram came up to
// its socket. It does nothing on a closed stream.
func (s *Stream) wakeRTP() {
	s.lc.Lock()
	defer s.lc.Unlock()
	if s.closed || !s.rtpParked {
		return
	}
	s.rtpParked = false
	s.wg.Add(1)
	go s.readRTP()
}

// handleRTP relays a packet read at now to the bridged peer (handing it
// to the tap first, as it was read), or detects digits in it before the
// bridge, and says what became of it. The deferred unlock keeps the bridge
// lock right even when handling panics.
func (s *Stream) handleRTP(raw []byte, pkt *rtp.Packet, now time.Time) outcome {
	s.bridgeMu.RLock()
	defer s.bridgeMu.RUnlock()
	if r := s.peer; r != nil {
		if s.watch.Load() {
			// Before the relay rewrites the payload type in place.
			s.detect(pkt)
		}
		if t := s.tap.Load(); t != nil {
			t.Packet(pkt.PayloadType, pkt.SSRC, pkt.Timestamp, now, pkt.Payload)
		}
		return r.relayRTP(raw, pkt)
	}
	s.detect(pkt)
	return dropped(DropNoBridge)
}

// WatchKeys (on true) has the stream collect the keys its peer sends
// while it is bridged too: a consignee's block key is watched during the
// call. The packets are relayed as before. Where the kernel relays the
// call (Ports.UseKernel) only the telephone-event packets come up to the
// stream, and with in-band keys (no telephone-event) all its RTP stays in
// user space. False goes back to relaying only.
func (s *Stream) WatchKeys(on bool) {
	s.watch.Store(on)
	if s.kp != nil {
		// The flow in the kernel is made again, with or without the
		// watched payload type, from the next packet on.
		s.kp.forget(s, false)
	}
}

// recoverPacket, deferred in a reader, turns a panic while handling one
// packet into an error log line with the stack, and counts the packet as
// dropped in counts (nil for RTCP, which is not counted).
func (s *Stream) recoverPacket(kind string, counts *relayCounters) {
	if v := recover(); v != nil {
		if counts != nil {
			counts.add(dropped(DropPanic))
		}
		s.logAt(slog.LevelError, "packet handling panicked; packet dropped", "kind", kind,
			"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	}
}

func (s *Stream) readRTCP() {
	defer s.wg.Done()
	buf := make([]byte, maxPacket)
	for !s.readRTCPUntilPanic(buf) {
	}
}

// readRTCPUntilPanic is readRTPUntilPanic for the RTCP socket.
func (s *Stream) readRTCPUntilPanic(buf []byte) (closed bool) {
	defer s.recoverPacket("rtcp", nil)
	for !s.sock.closed.Load() {
		n, src, err := s.sock.RTCP.ReadFromUDPAddrPort(buf)
		if err != nil {
			if s.stopped(err) {
				return true
			}
			continue
		}
		s.rtcpPacket(buf[:n], src)
	}
	return true
}

// rtcpPacket handles one datagram read on the RTCP socket from src: it is
// relayed to the bridged peer when it is RTCP from the stream's peer.
func (s *Stream) rtcpPacket(raw []byte, src netip.AddrPort) {
	// RFC 3550 §6.4: version 2 and at least a header and an SSRC.
	if len(raw) < 8 || raw[0]>>6 != 2 {
		return
	}
	if !s.takeRTCP(netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), s.now()) {
		s.counts.foreignRTCP.Add(1)
		return
	}
	s.handleRTCP(raw)
}

// handleRTCP relays an RTCP packet to the bridged peer, if any.
func (s *Stream) handleRTCP(raw []byte) {
	s.q.sawRTCP(s, raw)
	s.bridgeMu.RLock()
	defer s.bridgeMu.RUnlock()
	if r := s.peer; r != nil {
		r.relayRTCP(raw)
	}
}

// stopped reports whether a read error ends the reader: the socket is
// closed. Other errors (ICMP errors reported on the socket) are skipped.
func (s *Stream) stopped(err error) bool {
	if errors.Is(err, net.ErrClosed) || s.sock.closed.Load() {
		return true
	}
	select {
	case <-s.done:
		return true
	default:
		s.logAt(slog.LevelDebug, "rtp read", "error", err)
		return false
	}
}

// detect feeds a packet to the DTMF detectors and queues a found key.
func (s *Stream) detect(pkt *rtp.Packet) {
	var key rune
	var ok bool
	f := s.formats.Load()
	method := DigitRFC4733
	switch {
	case f.dtmf != nil && pkt.PayloadType == f.dtmf.PT:
		key, ok = s.events.Feed(pkt)
	case f.tones != nil && pkt.PayloadType == f.audio.PT:
		key, ok = f.tones.Feed(pkt.Payload)
		method = DigitInband
	}
	if !ok {
		return
	}
	s.q.countDigit(method)
	select {
	case s.digits <- key:
	default:
		s.logAt(slog.LevelWarn, "dtmf digit dropped: buffer full")
	}
}

func (s *Stream) bridged() bool {
	s.bridgeMu.RLock()
	defer s.bridgeMu.RUnlock()
	return s.peer != nil
}

// encoder returns the G.711 sample encoder for codec c, or nil.
func encoder(c Codec) func(int16) byte {
	if c.Rate != SampleRate {
		return nil
	}
	switch strings.ToUpper(c.Name) {
	case pcmu:
		return encodeULawSample
	case pcma:
		return encodeALawSample
	}
	return nil
}

// Play sends pcm (8 kHz mono) to the remote in the stream's codec as 20 ms
// RTP packets paced at 20 ms, with the stream's own SSRC. Sequence numbers
// and timestamps continue across calls; the first packet of each call
// carries the marker bit (RFC 3551 §4.1). Play returns when all audio is
// sent, with ctx's error when ctx ends first, ErrClosed when the stream
// closes and ErrBridged when the stream is or becomes bridged. Calls are
// serialised. Nothing is sent while the remote is unset or on hold.
func (s *Stream) Play(ctx context.Context, pcm []int16) error {
	audio := s.Audio()
	enc := encoder(audio)
	if enc == nil {
		return ErrUnsupportedCodec
	}
	s.playMu.Lock()
	defer s.playMu.Unlock()
	frames := (len(pcm) + frameSamples - 1) / frameSamples
	if !s.lastSent.IsZero() {
		// RFC 3550 §5.1: the timestamp of a talkspurt reflects the silence
		// before it.
		if idle := time.Since(s.lastSent) - frameTime; idle > 0 {
			s.ts += uint32(samples(idle)) / frameSamples * frameSamples
		}
	}
	ticker := time.NewTicker(frameTime)
	defer ticker.Stop()
	buf := make([]byte, maxPacket)
	payload := make([]byte, frameSamples)
	silence := enc(0)
	for i := range frames {
		if i > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-s.done:
				return ErrClosed
			case <-ticker.C:
			}
		}
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case s.isClosed():
			return ErrClosed
		case s.bridged():
			return ErrBridged
		}
		frame := pcm[i*frameSamples : min((i+1)*frameSamples, len(pcm))]
		for j := range payload {
			payload[j] = silence
			if j < len(frame) {
				payload[j] = enc(frame[j])
			}
		}
		if err := s.send(buf, payload, audio.PT, i == 0); err != nil {
			return err
		}
	}
	return nil
}

// send writes one packet of the stream's own audio and advances seq and ts.
// The caller holds playMu.
func (s *Stream) send(buf, payload []byte, pt uint8, marker bool) error {
	pkt := rtp.Packet{
		Header: rtp.Header{
			Version:        2,
			Marker:         marker,
			PayloadType:    pt,
			SequenceNumber: s.seq.NextSequenceNumber(),
			Timestamp:      s.ts,
			SSRC:           s.ssrc,
		},
		Payload: payload,
	}
	s.ts += frameSamples
	s.lastSent = time.Now()
	n, err := pkt.MarshalTo(buf)
	if err != nil {
		return err
	}
	dst := s.Remote()
	if !sendable(dst) {
		return nil
	}
	if s.sock.closed.Load() {
		return ErrClosed
	}
	if _, err := s.sock.RTP.WriteToUDPAddrPort(buf[:n], dst); err != nil {
		if errors.Is(err, net.ErrClosed) {
			return ErrClosed
		}
		// A lost packet is not worth ending the prompt for.
		s.logAt(slog.LevelDebug, "rtp write", "error", err, "to", dst)
	}
	return nil
}

func (s *Stream) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}
