package media

import (
	cryptorand "crypto/rand"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DrainTime is how long a closed port pair stays out of the pool before it
// is given to another call, so that late RTP from the old call never reaches
// the next one. NewPorts reads it once.
var DrainTime = time.Second

// Ports allocates RTP/RTCP port pairs on one IP address: RTP on an even port,
// RTCP on the odd port above it (RFC 3550 §11), each pair picked at random
// in the range, so that a call's ports say nothing of the next call's. It
// is safe for concurrent use.
type Ports struct {
	ip        netip.Addr
	min, max  int  // first even RTP port, last usable RTP port
	ephemeral bool // the kernel picks the ports (NewPorts with 0-0)
	drain     time.Duration
	now       func() time.Time                           // SetClock; also the streams' clock
	listen    func(netip.AddrPort) (*net.UDPConn, error) // listenUDP; tests choose the kernel's answer
	relay     relayCounters                              // the RTP packets of its streams (RelayCounts)
	kernel    *kernelPath                                // UseKernel; guarded by mu
	rtcp      rtcpReader                                 // reads its streams' RTCP sockets

	metricsOnce sync.Once
	metrics     *Metrics // Metrics

	mu       sync.Mutex
	rand     *rand.Rand        // where Open starts looking; guarded by mu
	open     map[int]bool      // RTP ports of open sockets
	draining map[int]time.Time // RTP port -> when it may be reused
	swept    time.Time         // when Available last forgot drains that are over
	// idle holds the sockets of released pairs, still bound, for Open to
	// take again instead of binding new ones (keepIdle): a call's four
	// sockets cost a dozen system calls to open and close, a reused pair
	// two reads. Pairs idle for idleKeep are closed (idleOrder).
	idle      map[int]idlePair
	idleOrder []idleRef // in the order released; entries of pairs taken since are skipped
	keepIdle  bool      // a range of ports, on a system where a socket can be flushed
	boundMax  int       // SetBoundLimit: pairs bound at most, open or idle; 0: the range
	// fdBound is the pairs bound at most for the process's descriptor
	// limit (fdBoundOf): open and idle pairs together leave signalling and
	// the rest their share (0: no limit known).
	fdBound int
	// sweeping says a timer will close expired idle pairs (sweepIdle),
	// every sweepEvery (idleKeep; tests shorten it).
	sweeping   bool
	sweepEvery time.Duration
}

// idleKeep is how long the sockets of a released pair stay bound, idle,
// after they were released (the drain included), for another call to
// take them; then they are closed. Under load nearly every pair is taken
// again well within it, and a lull of up to half a minute (a trunk's
// fail-over, a pause in a campaign; in make bench, the other system's
// step) does not cost the next calls a bind of the pool's sockets again:
// at 1,200 calls/s those binds, their epoll registrations and closes were
// some 8 % of the CPU for the seconds it took. An idle node's sweep
// (sweepIdle, every idleKeep) closes them at most two idleKeeps after
// their release; the descriptors kept are within media's share
// (fdBoundOf).
const idleKeep = 30 * time.Second

// idlePair is a released pair's sockets, kept bound.
type idlePair struct {
	rtp, rtcp *net.UDPConn
	reg       *rtcpReg  // the RTCP socket's place in the shared reader, kept too
	rtpReg    *rtcpReg  // the RTP socket's, while it is idle (watchIdle)
	at        time.Time // released
}

// close closes the pair's sockets, their places in the shared reader
// taken first.
func (pr idlePair) close(p *Ports) error {
	p.rtcp.forget(pr.rtpReg)
	return p.closePair(pr.rtp, pr.rtcp, pr.reg)
}

// closePair closes a pair's sockets, the RTCP socket's place in the
// shared reader (reg, nil for none) taken first.
func (p *Ports) closePair(rtp, rtcp *net.UDPConn, reg *rtcpReg) error {
	p.rtcp.forget(reg)
	return errors.Join(rtp.Close(), rtcp.Close())
}

// idleRef is a pair in the order released.
type idleRef struct {
	port int
	at   time.Time
}

// NewPorts returns an allocator for port pairs on ip within [min, max]. The
// range must hold at least one even port whose odd neighbour is also in it.
//
// The range 0-0 asks for ephemeral pairs instead: each Open lets the kernel
// choose a free port and binds its even/odd neighbour with it. Programs
// that share a host with others they cannot agree a range with (tests run
// in parallel) use it; a node serving calls takes the range it was given,
// which its firewall knows.
func NewPorts(ip string, min, max int) (*Ports, error) {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, fmt.Errorf("%w: ip %q: %w", ErrBadPortRange, ip, err)
	}
	if min == 0 && max == 0 {
		return &Ports{
			ip:        addr.Unmap(),
			ephemeral: true,
			drain:     DrainTime,
			now:       time.Now,
			listen:    listenUDP,
			open:      make(map[int]bool),
			draining:  make(map[int]time.Time),
		}, nil
	}
	first := min + min%2
	if min < 1 || max > 65535 || first+1 > max {
		return nil, fmt.Errorf("%w: %d-%d holds no rtp/rtcp pair", ErrBadPortRange, min, max)
	}
	// Ports in order would let anyone who sees one call's SDP (their own
	// call) aim RTP at the next calls' relay ports. ChaCha8 is a
	// cryptographically strong generator: seeded once from the operating
	// system, its picks cannot be foretold from the ports seen, and each
	// Open costs no system call.
	var seed [32]byte
	if _, err := cryptorand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("media: seed the rtp port picker: %w", err)
	}
	return &Ports{
		ip:         addr.Unmap(),
		min:        first,
		max:        max - 1 - (max-1)%2,
		drain:      DrainTime,
		now:        time.Now,
		listen:     listenUDP,
		rand:       rand.New(rand.NewChaCha8(seed)),
		open:       make(map[int]bool),
		draining:   make(map[int]time.Time),
		idle:       make(map[int]idlePair),
		keepIdle:   canFlush,
		fdBound:    fdBoundOf(descriptorLimit()),
		sweepEvery: idleKeep,
	}, nil
}

