package media

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vnum/vnum/media/kernel"
)

// KernelPoll is how often the counters of the flows in the kernel are
// read, all flows at once: the streams' LastRTP (so the media timeout)
// and RelayCounts see packets the kernel relayed this late at most.
const KernelPoll = time.Second

// Timings of the move of a stream's RTP into the kernel.
const (
	// kernelRetry is how often a stream that relays in user space asks
	// whether its packets could go through the kernel (on a packet it
	// relays, not on a timer).
	kernelRetry = 250 * time.Millisecond
	// kernelBackoff is how long a stream waits after the kernel refused
	// its flow, or its handover did not end.
	kernelBackoff = 30 * time.Second
	// handoverLimit is how long a flow may stay in handover: a flow whose
	// packets reach vnum by another interface (a peer on this host reaches
	// media.ip through loopback) never leaves it, and costs a system call
	// per packet while in it.
	handoverLimit = 3 * time.Second
)

// kernelPath is a Ports' use of the kernel relay (UseKernel): the flows
// its streams installed and the reader of their counters.
type kernelPath struct {
	r    *kernel.Relay
	log  *slog.Logger
	p    *Ports
	stop chan struct{}
	done chan struct{}

	// mu guards flows, every Socket's kflows and stopped, and serialises
	// installs and removals with the counter reads. Lock order: mu, then
	// a stream's bridgeMu or mu.
	mu      sync.Mutex
	flows   map[kernel.Key]*kflow
	stopped bool
}

// kflow is one direction of a bridged call whose RTP the kernel relays:
// the packets read on from, sent from to's socket.
type kflow struct {
	key       kernel.Key
	from, to  *Stream
	installed time.Time
	// handover is true until the kernel forwards the flow's packets
	// itself: until then the reader acknowledges each packet it relays.
	handover atomic.Bool
	// packets is how many of the flow's packets are in the Ports'
	// relay counts already.
	packets uint64
}