// descriptorsKept is what the pool leaves of the process's descriptors
// to everything but media: the descriptor budget's reserve (the listeners,
// the store, the log: 256) and the fewest TCP connections it gives
// signalling (64). The budget itself gives media two descriptors a pair of
// media.rtp_ports and caps TCP at what is left, so a pool that keeps its
// whole range bound stays within it.
const descriptorsKept = 256 + 64

// fdBoundOf is the pairs a pool may keep bound, open or idle, under a
// descriptor limit of limit (0: unknown, no bound): two sockets a pair out
// of all but descriptorsKept. Half the limit, as it was, left a range
// wider than a quarter of it binding and closing sockets for every call
// once its pairs were taken at a high call rate: at 1,200 calls/s of 1 s
// each some 5,000 pairs are open or draining at once.
func fdBoundOf(limit int) int {
	if limit <= 0 {
		return 0
	}
	return max((limit-descriptorsKept)/2, 1)
}

// SetClock makes p and the streams on its sockets read the time from now
// instead of time.Now: the drain of released pairs, the streams' learning
// windows (LearnWindow) and their LastRTP. Tests drive those with a clock
// of their own. It must be called before the first Open.
func (p *Ports) SetClock(now func() time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.now = now
}

// Socket is one bound RTP/RTCP pair taken from Ports.
type Socket struct {
	// RTP is the socket bound to IP:Port.
	RTP *net.UDPConn
	// RTCP is the socket bound to IP:Port+1.
	RTCP *net.UDPConn
	// Port is the RTP port; RTCP uses Port+1.
	Port int
	// IP is the address both sockets are bound to.
	IP netip.Addr

	pool   *Ports
	once   sync.Once
	err    error
	closed atomic.Bool
	// kflows are the flows in the kernel that relay to or from this
	// pair, guarded by the kernel path's mu (Ports.UseKernel).
	kflows []*kflow
	// rtcpReg is the RTCP socket's place in the pool's shared reader
	// (nil: none yet), guarded by the reader's mu; it goes back to the
	// pool with the sockets.
	rtcpReg *rtcpReg
}

// randomTries is how many pairs Open draws at random before it walks the
// range: the draws make the pick uniform among the free pairs while the
// range has room, the walk finds the last free pairs of a full range.
const randomTries = 16

// Open binds a free port pair picked at random: up to randomTries pairs
// drawn at random, then, when none of those was free (the range is nearly
// full), the first free pair up from a random one, wrapping round. Pairs
// that are open, draining or that fail to bind (another process holds
// them) are skipped; ErrNoPorts is returned when no pair of the range can
// be bound.
func (p *Ports) Open() (*Socket, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if p.ephemeral {
		return p.openEphemeral(now)
	}
	p.closeIdle(now)
	pairs := (p.max-p.min)/2 + 1
	for range min(randomTries, pairs) {
		if s := p.tryOpen(p.min+2*p.rand.IntN(pairs), now); s != nil {
			return s, nil
		}
	}
	start := p.rand.IntN(pairs)
	for i := range pairs {
		if s := p.tryOpen(p.min+2*((start+i)%pairs), now); s != nil {
			return s, nil
		}
	}
	return nil, ErrNoPorts
}

// tryOpen takes the pair at port when it is free, its idle sockets if it
// has them, else sockets bound now, or returns nil. p.mu is held.
func (p *Ports) tryOpen(port int, now time.Time) *Socket {
	if !p.free(port, now) {
		return nil
	}
	rtp, rtcp, reg, ok := p.takeIdle(port)
	if !ok {
		// A pair bound now counts against the bound as the idle ones do:
		// the longest idle give way.
		for p.overBound(len(p.open)+len(p.idle)) && p.closeOldestIdle(1) {
		}
		var err error
		rtp, rtcp, err = p.bind(port)
		if err != nil && outOfDescriptors(err) && p.closeOldestIdle(idleYield) {
			// Idle sockets never cost a call its ports.
			rtp, rtcp, err = p.bind(port)
		}
		if err != nil {
			return nil
		}
	}
	p.open[port] = true
	return &Socket{RTP: rtp, RTCP: rtcp, Port: port, IP: p.ip, pool: p, rtcpReg: reg}
}

// takeIdle takes the idle sockets of the pair at port, ready for a new
// call: their read deadlines cleared (Close set them) and nothing left in
// them (late packets of the call that had them, and what anyone sent to
// the port since, are dropped). False when the pair has none, or they
// could not be made ready (then they are closed). p.mu is held.
func (p *Ports) takeIdle(port int) (rtp, rtcp *net.UDPConn, reg *rtcpReg, ok bool) {
	pr, ok := p.idle[port]
	if !ok {
		return nil, nil, nil, false
	}
	delete(p.idle, port)
	// The RTP socket out of the shared reader first (the call's reader
	// reads it from now on), then emptied of what came since it looked.
	p.rtcp.forget(pr.rtpReg)
	pr.rtpReg = nil
	if rtp, rtcp = pr.rtp, pr.rtcp; rtp.SetReadDeadline(time.Time{}) == nil &&
		rtcp.SetReadDeadline(time.Time{}) == nil && flushSocket(rtp) && flushSocket(rtcp) {
		return rtp, rtcp, pr.reg, true
	}
	_ = pr.close(p)
	return nil, nil, nil, false
}

// closeIdle closes the idle pairs released idleKeep or more before now.
// p.mu is held.
func (p *Ports) closeIdle(now time.Time) {
	n := 0
	for _, r := range p.idleOrder {
		if now.Sub(r.at) < idleKeep {
			break
		}
		n++
		if pr, ok := p.idle[r.port]; ok && pr.at.Equal(r.at) {
			delete(p.idle, r.port)
			_ = pr.close(p)
		}
	}
	if n > 0 {
		p.idleOrder = append(p.idleOrder[:0], p.idleOrder[n:]...)
	}
}

// CloseIdle closes the sockets of every released pair now: a process
// that is done with the pool frees its ports for others.
func (p *Ports) CloseIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for port, pr := range p.idle {
		_ = pr.close(p)
		delete(p.idle, port)
	}
	p.idleOrder = p.idleOrder[:0]
}

// idleYield is how many idle pairs are closed when a bind finds the
// process out of descriptors, before it tries again.
const idleYield = 8