// UseKernel makes p's streams hand the RTP of bridged calls to the kernel
// relay r: once both legs relay to each other, have learnt their peers
// (LearnWindow) and need no G.711 conversion, and neither is kept in user
// space (Stream.KeepInUserSpace), each direction becomes a flow in r, so
// that the kernel forwards its packets with the same payload type
// rewriting the user-space relay does; RTCP and everything else stays
// here. A flow is removed whenever that stops being true (a re-offer, a
// relay stopped, a stream closed) before the ports close. Every
// KernelPoll the flows' counters are read at once, for LastRTP and
// RelayCounts. r must be attached to p's address. stop ends the reads and
// removes the flows left; it must be called before r is closed. Call
// UseKernel before the first Open.
func (p *Ports) UseKernel(r *kernel.Relay, log *slog.Logger) (stop func(), err error) {
	if r.Addr() != p.ip {
		return nil, fmt.Errorf("media: the kernel relay serves %s, the ports are on %s", r.Addr(), p.ip)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	kp := &kernelPath{r: r, log: log, p: p, stop: make(chan struct{}), done: make(chan struct{}),
		flows: make(map[kernel.Key]*kflow)}
	p.mu.Lock()
	p.kernel = kp
	p.mu.Unlock()
	go kp.run()
	var once sync.Once
	return func() { once.Do(kp.close) }, nil
}

func (p *Ports) kernelPath() *kernelPath {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kernel
}

// run reads the flows' counters every KernelPoll until close.
func (kp *kernelPath) run() {
	defer close(kp.done)
	t := time.NewTicker(KernelPoll)
	defer t.Stop()
	for {
		select {
		case <-kp.stop:
			return
		case <-t.C:
			kp.poll()
		}
	}
}

// close stops the reads and removes the flows still installed.
func (kp *kernelPath) close() {
	close(kp.stop)
	<-kp.done
	kp.mu.Lock()
	defer kp.mu.Unlock()
	kp.stopped = true
	for _, f := range kp.flows {
		kp.remove(f)
	}
}

// poll reads every flow's counters in one batch and accounts them: the
// packets the kernel relayed count in RelayCounts and as their streams'
// media (LastRTP); a flow whose handover is over is no longer
// acknowledged, and one stuck in handover goes back to user space.
func (kp *kernelPath) poll() {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	if len(kp.flows) == 0 {
		return
	}
	err := kp.r.Counters(func(k kernel.Key, c kernel.Counters) {
		f := kp.flows[k]
		if f == nil {
			return
		}
		kp.account(f, c)
		if c.Forwarding {
			f.handover.Store(false)
		}
	})
	if err != nil {
		if !errors.Is(err, kernel.ErrClosed) {
			kp.log.Warn("kernel relay: reading the flows' counters", "error", err)
		}
		return
	}
	now := time.Now()
	for _, f := range kp.flows {
		if f.handover.Load() && now.Sub(f.installed) > handoverLimit {
			kp.log.Debug("kernel relay: handover did not end; rtp stays in user space",
				"rtp_port", f.from.sock.Port, "peer", f.key.Peer)
			kp.remove(f)
			f.from.knext.Store(now.Add(kernelBackoff).UnixNano())
		}
	}
}

// account adds what the kernel counted of f since last time. kp.mu is
// held.
func (kp *kernelPath) account(f *kflow, c kernel.Counters) {
	if c.Packets <= f.packets {
		return
	}
	kp.p.relay.kernel.Add(c.Packets - f.packets)
	f.packets = c.Packets
	f.from.sawRTP(f.from.now().Add(-c.Idle))
}

// afterRTP is the reader's part, after it handled an RTP packet from its
// peer in user space (hdr: the packet's first bytes, o: what became of
// it): while its flow is in handover it acknowledges the packet; without
// a flow, now and then, it asks for one.
func (kp *kernelPath) afterRTP(s *Stream, hdr []byte, o outcome, now time.Time) {
	if f := s.kflow.Load(); f != nil {
		if f.handover.Load() {
			// A flow removed meanwhile has nothing left to acknowledge.
			if err := kp.r.Ack(f.key, hdr); err != nil && !errors.Is(err, kernel.ErrNoFlow) {
				kp.log.Debug("kernel relay: ack", "error", err)
			}
		}
		return
	}
	// The retries are paced by the real clock, whatever clock the
	// stream's learning window reads (Ports.SetClock).
	wall := time.Now()
	if o != relayed || wall.UnixNano() < s.knext.Load() {
		return
	}
	s.knext.Store(wall.Add(kernelRetry).UnixNano())
	kp.install(s, now)
}

// install makes the packets read on from a flow in the kernel, when they
// may go there (see UseKernel).
func (kp *kernelPath) install(from *Stream, now time.Time) {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	f, to, ok := kp.flowOf(from, now)
	if !ok {
		return
	}
	if err := kp.r.Install(f); err != nil {
		kp.log.Debug("kernel relay: flow refused; rtp stays in user space", "rtp_port", from.sock.Port, "error", err)
		from.knext.Store(time.Now().Add(kernelBackoff).UnixNano())
		return
	}
	kf := &kflow{key: f.Key, from: from, to: to, installed: time.Now()}
	kf.handover.Store(true)
	kp.flows[f.Key] = kf
	from.sock.kflows = append(from.sock.kflows, kf)
	to.sock.kflows = append(to.sock.kflows, kf)
	from.kflow.Store(kf)
	from.q.kernelMoves.Add(1)
	kp.log.Debug("kernel relay: rtp handed to the kernel", "rtp_port", from.sock.Port, "to_port", to.sock.Port)
}

// flowOf returns the flow of the packets read on from and the stream
// they go to, or false when they must stay in user space. kp.mu is held.
func (kp *kernelPath) flowOf(from *Stream, now time.Time) (kernel.Flow, *Stream, bool) {
	if kp.stopped || from.kflow.Load() != nil || from.kuser.Load() || from.isClosed() || from.sock.closed.Load() {
		return kernel.Flow{}, nil, false
	}
	r := from.route()
	if r == nil || r.xcode != nil {
		return kernel.Flow{}, nil, false
	}
	to := r.to
	if back := to.route(); back == nil || back.to != from || to.isClosed() || to.sock.closed.Load() {
		return kernel.Flow{}, nil, false
	}
	pts, ok := r.rewrites()
	if !ok {
		return kernel.Flow{}, nil, false
	}
	peer, ok := from.settled(now)
	if !ok {
		return kernel.Flow{}, nil, false
	}
	dst, ok := to.settled(now)
	if !ok || !sendable(dst) || !peer.Addr().Is4() || !dst.Addr().Is4() || !from.sock.IP.Is4() {
		return kernel.Flow{}, nil, false
	}
	f := kernel.Flow{
		Key:  kernel.Key{Local: from.sock.RTPAddr(), Peer: peer},
		From: to.sock.RTPAddr(),
		To:   dst,
		PT:   pts,
	}
	if from.watch.Load() {
		// The keys come up to the stream (WatchKeys); a stream watching
		// keys without telephone-event stays in user space altogether.
		d := from.formats.Load().dtmf
		if d == nil {
			return kernel.Flow{}, nil, false
		}
		f.Watch, f.WatchPT = true, d.PT
	}
	return f, to, true
}

// forget removes the flow of the packets read on s and, with incoming,
// the flows sent from s's socket: the stream moved, or stopped relaying.
func (kp *kernelPath) forget(s *Stream, incoming bool) {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	for _, f := range append([]*kflow(nil), s.sock.kflows...) {
		if f.from == s || (incoming && f.to == s) {
			kp.remove(f)
		}
	}
}

// closing removes every flow to or from sock, before it closes.
func (kp *kernelPath) closing(sock *Socket) {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	for _, f := range append([]*kflow(nil), sock.kflows...) {
		kp.remove(f)
	}
}

// remove deletes f from the kernel, accounting its last counts, and
// forgets it; its stream relays in user space from the next packet on,
// and may ask for a flow again at once. kp.mu is held.
func (kp *kernelPath) remove(f *kflow) {
	c, err := kp.r.Remove(f.key)
	switch {
	case err == nil:
		kp.account(f, c)
	case !errors.Is(err, kernel.ErrNoFlow):
		kp.log.Warn("kernel relay: removing a flow", "rtp_port", f.from.sock.Port, "error", err)
	}
	delete(kp.flows, f.key)
	f.from.sock.kflows = without(f.from.sock.kflows, f)
	f.to.sock.kflows = without(f.to.sock.kflows, f)
	f.from.kflow.CompareAndSwap(f, nil)
	f.from.q.kernelMoves.Add(1)
	f.from.knext.Store(0)
}

func without(fs []*kflow, f *kflow) []*kflow {
	out := fs[:0]
	for _, g := range fs {
		if g != f {
			out = append(out, g)
		}
	}
	return out
}

// rewrites returns the payload types r rewrites, as the kernel takes
// them, or false when there are more than it can.
func (r *route) rewrites() ([]kernel.PT, bool) {
	var pts []kernel.PT
	for from, to := range r.pt {
		if uint8(from) != to {
			pts = append(pts, kernel.PT{From: uint8(from), To: to})
		}
	}
	return pts, len(pts) <= kernel.MaxPT
}

// route returns where the packets read on s go, or nil.
func (s *Stream) route() *route {
	s.bridgeMu.RLock()
	defer s.bridgeMu.RUnlock()
	return s.peer
}

// settled returns the source RTP learnt from, once learning is over (see
// LearnWindow): a packet from the SDP's exact address ended it, or the
// window closed. Only the SDP's exact address can move it afterwards,
// and that packet comes up to the stream, which then forgets its flows.
func (s *Stream) settled(now time.Time) (netip.AddrPort, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := &s.rtp
	if l.match == matchNone || (!l.closed && (l.until.IsZero() || now.Before(l.until))) {
		return netip.AddrPort{}, false
	}
	return l.remote, true
}

// sawRTP moves LastRTP forward to at, never back.
func (s *Stream) sawRTP(at time.Time) {
	n := at.UnixNano()
	for {
		last := s.lastRTP.Load()
		if n <= last || s.lastRTP.CompareAndSwap(last, n) {
			return
		}
	}
}

// KeepInUserSpace keeps (keep true) the RTP read on s in user space even
// where the kernel could relay it, for whoever must see each packet (a
// recording, keys watched during the call); false lets the kernel take it
// again. Without a kernel relay (Ports.UseKernel) it changes nothing.
func (s *Stream) KeepInUserSpace(keep bool) {
	s.kuser.Store(keep)
	if keep && s.kp != nil {
		s.kp.forget(s, false)
	}
}

// InKernel reports whether the kernel relays the RTP read on s, its
// handover over.
func (s *Stream) InKernel() bool {
	f := s.kflow.Load()
	return f != nil && !f.handover.Load()
}