// outOfDescriptors reports whether err says the process or the system
// has no descriptor left.
func outOfDescriptors(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// closeOldestIdle closes up to n idle pairs, the longest idle first, and
// reports whether it closed any. p.mu is held.
func (p *Ports) closeOldestIdle(n int) bool {
	closed, i := 0, 0
	for ; i < len(p.idleOrder) && closed < n; i++ {
		r := p.idleOrder[i]
		if pr, ok := p.idle[r.port]; ok && pr.at.Equal(r.at) {
			delete(p.idle, r.port)
			_ = pr.close(p)
			closed++
		}
	}
	p.idleOrder = append(p.idleOrder[:0], p.idleOrder[i:]...)
	return closed > 0
}

// SetBoundLimit has p keep at most pairs pairs bound at once, open or
// idle: a pair released while that many are bound is closed at once.
// A server whose calls.max_active is below what the range holds keeps
// its sockets within the descriptors it set aside for media (four a
// call). Zero means the range alone bounds them.
func (p *Ports) SetBoundLimit(pairs int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.boundMax = max(pairs, 0)
}

// overBound reports whether bound pairs (open and idle) are as many as
// p may keep: SetBoundLimit's, and fdBound's share of the process's
// descriptors. p.mu is held.
func (p *Ports) overBound(bound int) bool {
	return p.boundMax > 0 && bound >= p.boundMax || p.fdBound > 0 && bound >= p.fdBound
}

// Idle returns how many released pairs keep their sockets bound for the
// next calls (see idleKeep).
func (p *Ports) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// free reports whether the pair at port is neither open nor draining at
// now, forgetting a drain that is over. p.mu is held.
func (p *Ports) free(port int, now time.Time) bool {
	if p.open[port] {
		return false
	}
	if until, ok := p.draining[port]; ok {
		if now.Before(until) {
			return false
		}
		delete(p.draining, port)
	}
	return true
}

// ephemeralTries bounds how often Open asks the kernel for a port before
// it gives up: a pair fails when the neighbour of the port the kernel chose
// is taken, or the pair is still draining.
const ephemeralTries = 64

// openEphemeral binds a port of the kernel's choosing and its RTP/RTCP
// neighbour. The port may be odd: then it is the RTCP port and the even
// port below it is bound for RTP. p.mu is held.
func (p *Ports) openEphemeral(now time.Time) (*Socket, error) {
	// Ports the kernel hands out rarely repeat, so drains that are over are
	// swept here rather than met again.
	maps.DeleteFunc(p.draining, func(_ int, until time.Time) bool { return !now.Before(until) })
	for range ephemeralTries {
		first, err := p.listen(netip.AddrPortFrom(p.ip, 0))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNoPorts, err)
		}
		chosen := first.LocalAddr().(*net.UDPAddr).Port
		port := chosen - chosen%2
		if !p.free(port, now) {
			_ = first.Close()
			continue
		}
		other := port + 1
		if chosen == other {
			other = port
		}
		second, err := p.listen(netip.AddrPortFrom(p.ip, uint16(other)))
		if err != nil {
			_ = first.Close()
			continue
		}
		rtp, rtcp := first, second
		if chosen != port {
			rtp, rtcp = second, first
		}
		p.open[port] = true
		return &Socket{RTP: rtp, RTCP: rtcp, Port: port, IP: p.ip, pool: p}, nil
	}
	return nil, ErrNoPorts
}

func (p *Ports) bind(port int) (rtp, rtcp *net.UDPConn, err error) {
	rtp, err = p.listen(netip.AddrPortFrom(p.ip, uint16(port)))
	if err != nil {
		return nil, nil, err
	}
	rtcp, err = p.listen(netip.AddrPortFrom(p.ip, uint16(port+1)))
	if err != nil {
		return nil, nil, errors.Join(err, rtp.Close())
	}
	return rtp, rtcp, nil
}

func listenUDP(addr netip.AddrPort) (*net.UDPConn, error) {
	return net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
}

// InUse returns the number of port pairs held by open sockets. Pairs that
// are draining after Close are not counted.
func (p *Ports) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.open)
}

// Pairs returns how many RTP/RTCP pairs the range holds, each two
// sockets when in use: what media may need of the process's descriptors.
// It is 0 for ephemeral pairs (NewPorts with 0-0), which have no bound
// but the kernel's.
func (p *Ports) Pairs() int {
	if p.ephemeral {
		return 0
	}
	return (p.max-p.min)/2 + 1
}

// availableSweep is how often Available may walk the drains to forget
// those that are over: it runs on every new INVITE, so a full pool must
// not cost a walk of every port each time.
const availableSweep = 50 * time.Millisecond

// Available reports whether n more pairs could be taken now, as far as the
// pool knows: pairs neither open nor draining. A port another process
// holds still fails at Open, so Open's ErrNoPorts stays possible. Ephemeral
// pairs are the kernel's to give: Available is then always true. It is
// cheap enough to ask before each call (admission control): a count, and
// at most every availableSweep a walk of the drains.
func (p *Ports) Available(n int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ephemeral {
		return true
	}
	pairs := p.Pairs()
	if pairs-len(p.open)-len(p.draining) >= n {
		return true
	}
	// Drains that are over stay in the map until Open meets their port;
	// forget them before saying no.
	if now := p.now(); now.Sub(p.swept) >= availableSweep {
		p.swept = now
		maps.DeleteFunc(p.draining, func(_ int, until time.Time) bool { return !now.Before(until) })
	}
	return pairs-len(p.open)-len(p.draining) >= n
}

// release moves the pair at s's port from open to draining, keeping its
// sockets bound, idle, when p keeps them (keepIdle), and closing them
// otherwise.
func (p *Ports) release(s *Socket) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	delete(p.open, s.Port)
	if p.drain > 0 {
		p.draining[s.Port] = now.Add(p.drain)
	}
	p.closeIdle(now)
	// While idle the shared reader reads both sockets and drops what
	// comes (the RTCP socket is in its set already, the RTP socket joins
	// it), so that packets sprayed at idle ports hold none of the
	// kernel's memory. A pair the reader cannot take is closed.
	if !p.keepIdle || p.overBound(len(p.open)+len(p.idle)) {
		return p.closePair(s.RTP, s.RTCP, s.rtcpReg)
	}
	reg, err := s.rtcpReg, error(nil)
	if reg == nil {
		// No stream read it: the RTCP socket joins the set now.
		if reg, err = p.rtcp.watchIdle(s.RTCP); err != nil {
			return p.closePair(s.RTP, s.RTCP, nil)
		}
	}
	rtpReg, err := p.rtcp.watchIdle(s.RTP)
	if err != nil {
		return p.closePair(s.RTP, s.RTCP, reg)
	}
	p.idle[s.Port] = idlePair{rtp: s.RTP, rtcp: s.RTCP, reg: reg, rtpReg: rtpReg, at: now}
	p.idleOrder = append(p.idleOrder, idleRef{port: s.Port, at: now})
	if !p.sweeping {
		// Expired pairs are closed by Open and release too; the timer
		// closes them on a node that has gone quiet.
		p.sweeping = true
		time.AfterFunc(p.sweepEvery, p.sweepIdle)
	}
	return nil
}

// nextSweep is when the oldest idle pair expires, from now: at most
// sweepEvery, at least a millisecond. p.mu is held.
func (p *Ports) nextSweep(now time.Time) time.Duration {
	for _, r := range p.idleOrder {
		if pr, ok := p.idle[r.port]; ok && pr.at.Equal(r.at) {
			return min(max(r.at.Add(idleKeep).Sub(now), time.Millisecond), p.sweepEvery)
		}
	}
	return p.sweepEvery
}

// sweepIdle closes the idle pairs that have been idle for idleKeep, and
// comes back while some are left.
func (p *Ports) sweepIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	p.closeIdle(now)
	if len(p.idle) == 0 {
		p.sweeping = false
		return
	}
	time.AfterFunc(p.nextSweep(now), p.sweepIdle)
}

// stop ends the use of the pair: it is marked closed (no relay or prompt
// sends from it any more), the flows in the kernel to or from it are
// removed, so that no packet is relayed through a port after it closed,
// and reads waiting on its sockets return at once (a past deadline).
// Close follows once the pair's readers have ended. It is idempotent.
func (s *Socket) stop() {
	if s.closed.Swap(true) {
		return
	}
	if s.pool != nil {
		if kp := s.pool.kernelPath(); kp != nil {
			kp.closing(s)
		}
	}
	past := time.Unix(1, 0)
	_ = s.RTP.SetReadDeadline(past)
	_ = s.RTCP.SetReadDeadline(past)
}

// Close ends the use of the pair (see stop) and returns it to the pool,
// where it drains for DrainTime before reuse; its sockets stay bound for a
// while for the next call that takes the pair (idleKeep), or are closed.
// Whatever reads the sockets must have ended first (Stream.Close sees to
// it). It is idempotent.
func (s *Socket) Close() error {
	s.once.Do(func() {
		s.stop()
		if s.pool != nil {
			s.err = s.pool.release(s)
			return
		}
		s.err = errors.Join(s.RTP.Close(), s.RTCP.Close())
	})
	return s.err
}

// RTPAddr returns the local RTP address, the one to put in SDP.
func (s *Socket) RTPAddr() netip.AddrPort {
	return netip.AddrPortFrom(s.IP, uint16(s.Port))
}
